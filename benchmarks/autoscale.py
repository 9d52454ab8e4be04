"""Autoscaling under a step load (low -> high -> low; bounded; loopback only): records
replicas per deployment, throughput and p99 per second, and plots them.

    python -m benchmarks.autoscale [--low 2] [--high 48] [--phase-s 40]
Writes benchmarks/results/autoscale.{json,png,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.cluster import deploy, ray_serve, shipped_options
from benchmarks.load import sample_bodies
from edge_allocator.runtime.raylocal import FAST_PATH_ENV

RESULTS = Path(__file__).parent / "results"


async def drive(url: str, bodies: list[bytes], phases: list[tuple[int, float]], samples: list[dict],
                app: str) -> None:
    import aiohttp
    from ray import serve

    done: list[tuple[float, float, int]] = []  # (finish time, latency s, status)
    t_start = time.perf_counter()
    stop_at = [0.0]
    level = [0]

    async def worker(k: int, session: aiohttp.ClientSession) -> None:
        i = k
        while time.perf_counter() < stop_at[0]:
            if k >= level[0]:
                await asyncio.sleep(0.05)
                continue
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=bodies[i % len(bodies)],
                                        headers={"content-type": "application/json"}) as r:
                    await r.read()
                    status = r.status
            except aiohttp.ClientError:
                status = 0
            done.append((time.perf_counter() - t_start, time.perf_counter() - t0, status))
            i += 997

    async def sampler() -> None:
        last = 0
        while time.perf_counter() < stop_at[0]:
            await asyncio.sleep(1.0)
            now = time.perf_counter() - t_start
            window = [d for d in done[last:] if d[0] > now - 1.0]
            last = len(done)
            st = await asyncio.to_thread(serve.status)
            deps = st.applications[app].deployments
            samples.append({
                "t": now, "concurrency": level[0],
                "rps": sum(1 for d in window if d[2] == 200),
                "p99_ms": (float(np.percentile([d[1] for d in window], 99) * 1000)
                           if window else None),
                "errors": sum(1 for d in window if d[2] != 200),
                "replicas": {n: sum(d.replica_states.values()) for n, d in deps.items()},
            })
            print(samples[-1], flush=True)

    max_c = max(c for c, _ in phases)
    stop_at[0] = time.perf_counter() + sum(s for _, s in phases)
    conn = aiohttp.TCPConnector(limit=max_c)
    async with aiohttp.ClientSession(connector=conn) as session:
        tasks = [asyncio.create_task(worker(k, session)) for k in range(max_c)]
        tasks.append(asyncio.create_task(sampler()))
        for c, secs in phases:
            level[0] = c
            await asyncio.sleep(secs)
        await asyncio.gather(*tasks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--low", type=int, default=2)
    p.add_argument("--high", type=int, default=64)
    p.add_argument("--phase-s", type=float, default=40)
    args = p.parse_args()
    bodies = sample_bodies(2000, nodes=20)
    samples: list[dict] = []
    phases = [(args.low, args.phase_s), (args.high, args.phase_s * 1.5),
              (args.low, args.phase_s * 2)]
    with ray_serve(num_cpus=2, env=FAST_PATH_ENV) as port:
        app_args, options = shipped_options(cache="none")
        for d in options.values():  # compress the delays so the run stays short
            if "autoscaling_config" in d:
                d["autoscaling_config"].update(upscale_delay_s=3, downscale_delay_s=15)
        deploy("auto", "/", app_args, options)
        asyncio.run(drive(f"http://127.0.0.1:{port}/v1/allocate", bodies, phases, samples, "auto"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "autoscale.json").write_text(json.dumps(samples, indent=2))
    plot(samples, RESULTS / "autoscale.png")
    peak = max(samples, key=lambda s: sum(s["replicas"].values()))
    print(f"peak replicas {peak['replicas']} at t={peak['t']:.0f}s; "
          f"final {samples[-1]['replicas']}")


def plot(samples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    for name in samples[0]["replicas"]:
        axes[0].step(t, [s["replicas"].get(name, 0) for s in samples], where="post", label=name)
    axes[0].set_ylabel("replicas")
    axes[0].legend(fontsize=7)
    axes[1].plot(t, [s["rps"] for s in samples], label="req/s")
    axes[1].plot(t, [s["concurrency"] for s in samples], "--", label="clients")
    axes[1].set_ylabel("requests/s")
    axes[1].legend(fontsize=7)
    axes[2].plot(t, [s["p99_ms"] for s in samples])
    axes[2].set_ylabel("p99 ms")
    axes[2].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
