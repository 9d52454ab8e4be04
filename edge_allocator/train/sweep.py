"""Ray Tune sweep of the RL fine-tuning stage over learning rates and seeds.

Every trial starts from the same behaviour-cloned weights: RL fine-tuning exists to
refine the supervised policy, so the sweep asks which (lr, seed) refine it and which make
it forget. Starting trials from different weights would mix that question up with how
good each start was. Each trial reports its validation reward before and after RL on the
pipeline's validation seeds, so ``gain`` is a paired difference on the same episodes.

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
from edge_allocator.train.finetune import RLConfig, rl_finetune, validation_reward

CHECKPOINT_FILE = "model.pt"


class SweepRow(NamedTuple):
    """One trial's numbers."""

    seed: int
    rl_lr: float
    start_reward: float
    """Validation reward of the common start (the same in every row)."""
    validation_reward: float
    """Validation reward after RL."""
    gain: float
    """validation_reward - start_reward (paired: same seeds)."""
    rl_seconds: float


#: The metrics a trial reports, by name (the fields after seed and rl_lr).
ROW_KEYS = SweepRow._fields
METRIC_KEYS = ROW_KEYS[2:]


class LrSummary(NamedTuple):
    """Validation reward of one learning rate over the seeds."""

    mean: float
    std: float
    """Sample std (ddof=1); nan with one seed."""
    n: int


@dataclass
class SweepConfig:
    """What the sweep varies (seeds x learning rates) and what it holds fixed."""

    kind: str = "dqn"
    """'dqn', 'ppo' or 'hybrid' (hybrid is fine-tuned with MaskablePPO like 'ppo')."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    rl_lrs: list[float] = field(default_factory=lambda: [1e-4, 3e-4])
    rl_steps: int = 2048
    """Per trial. DQN only starts learning after 500 steps (learning_starts), so fewer
    leave the weights untouched; PPO collects at least one 1,024-step rollout."""
    validation_episodes: int = 2
    cpus_per_trial: float = 1.0
    storage_path: Path = Path("runs/tune")
    name: str | None = None
    """Experiment folder under storage_path; ``rl-<kind>`` when left out."""

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"SweepConfig: kind={self.kind!r}; use one of {MODEL_KINDS}")
        if not self.seeds or not self.rl_lrs:
            raise ValueError("SweepConfig: seeds and rl_lrs must not be empty")
        self.storage_path = Path(self.storage_path)
        if self.name is None:
            self.name = f"rl-{self.kind}"


@dataclass
class SweepResult:
    """The trials' own numbers, one row per (seed, lr), and the best trial's weights."""

    kind: str
    rows: list[SweepRow]
    best: SweepRow
    best_state: dict[str, torch.Tensor]
    experiment_path: str

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

    def to_markdown(self) -> str:
        lines = [
            "| rl_lr | seed | start reward | validation reward | gain | rl seconds |",
            "|---|---|---|---|---|---|",
        ]
        for r in sorted(self.rows, key=lambda r: r.validation_reward, reverse=True):
            lines.append(
                f"| {r.rl_lr:.0e} | {r.seed} | {r.start_reward:.1f} | "
                f"{r.validation_reward:.1f} | {r.gain:+.1f} | {r.rl_seconds:.1f} |"
            )
        summary = "; ".join(f"lr {lr:.0e}: {m:.1f} ± {s:.1f} (n={n})" if n > 1
                            else f"lr {lr:.0e}: {m:.1f} (n=1, no spread)"
                            for lr, (m, s, n) in self.per_lr().items())
        lines += ["", f"Validation reward per lr, mean ± std over seeds: {summary}"]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable (like ``evaluate.to_json``); the weights stay out."""
        return {
            "kind": self.kind,
            "experiment_path": self.experiment_path,
            "rows": [r._asdict() for r in self.rows],
            "best": self.best._asdict(),
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
        rows = sorted(self.rows, key=lambda r: (r.rl_lr, r.seed))
        lrs = list(dict.fromkeys(r.rl_lr for r in rows))
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(rows) + 2), 3.4))
        for lr in lrs:
            idx = [i for i, r in enumerate(rows) if r.rl_lr == lr]
            ax.plot(idx, [rows[i].validation_reward for i in idx], "o", markersize=8,
                    color=colours[lrs.index(lr) % len(colours)], label=f"lr {lr:.0e}")
        start = float(np.mean([r.start_reward for r in rows]))
        ax.axhline(start, color="black", linestyle="--", label=f"start {start:.1f}")
        ax.set_xticks(range(len(rows)),
                      [f"lr {r.rl_lr:.0e}\nseed {r.seed}" for r in rows], fontsize=8)
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
           validation_episodes: int) -> None:
    """One Tune trial: fine-tune, validate, report once."""
    from ray import tune

    torch.set_num_threads(1)  # one core per trial; more threads only contend
    module = build_policy(kind, architecture)
    module.load_state_dict(start_state)
    module.eval()
    cfg = RLConfig(steps=rl_steps, lr=float(config["rl_lr"]), seed=int(config["seed"]))
    tuned, rl_seconds = rl_finetune(module, kind, cfg, progress=False)  # trains a copy
    reward = validation_reward(tuned, kind, validation_episodes)
    metrics = {"validation_reward": reward, "start_reward": start_reward,
               "gain": reward - start_reward, "rl_seconds": rl_seconds}
    with tempfile.TemporaryDirectory() as d:
        torch.save({k: v.detach().cpu() for k, v in tuned.state_dict().items()},
                   Path(d) / CHECKPOINT_FILE)
        # report() copies the folder to the trial's storage before returning
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def _describe(error: BaseException) -> str:
    """The trial's own exception, not Ray's wrapper (whose text is the whole remote
    traceback with terminal colour codes)."""
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {cause}"


