"""gRPC load generator: asyncio + grpc.aio, bounded in requests and time, loopback only.

The gRPC twin of ``benchmarks.load``: each worker keeps one call in flight (closed loop)
on one shared HTTP/2 channel, so ``concurrency`` is the number of outstanding calls;
``run_grpc_load`` returns the same ``LoadResult`` as ``run_load`` (``statuses`` keyed
by gRPC status code: 0 is OK), so ``load.table`` prints both.

    python -m benchmarks.grpc_load --target 127.0.0.1:9000 --concurrency 1 8 32
    python -m benchmarks.grpc_load --serve   # its own `serve run serve_config.yaml`
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from benchmarks.load import LoadResult, load_result, sample_bodies, table
from edge_allocator.grpc import edge_allocator_pb2 as pb
from edge_allocator.grpc import edge_allocator_pb2_grpc as pb_grpc
from edge_allocator.service.grpc_api import columns_message, state_message

BATCH_STATES = 256
APP = "edge-allocator"


def _loopback(target: str) -> None:
    host = target.rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load generator only targets loopback, not {host!r}")


async def run_grpc_load(target: str, requests: Sequence[Any], concurrency: int,
                        max_requests: int, max_seconds: float, *, batch: bool = False,
                        app: str = APP, token: str | None = None) -> LoadResult:
    """Allocate (or, with ``batch``, AllocateBatch) calls of ``requests`` (messages,
    cycled) against ``target`` (host:port of Serve's gRPC port)."""
    import grpc

    _loopback(target)
    metadata = [("application", app)] + ([("authorization", f"Bearer {token}")]
                                         if token else [])
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    counter = itertools.count()
    deadline = time.perf_counter() + max_seconds
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.EdgeAllocatorStub(channel)
        call = stub.AllocateBatch if batch else stub.Allocate

        async def worker() -> None:
            while True:
                i = next(counter)
                if i >= max_requests or time.perf_counter() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    await call(requests[i % len(requests)], metadata=metadata, timeout=60)
                    statuses[0] += 1
                except grpc.aio.AioRpcError as err:
                    statuses[err.code().value[0]] += 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return load_result(concurrency, latencies, elapsed, statuses, ok=0)  # 0: gRPC OK


def sample_requests(count: int, nodes: int = 20, seed: int = 0) -> list[pb.AllocateRequest]:
    """Distinct simulator states (no cache hits) as Allocate requests."""
    return [state_message(orjson.loads(b)) for b in sample_bodies(count, nodes, seed)]


def sample_batches(count: int, nodes: int = 20, seed: int = 1, states: int = BATCH_STATES,
                   columns: bool = False) -> list[pb.BatchAllocateRequest]:
    """AllocateBatch requests of ``states`` states each, one message per state or, with
    ``columns``, NodeColumns (default topology: the simulator's states send no edges)."""
    out = []
    for body in sample_bodies(count, nodes, seed, batch=states):
        batch = orjson.loads(body)["states"]
        if columns:
            out.append(pb.BatchAllocateRequest(columns=columns_message(batch)))
        else:
            out.append(pb.BatchAllocateRequest(states=[state_message(s) for s in batch]))
    return out


def measure(target: str, concurrency: Sequence[int], max_requests: int, seconds: float,
            app: str = APP) -> tuple[list[tuple[str, LoadResult]], list[tuple[str, LoadResult]]]:
    """(Allocate rows per concurrency, AllocateBatch rows in decisions/s, 2 in flight)."""
    singles = sample_requests(min(max_requests, 3000))
    rows = []
    for c in concurrency:
        r = asyncio.run(run_grpc_load(target, singles, c, max_requests, seconds, app=app))
        rows.append(("gRPC Allocate", r))
        print(table(rows[-1:]), flush=True)
    batch_rows = []
    for label, columns in (("states", False), ("columns", True)):
        batches = sample_batches(8, columns=columns)
        rb = asyncio.run(run_grpc_load(target, batches, 2, 10**6, seconds, batch=True, app=app))
        batch_rows.append((f"gRPC AllocateBatch, {label}",
                           rb._replace(throughput_rps=rb.throughput_rps * BATCH_STATES)))
        print(table(batch_rows[-1:], unit="decisions/s"), flush=True)
    return rows, batch_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", default="127.0.0.1:9000")
    p.add_argument("--app", default=APP)
    p.add_argument("--serve", action="store_true",
                   help="start `serve run serve_config.yaml` on free ports and target it")
    p.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=10)
    args = p.parse_args()
    if not args.serve:
        rows, batch_rows = measure(args.target, args.concurrency, args.requests, args.seconds,
                                   args.app)
        return
    from edge_allocator.runtime.serverun import ServeRun

    run = ServeRun()
    try:
        run.start()
        assert run.grpc_port is not None, "serve_config.yaml has no grpc_options"
        target = f"127.0.0.1:{run.grpc_port}"
        rows, batch_rows = measure(target, args.concurrency, args.requests, args.seconds)
    finally:
        run.stop()
    print(table(rows) + "\n" + table(batch_rows, unit="decisions/s"))


if __name__ == "__main__":
    main()
