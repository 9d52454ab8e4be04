"""Dense single-head graph attention (Velickovic et al., ICLR 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DenseGATLayer(nn.Module):
    r"""``h_i' = \sum_j \alpha_{ij} W h_j + b``, ``\alpha_{ij} = \mathrm{softmax}_j
    \mathrm{LeakyReLU}(a_s^T W h_j + a_d^T W h_i)`` over neighbours including i itself.
    Equals PyG's ``GATConv(heads=1)`` (tested).

    Shapes: h [B, N, F_in], adj [B, N, N] -> [B, N, F_out].
    """

    def __init__(self, in_features: int, out_features: int, negative_slope: float = 0.2):
        super().__init__()
        self.lin = nn.Linear(in_features, out_features, bias=False)
        self.att_src = nn.Parameter(torch.empty(out_features))
        self.att_dst = nn.Parameter(torch.empty(out_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.negative_slope = negative_slope
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.normal_(self.att_src, std=0.1)
        nn.init.normal_(self.att_dst, std=0.1)
        nn.init.zeros_(self.bias)

    def forward(self, h: Tensor, adj: Tensor) -> Tensor:
        wh: Tensor = self.lin(h)  # [B, N, F]
        src = wh @ self.att_src  # [B, N]
        dst = wh @ self.att_dst
        logits = F.leaky_relu(dst.unsqueeze(-1) + src.unsqueeze(-2), self.negative_slope)
        logits = logits.masked_fill(adj <= 0, torch.finfo(logits.dtype).min)  # fp16-safe
        alpha = torch.softmax(logits, dim=-1) * (adj > 0).to(h.dtype)  # padding rows -> 0
        return alpha @ wh + self.bias
