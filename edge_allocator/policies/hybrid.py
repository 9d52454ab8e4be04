"""Hybrid policy: a GNN encoder, a per-node scoring head and a pooled value head.

Works for any N: every weight is shared across nodes, so a model trained on 10-50 node
networks scores a 1,000-node one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from edge_allocator.constants import MASKED_SCORE as MASKED_SCORE  # re-exported
from edge_allocator.graph import NUM_FEATURES
from edge_allocator.policies.dense_gat import DenseGATLayer
from edge_allocator.policies.dense_gcn import DenseGCNLayer
from edge_allocator.policies.dense_sage import DenseSAGELayer
from edge_allocator.policies.normalizer import FeatureNormalizer

LAYERS: dict[str, type[nn.Module]] = {
    "gcn": DenseGCNLayer,
    "sage": DenseSAGELayer,
    "gat": DenseGATLayer,
}


@dataclass(frozen=True)
class HybridConfig:
    conv: str = "gcn"
    """Graph layer: 'gcn', 'sage' or 'gat'."""
    hidden: int = 64
    """Width of node embeddings."""
    layers: int = 2
    """Graph layers (each with a residual connection)."""
    num_features: int = NUM_FEATURES

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class HybridGNNPolicy(nn.Module):
    """Scores: MLP([h_i^{(L)}, h_i^{(0)}]) per node; value: MLP(mean of feasible h^{(L)}).

    Shapes: x [B, N, F], adj [B, N, N], mask [B, N] bool -> scores [B, N] (masked nodes
    get ``MASKED_SCORE``), value [B].
    """

    kind = "hybrid"
    gradient_checkpointing = False
    """Set by the trainer: recompute each graph layer in the backward pass instead of
    keeping its activations (the [B, H, N, N] attention of GAT dominates memory at
    N = 1,000). Has no effect without gradients, so inference and export are unchanged."""

    def __init__(self, config: HybridConfig = HybridConfig()):
        super().__init__()
        if config.conv not in LAYERS:
            raise ValueError(
                f"HybridGNNPolicy: conv={config.conv!r} is unknown; use one of {sorted(LAYERS)}"
            )
        self.config = config
        h = config.hidden
        self.normalizer = FeatureNormalizer(config.num_features)
        self.encoder = nn.Sequential(nn.Linear(config.num_features, h), nn.ReLU(), nn.Linear(h, h))
        self.convs = nn.ModuleList(LAYERS[config.conv](h, h) for _ in range(config.layers))
        self.score_head = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU(), nn.Linear(h, 1))
        self.value_head = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))

    def embed(self, x: Tensor, adj: Tensor) -> tuple[Tensor, Tensor]:
        h0 = self.encoder(self.normalizer(x))
        h = h0
        recompute = self.gradient_checkpointing and torch.is_grad_enabled()
        for conv in self.convs:
            if recompute:
                h = h + checkpoint(_relu_conv, conv, h, adj, use_reentrant=False)
            else:
                h = h + _relu_conv(conv, h, adj)
        return h0, h

    def scores_and_value(self, x: Tensor, adj: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h0, h = self.embed(x, adj)
        scores = self.score_head(torch.cat([h, h0], dim=-1)).squeeze(-1)
        scores = scores.float().masked_fill(~mask, MASKED_SCORE)  # fp32: it overflows fp16
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return scores, self.value_head(pooled).squeeze(-1)

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        return self.scores_and_value(x, adj, mask)[0]


def _relu_conv(conv: nn.Module, h: Tensor, adj: Tensor) -> Tensor:
    return torch.relu(conv(h, adj))
