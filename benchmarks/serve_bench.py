"""Side by side on one machine, one run: the naive baseline (single and as a batch
loop), the same Serve app with Ray Serve's default settings, the shipped config, and
its compositions, for single decisions, the batch endpoint in every body format (row
JSON, row msgpack, columnar JSON, packed columnar msgpack), and cached vs uncached.

    python -m benchmarks.serve_bench [--seconds 10] [--concurrency 1 8 32]
                                     [--batch-concurrency 2 4]
Writes benchmarks/results/serve_bench.{md,json,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgpack
import orjson

from benchmarks.cluster import default_settings_options, deploy, ray_serve, shipped_options
from benchmarks.grpc_load import measure as grpc_measure
from benchmarks.load import LoadResult, run_load, sample_bodies, table
from edge_allocator.runtime.raylocal import FAST_PATH_ENV, free_port
from edge_allocator.wire import columnar_request

RESULTS = Path(__file__).parent / "results"
BATCH_STATES = 256


def wait_ready(url: str, timeout_s: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


MSGPACK = {"content-type": "application/msgpack", "accept": "application/msgpack"}
#: aiohttp asks for gzip by default; with ``gzip_responses: true`` the service compresses
#: answers of >= 1 KiB (a 256-decision JSON answer, ~380 kB: 8.7 µs a decision with zlib
#: at level 1, 2.2 with ISA-L, what it uses; benchmarks.gzip_answers). The shipped config
#: compresses nothing, so there the "uncompressed" rows measure the same server again.
#: A client on the same network that asks for none: ``accept-encoding: identity``.
IDENTITY = {"accept-encoding": "identity"}


def batch_formats(batch_bodies: list[bytes]) -> dict[str, tuple[list[bytes], dict[str, str]]]:
    """The same batches in every body format the batch endpoint takes."""
    states = [orjson.loads(b)["states"] for b in batch_bodies]
    return {
        "JSON": (batch_bodies, {}),
        "msgpack": ([msgpack.packb({"states": s}) for s in states], MSGPACK),
        "columnar JSON": ([orjson.dumps(columnar_request(s)) for s in states], {}),
        "columnar msgpack": ([msgpack.packb(columnar_request(s, packed=True)) for s in states],
                             MSGPACK),
        "JSON, uncompressed": (batch_bodies, IDENTITY),
        "msgpack, uncompressed": ([msgpack.packb({"states": s}) for s in states],
                                  {**MSGPACK, **IDENTITY}),
        "columnar msgpack, uncompressed": (
            [msgpack.packb(columnar_request(s, packed=True)) for s in states],
            {**MSGPACK, **IDENTITY}),
    }


def measure(name: str, base: str, bodies, batch_bodies, args, rows, batch_rows,
            formats: tuple[str, ...] = ("JSON",)) -> None:
    for c in args.concurrency:  # each after a warm-up: autoscaling settles before measuring
        asyncio.run(run_load(f"{base}/v1/allocate", bodies, c, args.requests, args.warmup))
        r = asyncio.run(run_load(f"{base}/v1/allocate", bodies, c, args.requests, args.seconds))
        rows.append((name, r))
        print(table([(name, r)]), flush=True)
    fbodies, headers = batch_bodies[formats[0]]
    asyncio.run(run_load(f"{base}/v1/allocate/batch", fbodies, args.batch_concurrency[0],
                         10**6, args.warmup, headers=headers))
    for fmt in formats:
        fbodies, headers = batch_bodies[fmt]
        for c in args.batch_concurrency:  # one label: the targets take the best of them
            rb = asyncio.run(run_load(f"{base}/v1/allocate/batch", fbodies, c, 10**6,
                                      args.seconds, headers=headers))
            per_state = rb._replace(throughput_rps=rb.throughput_rps * BATCH_STATES)
            label = f"{name}, {fmt}"
            batch_rows.append((label, per_state))
            print(table([(label, per_state)], unit="decisions/s"), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--warmup", type=float, default=7,
                   help="seconds of load before each measurement (autoscaling settles)")
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 32])
    p.add_argument("--batch-concurrency", type=int, nargs="+", default=[2, 4],
                   help="batch requests in flight: with 2 an ingress replica idles while "
                        "its answer travels and the next request arrives, and two "
                        "requests may meet at one replica; the targets take the best")
    p.add_argument("--skip-naive", action="store_true")
    args = p.parse_args()
    bodies = sample_bodies(3000, nodes=20)
    batch_bodies = batch_formats(sample_bodies(8, nodes=20, seed=1, batch=BATCH_STATES))
    rows: list[tuple[str, LoadResult]] = []
    batch_rows: list[tuple[str, LoadResult]] = []
    cache_rows: list[tuple[str, LoadResult]] = []

    if not args.skip_naive:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.naive_server",
                                 "--port", str(port)])
        try:
            wait_ready(f"http://127.0.0.1:{port}/docs")
            measure(NAIVE, f"http://127.0.0.1:{port}", bodies, batch_bodies, args, rows,
                    batch_rows)
        finally:
            proc.terminate()
            proc.wait()

    every = tuple(batch_bodies)
    phases = [
        ({}, [  # Ray Serve's standard HTTP path (proxy actor)
            ("serve defaults", default_settings_options(cache="none"), ("JSON",)),
            ("shipped config, standard path", shipped_options(cache="none"), ("JSON",)),
        ]),
        (FAST_PATH_ENV, [  # HAProxy + direct ingress + gRPC (what make run / k8s use)
            (SHIPPED, shipped_options(cache="none"), every),
            (HOP, shipped_options(separate=False, cache="none"), ("JSON",)),
            ("every stage its own deployment", shipped_options(separate=True, cache="none"),
             ("JSON",)),
        ]),
    ]
    for env, variants in phases:
        grpc_port = free_port()
        with ray_serve(num_cpus=2, env=env, grpc_port=grpc_port) as port:
            from ray import serve

            base = f"http://127.0.0.1:{port}"
            for name, (app_args, options), formats in variants:
                took = deploy("bench", "/", app_args, options)
                print(f"{name}: deployed in {took:.1f} s", flush=True)
                measure(name, base, bodies, batch_bodies, args, rows, batch_rows, formats)
                if env and name == SHIPPED:  # gRPC beside HTTP, same app, same run
                    g_rows, g_batch = grpc_measure(f"127.0.0.1:{grpc_port}", args.concurrency,
                                                   args.requests, args.seconds, app="bench")
                    rows += [(f"{SHIPPED}, {n}", r) for n, r in g_rows]
                    batch_rows += [(f"{SHIPPED}, {n}", r) for n, r in g_batch]
                serve.delete("bench")
            if env:  # cached vs uncached, concurrency 1, shipped app with its local cache
                app_args, options = shipped_options(cache="local")
                deploy("bench", "/", app_args, options)
                url = f"{base}/v1/allocate"
                uncached = asyncio.run(run_load(url, bodies[1000:], 1, 2000, args.seconds))
                asyncio.run(run_load(url, bodies[:1], 1, 5, 5))  # fill the cache
                cached = asyncio.run(run_load(url, bodies[:1], 1, 2000, args.seconds))
                cache_rows += [("uncached", uncached), ("cached (same state)", cached)]
                print(table(cache_rows), flush=True)
                serve.delete("bench")

    RESULTS.mkdir(parents=True, exist_ok=True)
    md = ("## /v1/allocate, one 20-node state per request\n\n" + table(rows)
          + f"\n## /v1/allocate/batch, {BATCH_STATES} 20-node states per request, "
          f"{' or '.join(map(str, args.batch_concurrency))} in flight\n\n"
          + table(batch_rows, unit="decisions/s")
          + "\n## Cache, concurrency 1 (shipped app, fast path)\n\n" + table(cache_rows)
          + "\n" + ratios(rows, batch_rows, cache_rows))
    (RESULTS / "serve_bench.md").write_text(md)
    (RESULTS / "serve_bench.json").write_text(json.dumps({
        "single": [(n, r._asdict()) for n, r in rows],
        "batch": [(n, r._asdict()) for n, r in batch_rows],
        "cache": [(n, r._asdict()) for n, r in cache_rows]}, indent=2))
    plot(rows, RESULTS / "serve_bench.png")
    print(md)


NAIVE = "naive (FastAPI + eager torch)"
SHIPPED = "shipped: fast path (policy in the ingress)"
HOP = "policy hop (PolicyInference deployment, as on GPUs)"


def ratios(rows, batch_rows, cache_rows) -> str:
    """The issue's targets as ratios of this run's numbers."""
    def best(name, rs):
        vals = [r.throughput_rps for n, r in rs if n == name]
        return max(vals) if vals else float("nan")

    lines = ["## Against the targets (same run)", ""]
    naive, shipped, hop = best(NAIVE, rows), best(SHIPPED, rows), best(HOP, rows)
    defaults = best("serve defaults", rows)
    lines.append(f"- single state (best concurrency of each), shipped: {shipped:.1f} req/s = "
                 f"{shipped / naive:.2f}x naive ({naive:.1f}), {shipped / defaults:.1f}x Serve "
                 f"defaults ({defaults:.1f}); with the PolicyInference hop {hop:.1f} req/s = "
                 f"{hop / naive:.2f}x naive")
    nb = best(f"{NAIVE}, JSON", batch_rows)
    for name in (SHIPPED,):
        js, mp = best(f"{name}, JSON", batch_rows), best(f"{name}, msgpack", batch_rows)
        cj, cm = (best(f"{name}, columnar JSON", batch_rows),
                  best(f"{name}, columnar msgpack", batch_rows))
        lines.append(f"- batch, {name}: JSON {js:,.0f} decisions/s = {js / nb:.1f}x the naive "
                     f"batch loop ({nb:,.0f}); msgpack {mp:,.0f} = {mp / js:.2f}x JSON; "
                     f"columnar JSON {cj:,.0f}; columnar msgpack {cm:,.0f}")
        ju, mu, cu = (best(f"{name}, {f}, uncompressed", batch_rows)
                      for f in ("JSON", "msgpack", "columnar msgpack"))
        lines.append(f"- batch, {name}, answers uncompressed (accept-encoding: identity; the "
                     f"naive server never compresses): JSON {ju:,.0f} decisions/s = "
                     f"{ju / nb:.1f}x the naive batch loop; msgpack {mu:,.0f} = {mu / ju:.2f}x "
                     f"JSON; columnar msgpack {cu:,.0f}")
    g1 = best(f"{SHIPPED}, gRPC Allocate", rows)
    gs = best(f"{SHIPPED}, gRPC AllocateBatch, states", batch_rows)
    gc = best(f"{SHIPPED}, gRPC AllocateBatch, columns", batch_rows)
    lines.append(f"- gRPC, shipped: Allocate {g1:.1f} req/s ({g1 / shipped:.2f}x HTTP); "
                 f"AllocateBatch {gs:,.0f} decisions/s (states), {gc:,.0f} (columns)")
    if len(cache_rows) == 2:
        lines.append(f"- cached / uncached median latency at concurrency 1: "
                     f"{cache_rows[1][1].p50_ms:.2f} / {cache_rows[0][1].p50_ms:.2f} ms = "
                     f"{cache_rows[1][1].p50_ms / cache_rows[0][1].p50_ms:.2f}")
    return "\n".join(lines) + "\n"


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name in dict.fromkeys(n for n, _ in rows):
        rs = [r for n, r in rows if n == name]
        a1.plot([r.concurrency for r in rs], [r.throughput_rps for r in rs], marker="o", label=name)
        a2.plot([r.concurrency for r in rs], [r.p99_ms for r in rs], marker="o", label=name)
    a1.set(xlabel="concurrency", ylabel="requests/s", xscale="log", title="throughput")
    a2.set(xlabel="concurrency", ylabel="p99 ms", xscale="log", yscale="log", title="p99 latency")
    a1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
