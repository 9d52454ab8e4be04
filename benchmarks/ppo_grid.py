"""Issue 12 §3's grid from its separate ``benchmarks.ppo_v3`` runs: one learning-curve
table and one plot over every (learning rate, entropy coefficient) point.

The points were run as separate sweeps of one trial each (three at a time on two cores,
each its own local Ray), so each has its own ``curve.json``; this only gathers them:

    python -m benchmarks.ppo_grid [--dirs DIR ...] [--out DIR]

Writes ``<out>/grid.{md,png}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PPO = Path(__file__).parent / "results" / "training" / "closedloop" / "ppo"
DIRS = [PPO, *sorted((PPO / "grid").glob("lr*"))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dirs", nargs="+", type=Path, default=DIRS)
    p.add_argument("--out", type=Path, default=PPO / "grid")
    args = p.parse_args()
    curves, starts = [], set()
    for d in args.dirs:
        doc = json.loads((d / "curve.json").read_text())
        starts.add(round(doc["start_reward"], 6))
        curves += doc["curves"]
    if len(starts) != 1:  # every gain is paired against one start
        raise SystemExit(f"the runs start from different rewards: {sorted(starts)}")
    curves.sort(key=lambda c: (c["rl_lr"], c["ent_coef"]))
    steps = curves[0]["env_steps"]
    start = starts.pop()
    lines = [f"PPO fine-tuning of hybrid v3, validation reward by env steps (start {start:.2f};"
             " closed loop, 6 episodes per validation scenario, seeds from 500000; one seed"
             " per point)", "",
             "| lr | ent_coef | " + " | ".join(f"{s:,}" for s in steps) + " | gain |",
             "|---|---|" + "--:|" * (len(steps) + 1)]
    for c in curves:
        v = c["validation_reward"]
        lines.append(f"| {c['rl_lr']:g} | {c['ent_coef']:g} | "
                     + " | ".join(f"{x:.1f}" for x in v) + f" | {v[-1] - start:+.1f} |")
    best = max(curves, key=lambda c: c["validation_reward"][-1])
    lines += ["", f"Best final point: lr {best['rl_lr']:g}, ent_coef {best['ent_coef']:g}, "
              f"{best['validation_reward'][-1]:.1f} ({best['validation_reward'][-1] - start:+.1f})."
              + (" No point beats the start: nothing is kept."
                 if best["validation_reward"][-1] <= start else "")]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grid.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for c in curves:
        ax.plot(c["env_steps"], c["validation_reward"], marker="o",
                label=f"lr {c['rl_lr']:g}, ent {c['ent_coef']:g}")
    ax.axhline(start, color="k", linestyle="--", linewidth=1, label="start (v3, cloned)")
    ax.set(xlabel="PPO env steps", ylabel="validation reward",
           title="PPO on hybrid v3 (closed loop)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "grid.png", dpi=110)
    plt.close(fig)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
