"""Score agents on held-out seeds of each scenario, with 95% confidence intervals.

Held-out means seeds from ``EVAL_SEED_BASE`` up; training only ever uses seeds below it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, TypedDict

import numpy as np
from scipy import stats
from tqdm import tqdm

from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig
from edge_allocator.train.agents import Agent, AgentFactory

EVAL_SEED_BASE = 1_000_000
Metric = Literal["episode_reward", "completion_ms", "miss_rate", "energy_j"]
METRICS: tuple[Metric, ...] = ("episode_reward", "completion_ms", "miss_rate", "energy_j")


@dataclass(frozen=True)
class EvalScenario:
    name: str
    config: EnvConfig


def default_scenarios(tasks_per_episode: int = 200,
                      observed_speed: bool = False) -> list[EvalScenario]:
    """Training-size synthetic, two sizes never seen in training, and Melbourne.
    ``observed_speed``: the closed loop (``EnvConfig.observed_speed``), each node's
    capacity in the features scaled by its speed learned from earlier completions; the
    same seeds give the same networks and arrivals either way (paired)."""
    t, o = tasks_per_episode, observed_speed
    return [
        EvalScenario("synthetic-10to50", EnvConfig("synthetic", tasks_per_episode=t,
                                                   observed_speed=o)),
        EvalScenario("synthetic-100", EnvConfig("synthetic", min_nodes=100, max_nodes=100,
                                                tasks_per_episode=t, observed_speed=o)),
        EvalScenario("synthetic-500", EnvConfig("synthetic", min_nodes=500, max_nodes=500,
                                                tasks_per_episode=t, observed_speed=o)),
        EvalScenario("melbourne", EnvConfig("melbourne", tasks_per_episode=t,
                                            observed_speed=o)),
    ]


class MetricCI(NamedTuple):
    mean: float
    ci95: float  # half-width

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.ci95:.3f}"


class AgentResult(NamedTuple):
    scenario: str
    agent: str
    episodes: int
    metrics: dict[str, MetricCI]
    episode_rewards: tuple[float, ...] = ()  # per seed, in seed order: paired comparisons


class EpisodeMetrics(TypedDict):
    """One episode's numbers (the keys are ``METRICS``)."""

    episode_reward: float
    completion_ms: float
    """Mean over completed tasks (nan when none completed)."""
    miss_rate: float
    energy_j: float
    """Mean over completed tasks (nan when none completed)."""


def mean_ci(values: Sequence[float]) -> MetricCI:
    """Mean and the half-width of its 95% Student-t confidence interval (nan for n < 2)."""
    a = np.asarray(values, dtype=np.float64)
    if len(a) < 2:
        return MetricCI(float(a.mean()), math.nan)
    half = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a))
    return MetricCI(float(a.mean()), float(half))


def run_episode(env: EdgeAllocationEnv, agent: Agent, seed: int) -> EpisodeMetrics:
    env.reset(seed=seed)
    total = 0.0
    while True:
        g = env.graph()
        s = np.where(g.mask, agent.scores(g), -np.inf)
        _, reward, _, truncated, _ = env.step(int(np.argmax(s)))
        total += reward
        if truncated:
            break
    o = env.outcomes
    done = [x for x in o if not x.dropped]
    return EpisodeMetrics(
        episode_reward=total,
        completion_ms=float(np.mean([x.completion_ms for x in done])) if done else math.nan,
        miss_rate=float(np.mean([x.missed for x in o])),
        energy_j=float(np.mean([x.energy_j for x in done])) if done else math.nan,
    )


def evaluate(
    agents: dict[str, AgentFactory],
    scenarios: Sequence[EvalScenario],
    episodes: int = 10,
    seed_base: int = EVAL_SEED_BASE,
    progress: bool = True,
) -> list[AgentResult]:
    """Every agent on the same seeds of every scenario (paired comparison). A factory
    gets (env, max nodes of the scenario) and returns None where the agent cannot run
    (a flat model on a network larger than its input)."""
    results = []
    total = len(agents) * len(scenarios) * episodes
    bar = tqdm(total=total, desc="evaluate", disable=not progress)
    for sc in scenarios:
        for name, factory in agents.items():
            env = EdgeAllocationEnv(sc.config)
            agent = factory(env, max(sc.config.max_nodes, env.pad_to))
            if agent is None:
                bar.update(episodes)
                continue
            rows = [run_episode(env, agent, seed_base + k) for k in range(episodes)]
            bar.update(episodes)
            results.append(summarise(sc.name, name, rows))
    bar.close()
    return results


