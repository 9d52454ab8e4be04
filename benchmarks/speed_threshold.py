"""Which learned speeds to apply to a policy trained on nominal capacities.

The service scales a node's capacity in the features by its speed learned from
/v1/feedback (``edge_allocator.speeds``). The served hybrids (v1, and v2, the default)
were trained on nominal capacities. This runs them on the held-out seeds of every
scenario without feedback (every speed 1.0: the cold start) and with speeds learned
during the episode through the same estimator, applied only beyond a factor of 1.0
(``EnvConfig.speed_apply_beyond``, as ``node_speeds.apply_beyond`` in service; 1.0
applies every estimate). The same seed gives the same network and arrivals either way,
so each row is paired with its cold start:

    python -m benchmarks.speed_threshold [--thresholds 1 1.5 2 3 4] [--episodes N]

One process, one torch thread. Writes benchmarks/results/speed_threshold.{md,json}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from edge_allocator.constants import MODELS_DIR

RESULTS = Path(__file__).parent / "results"
#: As benchmarks.gap_closure and benchmarks.closedloop.
EPISODES = {"synthetic-10to50": 60, "synthetic-100": 20, "synthetic-500": 10, "melbourne": 30}
VERSIONS = ("1", "2")
COLD = "cold"


def main() -> None:
    import torch

    from edge_allocator.train.agents import model_agents
    from edge_allocator.train.distill import load_teacher
    from edge_allocator.train.evaluate import default_scenarios, evaluate, mean_ci

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--thresholds", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0, 4.0])
    p.add_argument("--episodes", type=int, default=0, help="per scenario (default: EPISODES)")
    p.add_argument("--scenarios", nargs="*", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    models = {v: load_teacher(MODELS_DIR / "hybrid" / v)[0] for v in VERSIONS}
    conditions: list[tuple[str, bool, float]] = [(COLD, False, 1.0)] + [
        (f"beyond {t:g}x", True, t) for t in args.thresholds]
    rows, started = [], time.perf_counter()
    for cold_sc in default_scenarios():
        if args.scenarios and cold_sc.name not in args.scenarios:
            continue
        n = args.episodes or EPISODES[cold_sc.name]
        rewards: dict[tuple[str, str], list[float]] = {}
        for label, observed, beyond in conditions:
            sc = dataclasses.replace(cold_sc, config=dataclasses.replace(
                cold_sc.config, observed_speed=observed, speed_apply_beyond=beyond))
            agents = model_agents({f"v{v}": (m, "hybrid") for v, m in models.items()})
            for r in evaluate(agents, [sc], episodes=n, progress=False):
                rewards[(r.agent, label)] = list(r.episode_rewards)
        for v in VERSIONS:
            base = rewards[(f"v{v}", COLD)]
            for label, _, beyond in conditions:
                got = rewards[(f"v{v}", label)]
                rows.append({"scenario": cold_sc.name, "episodes": n, "version": v,
                             "condition": label, "beyond": None if label == COLD else beyond,
                             "reward": mean_ci(got)._asdict(),
                             "paired_vs_cold": mean_ci([a - b for a, b in zip(got, base)])
                             ._asdict()})
        print(f"{cold_sc.name}: {n} episodes, {time.perf_counter() - started:.0f} s", flush=True)
    lines = ["Learned speeds applied to hybrids trained on nominal capacities, only beyond a "
             "factor of 1.0 (`python -m benchmarks.speed_threshold`): mean episode reward ± "
             "95% CI, and paired against the same version's cold start (no feedback) on the "
             "same seeds.", "",
             "| scenario | episodes | version | speeds applied | reward | paired vs cold |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        rw, d = r["reward"], r["paired_vs_cold"]
        paired = "" if r["condition"] == COLD else f"{d['mean']:+.1f} ± {d['ci95']:.1f}"
        lines.append(f"| {r['scenario']} | {r['episodes']} | v{r['version']} | "
                     f"{'none (cold)' if r['condition'] == COLD else r['condition']} | "
                     f"{rw['mean']:.1f} ± {rw['ci95']:.1f} | {paired} |")
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "speed_threshold.md").write_text(table)
    (RESULTS / "speed_threshold.json").write_text(json.dumps(
        {"thresholds": args.thresholds, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
