"""What the lossy backends cost in decision quality: the served hybrid on ``onnx-int8``
(dynamic int8 MatMul weights) and ``torch-pruned`` (50% magnitude pruning of every Linear)
against the same artifact on ``onnx`` (float32, the default), paired on the same
held-out seeds of every scenario.

Each backend plays every episode through the simulator one decision at a time, exactly
as the service scores a state; the paired difference per episode (backend − onnx) is
reported with its 95% CI, relative to |onnx's mean|, as is the share of decisions where
the backend chose another node than onnx did.

    python -m benchmarks.backend_quality [--model hybrid] [--episodes 20] [--tasks 200]

Writes ``benchmarks/results/backend_quality.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_allocator.constants import MODELS_DIR
from edge_allocator.graph import GraphInputs, collate
from edge_allocator.runtime.artifacts import Artifact, load_artifact
from edge_allocator.runtime.backends import Backend, make_backend
from edge_allocator.train.agents import AgentFactory, pad_for
from edge_allocator.train.evaluate import AgentResult, default_scenarios, evaluate, mean_ci

OUT = Path(__file__).parent / "results"
REFERENCE = "onnx"
LOSSY = ("onnx-int8", "torch-pruned")


class BackendAgent:
    """One decision at a time through a serving backend; counts how often its choice
    differs from the reference backend's on the same state."""

    def __init__(self, name: str, backend: Backend, pad_to: int | None,
                 reference: Backend | None = None) -> None:
        self.name, self.backend, self.pad_to, self.reference = name, backend, pad_to, reference
        self.decisions = 0
        self.disagreements = 0

    def scores(self, graph: GraphInputs) -> np.ndarray:
        b = collate([graph], pad_to=self.pad_to)
        n = graph.x.shape[0]
        out = self.backend.run(b.x, b.adj, b.mask)[0, :n]
        if self.reference is not None:
            ref = self.reference.run(b.x, b.adj, b.mask)[0, :n]
            masked = np.where(graph.mask, out, -np.inf)
            self.decisions += 1
            self.disagreements += int(np.argmax(masked) != np.argmax(
                np.where(graph.mask, ref, -np.inf)))
        return out


def _agents(art: Artifact) -> tuple[dict[str, AgentFactory], dict[str, list[BackendAgent]]]:
    """Evaluation factories, and per backend the agents they made (one per scenario, in
    scenario order: each counts its own disagreements)."""
    pad = pad_for(art.kind)
    reference = make_backend(art, REFERENCE)
    backends = {REFERENCE: reference, **{name: make_backend(art, name) for name in LOSSY}}
    made: dict[str, list[BackendAgent]] = {name: [] for name in backends}

    def factory(name: str) -> AgentFactory:
        def build(env: Any, n: int) -> BackendAgent | None:
            if pad and n > pad:
                return None
            agent = BackendAgent(name, backends[name], pad,
                                 None if name == REFERENCE else reference)
            made[name].append(agent)
            return agent
        return build

    return {name: factory(name) for name in backends}, made


def paired(results: list[AgentResult],
           made: dict[str, list[BackendAgent]]) -> list[dict[str, Any]]:
    """One row per (scenario, lossy backend): mean rewards, the paired difference, and
    the share of the backend's decisions where onnx would have chosen another node."""
    rows = []
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    for i, sc in enumerate(scenarios):
        by = {r.agent: r for r in results if r.scenario == sc}
        ref = by[REFERENCE]
        base = abs(ref.metrics["episode_reward"].mean)
        for name in LOSSY:
            d = mean_ci([a - b for a, b in zip(by[name].episode_rewards, ref.episode_rewards,
                                               strict=True)])
            agent = made[name][i]
            rows.append({
                "scenario": sc, "backend": name, "episodes": ref.episodes,
                "reference_reward": ref.metrics["episode_reward"].mean,
                "backend_reward": by[name].metrics["episode_reward"].mean,
                "paired_diff": d.mean, "paired_diff_ci95": d.ci95,
                "paired_diff_pct": d.mean / base * 100,
                "paired_diff_ci95_pct": d.ci95 / base * 100,
                "decisions": agent.decisions,
                "choices_differ_pct": 100 * agent.disagreements / max(agent.decisions, 1),
            })
    return rows


def to_markdown(rows: list[dict[str, Any]], model: str, seconds: float) -> str:
    lines = [f"{model}: each backend vs onnx (float32), paired on the same held-out seeds; "
             f"{seconds:.0f} s.", "",
             "| scenario | backend | episodes | onnx reward | backend reward "
             "| paired diff (95% CI) | relative | choices differ from onnx |",
             "|---|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['backend']} | {r['episodes']} | {r['reference_reward']:.1f} "
            f"| {r['backend_reward']:.1f} | {r['paired_diff']:+.2f} ± {r['paired_diff_ci95']:.2f} "
            f"| {r['paired_diff_pct']:+.2f}% ± {r['paired_diff_ci95_pct']:.2f} "
            f"| {r['choices_differ_pct']:.1f}% |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.backend_quality",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="hybrid")
    p.add_argument("--version", default=None, help="default: the newest (the served one)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--tasks", type=int, default=200, help="tasks per episode")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    art = load_artifact(MODELS_DIR, args.model, args.version)
    factories, made = _agents(art)
    t0 = time.perf_counter()
    results = evaluate(factories, default_scenarios(args.tasks), args.episodes)
    seconds = time.perf_counter() - t0
    rows = paired(results, made)
    model = f"{art.name} v{art.version}"
    md = to_markdown(rows, model, seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backend_quality.md").write_text(md)
    (args.out / "backend_quality.json").write_text(json.dumps(
        {"model": model, "episodes": args.episodes, "tasks_per_episode": args.tasks,
         "seconds": seconds, "rows": rows}, indent=2) + "\n")
    print(md)


if __name__ == "__main__":
    main()
