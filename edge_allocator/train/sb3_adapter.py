"""Plug our scoring modules into Stable-Baselines3 / sb3-contrib unchanged.

Why an adapter and not SB3's own networks: the served model must be the very module
that was trained (same maths, same normalisation, exportable to ONNX). The features
extractor runs our module and hands SB3 ``[scores, value]``; the actor and critic heads
become slices of that vector, so SB3's PPO/DQN machinery trains our weights directly.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3 import DQN
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn


def _inputs(obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = obs["x"]
    adj = obs["adj"] if "adj" in obs else x.new_zeros(())
    return x, adj, obs["mask"] > 0.5


class ScoresExtractor(BaseFeaturesExtractor):
    """Runs a scoring module; features are ``[scores (P), value (1)]`` or just scores."""

    def __init__(self, observation_space: gym.spaces.Dict, module: nn.Module, with_value: bool):
        pad = observation_space["mask"].shape[0]  # type: ignore[index]
        super().__init__(observation_space, features_dim=pad + int(with_value))
        self.module = copy.deepcopy(module)  # DQN builds two (online, target): never share
        self.with_value = with_value

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        x, adj, mask = _inputs(obs)
        if not self.with_value:
            scores: torch.Tensor = self.module(x, adj, mask)
            return scores
        scores, value = self.module.scores_and_value(x, adj, mask)  # type: ignore[operator]
        return torch.cat([scores, value.unsqueeze(-1)], dim=-1)


class _Slice(nn.Module):
    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z[..., self.start: self.stop]


class ScoringActorCritic(MaskableActorCriticPolicy):
    """MaskablePPO policy whose logits and value come straight from our module."""

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        pad = self.action_space.n  # type: ignore[attr-defined]
        self.action_net = _Slice(0, pad)
        self.value_net = _Slice(pad, pad + 1)  # type: ignore[assignment]
        self.optimizer = self.optimizer_class(
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs  # type: ignore[call-arg]
        )


class ScoringQPolicy(DQNPolicy):
    """DQN policy whose Q-values are our module's scores (masked nodes at ``MASKED_SCORE``)."""

    def make_q_net(self) -> QNetwork:
        net = super().make_q_net()
        net.q_net = nn.Identity()  # type: ignore[assignment]
        return net


class MaskedDQN(DQN):
    """DQN whose random exploration only picks feasible nodes (SB3's samples the whole
    action space, which here means sending tasks to unreachable or full nodes)."""

    def _random_feasible(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        masks = np.atleast_2d(observation["mask"]) > 0.5
        return np.array([np.random.choice(np.flatnonzero(m)) for m in masks])

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        if not deterministic and np.random.rand() < self.exploration_rate:
            return self._random_feasible(observation), state  # type: ignore[arg-type]
        return self.policy.predict(observation, state, episode_start, deterministic)

    def _sample_action(self, learning_starts: int, action_noise: ActionNoise | None = None,
                       n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if self.num_timesteps < learning_starts:
            action = self._random_feasible(self._last_obs)  # type: ignore[arg-type]
            return action, action
        return super()._sample_action(0, action_noise, n_envs)


def make_ppo(module: nn.Module, env: gym.Env, **kwargs: Any) -> MaskablePPO:
    return MaskablePPO(
        ScoringActorCritic,
        env,
        policy_kwargs={
            "features_extractor_class": ScoresExtractor,
            "features_extractor_kwargs": {"module": module, "with_value": True},
            "net_arch": [],
            "ortho_init": False,
        },
        **kwargs,
    )


def make_dqn(module: nn.Module, env: gym.Env, **kwargs: Any) -> MaskedDQN:
    return MaskedDQN(
        ScoringQPolicy,
        env,
        policy_kwargs={
            "features_extractor_class": ScoresExtractor,
            "features_extractor_kwargs": {"module": module, "with_value": False},
            "net_arch": [],
        },
        **kwargs,
    )


def trained_module(model: MaskablePPO | MaskedDQN) -> nn.Module:
    """The module SB3 trained (the online network for DQN)."""
    if isinstance(model, MaskedDQN):
        return model.policy.q_net.features_extractor.module  # type: ignore[return-value]
    return model.policy.features_extractor.module  # type: ignore[return-value]
