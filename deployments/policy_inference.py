"""PolicyInference: dynamic batching over the loaded model versions.

``BatchedPolicy`` holds the logic; ``PolicyInference`` is it as its own deployment (own
replicas, fractional GPUs). With ``inline_inference`` the ingress runs a
``BatchedPolicy`` in-process instead, saving a hop per request (measured in
benchmarks/serve_bench.py).

Batch size and wait come from ``user_config`` and change live through ``reconfigure``;
so do the backend and the model versions (hot swap: new versions are loaded and
verified before they replace the old ones, so no request sees a half-loaded model).
A batch may hold requests for several models; each model gets its own call, so no
model call ever mixes models.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import ray
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from deployments.metrics import InferenceMetrics
from edge_allocator.constants import MODELS_DIR
from edge_allocator.graph import GraphInputs, default_edges, normalized_adjacency
from edge_allocator.service.config import ModelSpec
from edge_allocator.service.routing import ModelRouter
from edge_allocator.service.stages import ModelKey, PolicyStage, PreparedState
from edge_allocator.tracing import configure


class InferenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(default=64, ge=1)
    batch_wait_timeout_s: float = Field(default=0.002, ge=0)
    backend: str = "onnx"
    device: str = "auto"
    models_dir: Path = MODELS_DIR
    default_model: str = "hybrid"
    models: dict[str, ModelSpec] = Field(
        default_factory=lambda: {"hybrid": ModelSpec(), "dqn": ModelSpec(), "ppo": ModelSpec()}
    )


def _probe_graph(n: int = 4) -> GraphInputs:
    """A tiny valid graph used by health checks: proves the model answers."""
    types = np.array([0, 1, 1, 2][:n])
    x = np.zeros((n, 14), np.float32)
    x[:, 6] = types
    x[:, 4] = 100.0
    return GraphInputs(x, normalized_adjacency(n, default_edges(types)), np.ones(n, bool))


class BatchedPolicy:
    def __init__(self) -> None:
        self.stage: PolicyStage | None = None
        self.config = InferenceConfig()
        self.metrics = InferenceMetrics()
        self.node_id = ray.get_runtime_context().get_node_id()[:16]
        configure()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        cfg = InferenceConfig.model_validate(user_config)
        models_dir = cfg.models_dir if cfg.models_dir.is_absolute() else MODELS_DIR.parent / cfg.models_dir
        stage = self.stage
        if stage is None or stage.backend_name != cfg.backend or stage.device != cfg.device \
                or stage.models_dir != models_dir:
            stage = PolicyStage(models_dir, cfg.backend, cfg.device)
        router = ModelRouter(models_dir, cfg.models, cfg.default_model)
        stage.load([ModelKey(*k) for k in router.versions_in_use()])
        self.stage, self.config = stage, cfg
        self.infer_one.set_max_batch_size(cfg.max_batch_size)
        self.infer_one.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def infer_one(
        self, keys: list[ModelKey], states: list[PreparedState],
        traces: list[dict[str, str] | None],
    ) -> list[tuple[np.ndarray, int, str]]:
        """One state per request; returns (scores [N], size of the batch it rode in,
        the Ray node that ran it).
        The batch's span is a child of its first request's trace."""
        assert self.stage is not None
        groups: dict[ModelKey, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            groups[ModelKey(*k)].append(i)
        out: list[tuple[np.ndarray, int, str] | None] = [None] * len(keys)
        for key, idx in groups.items():
            t0 = time.perf_counter()
            scores = self.stage.run(key, [states[i].graph for i in idx], traces[idx[0]])
            self._observe(key, len(idx), t0)
            for i, s in zip(idx, scores):
                out[i] = (s, len(idx), self.node_id)
        return out  # type: ignore[return-value]

    async def infer_many(self, key: ModelKey, states: list[PreparedState],
                         trace: dict[str, str] | None = None) -> list[np.ndarray]:
        """Many states of one request in one vectorised call (no per-state batching)."""
        assert self.stage is not None
        key = ModelKey(*key)
        t0 = time.perf_counter()
        scores = self.stage.run(key, [s.graph for s in states], trace)
        self._observe(key, len(states), t0)
        return scores

    def _observe(self, key: ModelKey, n: int, t0: float) -> None:
        tags = {"model": key.name}
        self.metrics.batch_size.observe(n, tags=tags)
        self.metrics.model_ms.observe((time.perf_counter() - t0) * 1000,
                                      tags={**tags, "backend": self.config.backend})

    async def describe(self) -> list[dict[str, Any]]:
        assert self.stage is not None
        return self.stage.describe()

    async def failures(self) -> dict[str, str]:
        """Versions that failed to load, and why (e.g. a checksum mismatch)."""
        assert self.stage is not None
        return {f"{k.name} v{k.version}": why for k, why in self.stage.failures.items()}

    async def batch_config(self) -> dict[str, Any]:
        return {"max_batch_size": self.config.max_batch_size,
                "batch_wait_timeout_s": self.config.batch_wait_timeout_s}

    async def check_health(self) -> None:
        """Healthy means every loaded model still answers a probe with finite scores."""
        if self.stage is None:
            raise RuntimeError("PolicyInference has no models loaded yet")
        probe = _probe_graph()
        for key in list(self.stage.models):
            scores = await asyncio.to_thread(self.stage.run, key, [probe])
            if not np.isfinite(scores[0]).all():
                raise RuntimeError(f"model {key.name} v{key.version} returned non-finite scores")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.metrics.model_memory.set(rss)


@serve.deployment
class PolicyInference(BatchedPolicy):
    """BatchedPolicy as its own deployment."""
