"""CPU per decision of the ingress's own code, in one process (no HTTP, no Ray): the
whole ``FrontDoor.handle`` of ``/v1/allocate/batch`` on bodies as clients send them,
the decision log on SQLite with its journal, and the log's writer thread, all counted
(process CPU time until the log has flushed), and the request thread's own CPU beside
it (the difference is the writer thread). "writer deferred" holds the writer asleep
until the requests are done, so the two run one after the other: against the
concurrent figures it shows what running them side by side (the GIL, caches) adds.
What a replica spends per decision beyond this is Ray's and HAProxy's.

Every body format (row JSON, row msgpack, columnar JSON, packed columnar msgpack), 256
simulator states of 20 nodes a request, the shipped Ingress ``user_config`` with the
cache off, the replicas' garbage collector settings. With ``--before DIR`` a second
checkout (e.g. ``git worktree add /tmp/before HEAD~1``) is measured in alternation,
round by round in subprocesses running this same script, so both see the same machine
and the same measurement (``benchmarks.trees``):

    python -m benchmarks.handler_cost [--requests 40] [--rounds 9] [--before DIR]
    python -m benchmarks.handler_cost --log-off-min 12 --requests 8 --rounds 3 --before DIR
    python -m benchmarks.handler_cost --profile /tmp/handler.prof   # cProfile, this tree
    py-spy record -r 500 -f raw -o handler.txt -- python -m benchmarks.handler_cost --for-sampler

Writes benchmarks/results/handler_cost.{md,json}. ``--log-off-min N`` measures the log-off
door only, each figure the lowest of N measurements in the round (noise on a shared
machine only adds CPU time, so the minimum of many short runs is the steadiest view of a
change to the request path; ``handler_cost.log-off-min.{md,json}``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
STATES = 256
NODES = 20
#: The batch endpoint's body formats, as benchmarks.serve_bench sends them.
FORMATS = ("JSON", "msgpack", "columnar JSON", "columnar msgpack")


def _bodies(requests: int) -> dict[str, tuple[list[bytes], dict[str, str]]]:
    from benchmarks.load import sample_bodies
    from benchmarks.serve_bench import batch_formats

    every = batch_formats(sample_bodies(requests, nodes=NODES, seed=1, batch=STATES))
    return {f: every[f] for f in FORMATS}


def _door(tmp: Path, log: bool) -> Any:
    """A FrontDoor as an Ingress replica builds it from serve_config.yaml (cache off)."""
    from deployments.app import config_options
    from edge_allocator.config import ServiceConfig
    from edge_allocator.constants import PROJECT_ROOT
    from edge_allocator.runtime.gc_tuning import tune_gc
    from edge_allocator.service.http import FrontDoor
    from edge_allocator.service.inline import in_process_api

    _, options = config_options(PROJECT_ROOT / "serve_config.yaml")
    user = {**options["Ingress"]["user_config"], "cache": "none",
            "database_url": f"sqlite:///{tmp / 'decisions.db'}" if log else None,
            "spool_path": str(tmp / "spool.jsonl")}
    door = FrontDoor(in_process_api(ServiceConfig.model_validate(user)))
    tune_gc()
    return door


def _cpu_per_decision(door: Any, bodies: list[bytes], headers: dict[str, str]
                      ) -> tuple[float, float]:
    """CPU µs per decision over ``bodies`` (one request each), log flushed: the whole
    process's, and the request thread's alone (the rest is the log's writer thread)."""
    hdrs = {"content-type": "application/json", **headers}

    async def go() -> None:
        for body in bodies:
            async def read(b: bytes = body) -> bytes:
                return b
            out = await door.handle("POST", "/v1/allocate/batch", hdrs, {}, read)
            if out.status != 200:
                raise RuntimeError(f"{out.status}: {out.body[:300]!r}")

    log = door.api.decision_log
    t0, m0 = time.process_time(), time.thread_time()
    asyncio.run(go())
    m1 = time.thread_time()
    if log is not None and not log.flush(120):
        raise RuntimeError("the decision log did not flush")
    per = 1e6 / (len(bodies) * STATES)
    return (time.process_time() - t0) * per, (m1 - m0) * per


def _defer_writer(log: Any) -> None:
    """Keep the log's writer asleep until ``flush()`` wakes it: the requests then run
    alone and the writer after them, so the request thread's CPU is the log's request
    path without the writer beside it, and whole minus request is the writer's own
    work without the request thread beside it. Set through the writer's two settings
    (its batch size and interval, read on each wait; an older tree has both), then one
    interval's wait so the writer is in the long sleep."""
    log.batch_size = 1 << 40
    old, log.flush_interval_s = log.flush_interval_s, 3600.0
    time.sleep(old + 0.1)


def child(args: argparse.Namespace) -> None:
    """One round in this tree: every format, log on and off; JSON on stdout."""
    out: dict[str, float] = {}
    every = _bodies(args.requests)
    modes = (", log off",) if args.log_off_min else ("", ", writer deferred", ", log off")
    for mode in modes:
        with tempfile.TemporaryDirectory() as tmp:
            door = _door(Path(tmp), mode != ", log off")
            if mode == ", writer deferred":
                _defer_writer(door.api.decision_log)
            for fmt in FORMATS:
                bodies, headers = every[fmt]
                _cpu_per_decision(door, bodies[:3], headers)  # warm: sessions, caches
                if args.log_off_min:
                    out[f"{fmt}{mode}, lowest of {args.log_off_min}"] = min(
                        _cpu_per_decision(door, bodies, headers)[0]
                        for _ in range(args.log_off_min))
                    continue
                whole, request = _cpu_per_decision(door, bodies, headers)
                out[f"{fmt}{mode}"] = whole
                if mode != ", log off":
                    out[f"{fmt}{mode}, request thread"] = request
            door.api.close()
    import edge_allocator

    code = str(Path(edge_allocator.__file__).parent.parent)
    print(json.dumps({"code": code, "cpu_us": out}))


def _one_format(args: argparse.Namespace, repeats: int,
                measured: Callable[[], AbstractContextManager[Any]] = nullcontext) -> None:
    """``--format``'s requests, log on, ``repeats`` times over in this process after a
    warm-up, inside ``measured()``."""
    every = _bodies(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        door = _door(Path(tmp), True)
        bodies, headers = every[args.format]
        _cpu_per_decision(door, bodies[:3], headers)
        with measured():
            for _ in range(repeats):
                print(_cpu_per_decision(door, bodies, headers))
        door.api.close()


def profile(args: argparse.Namespace) -> None:
    import cProfile
    import pstats

    prof = cProfile.Profile()
    _one_format(args, 1, lambda: prof)  # a Profile enables itself inside ``with``
    prof.dump_stats(args.profile)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(40)


def for_sampler(args: argparse.Namespace) -> None:
    """``--format``'s requests four times over and nothing else, for a sampling
    profiler run around this process, e.g. ``py-spy record -r 500 -f raw -o
    handler.txt -- python -m benchmarks.handler_cost --for-sampler`` (read the samples
    under ``FrontDoor.handle`` and ``DecisionLog._run``; start-up and the bodies'
    making are outside them)."""
    _one_format(args, 4)


def _round(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    from benchmarks import trees  # the parent's only: older trees lack it

    result = trees.run_in(tree, __file__, ["--requests", str(args.requests),
                                           "--log-off-min", str(args.log_off_min)])
    cpu: dict[str, float] = result["cpu_us"]
    return cpu


def markdown(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    keys = list(next(iter(runs.values()))[0])
    trees = list(runs)
    alternating = ", trees alternating" if len(trees) > 1 else ""
    lines = [f"CPU µs per decision, `FrontDoor.handle` of /v1/allocate/batch in one process "
             f"({STATES} states of {NODES} nodes a request, {args.requests} requests a "
             f"measurement, median of {args.rounds} rounds{alternating}"
             f"; decision log on SQLite with its journal, writer thread included, unless "
             f"'log off'; 'request thread': the same run without the writer thread; "
             f"'writer deferred': the writer held asleep until the requests are done)", "",
             "| body | " + " | ".join(trees) + (" | after / before |" if len(trees) > 1 else " |"),
             "|---|" + "--:|" * (len(trees) + (len(trees) > 1))]
    for k in keys:
        med = [statistics.median(r[k] for r in runs[t]) for t in trees]
        low = [min(r[k] for r in runs[t]) for t in trees]
        cells = [f"{m:.1f} ({lo:.1f})" for m, lo in zip(med, low)]
        if len(trees) > 1:
            cells.append(f"{med[-1] / med[0]:.2f} ({low[-1] / low[0]:.2f})")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + ("\n\nMedian (lowest) of the rounds: noise only adds CPU time, "
                               "so the lowest is the steadier figure on a shared machine.\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--before", help="a checkout to measure beside this one")
    p.add_argument("--profile", help="write a cProfile of this tree's --format path here")
    p.add_argument("--format", default="JSON", choices=FORMATS)
    p.add_argument("--for-sampler", action="store_true",
                   help="run --format's requests for an outside sampling profiler")
    p.add_argument("--log-off-min", type=int, default=0, metavar="N",
                   help="log off only, each figure the lowest of N measurements")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.profile:
        profile(args)
        return
    if args.for_sampler:
        for_sampler(args)
        return
    from benchmarks import trees

    runs = trees.alternate(args.before, REPO, args.rounds, lambda tree: _round(tree, args))
    text = markdown(runs, args)
    print(text)
    trees.write_results(RESULTS, "handler_cost.log-off-min" if args.log_off_min
                        else "handler_cost", text, runs, args)


if __name__ == "__main__":
    main()
