"""Live latency with and without shadow scoring, in one run, on the shipped app.

The shipped composition (fast path, policy in the ingress, one Ingress replica, SQLite
decision log, no cache so every request runs the model) serves hybrid v2; the shadow
candidate is hybrid v1 with ``share: 1`` (every live decision is scored twice). Phases
alternate off/on/on/off per load level (ABBA, so a drift of the shared machine falls on
both sides), switched by redeploying ``user_config`` (a live reconfigure, same replica).

* single states: an open loop of Poisson arrivals at fixed rates (the load does not
  slow down when the service does, so queueing behind shadow work shows in p99);
* batches: one 64-state /v1/allocate/batch request at a time (closed loop).

Each row also says how many shadow decisions the log holds per live decision made in
that phase (1.0: none dropped; the scorer drops, and counts, when its queue is full).

    python -m benchmarks.shadow_bench [--seconds 15] [--rates 100 300] [--repeats 2]
Writes benchmarks/results/shadow_bench.{md,json,png} (``--name`` for another name). The
scorer's settings come from the environment (``EDGE_ALLOCATOR_SHADOW_*``, constants.py),
which the benchmark's Ray inherits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks.cluster import deploy, ray_serve, shipped_options
from benchmarks.load import LoadResult, load_result, post, run_load, sample_bodies
from edge_allocator.runtime.raylocal import FAST_PATH_ENV

RESULTS = Path(__file__).parent / "results"
BATCH_STATES = 64
LIVE, CANDIDATE = "2", "1"  # hybrid versions: the newest answers, the other shadows


class Row(NamedTuple):
    load: str
    shadow: bool
    repeat: int
    result: LoadResult
    shadow_per_live: float | None  # shadow rows logged per live row in the phase


async def open_loop(url: str, bodies: Sequence[bytes], rate: float, seconds: float,
                    seed: int = 0) -> LoadResult:
    """Poisson arrivals at ``rate`` per second for ``seconds``, each request on its own
    task (no cap on outstanding requests); latency from its planned start."""
    import aiohttp

    rng = np.random.default_rng(seed)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    hdrs = {"content-type": "application/json"}
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=60)) as s:
        async def one(i: int, planned: float) -> None:
            await post(s, url, bodies[i % len(bodies)], hdrs, statuses)
            latencies.append(time.perf_counter() - planned)

        tasks: list[asyncio.Task[None]] = []
        start = planned = time.perf_counter()
        while planned - start < seconds:
            planned += rng.exponential(1 / rate)
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(len(tasks), planned)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return load_result(int(rate), latencies, elapsed, statuses, ok=200)


def counts(db: Path) -> tuple[int, int]:
    """(live rows, shadow rows) in the decision log."""
    if not db.exists():
        return 0, 0
    with sqlite3.connect(db) as conn:
        live, shadow = conn.execute(
            "SELECT SUM(shadow_of IS NULL), SUM(shadow_of IS NOT NULL) FROM predictions"
        ).fetchone()
        in_runs = conn.execute("SELECT SUM(decision_count) FROM decision_runs").fetchone()[0]
    return int(live or 0) + int(in_runs or 0), int(shadow or 0)


def settled(db: Path, timeout_s: float = 20) -> tuple[int, int]:
    """The log's counts once the writer (and the shadow worker) stopped adding rows."""
    last, deadline = counts(db), time.time() + timeout_s
    while time.time() < deadline:
        time.sleep(1.0)
        now = counts(db)
        if now == last:
            return now
        last = now
    return last


