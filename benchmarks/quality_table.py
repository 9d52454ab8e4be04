"""Decision-quality summary from the shipped manifests, every version of every model
(every model was evaluated on the
same held-out seeds, so rows are comparable): mean episode reward ± 95% CI, the gap to
the best heuristic, and the share of the heuristic → oracle gap the model closes. A
model that an alias also names (hybrid_gat: hybrid_attention) says so in its row.

    python -m benchmarks.quality_table
"""

from __future__ import annotations

from edge_allocator.config import DEFAULT_ALIASES
from edge_allocator.constants import MODELS_DIR
from edge_allocator.policies.heuristics import HEURISTIC_NAMES
from edge_allocator.runtime.artifacts import load_artifact, model_names, versions


def main() -> None:
    rows: dict[tuple[str, str], dict] = {}
    for name, version in ((n, v) for n in model_names(MODELS_DIR)
                          for v in versions(MODELS_DIR, n)):
        art = load_artifact(MODELS_DIR, name, version)
        for r in art.manifest["evaluation"]:
            aliases = "".join(f" (also answers {a})" for a, m in DEFAULT_ALIASES.items()
                              if m == name)
            agent = (r["agent"] if r["agent"] not in ("dqn", "ppo", "hybrid")
                     else f"{name} v{art.version}{aliases}")
            rows[(r["scenario"], agent)] = r["metrics"]
    scenarios = list(dict.fromkeys(s for s, _ in rows))
    print("| scenario | best heuristic | oracle (greedy, hidden state) | model | model reward "
          "| vs best heuristic | gap closed |")
    print("|---|---|---|---|---|---|---|")
    for sc in scenarios:
        heur = {a: m for (s, a), m in rows.items() if s == sc and a in HEURISTIC_NAMES}
        best = max(heur, key=lambda a: heur[a]["episode_reward"]["mean"])
        b = heur[best]["episode_reward"]
        o = rows[(sc, "oracle_greedy")]["episode_reward"]
        for (s, a), m in rows.items():
            if s != sc or a in HEURISTIC_NAMES or a == "oracle_greedy":
                continue
            r = m["episode_reward"]
            gain = (r["mean"] - b["mean"]) / abs(b["mean"]) * 100
            closed = (r["mean"] - b["mean"]) / (o["mean"] - b["mean"]) * 100
            apart = (r["mean"] - r["ci95"] > b["mean"] + b["ci95"]
                     or r["mean"] + r["ci95"] < b["mean"] - b["ci95"])
            sep = "CIs apart" if apart else "CIs overlap"
            print(f"| {sc} | {best} {b['mean']:.1f} ± {b['ci95']:.1f} "
                  f"| {o['mean']:.1f} ± {o['ci95']:.1f} "
                  f"| {a} | {r['mean']:.1f} ± {r['ci95']:.1f} "
                  f"| {gain:+.1f}% ({sep}) | {closed:.0f}% |")


if __name__ == "__main__":
    main()