def summarise(scenario: str, agent: str, rows: Sequence[EpisodeMetrics]) -> AgentResult:
    """Per-episode metrics (in seed order) -> means with 95% CIs."""
    return AgentResult(scenario, agent, len(rows),
                       {m: mean_ci([r[m] for r in rows]) for m in METRICS},
                       tuple(r["episode_reward"] for r in rows))


def to_markdown(results: Sequence[AgentResult]) -> str:
    lines = [
        "| scenario | agent | episode reward | completion ms | miss rate | energy J |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.metrics
        lines.append(
            f"| {r.scenario} | {r.agent} | {m['episode_reward'].mean:.1f} ± "
            f"{m['episode_reward'].ci95:.1f} | {m['completion_ms'].mean:.0f} ± "
            f"{m['completion_ms'].ci95:.0f} | {m['miss_rate'].mean:.3f} ± "
            f"{m['miss_rate'].ci95:.3f} | {m['energy_j'].mean:.2f} ± {m['energy_j'].ci95:.2f} |"
        )
    return "\n".join(lines) + "\n"


def to_json(results: Sequence[AgentResult]) -> list[dict[str, object]]:
    return [
        {"scenario": r.scenario, "agent": r.agent, "episodes": r.episodes,
         "metrics": {k: {"mean": v.mean, "ci95": v.ci95} for k, v in r.metrics.items()},
         "episode_rewards": list(r.episode_rewards)}
        for r in results
    ]


def paired_gaps(results: Sequence[AgentResult], baselines: Sequence[str]) -> str:
    """Each non-baseline agent minus the best baseline of its scenario, episode by
    episode on the same seeds: the mean difference with its 95% CI. Paired, so the
    variation between networks (which dwarfs the difference between policies on the
    synthetic scenario) cancels out."""
    lines = ["| scenario | agent | best baseline | paired gain in episode reward | relative |",
             "|---|---|---|---|---|"]
    for sc in dict.fromkeys(r.scenario for r in results):
        rows = [r for r in results if r.scenario == sc]
        base = [r for r in rows if r.agent in baselines]
        if not base:
            continue
        best = max(base, key=lambda r: r.metrics["episode_reward"].mean)
        for r in rows:
            if r.agent in baselines or r.agent == "oracle_greedy" or not r.episode_rewards:
                continue
            d = mean_ci([a - b for a, b in zip(r.episode_rewards, best.episode_rewards)])
            rel = d.mean / abs(best.metrics["episode_reward"].mean) * 100
            lines.append(f"| {sc} | {r.agent} | {best.agent} | {d.mean:+.1f} ± {d.ci95:.1f} | "
                         f"{rel:+.1f}% |")
    return "\n".join(lines) + "\n"


def plot(results: Sequence[AgentResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(r.scenario for r in results))
    agents = list(dict.fromkeys(r.agent for r in results))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.5 * len(scenarios), 4), squeeze=False)
    for ax, sc in zip(axes[0], scenarios):
        rows = [r for r in results if r.scenario == sc]
        names = [r.agent for r in rows]
        means = [r.metrics["episode_reward"].mean for r in rows]
        errs = [r.metrics["episode_reward"].ci95 for r in rows]
        colors = [f"C{agents.index(n)}" for n in names]
        ax.barh(names, means, xerr=errs, color=colors)
        ax.set_title(sc)
        ax.set_xlabel("mean episode reward (higher is better)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: Sequence[AgentResult], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    from edge_allocator.policies.heuristics import HEURISTIC_NAMES

    (out_dir / "evaluation.md").write_text(
        to_markdown(results) + "\nPaired against the best heuristic (same seeds):\n\n"
        + paired_gaps(results, HEURISTIC_NAMES))
    (out_dir / "evaluation.json").write_text(json.dumps(to_json(results), indent=2))
    plot(results, out_dir / "evaluation.png")