def table(rows: Sequence[Row]) -> str:
    lines = ["| load | shadow | repeat | requests | req/s | p50 ms | p90 ms | p99 ms | errors "
             "| shadow rows per live |", "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        x = r.result
        spl = "–" if r.shadow_per_live is None else f"{r.shadow_per_live:.3f}"
        lines.append(f"| {r.load} | {'on' if r.shadow else 'off'} | {r.repeat} | {x.requests} "
                     f"| {x.throughput_rps:.1f} | {x.p50_ms:.2f} | {x.p90_ms:.2f} "
                     f"| {x.p99_ms:.2f} | {x.errors} | {spl} |")
    return "\n".join(lines) + "\n"


def summary(rows: Sequence[Row]) -> str:
    """Per load: median p50/p99 over repeats with and without shadow, and their ratio."""
    lines = ["| load | p50 off | p50 on | on/off | p99 off | p99 on | on/off |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    for load in dict.fromkeys(r.load for r in rows):
        def med(shadow: bool, field: str, load: str = load) -> float:
            return float(np.median([getattr(r.result, field) for r in rows
                                    if r.load == load and r.shadow == shadow]))
        p50, p99 = (med(False, "p50_ms"), med(True, "p50_ms")), \
            (med(False, "p99_ms"), med(True, "p99_ms"))
        lines.append(f"| {load} | {p50[0]:.2f} | {p50[1]:.2f} | {p50[1] / p50[0]:.2f} "
                     f"| {p99[0]:.2f} | {p99[1]:.2f} | {p99[1] / p99[0]:.2f} |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = list(dict.fromkeys(r.load for r in rows))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for k, (shadow, colour) in enumerate(((False, "tab:blue"), (True, "tab:orange"))):
        for j, load in enumerate(loads):
            vals = [r.result for r in rows if r.load == load and r.shadow == shadow]
            x = j + (k - 0.5) * 0.3
            ax.scatter([x] * len(vals), [v.p99_ms for v in vals], color=colour, marker="^",
                       label=f"p99, shadow {'on' if shadow else 'off'}" if j == 0 else None)
            ax.scatter([x] * len(vals), [v.p50_ms for v in vals], color=colour, marker="o",
                       label=f"p50, shadow {'on' if shadow else 'off'}" if j == 0 else None)
    ax.set_xticks(range(len(loads)), loads, fontsize=8)
    ax.set(ylabel="ms", yscale="log", title="live latency with and without shadow (each repeat)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--rates", type=float, nargs="*", default=[100, 300])
    p.add_argument("--repeats", type=int, default=2, help="ABBA pairs per load")
    p.add_argument("--name", default="shadow_bench", help="results file name (no suffix)")
    args = p.parse_args()
    bodies = sample_bodies(6000, nodes=20)
    batches = sample_bodies(40, nodes=20, seed=1, batch=BATCH_STATES)
    tmp = Path(tempfile.mkdtemp(prefix="ea-shadow-bench-"))
    db = tmp / "decisions.db"
    rows: list[Row] = []

    def configure(shadow: bool) -> None:
        extra: dict[str, Any] = {"shadow": {"hybrid": {"version": CANDIDATE}}} if shadow else {}
        app_args, options = shipped_options(
            fixed_replicas=True, cache="none", database_url=f"sqlite:///{db}",
            spool_path=str(tmp / "spool" / "decisions.jsonl"),
            models={"hybrid": {"version": LIVE}}, **extra)
        deploy("bench", "/", app_args, options)
        time.sleep(1.0)  # the reconfigure reached the replica

    with ray_serve(num_cpus=2, env=FAST_PATH_ENV) as port:
        base = f"http://127.0.0.1:{port}"
        loads: list[tuple[str, Any]] = [
            (f"open loop {rate:.0f} req/s", rate) for rate in args.rates]
        loads.append((f"batch {BATCH_STATES} states, closed loop 1", None))
        for label, rate in loads:
            for rep in range(args.repeats):
                for shadow in ((False, True) if rep % 2 == 0 else (True, False)):
                    configure(shadow)
                    if rate is None:
                        url = f"{base}/v1/allocate/batch"
                        asyncio.run(run_load(url, batches, 1, 10**6, args.warmup))
                        before = settled(db)
                        r = asyncio.run(run_load(url, batches, 1, 10**6, args.seconds))
                    else:
                        url = f"{base}/v1/allocate"
                        asyncio.run(open_loop(url, bodies, rate, args.warmup, seed=rep + 7))
                        before = settled(db)
                        r = asyncio.run(open_loop(url, bodies, rate, args.seconds, seed=rep))
                    after = settled(db)
                    live, shadowed = after[0] - before[0], after[1] - before[1]
                    row = Row(label, shadow, rep, r, shadowed / live if live else None)
                    rows.append(row)
                    print(table([row]), flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    knobs = {k: v for k, v in os.environ.items() if k.startswith("EDGE_ALLOCATOR_SHADOW_")}
    md = (f"Shipped app (fast path, policy in the ingress, 1 Ingress replica), hybrid v{LIVE} "
          f"live, hybrid v{CANDIDATE} in shadow (share 1) or no shadow; 20-node states, no "
          f"cache, SQLite decision log; {args.seconds:.0f} s per phase after "
          f"{args.warmup:.0f} s warm-up, off/on alternating ABBA. Scorer settings from the "
          f"environment: {knobs or 'none (the defaults)'}.\n\n"
          "## Medians over repeats\n\n" + summary(rows) + "\n## Every phase\n\n" + table(rows))
    (RESULTS / f"{args.name}.md").write_text(md)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(
        [{"load": r.load, "shadow": r.shadow, "repeat": r.repeat,
          "shadow_per_live": r.shadow_per_live, **r.result._asdict()} for r in rows], indent=2))
    plot(rows, RESULTS / f"{args.name}.png")
    print(md)


if __name__ == "__main__":
    main()
