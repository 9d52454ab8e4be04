"""Ray Tune sweep of the RL fine-tuning stage over seeds, learning rates and (PPO)
entropy coefficients.

Every trial starts from the same behaviour-cloned weights: RL fine-tuning exists to
refine the supervised policy, so the sweep asks which (lr, entropy, seed) refine it and
which make it forget. Starting trials from different weights would mix that question up with how
good each start was. Each trial reports its validation reward before and after RL on the
pipeline's validation seeds, so ``gain`` is a paired difference on the same episodes.
With ``curve_every`` a trial also validates every so many environment steps and reports
each point to Tune (its learning curve, :attr:`SweepResult.curves`).

Ray is started by the caller, not here: ``ray.init(address="local", num_cpus=...)`` on a
laptop, or ``ray.init(address="auto")`` to join a cluster. Tune would otherwise start its
own Ray claiming every core, which a shared machine cannot afford. Ray Tune is imported
inside the functions so that importing this module (and the core library) stays free of
Ray; Ray Serve is never imported.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from edge_allocator.policies import MODEL_KINDS, build_policy
from edge_allocator.train.finetune import (
    CurvePoint,
    RLConfig,
    curve_callback,
    rl_finetune,
    validation_reward,
)

CHECKPOINT_FILE = "model.pt"


class SweepRow(NamedTuple):
    """One trial's numbers."""

    seed: int
    rl_lr: float
    ent_coef: float
    """PPO's entropy coefficient (DQN ignores it)."""
    start_reward: float
    """Validation reward of the common start (the same in every row)."""
    validation_reward: float
    """Validation reward after RL."""
    gain: float
    """validation_reward - start_reward (paired: same seeds)."""
    weight_shift: float
    """How far RL moved the weights: ||w - w_start|| / ||w_start|| over all of them."""
    rl_seconds: float


#: The metrics a trial reports, by name (the fields after seed, rl_lr and ent_coef).
ROW_KEYS = SweepRow._fields
METRIC_KEYS = ROW_KEYS[3:]


class TrialCurve(NamedTuple):
    """One trial's learning curve: validation reward against RL environment steps. The
    first point is the common start (0 steps), the last the trial's final validation."""

    seed: int
    rl_lr: float
    ent_coef: float
    points: list[CurvePoint]


class LrSummary(NamedTuple):
    """Validation reward of one learning rate over the seeds."""

    mean: float
    std: float
    """Sample std (ddof=1); nan with one seed."""
    n: int


@dataclass
class SweepConfig:
    """What the sweep varies (seeds x learning rates x entropy coefficients) and what it
    holds fixed."""

    kind: str = "dqn"
    """'dqn', 'ppo' or 'hybrid' (hybrid is fine-tuned with MaskablePPO like 'ppo')."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    rl_lrs: list[float] = field(default_factory=lambda: [1e-4, 3e-4])
    ent_coefs: list[float] = field(default_factory=lambda: [RLConfig().ppo_ent_coef])
    """PPO's entropy bonus (``RLConfig.ppo_ent_coef``); one value leaves it out of the
    question. DQN has no entropy term: give it one value."""
    rl_steps: int = 2048
    """Per trial. DQN only starts learning after 500 steps (learning_starts), so fewer
    leave the weights untouched; PPO collects at least one ``ppo_n_steps`` rollout."""
    ppo_n_steps: int = RLConfig().ppo_n_steps
    """PPO's rollout length (``RLConfig.ppo_n_steps``)."""
    value_warmup_steps: int = 0
    """PPO: the first so many of rl_steps train the value head alone
    (``RLConfig.ppo_value_warmup_steps``)."""
    validation_episodes: int = 2
    observed_speed: bool = False
    """Fine-tune and validate on the closed-loop environment (hybrid v3's features)."""
    curve_every: int = 0
    """Validate every so many RL steps and report each point to Tune (the learning
    curve); 0: only at the end. Each point costs one validation (validation_episodes)."""
    cpus_per_trial: float = 1.0
    storage_path: Path = Path("runs/tune")
    name: str | None = None
    """Experiment folder under storage_path; ``rl-<kind>`` when left out."""

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"SweepConfig: kind={self.kind!r}; use one of {MODEL_KINDS}")
        if not self.seeds or not self.rl_lrs or not self.ent_coefs:
            raise ValueError("SweepConfig: seeds, rl_lrs and ent_coefs must not be empty")
        if self.kind == "dqn" and len(self.ent_coefs) > 1:
            raise ValueError("SweepConfig: DQN has no entropy coefficient; give one ent_coef")
        if self.curve_every < 0:
            raise ValueError(f"SweepConfig: curve_every={self.curve_every}; must be >= 0")
        self.storage_path = Path(self.storage_path)
        if self.name is None:
            self.name = f"rl-{self.kind}"


