"""Each Serve setting from Anyscale's published throughput tuning, one at a time, on this
app: the fast path (RAY_SERVE_THROUGHPUT_OPTIMIZED=1 + HAProxy), then the same with one
setting flipped back, and the @serve.batch settings of the policy. Single-state
/v1/allocate at two concurrencies, and /v1/allocate/batch (256 states, JSON).

RAY_SERVE_THROUGHPUT_OPTIMIZED=1 already sets RAY_SERVE_USE_GRPC_BY_DEFAULT=1,
RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0 and RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0;
RAY_SERVE_HAPROXY_TCP_NODELAY defaults to 1. Each row flips one of them.

    python -m benchmarks.serve_settings [--seconds 8] [--composition policy-hop|inline]
Writes benchmarks/results/serve_settings_<composition>.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from benchmarks.cluster import deploy, ray_serve, shipped_options
from benchmarks.load import LoadResult, run_load, sample_bodies
from edge_allocator.runtime.raylocal import FAST_PATH_ENV

RESULTS = Path(__file__).parent / "results"
BATCH_STATES = 256
ENV_VARIANTS: list[tuple[str, dict[str, str]]] = [
    ("fast path (shipped environment)", {}),
    ("RAY_SERVE_HAPROXY_TCP_NODELAY=0", {"RAY_SERVE_HAPROXY_TCP_NODELAY": "0"}),
    ("RAY_SERVE_USE_GRPC_BY_DEFAULT=0", {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "0"}),
    ("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=1", {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1"}),
    ("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=1",
     {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1"}),
]
BATCH_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("max_batch_size 64, wait 2 ms (shipped)", {}),
    ("max_batch_size 16, wait 2 ms", {"max_batch_size": 16}),
    ("max_batch_size 64, wait 0 ms", {"batch_wait_timeout_s": 0.0}),
    ("max_batch_size 64, wait 5 ms", {"batch_wait_timeout_s": 0.005}),
]


def options(composition: str, inference: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    args, opts = shipped_options(separate=False, inline_inference=composition == "inline",
                                 cache="none")
    target = opts["Ingress"] if composition == "inline" else opts["PolicyInference"]
    uc = dict(target["user_config"])
    uc["inference"] = {**uc["inference"], **inference}
    target["user_config"] = uc
    return args, opts


def measure(base: str, bodies: list[bytes], batch_bodies: list[bytes], seconds: float
            ) -> dict[str, LoadResult]:
    out = {}
    for c in (8, 32):
        out[f"single c={c}"] = asyncio.run(run_load(f"{base}/v1/allocate", bodies, c, 10**6,
                                                    seconds))
    rb = asyncio.run(run_load(f"{base}/v1/allocate/batch", batch_bodies, 2, 10**6, seconds))
    out["batch"] = rb._replace(throughput_rps=rb.throughput_rps * BATCH_STATES)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--composition", choices=["policy-hop", "inline"], default="inline")
    args = p.parse_args()
    bodies = sample_bodies(3000, nodes=20)
    batch_bodies = sample_bodies(8, nodes=20, seed=1, batch=BATCH_STATES)
    rows: list[tuple[str, dict[str, LoadResult]]] = []
    for name, flip in ENV_VARIANTS:
        with ray_serve(num_cpus=2, env={**FAST_PATH_ENV, **flip}) as port:
            deploy("bench", "/", *options(args.composition, {}))
            rows.append((name, measure(f"http://127.0.0.1:{port}", bodies, batch_bodies,
                                       args.seconds)))
            print(name, {k: round(v.throughput_rps, 1) for k, v in rows[-1][1].items()},
                  flush=True)
    with ray_serve(num_cpus=2, env=FAST_PATH_ENV) as port:
        from ray import serve

        for name, inference in BATCH_VARIANTS[1:]:
            deploy("bench", "/", *options(args.composition, inference))
            rows.append((name, measure(f"http://127.0.0.1:{port}", bodies, batch_bodies,
                                       args.seconds)))
            print(name, {k: round(v.throughput_rps, 1) for k, v in rows[-1][1].items()},
                  flush=True)
            serve.delete("bench")
    lines = [f"Composition: {args.composition}; requests/s (single, 20-node states) and "
             f"decisions/s (batch of {BATCH_STATES}); p99 ms in brackets", "",
             "| setting | single c=8 | single c=32 | batch |", "|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | " + " | ".join(
            f"{r[k].throughput_rps:,.0f} ({r[k].p99_ms:.0f})"
            for k in ("single c=8", "single c=32", "batch")) + " |")
    md = "\n".join(lines) + "\n"
    print(md)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"serve_settings_{args.composition}.md").write_text(md)
    (RESULTS / f"serve_settings_{args.composition}.json").write_text(json.dumps(
        [(n, {k: v._asdict() for k, v in r.items()}) for n, r in rows], indent=2))


if __name__ == "__main__":
    main()
