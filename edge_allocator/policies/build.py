"""Building a learned policy (an nn.Module) from its kind and manifest config."""

from torch import nn

from edge_allocator.policies.hybrid import HybridConfig, HybridGNNPolicy
from edge_allocator.policies.mlp import FlatMLPPolicy, MLPConfig

MODEL_KINDS = ("dqn", "ppo", "hybrid")


def build_policy(kind: str, config: dict[str, object] | None = None) -> nn.Module:
    """Construct an untrained policy of ``kind`` from its (manifest) config dict."""
    cfg = dict(config or {})
    if kind == "hybrid":
        return HybridGNNPolicy(HybridConfig(**cfg))  # type: ignore[arg-type]
    if kind in ("dqn", "ppo"):
        return FlatMLPPolicy(MLPConfig(**cfg), kind=kind)  # type: ignore[arg-type]
    raise ValueError(f"build_policy: kind={kind!r} is unknown; use one of {MODEL_KINDS}")


def architecture(module: nn.Module) -> dict[str, object]:
    """The config dict :func:`build_policy` rebuilds ``module`` from (what manifests
    record)."""
    config: HybridConfig | MLPConfig = module.config  # type: ignore[assignment]
    return config.to_dict()
