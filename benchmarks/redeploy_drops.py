"""Requests with no HTTP answer while the app is redeployed with a new ``user_config``.

One keep-alive ``httpx.Client`` (what the token-rotation test uses) sends
``POST /v1/allocate`` back to back while the application is redeployed ``--deploys`` times,
each time with only the Ingress ``user_config`` changed (the quota's rate alternates).
Two ways to redeploy, chosen with ``--via``:

- ``config``: the declarative path ``serve deploy serve_config.yaml`` takes (the
  controller's ``apply_config``, here ``deployments.app.apply_apps``): Serve versions the
  app by its import path and args, not ``user_config``, so the replicas stay and
  ``reconfigure`` runs in place;
- ``run``: ``serve.run(build_app(...))``, the Python API. Ray 2.60's client gives every
  deployment of such a call a fresh random code version
  (``ray/serve/_private/client.py``: ``version=deployment._version or
  get_random_string()``), so every replica is replaced, HAProxy reloads onto the new
  ingress replica and the old one drains.

For each redeploy it records whether the ingress replica process changed, how many
HAProxy processes were spawned, and every request that got no HTTP answer (status 0)
with what httpx raised.

    python -m benchmarks.redeploy_drops --via config --deploys 20
    python -m benchmarks.redeploy_drops --via run --deploys 20

Writes benchmarks/results/redeploy_drops_<via>[_hogs<N>].{md,json}; Ctrl-C reports the
redeploys done so far. Heavy: run it under the shared
lock (``flock /tmp/edge-heavy.lock ...``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

RESULTS = Path(__file__).parent / "results"
APP, PREFIX = "redeploy", "/"


@dataclass
class Deploy:
    """One redeploy: how long it took, what it replaced, what failed around it."""

    seconds: float
    ingress_replaced: bool
    haproxy_spawned: int
    requests: int = 0
    no_answer: list[str] = field(default_factory=list)


@dataclass
class Report:
    via: str
    hogs: int
    deploys: list[Deploy]
    requests: int
    statuses: dict[int, int]

    @property
    def no_answer(self) -> int:
        return sum(len(d.no_answer) for d in self.deploys)


def _state(i: int) -> dict[str, Any]:
    nodes = [{"cpu_util": (i % 7) / 10, "mem_util": 0.2, "energy": 5, "latency": 3 + k,
              "bandwidth": 100, "queue_len": k % 3, "node_type": k % 3} for k in range(8)]
    return {"nodes": nodes, "task": {"compute_gcycles": 1 + i / 1000}}


def _haproxy_pids() -> set[int]:
    pids = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if "haproxy" in p.name():
                pids.add(p.pid)
        except psutil.Error:
            continue
    return pids


def _options(db: Path, rate_per_s: float) -> tuple[Any, dict[str, dict[str, Any]]]:
    from benchmarks.cluster import shipped_options

    args, options = shipped_options(fixed_replicas=True, cache="none",
                                    database_url=f"sqlite:///{db}",
                                    spool_path=str(db.parent / "spool.jsonl"),
                                    quota={"rate_per_s": rate_per_s, "burst": 1000})
    args = args.model_copy(update={"live_network": False})
    options.pop("MqttIngest", None)
    return args, options


def _redeploy(via: str, db: Path, rate_per_s: float) -> float:
    from ray import serve

    from deployments.app import app_schema, apply_apps, build_app

    args, options = _options(db, rate_per_s)
    t0, wall0 = time.perf_counter(), time.time()
    if via == "run":  # returns once the app is RUNNING (its timestamp stays the first's)
        serve.run(build_app(args, options), name=APP, route_prefix=PREFIX, blocking=False)
        return time.perf_counter() - t0
    else:
        apply_apps([app_schema(APP, PREFIX, args, options)])
    while time.perf_counter() - t0 < 180:  # this config's timestamp, and RUNNING
        st = serve.status().applications.get(APP)
        if st is not None and st.status == "RUNNING" and st.last_deployed_time_s >= wall0 - 1:
            return time.perf_counter() - t0
        time.sleep(0.25)
    raise TimeoutError(f"{APP} not RUNNING after 180 s")


def measure(via: str, deploys: int, gap_s: float, port: int, hogs: int = 0) -> Report:
    from benchmarks.faults import replica_processes

    db = Path(tempfile.mkdtemp(prefix="ea-redeploy-")) / "decisions.db"
    _redeploy(via, db, 1000.0)
    url = f"http://127.0.0.1:{port}/v1/allocate"
    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post(url, json=_state(len(seen)))
                    seen.append((time.monotonic(), r.status_code, ""))
                except httpx.HTTPError as exc:
                    seen.append((time.monotonic(), 0, f"{type(exc).__name__}: {exc}"))

    t = threading.Thread(target=client, daemon=True)
    t.start()
    time.sleep(gap_s)
    results = []
    try:
        for k in range(deploys):
            before = {p.pid for p in replica_processes(APP, "Ingress")}
            hap_before = _haproxy_pids()
            start, n0 = time.monotonic(), len(seen)
            took = _redeploy(via, db, 1000.0 if k % 2 else 999.0)
            time.sleep(gap_s)  # old replicas drain, HAProxy workers soft-stop
            after = {p.pid for p in replica_processes(APP, "Ingress")}
            window = [s for s in seen[n0:] if s[0] >= start]
            results.append(Deploy(seconds=round(took, 2), ingress_replaced=not after & before,
                                  haproxy_spawned=len(_haproxy_pids() - hap_before),
                                  requests=len(window),
                                  no_answer=[m for _, code, m in window if code == 0]))
            print(f"deploy {k + 1}: {results[-1]}", flush=True)
    except KeyboardInterrupt:  # Ctrl-C: report the redeploys done so far
        print(f"interrupted after {len(results)} redeploys", flush=True)
    stop.set()
    t.join(timeout=60)
    return Report(via, hogs, results, len(seen), dict(Counter(code for _, code, _ in seen)))


def markdown(r: Report) -> str:
    replaced = sum(d.ingress_replaced for d in r.deploys)
    lines = [f"# Redeploys with a new user_config, via `{r.via}`", "",
             f"{r.hogs} busy-loop processes beside it on this 2-core machine. "
             f"{len(r.deploys)} redeploys, {r.requests} requests on one keep-alive client; "
             f"statuses {r.statuses}; **{r.no_answer} requests with no HTTP answer**; "
             f"ingress replica replaced in {replaced} of {len(r.deploys)} redeploys.", "",
             "| # | s | ingress replaced | HAProxy spawned | requests | no answer |",
             "|---|---|---|---|---|---|"]
    for i, d in enumerate(r.deploys, 1):
        lines.append(f"| {i} | {d.seconds} | {d.ingress_replaced} | {d.haproxy_spawned} | "
                     f"{d.requests} | {'; '.join(d.no_answer) or 0} |")
    return "\n".join(lines) + "\n"


def _hogs(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` busy-loop processes: the load of a CI machine running other jobs."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--via", choices=("config", "run"), default="config")
    p.add_argument("--deploys", type=int, default=20)
    p.add_argument("--gap-s", type=float, default=3.0)
    p.add_argument("--hogs", type=int, default=0, help="busy-loop processes meanwhile")
    p.add_argument("--out", type=Path, default=RESULTS)
    cli = p.parse_args()
    from benchmarks.cluster import ray_serve
    from edge_allocator.runtime.raylocal import FAST_PATH_ENV

    with ray_serve(num_cpus=4, env=FAST_PATH_ENV) as port:
        hogs = _hogs(cli.hogs)
        try:
            report = measure(cli.via, cli.deploys, cli.gap_s, port, cli.hogs)
        finally:
            for h in hogs:
                h.kill()
                h.wait()
    md = markdown(report)
    print(md)
    cli.out.mkdir(exist_ok=True)
    stem = f"redeploy_drops_{cli.via}" + (f"_hogs{cli.hogs}" if cli.hogs else "")
    (cli.out / f"{stem}.md").write_text(md)
    (cli.out / f"{stem}.json").write_text(
        json.dumps({**asdict(report), "no_answer": report.no_answer}, indent=1))


if __name__ == "__main__":
    main()
