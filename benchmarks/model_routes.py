"""Routes to a faster hybrid model, measured side by side in one run (issue 11 §3):

1. ONNX Runtime session options on hybrid v1 (optimisation level, threads, spinning,
   memory pattern, CPU arena, execution mode);
2. graph simplification: onnxslim, and ORT's own offline-optimised model
   (``optimized_model_filepath``) loaded with optimisations off;
3. narrower students (the distilled hidden-32 hybrid, plus untrained architectures timed
   for speed only).

Every route's scores are checked against eager PyTorch of the same weights (1e-4
relative / 1e-3 absolute on feasible nodes, as the export parity test). Timings are
medians of per-call samples; routes are interleaved round by round so a busy shared
machine slows them all alike. Inputs are real simulator states.

    python -m benchmarks.model_routes [--student runs/distill/models/hybrid/2]

Writes benchmarks/results/model_routes.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.model_bench import real_graphs
from edge_allocator.constants import MODELS_DIR
from edge_allocator.graph import GraphBatch, collate
from edge_allocator.runtime.artifacts import ONNX, Artifact, load_artifact, verify
from edge_allocator.runtime.export import PARITY_ATOL, PARITY_RTOL

RESULTS = Path(__file__).parent / "results"
CASES = (("N=20 batch 1", 20, 1), ("N=20 batch 256", 20, 256), ("N=1000 batch 1", 1000, 1))
TARGETS = {"N=20 batch 1": 40.0, "N=20 batch 256": 8.0}


@dataclass
class Route:
    group: str
    name: str
    model: str
    """Path of the ONNX file."""
    torch_key: str
    """Which weights the scores are checked against."""
    options: dict[str, Any]
    session: Any = None


def _session(path: str, options: dict[str, Any]) -> Any:
    import onnxruntime as ort

    o = ort.SessionOptions()
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    o.graph_optimization_level = levels[options.get("level", "all")]
    o.intra_op_num_threads = options.get("intra", 1)
    o.inter_op_num_threads = options.get("inter", 1)
    if "mem_pattern" in options:
        o.enable_mem_pattern = options["mem_pattern"]
    if "cpu_arena" in options:
        o.enable_cpu_mem_arena = options["cpu_arena"]
    if options.get("parallel"):
        o.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    else:
        o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if "spinning" in options:
        o.add_session_config_entry("session.intra_op.allow_spinning",
                                   "1" if options["spinning"] else "0")
    if "save_to" in options:
        o.optimized_model_filepath = options["save_to"]
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def slim(src: Path, dst: Path) -> Path | None:
    """onnxslim's simplified graph, or None when onnxslim is not installed (it is not a
    dependency: it did not make the hybrid faster; ``pip install onnxslim==0.1.98`` to
    measure it again)."""
    try:
        import onnxslim
    except ImportError:
        print("onnxslim is not installed: its rows are skipped")
        return None
    onnxslim.slim(str(src), str(dst))
    return dst


def ort_offline(src: Path, dst: Path) -> Path:
    """ORT's fully optimised graph written to disk (CPU-specific fused ops included)."""
    _session(str(src), {"level": "all", "save_to": str(dst)})
    return dst


def _artifact(path: Path) -> Artifact:
    return Artifact(path.parent.name, path.name, path, verify(path))


