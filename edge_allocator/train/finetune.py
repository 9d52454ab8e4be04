"""RL fine-tuning of a cloned policy, and the validation score that decides whether the
fine-tuned weights are kept.

Used by the pipeline (one run in this process) and by the Ray Tune sweep (one run per
trial). SB3 and sb3-contrib are imported inside :func:`rl_finetune`, so importing this
module stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from torch import nn

from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig
from edge_allocator.train.agents import FLAT_PAD, TorchAgent, pad_for
from edge_allocator.train.evaluate import default_scenarios, evaluate

if TYPE_CHECKING:
    from stable_baselines3.common.callbacks import BaseCallback

#: Validation episodes use seeds from here up: above training's, below evaluation's.
VALIDATION_SEED_BASE = 500_000
#: The scenarios validation averages over.
VALIDATION_SCENARIOS = ("synthetic-10to50", "melbourne")


def env_config(kind: str, observed_speed: bool = False) -> EnvConfig:
    """Training distribution: synthetic 10-50 nodes mixed with Melbourne; with
    ``observed_speed`` the closed loop (speeds learned from earlier completions scale the
    features, as /v1/feedback does in service)."""
    return EnvConfig("mixed", pad_to=FLAT_PAD, include_adjacency=(kind == "hybrid"),
                     observed_speed=observed_speed)


@dataclass(frozen=True)
class RLConfig:
    """Hyperparameters of one RL fine-tuning run: SB3 DQN for 'dqn', sb3-contrib
    MaskablePPO for 'ppo' and 'hybrid'. The defaults are the pipeline's."""

    steps: int = 8192
    """Environment steps (decisions) of RL."""
    lr: float = 1e-4
    """Learning rate: small, so fine-tuning refines rather than forgets."""
    gamma: float = 0.9
    """Discount over decisions."""
    seed: int = 0
    """Seeds SB3 (exploration, minibatch order) and the environment."""
    observed_speed: bool = False
    """Fine-tune on the closed-loop environment (``EnvConfig.observed_speed``)."""
    dqn_buffer_size: int = 20_000
    """DQN: replay buffer capacity (transitions)."""
    dqn_learning_starts: int = 500
    """DQN: steps of feasible-random actions before the first gradient step."""
    dqn_batch_size: int = 64
    """DQN: transitions per gradient step."""
    dqn_exploration_initial_eps: float = 0.1
    """DQN: starting epsilon (low: the cloned policy is already good)."""
    dqn_exploration_final_eps: float = 0.02
    """DQN: epsilon after the decay."""
    dqn_exploration_fraction: float = 0.5
    """DQN: share of ``steps`` over which epsilon decays linearly."""
    dqn_target_update_interval: int = 1000
    """DQN: steps between copies of the online network into the target network."""
    ppo_n_steps: int = 1024
    """PPO: rollout length (steps) per update."""
    ppo_batch_size: int = 128
    """PPO: minibatch size."""
    ppo_n_epochs: int = 4
    """PPO: passes over each rollout."""
    ppo_ent_coef: float = 0.001
    """PPO: entropy bonus."""
    ppo_clip_range: float = 0.1
    """PPO: clip range of the policy ratio (tight: stay near the cloned policy)."""
    ppo_value_warmup_steps: int = 0
    """PPO: the first so many of ``steps`` train the value head alone (every other weight
    frozen, so the policy is unchanged). Cloning never trains the value head: PPO starts
    with an untrained baseline whose loss also flows into the shared encoder."""


class FinetuneResult(NamedTuple):
    """What :func:`rl_finetune` returns."""

    module: nn.Module
    """The fine-tuned copy, in eval mode."""
    seconds: float
    """Wall time of RL."""


