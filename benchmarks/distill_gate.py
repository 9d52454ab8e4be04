"""The shipping gate of a distilled (or any candidate) hybrid: its held-out reward must
stay within 1% of hybrid v1's, paired on the same seeds, in EVERY scenario.

Both models (and greedy-EFT, the best heuristic, for context) play the same held-out
seeds of each scenario; the gate is on the mean paired difference (candidate − v1) per
episode, relative to |v1's mean|; its 95% CI is reported alongside.

    python -m benchmarks.distill_gate runs/distill/models/hybrid/2 [--episodes 100]

Writes ``<out>/gate.{md,json}`` (default benchmarks/results/training/distill-hybrid/) and
exits 0 when the candidate passes everywhere, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from edge_allocator.constants import MODELS_DIR

OUT = Path(__file__).parent / "results" / "training" / "distill-hybrid"
TOLERANCE_PCT = 1.0


def gate(results: list[Any], teacher: str, candidate: str) -> list[dict[str, Any]]:
    from edge_allocator.train.evaluate import mean_ci

    rows = []
    for sc in dict.fromkeys(r.scenario for r in results):
        by = {r.agent: r for r in results if r.scenario == sc}
        t, c = by[teacher], by[candidate]
        d = mean_ci([a - b for a, b in zip(c.episode_rewards, t.episode_rewards)])
        base = abs(t.metrics["episode_reward"].mean)
        rel, rel_ci = d.mean / base * 100, d.ci95 / base * 100
        rows.append({
            "scenario": sc, "episodes": t.episodes,
            "teacher": t.metrics["episode_reward"]._asdict(),
            "candidate": c.metrics["episode_reward"]._asdict(),
            "greedy_eft": by["greedy_eft"].metrics["episode_reward"]._asdict()
            if "greedy_eft" in by else None,
            "paired_diff": d._asdict(), "paired_pct": rel, "paired_pct_ci95": rel_ci,
            "passes": rel >= -TOLERANCE_PCT,
            "passes_at_ci_lower_bound": rel - rel_ci >= -TOLERANCE_PCT,
        })
    return rows


def to_markdown(rows: list[dict[str, Any]], teacher: str, candidate: str) -> str:
    ci = lambda d: f"{d['mean']:.1f} ± {d['ci95']:.1f}"  # noqa: E731
    lines = [f"| scenario | episodes | greedy_eft | {teacher} | {candidate} | paired "
             f"{candidate} − {teacher} | relative | within {TOLERANCE_PCT:g}% (mean) | "
             "within (CI lower bound) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['episodes']} | "
            f"{ci(r['greedy_eft']) if r['greedy_eft'] else ''} | {ci(r['teacher'])} | "
            f"{ci(r['candidate'])} | {ci(r['paired_diff'])} | {r['paired_pct']:+.2f}% ± "
            f"{r['paired_pct_ci95']:.2f} | {'yes' if r['passes'] else '**no**'} | "
            f"{'yes' if r['passes_at_ci_lower_bound'] else 'no'} |")
    verdict = all(r["passes"] for r in rows)
    lines += ["", f"Gate (mean paired reward within {TOLERANCE_PCT:g}% of {teacher} in every "
              f"scenario): **{'PASS' if verdict else 'FAIL'}**"]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("candidate", help="artifact folder of the candidate hybrid")
    p.add_argument("--teacher", default=str(MODELS_DIR / "hybrid" / "1"))
    p.add_argument("--episodes", type=int, default=100, help="held-out episodes per scenario")
    p.add_argument("--scenarios", nargs="*", default=None, help="default: all four")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    import torch

    from edge_allocator.train.agents import baseline_agents, model_agents
    from edge_allocator.train.distill import load_teacher
    from edge_allocator.train.evaluate import default_scenarios, evaluate

    torch.set_num_threads(1)
    t_mod, t_art = load_teacher(Path(args.teacher))
    c_mod, c_art = load_teacher(Path(args.candidate))
    teacher, candidate = f"hybrid-v{t_art.version}", f"candidate-v{c_art.version}"
    agents = {"greedy_eft": baseline_agents()["greedy_eft"],
              **model_agents({teacher: (t_mod, "hybrid"), candidate: (c_mod, "hybrid")})}
    t0 = time.perf_counter()
    scenarios = [s for s in default_scenarios()
                 if not args.scenarios or s.name in args.scenarios]
    results = evaluate(agents, scenarios, episodes=args.episodes)
    rows = gate(results, teacher, candidate)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = to_markdown(rows, teacher, candidate)
    (out / "gate.md").write_text(
        f"Candidate: `{c_art.path}` ({c_art.manifest['architecture']}); teacher: "
        f"`{t_art.path}`. {args.episodes} held-out episodes per scenario (seeds from "
        f"1,000,000), {time.perf_counter() - t0:.0f} s.\n\n" + table)
    (out / "gate.json").write_text(json.dumps(
        {"candidate": str(c_art.path), "teacher": str(t_art.path),
         "candidate_files": c_art.manifest["files"], "episodes": args.episodes,
         "tolerance_pct": TOLERANCE_PCT, "rows": rows,
         "passes": all(r["passes"] for r in rows)}, indent=2))
    print(table)
    sys.exit(0 if all(r["passes"] for r in rows) else 1)


if __name__ == "__main__":
    main()