@dataclass
class SweepResult:
    """The trials' own numbers, one row per (seed, lr, ent_coef), their learning curves
    and the best trial's weights."""

    kind: str
    rows: list[SweepRow]
    best: SweepRow
    best_state: dict[str, torch.Tensor]
    experiment_path: str
    curves: list[TrialCurve] = field(default_factory=list)

    def per_lr(self) -> dict[float, LrSummary]:
        """lr -> (mean, std, n) of validation reward over seeds. Sample std (ddof=1):
        with a handful of seeds the population formula understates the spread; one seed
        has no spread at all (nan), not a spread of zero."""
        out: dict[float, LrSummary] = {}
        for lr in dict.fromkeys(r.rl_lr for r in self.rows):
            vals = np.array([r.validation_reward for r in self.rows if r.rl_lr == lr])
            std = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
            out[lr] = LrSummary(float(vals.mean()), std, len(vals))
        return out

    def per_setting(self) -> dict[tuple[float, float], LrSummary]:
        """(lr, ent_coef) -> (mean, std, n) of validation reward over seeds, like
        :meth:`per_lr`."""
        out: dict[tuple[float, float], LrSummary] = {}
        for key in dict.fromkeys((r.rl_lr, r.ent_coef) for r in self.rows):
            vals = np.array([r.validation_reward for r in self.rows
                             if (r.rl_lr, r.ent_coef) == key])
            std = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
            out[key] = LrSummary(float(vals.mean()), std, len(vals))
        return out

    def to_markdown(self) -> str:
        lines = [
            "| rl_lr | ent_coef | seed | start reward | validation reward | gain "
            "| weight shift | rl seconds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(self.rows, key=lambda r: r.validation_reward, reverse=True):
            lines.append(
                f"| {r.rl_lr:.0e} | {r.ent_coef:g} | {r.seed} | {r.start_reward:.1f} | "
                f"{r.validation_reward:.1f} | {r.gain:+.1f} | {r.weight_shift:.2%} | "
                f"{r.rl_seconds:.1f} |"
            )
        summary = "; ".join(f"lr {lr:.0e} ent {ent:g}: {m:.1f} ± {s:.1f} (n={n})" if n > 1
                            else f"lr {lr:.0e} ent {ent:g}: {m:.1f} (n=1, no spread)"
                            for (lr, ent), (m, s, n) in self.per_setting().items())
        lines += ["", f"Validation reward per (lr, ent_coef), mean ± std over seeds: {summary}"]
        return "\n".join(lines) + "\n"

    def curves_json(self) -> list[dict[str, Any]]:
        """The learning curves, one entry per trial: its (seed, lr, ent_coef) and the
        points' steps and validation rewards."""
        return [{"seed": c.seed, "rl_lr": c.rl_lr, "ent_coef": c.ent_coef,
                 "env_steps": [p.env_steps for p in c.points],
                 "validation_reward": [p.validation_reward for p in c.points]}
                for c in self.curves]

    def plot_curves(self, path: Path | str) -> Path:
        """Validation reward against RL environment steps, one line per trial, and the
        common start as a dashed line."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for c in sorted(self.curves, key=lambda c: (c.rl_lr, c.ent_coef, c.seed)):
            ax.plot([p.env_steps for p in c.points], [p.validation_reward for p in c.points],
                    "o-", markersize=3,
                    label=f"lr {c.rl_lr:.0e}, ent {c.ent_coef:g}, seed {c.seed}")
        start = self.curves[0].points[0].validation_reward  # the common start, 0 steps
        ax.axhline(start, color="black", linestyle="--", label=f"start {start:.1f}")
        ax.set_xlabel("RL environment steps")
        ax.set_ylabel("validation episode reward")
        ax.set_title(f"{self.kind}: RL fine-tuning learning curves")
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable (like ``evaluate.to_json``); the weights stay out."""
        return {
            "kind": self.kind,
            "experiment_path": self.experiment_path,
            "rows": [r._asdict() for r in self.rows],
            "best": self.best._asdict(),
            "per_setting": [{"rl_lr": lr, "ent_coef": ent, "mean": m,
                             "std": None if math.isnan(s) else s, "n": n}
                            for (lr, ent), (m, s, n) in self.per_setting().items()],
            "per_lr": {str(lr): {"mean": m, "std": None if math.isnan(s) else s, "n": n}
                       for lr, (m, s, n) in self.per_lr().items()},
        }

    def plot(self, path: Path | str) -> Path:
        """Validation reward per (lr, seed) against the common starting reward. Points,
        not bars: rewards are large negative costs, and bars from zero would hide the
        differences that matter."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = sorted(self.rows, key=lambda r: (r.rl_lr, r.ent_coef, r.seed))
        settings = list(dict.fromkeys((r.rl_lr, r.ent_coef) for r in rows))
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 2), 3.4))
        for k, (lr, ent) in enumerate(settings):
            idx = [i for i, r in enumerate(rows) if (r.rl_lr, r.ent_coef) == (lr, ent)]
            ax.plot(idx, [rows[i].validation_reward for i in idx], "o", markersize=8,
                    color=colours[k % len(colours)], label=f"lr {lr:.0e}, ent {ent:g}")
        start = float(np.mean([r.start_reward for r in rows]))
        ax.axhline(start, color="black", linestyle="--", label=f"start {start:.1f}")
        ax.set_xticks(range(len(rows)),
                      [f"lr {r.rl_lr:.0e}\nent {r.ent_coef:g}\nseed {r.seed}" for r in rows],
                      fontsize=7)
        ax.set_ylabel("validation episode reward")
        ax.set_title(f"{self.kind}: RL fine-tuning sweep")
        ax.margins(x=0.2, y=0.2)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _trial(config: dict[str, Any], *, start_state: dict[str, torch.Tensor],
           start_reward: float, architecture: dict[str, Any], kind: str, rl_steps: int,
           validation_episodes: int, observed_speed: bool = False,
           curve_every: int = 0, ppo_n_steps: int = RLConfig().ppo_n_steps,
           value_warmup_steps: int = 0) -> None:
    """One Tune trial: fine-tune (reporting each learning-curve point, ``final`` False),
    validate, report the final numbers with the weights (``final`` True)."""
    from ray import tune

    torch.set_num_threads(1)  # one core per trial; more threads only contend
    module = build_policy(kind, architecture)
    module.load_state_dict(start_state)
    module.eval()
    cfg = RLConfig(steps=rl_steps, lr=float(config["rl_lr"]), seed=int(config["seed"]),
                   ppo_ent_coef=float(config["ent_coef"]), observed_speed=observed_speed,
                   ppo_n_steps=ppo_n_steps,
                   ppo_batch_size=min(RLConfig().ppo_batch_size, ppo_n_steps),
                   ppo_value_warmup_steps=value_warmup_steps)

    def report_point(point: CurvePoint) -> None:
        # same metric name as the final report, so Tune (and ASHA, if used) sees progress
        tune.report({"validation_reward": point.validation_reward,
                     "env_steps": point.env_steps, "final": False})

    callback = (curve_callback(kind, curve_every, validation_episodes, observed_speed,
                               on_point=report_point) if curve_every else None)
    tuned, rl_seconds = rl_finetune(module, kind, cfg, progress=False,  # trains a copy
                                    callback=callback)
    reward = validation_reward(tuned, kind, validation_episodes, observed_speed)
    metrics = {"validation_reward": reward, "start_reward": start_reward,
               "gain": reward - start_reward, "rl_seconds": rl_seconds,
               "weight_shift": _weight_shift(tuned.state_dict(), start_state),
               "env_steps": rl_steps, "final": True}
    with tempfile.TemporaryDirectory() as d:
        torch.save({k: v.detach().cpu() for k, v in tuned.state_dict().items()},
                   Path(d) / CHECKPOINT_FILE)
        # report() copies the folder to the trial's storage before returning
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def _weight_shift(state: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> float:
    """||w - w_start|| / ||w_start|| over every floating-point tensor."""
    keys = [k for k, v in start.items() if v.is_floating_point()]
    diff = sum(float((state[k].detach().cpu() - start[k]).pow(2).sum()) for k in keys)
    norm = sum(float(start[k].pow(2).sum()) for k in keys)
    return math.sqrt(diff / norm) if norm > 0 else math.sqrt(diff)


def _describe(error: BaseException) -> str:
    """The trial's own exception, not Ray's wrapper (whose text is the whole remote
    traceback with terminal colour codes)."""
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {cause}"


def _row(config: dict[str, Any], metrics: dict[str, Any]) -> SweepRow:
    """A finished trial's (seed, lr, ent_coef) and reported numbers."""
    return SweepRow(int(config["seed"]), float(config["rl_lr"]), float(config["ent_coef"]),
                    *(float(metrics[k]) for k in METRIC_KEYS))


def _curve(row: SweepRow, history: list[dict[str, Any]], rl_steps: int) -> TrialCurve:
    """A trial's learning curve from everything it reported (Tune's record of it): the
    start, each intermediate point, the final validation."""
    points = [CurvePoint(0, row.start_reward)]
    points += [CurvePoint(int(h["env_steps"]), float(h["validation_reward"]))
               for h in history if not h.get("final") and "env_steps" in h]
    points.append(CurvePoint(rl_steps, row.validation_reward))
    return TrialCurve(row.seed, row.rl_lr, row.ent_coef, points)


def run_sweep(start_state: dict[str, torch.Tensor], architecture: dict[str, Any],
              cfg: SweepConfig, start_reward: float | None = None) -> SweepResult:
    """Fine-tune ``start_state`` once per (seed, lr, ent_coef) in a Tune grid; needs Ray
    running.

    ``start_reward``: the start's validation reward if the caller has it (the pipeline
    does); otherwise it is computed here, once, not in every trial (same weights, same
    seeds, same number).

    ``start_state`` goes into the object store once (``tune.with_parameters``), not into
    every trial's config, which Tune would copy into each trial's params.json too.
    Raises RuntimeError naming each trial that failed or reported nothing.
    """
    import ray
    from ray import tune

    if not ray.is_initialized():
        raise RuntimeError("run_sweep: start Ray first, e.g. ray.init(address='local', "
                           "num_cpus=2) on a laptop or ray.init(address='auto') on a cluster")
    state = {k: v.detach().cpu().clone() for k, v in start_state.items()}
    if start_reward is None:
        start = build_policy(cfg.kind, architecture)
        start.load_state_dict(state)
        start_reward = validation_reward(start.eval(), cfg.kind, cfg.validation_episodes,
                                         cfg.observed_speed)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, start_state=state, start_reward=float(start_reward),
                             architecture=dict(architecture),
                             kind=cfg.kind, rl_steps=cfg.rl_steps,
                             validation_episodes=cfg.validation_episodes,
                             observed_speed=cfg.observed_speed,
                             curve_every=cfg.curve_every, ppo_n_steps=cfg.ppo_n_steps,
                             value_warmup_steps=cfg.value_warmup_steps),
        {"cpu": cfg.cpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"seed": tune.grid_search(list(cfg.seeds)),
                     "rl_lr": tune.grid_search(list(cfg.rl_lrs)),
                     "ent_coef": tune.grid_search(list(cfg.ent_coefs))},
        tune_config=tune.TuneConfig(metric="validation_reward", mode="max"),
        run_config=tune.RunConfig(storage_path=str(cfg.storage_path.resolve()), name=cfg.name),
    )
    grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    failed = [f"trial {Path(r.path).name} (seed={(r.config or {}).get('seed')}, "
              f"rl_lr={(r.config or {}).get('rl_lr')}, "
              f"ent_coef={(r.config or {}).get('ent_coef')}): {_describe(r.error)} "
              f"[traceback: {r.path}/error.txt]" for r in results if r.error]
    failed += [f"trial {Path(r.path).name}: finished without reporting validation_reward"
               for r in results if not r.error and not (r.metrics or {}).get("final")]
    if failed:
        raise RuntimeError(f"run_sweep: {len(failed)} of {len(grid)} trials failed "
                           f"(see {grid.experiment_path}):\n" + "\n".join(failed))
    rows = [_row(r.config or {}, r.metrics or {}) for r in results]
    for row in rows:
        if not all(math.isfinite(v) for v in row[3:]):
            raise RuntimeError(f"run_sweep: trial seed={row.seed} rl_lr={row.rl_lr} "
                               f"ent_coef={row.ent_coef} "
                               f"reported a non-finite number: {row._asdict()}")
    best_result = grid.get_best_result()  # metric/mode from TuneConfig
    best_config = best_result.config or {}
    best = next(row for row in rows if row.seed == int(best_config["seed"])
                and row.rl_lr == float(best_config["rl_lr"])
                and row.ent_coef == float(best_config["ent_coef"]))
    if best_result.checkpoint is None:
        raise RuntimeError(f"run_sweep: best trial {Path(best_result.path).name} "
                           "has no checkpoint")
    with best_result.checkpoint.as_directory() as d:
        best_state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    curves = []
    for row, r in zip(rows, results, strict=True):
        frame = r.metrics_dataframe  # every report of the trial, in order
        history = frame.to_dict("records") if frame is not None else []
        curves.append(_curve(row, history, cfg.rl_steps))
    return SweepResult(cfg.kind, rows, best, best_state, str(grid.experiment_path), curves)
