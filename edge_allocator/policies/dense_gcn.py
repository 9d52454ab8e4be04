"""Dense graph convolution (Kipf & Welling, ICLR 2017)."""

from __future__ import annotations

from torch import Tensor, nn


class DenseGCNLayer(nn.Module):
    r"""``H' = \hat{A} H W + b`` with ``\hat{A} = D^{-1/2}(A+I)D^{-1/2}`` precomputed by
    ``graph.normalized_adjacency``. Equals PyG's ``GCNConv`` (tested).

    Shapes: h [B, N, F_in], adj [B, N, N] -> [B, N, F_out].
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.lin = nn.Linear(in_features, out_features, bias=False)
        self.bias = nn.Parameter(Tensor(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.zeros_(self.bias)

    def forward(self, h: Tensor, adj: Tensor) -> Tensor:
        out: Tensor = adj @ self.lin(h) + self.bias
        return out
