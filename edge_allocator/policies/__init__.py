"""Policies: learned nn.Modules (DQN, PPO actor-critic, hybrid GNN) and heuristics.

Every policy maps a graph of N nodes to one score per node; the highest-scoring
feasible node is the decision.

The learned policies need torch and the heuristics do not: ``build_policy``,
``architecture`` and ``MODEL_KINDS`` (``policies.build``) are imported on first use, so
importing ``policies.heuristics`` (the ingress does, for /v1/compare) keeps an ONNX
replica torch-free.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_allocator.policies.build import MODEL_KINDS, architecture, build_policy

__all__ = ["MODEL_KINDS", "architecture", "build_policy"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("edge_allocator.policies.build"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
