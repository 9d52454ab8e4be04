"""Feature normalisation that travels inside every exported model.

Why inside: the statistics come from training data; keeping them as buffers means the
state_dict, TorchScript and ONNX graphs all carry them, so every backend gives the same
answer for the same request and no serving code re-implements the maths.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from edge_allocator.graph import LOG_FEATURE_MASK, NUM_FEATURES


class FeatureNormalizer(nn.Module):
    """``(log1p(x) on heavy-tailed columns - mean) / std``, clipped to +-10.

    Shapes: x [B, N, F] -> [B, N, F].
    """

    # buffers (registered in __init__), declared for the type checker
    log_mask: Tensor
    mean: Tensor
    std: Tensor

    def __init__(self, num_features: int = NUM_FEATURES):
        super().__init__()
        self.register_buffer("log_mask", torch.as_tensor(LOG_FEATURE_MASK))
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))

    def transform(self, x: Tensor) -> Tensor:
        return torch.where(self.log_mask, torch.log1p(x.clamp_min(0.0)), x)

    def forward(self, x: Tensor) -> Tensor:
        return ((self.transform(x) - self.mean) / self.std).clamp(-10.0, 10.0)

    @torch.no_grad()
    def fit(self, x: np.ndarray) -> None:
        """Set the statistics from raw features [M, F] of real decisions."""
        t = self.transform(torch.as_tensor(x, dtype=torch.float32))
        self.mean.copy_(t.mean(0))
        self.std.copy_(t.std(0).clamp_min(1e-3))
