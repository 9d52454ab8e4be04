"""Decision quality against the ceiling: every heuristic, the one-step oracle, the
shipped hybrid and the lookahead planner on the same held-out seeds of each scenario.
Reports the hybrid's gain over the best heuristic (with whether the 95% CIs are apart,
and the paired gain on the same seeds), the share of the heuristic -> planner gap it
closes, and what each decision costs the planner and the hybrid.

    python -m benchmarks.gap_closure                  # ~15 min on 2 cores
    python -m benchmarks.gap_closure --episodes synthetic-10to50=10 melbourne=10

The planner is too slow to serve; its episodes run as Ray tasks on a private local Ray.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edge_allocator.constants import MODELS_DIR
from edge_allocator.policies.heuristics import HEURISTIC_NAMES
from edge_allocator.train.evaluate import AgentResult, default_scenarios, mean_ci, to_json

RESULTS = Path(__file__).parent / "results" / "quality"
DEFAULT_EPISODES = {"synthetic-10to50": 60, "melbourne": 30, "synthetic-100": 20,
                    "synthetic-500": 10}


def _agents(model: str) -> tuple[dict[str, Any], str]:
    import torch

    from edge_allocator.runtime.artifacts import load_artifact
    from edge_allocator.runtime.torch_backend import load_module
    from edge_allocator.train.agents import baseline_agents, model_agents
    from edge_allocator.train.planner import LookaheadAgent

    torch.set_num_threads(1)
    art = load_artifact(MODELS_DIR, model)
    name = f"{model}-v{art.version}"
    agents = {**baseline_agents(), **model_agents({name: (load_module(art), art.kind)}),
              "lookahead": lambda env, n: LookaheadAgent(env, horizon=10)}
    return agents, name


def summarise(results: list[AgentResult], cost: dict[tuple[str, str], float],
              model: str) -> list[dict[str, Any]]:
    rows = []
    for sc in dict.fromkeys(r.scenario for r in results):
        by = {r.agent: r for r in results if r.scenario == sc}
        best = max((by[h] for h in HEURISTIC_NAMES if h in by),
                   key=lambda r: r.metrics["episode_reward"].mean)
        m, la = by[model], by["lookahead"]
        b, h, p = (x.metrics["episode_reward"] for x in (best, m, la))
        paired = mean_ci([x - y for x, y in zip(m.episode_rewards, best.episode_rewards)])
        rows.append({
            "scenario": sc, "episodes": m.episodes, "best_heuristic": best.agent,
            "heuristic": b._asdict(), "model": h._asdict(), "lookahead": p._asdict(),
            "oracle_greedy": by["oracle_greedy"].metrics["episode_reward"]._asdict(),
            "gain_pct": (h.mean - b.mean) / abs(b.mean) * 100,
            "cis_apart": h.mean - h.ci95 > b.mean + b.ci95,
            "paired_gain": paired._asdict(),
            "gap_closed_pct": (h.mean - b.mean) / (p.mean - b.mean) * 100,
            "planner_ms": cost[(sc, "lookahead")] * 1e3,
            "model_ms": cost[(sc, model)] * 1e3,
        })
    return rows


def to_markdown(rows: list[dict[str, Any]], model: str) -> str:
    lines = [f"| scenario | episodes | best heuristic | {model} | lookahead planner | gain vs "
             "heuristic | 95% CIs | paired gain | gap closed | planner ms/decision | "
             f"{model} ms/decision |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = lambda d: f"{d['mean']:.1f} ± {d['ci95']:.1f}"  # noqa: E731
        lines.append(
            f"| {r['scenario']} | {r['episodes']} | {r['best_heuristic']} {ci(r['heuristic'])} | "
            f"{ci(r['model'])} | {ci(r['lookahead'])} | {r['gain_pct']:+.1f}% | "
            f"{'apart' if r['cis_apart'] else 'overlap'} | {ci(r['paired_gain'])} | "
            f"{r['gap_closed_pct']:.0f}% | {r['planner_ms']:.1f} | {r['model_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="hybrid")
    p.add_argument("--episodes", nargs="*", default=None,
                   help=f"scenario=episodes pairs (default: {DEFAULT_EPISODES})")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    episodes = dict(DEFAULT_EPISODES)
    if args.episodes:
        episodes = {k: int(v) for k, v in (e.split("=") for e in args.episodes)}

    import ray

    from edge_allocator.train.distributed import evaluate_on_ray
    from edge_allocator.train.evaluate import plot

    agents, model = _agents(args.model)
    temp_dir = tempfile.mkdtemp(prefix="ea-gap-", dir="/tmp")
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, _temp_dir=temp_dir,
             log_to_driver=False)
    try:
        results, cost = [], {}
        for sc in default_scenarios():
            if sc.name in episodes:
                r, c = evaluate_on_ray(agents, [sc], episodes[sc.name], parts=args.cpus)
                results += r
                cost.update(c)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    rows = summarise(results, cost, model)
    text = to_markdown(rows, model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gap_closure.md").write_text(text)
    (out / "gap_closure.json").write_text(json.dumps(
        {"summary": rows, "results": to_json(results)}, indent=2))
    plot(results, out / "gap_closure.png")
    print(text)


if __name__ == "__main__":
    main()
