"""More than one machine: a two-node Ray cluster on this machine (each `ray start` with
its own ports and temp dir), PolicyInference replicas placed on both nodes, and requests
served by both. Stops only the processes it started, by PID (never `ray stop`).

    python -m benchmarks.multinode
Writes benchmarks/results/multinode.md.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil

from benchmarks.cluster import shipped_options
from benchmarks.load import sample_bodies
from edge_allocator.runtime.raylocal import free_port, reap

RESULTS = Path(__file__).parent / "results"


def ray_start(*args: str, temp_dir: str, worker_ports: tuple[int, int]) -> None:
    # private loopback cluster
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    ports = [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
             f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
             f"--dashboard-agent-grpc-port={free_port()}",
             f"--dashboard-agent-listen-port={free_port()}",
             # Ray's default worker range (10002-19999): below free_port()'s range
             f"--min-worker-port={worker_ports[0]}", f"--max-worker-port={worker_ports[1]}"]
    subprocess.run([ray_bin, "start", *args, *ports, f"--temp-dir={temp_dir}",
                    "--disable-usage-stats"], check=True, env=env, stdout=subprocess.DEVNULL)


def our_ray_processes(temp_dirs: list[str]) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(t in cmd for t in temp_dirs):
            out.append(p)
    return out


def main() -> None:
    gcs = free_port()
    head_tmp = tempfile.mkdtemp(prefix="ea-head-", dir="/tmp")
    worker_tmp = tempfile.mkdtemp(prefix="ea-wrk-", dir="/tmp")
    started: list[psutil.Process] = []
    try:
        ray_start("--head", f"--port={gcs}", "--num-cpus=1", "--include-dashboard=false",
                  temp_dir=head_tmp, worker_ports=(13000, 13199))
        ray_start(f"--address=127.0.0.1:{gcs}", "--num-cpus=1", temp_dir=worker_tmp,
                  worker_ports=(13200, 13399))
        started = our_ray_processes([head_tmp, worker_tmp])
        import ray
        from ray import serve

        from benchmarks.cluster import deploy

        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray.init(address=f"127.0.0.1:{gcs}", log_to_driver=False)
        nodes = [n["NodeID"][:16] for n in ray.nodes() if n["Alive"]]
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        args, options = shipped_options(separate=False, fixed_replicas=True, cache="none")
        options["PolicyInference"].update(num_replicas=2, ray_actor_options={"num_cpus": 0.6})
        deploy("multi", "/", args, options)
        bodies = sample_bodies(300, nodes=20)
        served = collections.Counter()
        with httpx.Client(timeout=30) as c:
            for b in bodies:
                r = c.post(f"http://127.0.0.1:{port}/v1/allocate", content=b,
                           headers={"content-type": "application/json"})
                served[r.json()["inference_node"]] += 1
        # each replica reports the node it runs on in every response (inference_node)
        lines = [f"Ray nodes: {nodes}; 2 PolicyInference replicas of 0.6 CPU on 1-CPU nodes", "",
                 "| node | requests served by its PolicyInference replica |", "|---|---|"]
        for n in nodes:
            lines.append(f"| {n} | {served.get(n, 0)} |")
        md = "\n".join(lines) + "\n"
        print(md)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "multinode.md").write_text(md)
        serve.shutdown()
        ray.shutdown()
    finally:
        procs = started or our_ray_processes([head_tmp, worker_tmp])
        procs += our_ray_processes([head_tmp, worker_tmp])
        reap(procs, timeout_s=15, terminate=True)
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
