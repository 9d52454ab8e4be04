"""Dense GraphSAGE with mean aggregation (Hamilton et al., NeurIPS 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DenseSAGELayer(nn.Module):
    r"""``h_i' = W_1 h_i + W_2 \mathrm{mean}_{j \in N(i)} h_j``. Neighbours are read off the
    normalised adjacency's non-zero pattern minus the self loop. Equals PyG's
    ``SAGEConv(aggr="mean")`` (tested).

    Shapes: h [B, N, F_in], adj [B, N, N] -> [B, N, F_out].
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.lin_self = nn.Linear(in_features, out_features, bias=False)
        self.lin_neigh = nn.Linear(in_features, out_features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin_self.reset_parameters()
        self.lin_neigh.reset_parameters()

    def forward(self, h: Tensor, adj: Tensor) -> Tensor:
        n = adj.shape[-1]
        eye = torch.eye(n, dtype=h.dtype, device=h.device)
        neigh = (adj > 0).to(h.dtype) * (1.0 - eye)
        deg = neigh.sum(-1, keepdim=True).clamp_min(1.0)
        out: Tensor = self.lin_neigh(neigh @ h / deg) + self.lin_self(h)
        return out
