"""Flat MLP policies over a padded, fixed maximum N: the DQN and PPO baselines.

They see the same features as the hybrid model, flattened, and ignore the graph. A
request with more than ``max_nodes`` nodes is refused by the runtime (the size is in the
manifest, never guessed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from edge_allocator.constants import MASKED_SCORE
from edge_allocator.graph import NUM_FEATURES
from edge_allocator.policies.normalizer import FeatureNormalizer


@dataclass(frozen=True)
class MLPConfig:
    max_nodes: int = 128
    """N the input is padded to (Melbourne's 127 nodes fit)."""
    hidden: int = 256
    """Width of the two hidden layers."""
    num_features: int = NUM_FEATURES

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class FlatMLPPolicy(nn.Module):
    """MLP over [normalised features * mask, mask] flattened -> one output per node slot.

    The DQN Q-network (outputs are Q-values) and the PPO actor-critic (outputs are
    logits, plus a value head). Shapes: x [B, Nmax, F], adj ignored, mask [B, Nmax] bool
    -> scores [B, Nmax], value [B].
    """

    def __init__(self, config: MLPConfig = MLPConfig(), kind: str = "ppo"):
        super().__init__()
        if kind not in ("dqn", "ppo"):
            raise ValueError(f"FlatMLPPolicy: kind={kind!r}; use 'dqn' or 'ppo'")
        self.kind = kind
        self.config = config
        n, f, h = config.max_nodes, config.num_features, config.hidden
        self.normalizer = FeatureNormalizer(f)
        self.torso = nn.Sequential(
            nn.Linear(n * (f + 1), h), nn.ReLU(), nn.Linear(h, h), nn.ReLU()
        )
        self.score_head = nn.Linear(h, n)
        self.value_head = nn.Linear(h, 1)

    def scores_and_value(self, x: Tensor, adj: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        m = mask.to(x.dtype)
        z = torch.cat([(self.normalizer(x) * m.unsqueeze(-1)).flatten(1), m], dim=1)
        z = self.torso(z)
        scores = self.score_head(z).float().masked_fill(~mask, MASKED_SCORE)  # fp16-safe
        return scores, self.value_head(z).squeeze(-1)

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        return self.scores_and_value(x, adj, mask)[0]