def build_routes(v1: Artifact, student: Artifact | None, work: Path) -> list[Route]:
    base = str(v1.file(ONNX))
    slim_v1 = slim(v1.file(ONNX), work / "v1.slim.onnx")
    offline_v1 = str(ort_offline(v1.file(ONNX), work / "v1.ort-all.onnx"))
    routes = [
        Route("baseline", "v1, onnx backend (level all, 1 intra / 1 inter thread)", base, "v1",
              {}),
        Route("1 session", "level disable", base, "v1", {"level": "disable"}),
        Route("1 session", "level basic", base, "v1", {"level": "basic"}),
        Route("1 session", "level extended", base, "v1", {"level": "extended"}),
        Route("1 session", "intra/inter threads ORT default (0 = all cores)", base, "v1",
              {"intra": 0, "inter": 0}),
        Route("1 session", "intra 2 threads, spinning off", base, "v1",
              {"intra": 2, "spinning": False}),
        Route("1 session", "intra 1, spinning off", base, "v1", {"spinning": False}),
        Route("1 session", "enable_mem_pattern off", base, "v1", {"mem_pattern": False}),
        Route("1 session", "enable_cpu_mem_arena off", base, "v1", {"cpu_arena": False}),
        Route("1 session", "execution mode parallel (default is sequential)", base, "v1",
              {"parallel": True}),
        *([Route("2 graph", "onnxslim 0.1.98", str(slim_v1), "v1", {})] if slim_v1 else []),
        Route("2 graph", "ORT offline-optimised file, loaded with level disable", offline_v1,
              "v1", {"level": "disable"}),
    ]
    if student is not None:
        tag = f"student {student.name} v{student.version} (hidden " \
              f"{student.manifest['architecture']['hidden']}, " \
              f"{student.manifest['architecture']['layers']} layers, distilled)"
        routes.append(Route("3 student", tag, str(student.file(ONNX)), "student", {}))
        slim_student = slim(student.file(ONNX), work / "student.slim.onnx")
        if slim_student:
            routes.append(Route("3 student", tag + " + onnxslim", str(slim_student),
                                "student", {}))
    for arch in ({"hidden": 16}, {"hidden": 32, "layers": 1}):
        path = work / f"untrained-{arch['hidden']}-{arch.get('layers', 2)}.onnx"
        _export_untrained(arch, path)
        routes.append(Route("3 student", f"untrained hidden {arch['hidden']}, "
                            f"{arch.get('layers', 2)} layers (speed only)", str(path),
                            f"untrained:{json.dumps(arch)}", {}))
    return routes


_UNTRAINED: dict[str, Any] = {}


def _export_untrained(arch: dict[str, int], path: Path) -> None:
    import torch

    from edge_allocator.policies import build_policy
    from edge_allocator.runtime.export import export_onnx

    torch.manual_seed(0)
    m = build_policy("hybrid", arch).eval()
    export_onnx(m, path)
    _UNTRAINED[f"untrained:{json.dumps(arch)}"] = m


def _torch_module(key: str, v1: Artifact, student: Artifact | None) -> Any:
    from edge_allocator.runtime.torch_backend import load_module

    if key == "v1":
        return load_module(v1)
    if key == "student":
        assert student is not None
        return load_module(student)
    return _UNTRAINED[key]


def parity(routes: list[Route], batches: dict[str, GraphBatch], v1: Artifact,
           student: Artifact | None) -> dict[str, float]:
    """Largest |route - torch| over feasible nodes of every case; raises on a mismatch."""
    import torch

    refs: dict[tuple[str, str], np.ndarray] = {}
    worst: dict[str, float] = {}
    for r in routes:
        d = 0.0
        for case, b in batches.items():
            key = (r.torch_key, case)
            if key not in refs:
                m = _torch_module(r.torch_key, v1, student)
                with torch.inference_mode():
                    refs[key] = m(torch.from_numpy(b.x), torch.from_numpy(b.adj),
                                  torch.from_numpy(b.mask)).numpy()
            out = r.session.run(None, {"x": b.x, "adj": b.adj, "mask": b.mask})[0]
            ok = b.mask
            if not np.allclose(out[ok], refs[key][ok], rtol=PARITY_RTOL, atol=PARITY_ATOL):
                raise AssertionError(f"route {r.name!r} differs from PyTorch on {case}")
            d = max(d, float(np.abs(out[ok] - refs[key][ok]).max()))
        worst[r.name] = d
    return worst


def measure(routes: list[Route], batches: dict[str, GraphBatch], rounds: int,
            budget_s: float) -> dict[str, dict[str, float]]:
    """Median µs per call for every (route, case); routes interleaved per round."""
    samples: dict[str, dict[str, list[float]]] = {r.name: {c: [] for c in batches}
                                                  for r in routes}
    for case, b in batches.items():
        feed = {"x": b.x, "adj": b.adj, "mask": b.mask}
        calls: dict[str, Callable[[], Any]] = {
            r.name: (lambda s=r.session, f=feed: s.run(None, f)) for r in routes}
        for fn in calls.values():
            fn()  # warm-up: ORT allocates on the first run
        t0 = time.perf_counter()
        calls[routes[0].name]()
        one = max(time.perf_counter() - t0, 1e-6)
        reps = int(max(5, min(200, budget_s / rounds / len(routes) / one)))
        for _ in range(rounds):
            for r in routes:
                fn = calls[r.name]
                for _ in range(reps):
                    t0 = time.perf_counter()
                    fn()
                    samples[r.name][case].append(time.perf_counter() - t0)
    return {name: {c: statistics.median(v) * 1e6 for c, v in per.items()}
            for name, per in samples.items()}