def _row(config: dict[str, Any], metrics: dict[str, Any]) -> SweepRow:
    """A finished trial's (seed, lr) and reported numbers."""
    return SweepRow(int(config["seed"]), float(config["rl_lr"]),
                    *(float(metrics[k]) for k in METRIC_KEYS))


def run_sweep(start_state: dict[str, torch.Tensor], architecture: dict[str, Any],
              cfg: SweepConfig, start_reward: float | None = None) -> SweepResult:
    """Fine-tune ``start_state`` once per (seed, lr) in a Tune grid; needs Ray running.

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
        start_reward = validation_reward(start.eval(), cfg.kind, cfg.validation_episodes)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, start_state=state, start_reward=float(start_reward),
                             architecture=dict(architecture),
                             kind=cfg.kind, rl_steps=cfg.rl_steps,
                             validation_episodes=cfg.validation_episodes),
        {"cpu": cfg.cpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"seed": tune.grid_search(list(cfg.seeds)),
                     "rl_lr": tune.grid_search(list(cfg.rl_lrs))},
        tune_config=tune.TuneConfig(metric="validation_reward", mode="max"),
        run_config=tune.RunConfig(storage_path=str(cfg.storage_path.resolve()), name=cfg.name),
    )
    grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    failed = [f"trial {Path(r.path).name} (seed={(r.config or {}).get('seed')}, "
              f"rl_lr={(r.config or {}).get('rl_lr')}): {_describe(r.error)} "
              f"[traceback: {r.path}/error.txt]" for r in results if r.error]
    failed += [f"trial {Path(r.path).name}: finished without reporting validation_reward"
               for r in results if not r.error and "validation_reward" not in (r.metrics or {})]
    if failed:
        raise RuntimeError(f"run_sweep: {len(failed)} of {len(grid)} trials failed "
                           f"(see {grid.experiment_path}):\n" + "\n".join(failed))
    rows = [_row(r.config or {}, r.metrics or {}) for r in results]
    for row in rows:
        if not all(math.isfinite(v) for v in row[2:]):
            raise RuntimeError(f"run_sweep: trial seed={row.seed} rl_lr={row.rl_lr} "
                               f"reported a non-finite number: {row._asdict()}")
    best_result = grid.get_best_result()  # metric/mode from TuneConfig
    best_config = best_result.config or {}
    best = next(row for row in rows if row.seed == int(best_config["seed"])
                and row.rl_lr == float(best_config["rl_lr"]))
    if best_result.checkpoint is None:
        raise RuntimeError(f"run_sweep: best trial {Path(best_result.path).name} "
                           "has no checkpoint")
    with best_result.checkpoint.as_directory() as d:
        best_state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    return SweepResult(cfg.kind, rows, best, best_state, str(grid.experiment_path))
