"""Which expert to clone: the one-step oracle or the lookahead planner? Same states
budget, same training, paired evaluation on the same held-out seeds.

    python -m benchmarks.expert_choice          # ~10 min on 2 cores

Rows: hybrid cloned from oracle labels (the shipped recipe), and from the planner's
choices mixed into the target with weight w (BCConfig.imitation_weight).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "quality"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=60, help="demonstration episodes")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0])
    args = p.parse_args()

    import ray
    import torch

    from edge_allocator.policies import build_policy
    from edge_allocator.train.agents import baseline_agents, model_agents
    from edge_allocator.train.bc import BCConfig, train_bc
    from edge_allocator.train.distributed import collect_on_ray, evaluate_on_ray
    from edge_allocator.train.evaluate import default_scenarios, mean_ci
    from edge_allocator.train.finetune import env_config

    torch.set_num_threads(1)
    temp_dir = tempfile.mkdtemp(prefix="ea-expert-", dir="/tmp")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp_dir,
             log_to_driver=False)
    try:
        timing = {}
        demos = {}
        for expert in ("oracle", "lookahead"):
            t0 = time.perf_counter()
            demos[expert] = collect_on_ray(env_config("hybrid"), args.episodes, seed=0,
                                           expert=expert, parts=2)
            timing[expert] = time.perf_counter() - t0
        variants = {"oracle labels": ("oracle", 0.0)}
        variants.update({f"planner, w={w:g}": ("lookahead", w) for w in args.weights})
        modules = {}
        for name, (expert, w) in variants.items():
            torch.manual_seed(0)
            m = build_policy("hybrid")
            train_bc(m, "hybrid", demos[expert], BCConfig(epochs=args.epochs, imitation_weight=w),
                     progress=False)
            modules[name] = (m, "hybrid")
        scen = [s for s in default_scenarios() if s.name in ("synthetic-10to50", "melbourne")]
        agents = {"greedy_eft": baseline_agents()["greedy_eft"], **model_agents(modules)}
        results, _ = evaluate_on_ray(agents, scen, args.eval_episodes, parts=2)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    lines = [f"Hybrid cloned on {args.episodes} episodes of demonstrations "
             f"({len(demos['oracle'])} decisions), {args.epochs} epochs; "
             f"{args.eval_episodes} held-out episodes per scenario. Labelling took "
             f"{timing['oracle']:.0f} s (oracle) and {timing['lookahead']:.0f} s (planner) "
             "on 2 Ray tasks.", "",
             "| scenario | labels | episode reward | paired vs oracle labels |",
             "|---|---|---|---|"]
    rows = []
    for sc in dict.fromkeys(r.scenario for r in results):
        by = {r.agent: r for r in results if r.scenario == sc}
        ref = by["oracle labels"]
        for name, r in by.items():
            d = mean_ci([a - b for a, b in zip(r.episode_rewards, ref.episode_rewards)])
            m = r.metrics["episode_reward"]
            lines.append(f"| {sc} | {name} | {m.mean:.1f} ± {m.ci95:.1f} | "
                         f"{d.mean:+.1f} ± {d.ci95:.1f} |")
            rows.append({"scenario": sc, "labels": name, "mean": m.mean, "ci95": m.ci95,
                         "paired_vs_oracle": d._asdict()})
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "expert_choice.md").write_text(text)
    (RESULTS / "expert_choice.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
