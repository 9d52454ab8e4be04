"""(b) HTTP load generator: asyncio + aiohttp, bounded in requests and time, loopback only.

Each worker keeps one request in flight (closed loop), so ``concurrency`` is the number
of outstanding requests. Reports throughput and p50/p90/p99 latency.

    python -m benchmarks.load --url http://127.0.0.1:8000/v1/allocate --concurrency 1 8 32
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import urlparse

import numpy as np
import orjson


class LoadResult(NamedTuple):
    concurrency: int
    requests: int
    seconds: float
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    statuses: dict[int, int]


def _loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load generator only targets loopback, not {host!r}")


async def post(session: Any, url: str, body: bytes, headers: dict[str, str],
               statuses: Counter[int]) -> None:
    """One POST on an aiohttp ``session``, its answer read and its status counted (0: no
    HTTP answer at all)."""
    import aiohttp

    try:
        async with session.post(url, data=body, headers=headers) as r:
            await r.read()
            statuses[r.status] += 1
    except aiohttp.ClientError:
        statuses[0] += 1


async def run_load(url: str, bodies: Sequence[bytes], concurrency: int, max_requests: int,
                   max_seconds: float, headers: dict[str, str] | None = None) -> LoadResult:
    import aiohttp

    _loopback(url)
    hdrs = {"content-type": "application/json", **(headers or {})}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    counter = itertools.count()
    deadline = time.perf_counter() + max_seconds
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as s:
        async def worker() -> None:
            while True:
                i = next(counter)
                if i >= max_requests or time.perf_counter() > deadline:
                    return
                t0 = time.perf_counter()
                await post(s, url, bodies[i % len(bodies)], hdrs, statuses)
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return load_result(concurrency, latencies, elapsed, statuses, ok=200)


def load_result(concurrency: int, latencies: Sequence[float], elapsed: float,
                statuses: Counter[int], ok: int) -> LoadResult:
    """Throughput of the ``ok`` status and latency percentiles (ms) of one load run."""
    good = statuses.get(ok, 0)
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return LoadResult(concurrency, len(latencies), elapsed, good / elapsed,
                      float(np.percentile(lat, 50)), float(np.percentile(lat, 90)),
                      float(np.percentile(lat, 99)), len(latencies) - good, dict(statuses))


def sample_bodies(count: int, nodes: int = 20, seed: int = 0, model: str | None = None,
                  batch: int = 0) -> list[bytes]:
    """Real, distinct simulator states (so no request is a cache hit) as request bodies;
    with ``batch`` > 0, /v1/allocate/batch bodies of that many states each."""
    from edge_allocator.sim import EdgeAllocationEnv, EnvConfig

    env = EdgeAllocationEnv(EnvConfig(min_nodes=nodes, max_nodes=nodes, tasks_per_episode=10**9))
    env.reset(seed=seed)
    states: list[dict] = []
    while len(states) < count * max(batch, 1):
        g = env.graph()
        if g.mask.any():  # a state with no feasible node is a 422 everywhere: not load
            body = env.request_json()
            if model:
                body["model"] = model
            states.append(body)
        env.step(int(np.argmax(np.where(g.mask, env.oracle_rewards(), -np.inf))))
    if batch:
        extra = {"model": model} if model else {}
        return [orjson.dumps({"states": states[i: i + batch], **extra})
                for i in range(0, len(states), batch)]
    return [orjson.dumps(s) for s in states]


def table(rows: Sequence[tuple[str, LoadResult]], unit: str = "req/s") -> str:
    lines = [f"| target | concurrency | {unit} | p50 ms | p90 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r.concurrency} | {r.throughput_rps:.1f} | {r.p50_ms:.2f} | "
                     f"{r.p90_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:8000/v1/allocate")
    p.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--nodes", type=int, default=20)
    args = p.parse_args()
    bodies = sample_bodies(min(args.requests, 4000), args.nodes)
    rows = [(args.url, asyncio.run(run_load(args.url, bodies, c, args.requests, args.seconds)))
            for c in args.concurrency]
    print(table(rows))


if __name__ == "__main__":
    main()
