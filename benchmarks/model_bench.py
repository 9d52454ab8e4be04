"""(a) Model microbenchmarks: every backend at N = 20, 100, 1,000 and batch 1, 32, 256.

Prints a markdown table of median time per call and per graph, writes it with a plot to
benchmarks/results/. Inputs are real simulator states, not random tensors.

    python -m benchmarks.model_bench [--model hybrid] [--repeats 50] [--profile]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path

import numpy as np

from edge_allocator.constants import MODELS_DIR
from edge_allocator.graph import collate
from edge_allocator.runtime.artifacts import load_artifact
from edge_allocator.runtime.backends import BACKENDS, make_backend
from edge_allocator.sim import EdgeAllocationEnv, EnvConfig

RESULTS = Path(__file__).parent / "results"
SIZES = (20, 100, 1000)
BATCHES = (1, 32, 256)
#: Above this many adjacency floats per call the case is skipped (memory, not speed).
MAX_ADJ_FLOATS = 64_000_000


def real_graphs(n: int, count: int, seed: int = 0):
    env = EdgeAllocationEnv(EnvConfig(min_nodes=n, max_nodes=n, tasks_per_episode=count + 1))
    env.reset(seed=seed)
    out = []
    for _ in range(count):
        g = env.graph()
        out.append(g)
        env.step(int(np.argmax(np.where(g.mask, env.oracle_rewards(), -np.inf))))
    return out


def time_call(fn, repeats: int) -> float:
    fn()  # warm-up (ORT allocates on first run)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="hybrid")
    p.add_argument("--backends", nargs="*", default=list(BACKENDS))
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--profile", action="store_true",
                   help="torch.profiler trace of eager N=100 b=32")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    art = load_artifact(MODELS_DIR, args.model)
    fixed = art.max_nodes
    rows = []
    for n in SIZES:
        if fixed and n > fixed:
            continue
        pool = real_graphs(n, 32)
        for b in BATCHES:
            if b * n * n > MAX_ADJ_FLOATS:
                rows.append({"backend": "*", "n": n, "batch": b, "skipped": "adjacency > 256 MB"})
                continue
            graphs = [pool[i % len(pool)] for i in range(b)]
            batch = collate(graphs, pad_to=fixed)
            for name in args.backends:
                backend = make_backend(art, name)
                reps = max(3, args.repeats // (1 + n * b // 20_000))
                t = time_call(functools.partial(backend.run, batch.x, batch.adj, batch.mask),
                              reps)
                rows.append({"backend": name, "n": n, "batch": b, "call_us": t * 1e6,
                             "per_graph_us": t * 1e6 / b})
                print(f"{name:13s} N={n:5d} batch={b:4d}  {t*1e6:10.1f} us/call  "
                      f"{t*1e6/b:9.2f} us/graph", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"model_bench_{args.model}"
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    lines = ["| backend | N | batch | µs / call (median) | µs / graph |", "|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['backend']} | {r['n']} | {r['batch']} | "
                         f"skipped: {r['skipped']} | |")
        else:
            lines.append(f"| {r['backend']} | {r['n']} | {r['batch']} | {r['call_us']:.1f} | "
                         f"{r['per_graph_us']:.2f} |")
    table = "\n".join(lines) + "\n"
    stem.with_suffix(".md").write_text(table)
    print(table)
    _plot(rows, stem.with_suffix(".png"))
    if args.profile:
        _profile(art, RESULTS / f"profile_{args.model}")


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["n"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 3.6), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        for name in sorted({r["backend"] for r in rows if "skipped" not in r}):
            pts = [(r["batch"], r["per_graph_us"]) for r in rows
                   if r["n"] == n and r["backend"] == name and "skipped" not in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"N = {n}")
        ax.set_xlabel("batch")
        ax.set_ylabel("µs per graph (median)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _profile(art, out: Path) -> None:
    import cProfile
    import pstats

    import torch

    out.mkdir(parents=True, exist_ok=True)
    batch = collate(real_graphs(100, 32))
    backend = make_backend(art, "torch")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(20):
            backend.run(batch.x, batch.adj, batch.mask)
    prof.export_chrome_trace(str(out / "torch_trace.json"))
    (out / "torch_ops.txt").write_text(
        prof.key_averages().table(sort_by="cpu_time_total", row_limit=25))
    onnx = make_backend(art, "onnx")
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(200):
        onnx.run(batch.x, batch.adj, batch.mask)
    pr.disable()
    pr.dump_stats(str(out / "onnx_cprofile.prof"))
    with (out / "onnx_cprofile.txt").open("w") as fh:
        pstats.Stats(pr, stream=fh).sort_stats("cumulative").print_stats(20)
    print(f"profiles written to {out}")


if __name__ == "__main__":
    main()
