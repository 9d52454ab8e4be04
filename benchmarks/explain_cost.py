"""The cost of one /v1/explain attribution, by method, at N = 20 and N = 500 (issue 13 §2).

Two candidates, both with exact or checked completeness (attributions over every node
and feature sum to score - baseline score):

* ``integrated_gradients``: what the service runs (``edge_allocator.explain.gradients``):
  Captum on the torch module, midpoint rule, steps doubled from 64 until the residual is
  within 0.5 % of the score gap (or the step budget for this N is spent).
* ``onnx_permutation``: a batched perturbation through ONNX Runtime (torch-free
  replicas): one random permutation of the N x F (node, feature) inputs, switched from
  the baseline to the input one at a time, every prefix scored in batches; each
  feature's attribution is the score change when it switches. The changes telescope, so
  completeness is exact for one permutation (it is one sample of Shapley values, and
  noisy: more permutations cost as much again each). N x F + 1 model calls.

Both use the same baseline (every node at the training mean) and target (the chosen
node's score). Torch runs on one thread, as on the Explainer replica (0.1 CPU: Ray sets
OMP_NUM_THREADS=1); ONNX Runtime with one intra-op thread, as the serving backend.
Inputs are real simulator states. Times are medians over ``--repeats`` explanations
(the permutation is run once per state at N = 500: each takes tens of seconds).

    python -m benchmarks.explain_cost [--sizes 20 500] [--repeats 5]

Writes benchmarks/results/explain_cost.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.model_bench import real_graphs
from edge_allocator.constants import MODELS_DIR
from edge_allocator.explain.gradients import GradientExplainer, baseline_features, padded
from edge_allocator.graph import GraphInputs
from edge_allocator.runtime.artifacts import load_artifact
from edge_allocator.runtime.backends import OnnxBackend

RESULTS = Path(__file__).parent / "results"
MODELS = (("hybrid", "2"), ("hybrid_gat", "1"), ("dqn", "1"), ("ppo", "1"))
#: Graph elements (N x N) per ONNX call of the permutation method.
ELEMENTS_PER_CALL = 16_000_000


def onnx_permutation(backend: OnnxBackend, g: GraphInputs, base_row: np.ndarray,
                     target: int, pad: int, seed: int = 0) -> tuple[np.ndarray, float, float]:
    """(attributions [N, F], score, baseline score): one permutation, batched prefixes."""
    n, f = g.x.shape
    order = np.random.default_rng(seed).permutation(n * f)
    _, adj1, mask1 = padded(g, pad)
    adj, mask = adj1[0], mask1[0]
    x0 = np.zeros((pad, f), np.float32)
    x0[:n] = base_row
    chunk = max(1, ELEMENTS_PER_CALL // (pad * pad))
    scores = np.empty(n * f + 1, np.float64)
    cur = x0.copy()
    for lo in range(0, n * f + 1, chunk):
        hi = min(n * f + 1, lo + chunk)
        xs = np.empty((hi - lo, pad, f), np.float32)
        for k in range(lo, hi):  # prefix k: the first k features of ``order`` switched
            if k > 0:
                j, c = divmod(int(order[k - 1]), f)
                cur[j, c] = g.x[j, c]
            xs[k - lo] = cur
        out = backend.run(xs, np.broadcast_to(adj, (hi - lo, pad, pad)).copy(),
                          np.broadcast_to(mask, (hi - lo, pad)).copy())
        scores[lo:hi] = out[:, target]
    attr = np.zeros(n * f)
    attr[order] = np.diff(scores)
    return attr.reshape(n, f), float(scores[-1]), float(scores[0])


def measure(sizes: list[int], repeats: int, states: int) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    ig = GradientExplainer(MODELS_DIR)
    rows = []
    for n in sizes:
        graphs = real_graphs(n, states, seed=11)
        for name, version in MODELS:
            art = load_artifact(MODELS_DIR, name, version)
            if art.max_nodes is not None and n > art.max_nodes:
                continue
            policy = ig.policy(name, version)
            onnx = OnnxBackend(art)
            pad = art.max_nodes or n
            base_row = baseline_features(policy.normalizer).astype(np.float32)
            times, steps, resid = [], [], []
            for g in graphs:
                s = onnx.run(*padded(g, pad))[0]
                target = int(np.argmax(np.where(g.mask, s[:n], -np.inf)))
                ig.attribute(name, version, g, [target])  # warm-up
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    a = ig.attribute(name, version, g, [target])[0]
                    times.append(time.perf_counter() - t0)
                steps.append(a.n_steps)
                resid.append(abs(a.completeness_error) / abs(a.score - a.baseline_score))
            rows.append(_row("integrated_gradients", name, version, n, times,
                             f"{min(steps)}-{max(steps)} steps", max(resid)))
            g = graphs[0]
            s = onnx.run(*padded(g, pad))[0]
            target = int(np.argmax(np.where(g.mask, s[:n], -np.inf)))
            t0 = time.perf_counter()
            attr, score, base = onnx_permutation(onnx, g, base_row, target, pad)
            dt = time.perf_counter() - t0
            rows.append(_row("onnx_permutation", name, version, n, [dt],
                             f"{n * g.x.shape[1] + 1} model calls",
                             abs(attr.sum() - (score - base)) / abs(score - base)))
            print(_line(rows[-2]), _line(rows[-1]), sep="\n", flush=True)
    return rows


def _row(method: str, name: str, version: str, n: int, times: list[float], work: str,
         residual: float) -> dict[str, Any]:
    return {"method": method, "model": f"{name} v{version}", "nodes": n,
            "median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000,
            "samples": len(times), "work": work, "max_residual_pct": residual * 100}


HEADER = ("| method | model | N | median ms | max ms | samples | work | max completeness "
          "residual |\n|---|---|---|---|---|---|---|---|")


def _line(r: dict[str, Any]) -> str:
    return (f"| {r['method']} | {r['model']} | {r['nodes']} | {r['median_ms']:,.0f} | "
            f"{r['max_ms']:,.0f} | {r['samples']} | {r['work']} | "
            f"{r['max_residual_pct']:.2f} % |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 500])
    ap.add_argument("--repeats", type=int, default=3, help="IG runs per state")
    ap.add_argument("--states", type=int, default=3, help="simulator states per size")
    args = ap.parse_args()
    print(HEADER)
    rows = measure(args.sizes, args.repeats, args.states)
    RESULTS.mkdir(exist_ok=True)
    table = "\n".join([HEADER, *map(_line, rows)])
    (RESULTS / "explain_cost.md").write_text(
        "# Cost of one explanation (python -m benchmarks.explain_cost)\n\n"
        f"sizes {args.sizes}, {args.states} states each, {args.repeats} IG runs per state; "
        "torch 1 thread, ONNX Runtime 1 thread; shared 2-core machine.\n\n" + table + "\n")
    (RESULTS / "explain_cost.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'explain_cost.md'}")


if __name__ == "__main__":
    main()
