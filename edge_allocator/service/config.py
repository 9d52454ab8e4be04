"""Service settings: one pydantic model, filled from serve_config.yaml's user_config
(or app args), so every option a user can set is typed and validated in one place."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge_allocator.runtime.backends import BACKENDS


class ModelSpec(BaseModel):
    """How one model name is served."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(default=None, description="Pinned version; None = newest")
    ab: dict[str, float] | None = Field(
        default=None, description="A/B split: version -> weight (weights need not sum to 1)"
    )

    @field_validator("ab")
    @classmethod
    def _weights(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None:
            if not v or any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
                raise ValueError(f"ab: weights must be >= 0 and sum to > 0, got {v}")
        return v


def _default_models() -> dict[str, ModelSpec]:
    return {"hybrid": ModelSpec(), "dqn": ModelSpec(), "ppo": ModelSpec()}


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models_dir: Path = Field(default=Path("models"))
    default_model: str = "hybrid"
    models: dict[str, ModelSpec] = Field(default_factory=_default_models)
    backend: str = "onnx"
    device: str = "auto"
    cache: str = Field(default="local", description="'none', 'local' or 'redis'")
    cache_ttl_s: float = Field(default=5.0, gt=0)
    cache_entries: int = Field(default=100_000, gt=0)
    redis_url: str | None = None
    database_url: str | None = Field(default="sqlite:///edge_allocator.db")
    db_pool_size: int = Field(default=5, gt=0)
    spool_path: Path = Field(default=Path("spool/decisions.jsonl"))
    auth_token_env: str = Field(default="EDGE_ALLOCATOR_TOKENS",
                                description="Env var holding comma-separated bearer tokens")
    auth_token_file: Path | None = None
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"backend={v!r} is unknown; use one of {BACKENDS}")
        return v
