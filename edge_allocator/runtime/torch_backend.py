"""Loading a verified artifact into a torch module (weights_only=True, always)."""

from __future__ import annotations

import torch
from torch import nn

from edge_allocator.policies import build_policy
from edge_allocator.runtime.artifacts import WEIGHTS, Artifact


def load_module(artifact: Artifact) -> nn.Module:
    """The eager module of an artifact. The artifact was checksum-verified when loaded;
    ``weights_only=True`` means a weights file can never run code."""
    module = build_policy(artifact.kind, artifact.manifest["architecture"])
    state = torch.load(artifact.file(WEIGHTS), map_location="cpu", weights_only=True)
    module.load_state_dict(state)
    return module.eval()