def rl_finetune(module: nn.Module, kind: str, cfg: RLConfig, progress: bool = True,
                callback: BaseCallback | None = None) -> FinetuneResult:
    """Fine-tune ``module`` (a ``kind`` policy) with RL on the training distribution.
    SB3 trains a copy: ``module`` itself is left as it was. ``progress=False`` silences
    SB3's progress bar (Tune trials log to files, where a redrawn bar is only noise).
    ``callback``: an SB3 callback, e.g. :func:`curve_callback`'s learning curve."""
    from edge_allocator.train.sb3_adapter import make_dqn, make_ppo, trained_module

    env = EdgeAllocationEnv(env_config(kind, cfg.observed_speed))
    start = time.perf_counter()
    if kind == "dqn":
        dqn = make_dqn(
            module, env, learning_rate=cfg.lr, buffer_size=cfg.dqn_buffer_size,
            learning_starts=cfg.dqn_learning_starts, gamma=cfg.gamma,
            exploration_initial_eps=cfg.dqn_exploration_initial_eps,
            exploration_final_eps=cfg.dqn_exploration_final_eps,
            exploration_fraction=cfg.dqn_exploration_fraction,
            target_update_interval=cfg.dqn_target_update_interval,
            batch_size=cfg.dqn_batch_size, seed=cfg.seed,
        )
        dqn.learn(cfg.steps, progress_bar=progress, callback=callback)
        tuned = trained_module(dqn)
    else:
        ppo = make_ppo(
            module, env, learning_rate=cfg.lr, n_steps=cfg.ppo_n_steps,
            batch_size=cfg.ppo_batch_size, n_epochs=cfg.ppo_n_epochs, gamma=cfg.gamma,
            ent_coef=cfg.ppo_ent_coef, clip_range=cfg.ppo_clip_range, seed=cfg.seed,
        )
        warmup = min(cfg.ppo_value_warmup_steps, cfg.steps)
        if warmup:
            frozen = [p for name, p in ppo.policy.named_parameters()
                      if "value_head" not in name and p.requires_grad]
            if len(frozen) == len(list(ppo.policy.parameters())):
                raise ValueError(f"rl_finetune: {kind} has no value_head to warm up")
            for p in frozen:
                p.requires_grad_(False)
            ppo.learn(warmup, progress_bar=progress, callback=callback)
            for p in frozen:
                p.requires_grad_(True)
        if cfg.steps > warmup:
            ppo.learn(cfg.steps - warmup, progress_bar=progress, callback=callback,
                      reset_num_timesteps=not warmup)
        tuned = trained_module(ppo)
    return FinetuneResult(tuned.eval(), time.perf_counter() - start)


def validation_reward(module: nn.Module, kind: str, episodes: int,
                      observed_speed: bool = False) -> float:
    """Mean episode reward over validation seeds of synthetic and Melbourne (with
    ``observed_speed``: on the closed-loop environment)."""
    scen = [s for s in default_scenarios(observed_speed=observed_speed)
            if s.name in VALIDATION_SCENARIOS]
    res = evaluate({"m": lambda e, n: TorchAgent("m", module, pad_for(kind))}, scen,
                   episodes=episodes, seed_base=VALIDATION_SEED_BASE, progress=False)
    return float(np.mean([r.metrics["episode_reward"].mean for r in res]))


class CurvePoint(NamedTuple):
    """One point of a learning curve."""

    env_steps: int
    """Environment steps of RL behind the weights that were validated."""
    validation_reward: float


def curve_callback(kind: str, every: int, episodes: int, observed_speed: bool = False,
                   on_point: Callable[[CurvePoint], Any] | None = None) -> BaseCallback:
    """An SB3 callback that validates the policy being trained every ``every`` environment
    steps (:func:`validation_reward`, ``episodes`` per scenario) and keeps the points in
    its ``points`` list; ``on_point`` is called with each (a Tune trial reports it).

    Checked when a rollout starts, so the weights validated at ``env_steps`` have been
    updated on every step before it (PPO: pick ``every`` as a multiple of ``n_steps`` for
    points exactly at multiples of ``every``; DQN's rollouts are its 4-step train_freq).
    The end of training is not a point here: the caller validates the final weights.
    SB3 is imported here, not at module level, like :func:`rl_finetune`."""
    from stable_baselines3.common.callbacks import BaseCallback

    from edge_allocator.train.sb3_adapter import trained_module

    if every <= 0:
        raise ValueError(f"curve_callback: every={every}; must be positive")

    class ValidationCurve(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.points: list[CurvePoint] = []
            self._next = every

        def _check(self) -> None:
            steps = int(self.num_timesteps)
            if steps < self._next:
                return
            self._next = (steps // every + 1) * every
            module = trained_module(self.model)  # type: ignore[arg-type]
            was_training = module.training
            module.eval()
            point = CurvePoint(steps, validation_reward(module, kind, episodes, observed_speed))
            module.train(was_training)
            self.points.append(point)
            if on_point is not None:
                on_point(point)

        def _on_rollout_start(self) -> None:  # after the previous update (DQN: 4 steps)
            self._check()

        def _on_step(self) -> bool:
            return True

    return ValidationCurve()