def to_markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| route | group | N=20 batch 1 µs | N=20 batch 256 µs/graph | N=1000 batch 1 µs | "
            "vs baseline (b1 / b256 / N=1000) | max abs diff vs torch |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    base = rows[0]
    for r in rows:
        ratio = " / ".join(f"{base[k] / r[k]:.2f}x" for k in ("b1", "b256", "n1000"))
        lines.append(f"| {r['route']} | {r['group']} | {r['b1']:.1f} | {r['b256']:.2f} | "
                     f"{r['n1000']:.0f} | {ratio} | {r['parity']:.1e} |")
    lines.append("")
    lines.append(f"Targets: N=20 batch 1 ≤ {TARGETS['N=20 batch 1']:.0f} µs, N=20 batch 256 ≤ "
                 f"{TARGETS['N=20 batch 256']:.0f} µs/graph. Speed-up > 1 is faster.")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (("b1", "N=20 batch 1 (µs)"), ("b256", "N=20 batch 256 (µs / graph)"),
            ("n1000", "N=1000 batch 1 (µs)"))
    fig, axes = plt.subplots(1, 3, figsize=(18, 0.32 * len(rows) + 1.5), sharey=True)
    names = [r["route"] for r in rows]
    colors = [{"baseline": "C0", "1 session": "C1", "2 graph": "C2", "3 student": "C3"}.get(
        r["group"], "C4") for r in rows]
    for ax, (k, title) in zip(axes, keys):
        ax.barh(names, [r[k] for r in rows], color=colors)
        ax.axvline(rows[0][k], color="k", lw=0.8, ls=":")
        target = {"b1": TARGETS["N=20 batch 1"], "b256": TARGETS["N=20 batch 256"]}.get(k)
        if target:
            ax.axvline(target, color="r", lw=1, ls="--", label="target")
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--student", default=None,
                   help="artifact folder of a distilled student (default: models/hybrid's "
                        "newest version when it is not v1)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=40.0,
                   help="measuring time per case (all routes together)")
    p.add_argument("--out", default=str(RESULTS / "model_routes"))
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    v1 = load_artifact(MODELS_DIR, "hybrid", "1")
    student = None
    if args.student:
        student = _artifact(Path(args.student))
    else:
        newest = load_artifact(MODELS_DIR, "hybrid")
        student = newest if newest.version != "1" else None
    pool20, pool1000 = real_graphs(20, 32), real_graphs(1000, 1)
    batches = {"N=20 batch 1": collate(pool20[:1]),
               "N=20 batch 256": collate([pool20[i % 32] for i in range(256)]),
               "N=1000 batch 1": collate(pool1000)}
    with tempfile.TemporaryDirectory() as tmp:
        routes = build_routes(v1, student, Path(tmp))
        for r in routes:
            r.session = _session(r.model, r.options)
        diffs = parity(routes, batches, v1, student)
        times = measure(routes, batches, args.rounds, args.seconds)
    rows = [{"route": r.name, "group": r.group, "options": r.options,
             "b1": times[r.name]["N=20 batch 1"],
             "b256": times[r.name]["N=20 batch 256"] / 256,
             "n1000": times[r.name]["N=1000 batch 1"], "parity": diffs[r.name]}
            for r in routes]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = to_markdown(rows)
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(json.dumps(
        {"rows": rows, "cases": [c[0] for c in CASES], "rounds": args.rounds,
         "student": str(student.path) if student else None}, indent=2))
    plot(rows, out.with_suffix(".png"))
    print(table)
    print(f"wrote {out}.md, .json, .png")


if __name__ == "__main__":
    main()
