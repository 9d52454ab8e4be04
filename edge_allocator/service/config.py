"""Service settings: one pydantic model, filled from serve_config.yaml's user_config
(or app args), so every option a user can set is typed and validated in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge_allocator.constants import DATABASE_URL, MODELS_DIR, PROJECT_ROOT, SPOOL_PATH
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

    models_dir: Path = Field(default=MODELS_DIR)
    default_model: str = "hybrid"
    models: dict[str, ModelSpec] = Field(default_factory=_default_models)
    backend: str = "onnx"
    device: str = "auto"
    cache: str = Field(default="local", description="'none', 'local' or 'redis'")
    cache_ttl_s: float = Field(default=5.0, gt=0)
    cache_entries: int = Field(default=100_000, gt=0)
    redis_url: str | None = None
    database_url: str | None = Field(default=DATABASE_URL)
    db_pool_size: int = Field(default=5, gt=0)
    spool_path: Path = Field(default=SPOOL_PATH)
    auth_token_env: str = Field(default="EDGE_ALLOCATOR_TOKENS",
                                description="Env var holding comma-separated bearer tokens")
    auth_token_file: Path | None = None
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    inference: dict[str, Any] | None = Field(
        default=None, description="PolicyInference settings, used when the ingress runs the "
        "policy in-process (inline_inference)")

    @field_validator("models_dir", "spool_path", "auth_token_file")
    @classmethod
    def _relative_to_project(cls, v: Path | None) -> Path | None:
        """Relative paths resolve against the project, whatever the worker's cwd."""
        return v if v is None or v.is_absolute() else PROJECT_ROOT / v

    @field_validator("database_url")
    @classmethod
    def _sqlite_relative_to_project(cls, v: str | None) -> str | None:
        """``sqlite:///var/x.db`` means <project>/var/x.db, whatever the worker's cwd."""
        if v and v.startswith("sqlite:///") and not v.startswith("sqlite:////"):
            path = Path(v.removeprefix("sqlite:///"))
            if not path.is_absolute():
                return f"sqlite:///{PROJECT_ROOT / path}"
        return v

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"backend={v!r} is unknown; use one of {BACKENDS}")
        return v
