"""PolicyInference: dynamic batching over the loaded model versions.

``BatchedPolicy`` holds the logic and is a ``PolicyPort``; ``PolicyInference`` is it as
its own deployment (own replicas, fractional GPUs). With ``inline_inference`` the
ingress runs a ``BatchedPolicy`` in-process instead, saving a hop per request.

Batch size and wait come from ``user_config`` (``PolicyConfig``) and change live through
``reconfigure``; so do the backend and the model versions (hot swap: new versions are
loaded and verified before they replace the old ones, so no request sees a half-loaded
model). A batch may hold requests for several models; each model gets its own call, so
no model call ever mixes models.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import ray
from ray import serve

from deployments.metrics import InferenceMetrics
from edge_allocator.config import PolicyConfig
from edge_allocator.graph_batch import Bucket
from edge_allocator.responses import BatchConfig, ModelInfo
from edge_allocator.runtime import heap_watch
from edge_allocator.runtime.gc_tuning import tune_gc
from edge_allocator.service.routing import ModelRouter
from edge_allocator.service.stages import (
    ModelKey,
    PolicyStage,
    PreparedState,
    ScoredBatch,
    ScoredOne,
)
from edge_allocator.tracing import configure


class BatchedPolicy:
    def __init__(self) -> None:
        self.stage: PolicyStage | None = None
        self.config = PolicyConfig()
        self.metrics = InferenceMetrics()
        self.node_id = ray.get_runtime_context().get_node_id()[:16]
        configure()
        heap_watch.start_from_env("policy")  # off unless the soak asks for it

    def reconfigure(self, user_config: dict[str, Any] | PolicyConfig) -> None:
        cfg = PolicyConfig.model_validate(user_config)
        inf = cfg.inference
        stage = self.stage
        if stage is None or stage.backend_name != inf.backend or stage.device != inf.device \
                or stage.models_dir != cfg.models_dir:
            stage = PolicyStage(cfg.models_dir, inf.backend, inf.device)
        router = ModelRouter(cfg.models_dir, cfg.models, cfg.default_model, shadow=cfg.shadow)
        # shadow candidates too: scored off the response path, loaded before they are asked
        stage.load([ModelKey(*k) for k in router.versions_in_use() + router.shadow_versions()])
        self.stage, self.config = stage, cfg
        batcher: Any = self._infer_batch  # type: ignore[misc]
        batcher.set_max_batch_size(inf.max_batch_size)
        batcher.set_batch_wait_timeout_s(inf.batch_wait_timeout_s)
        tune_gc()  # the loaded models are never scanned again

    def _stage(self) -> PolicyStage:
        if self.stage is None:
            raise RuntimeError("PolicyInference has no models loaded yet (no reconfigure)")
        return self.stage

    async def infer_one(self, key: ModelKey, state: PreparedState,
                        trace: dict[str, str] | None = None) -> ScoredOne:
        """One state; rides in a dynamic batch with other requests' states."""
        batcher: Any = self._infer_batch  # type: ignore[misc]
        result: ScoredOne = await batcher(ModelKey(*key), state, trace)
        return result

    # Serve's batching stubs cover only one-argument functions, hence the ignores.
    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)  # type: ignore[arg-type]
    async def _infer_batch(  # type: ignore[misc]
            self, keys: list[ModelKey], states: list[PreparedState],
            traces: list[dict[str, str] | None]) -> list[ScoredOne]:
        """One dynamic batch. Its span is a child of its first request's trace."""
        stage = self._stage()
        groups: dict[ModelKey, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            groups[ModelKey(*k)].append(i)
        out: list[ScoredOne | None] = [None] * len(keys)
        for key, idx in groups.items():
            t0 = time.perf_counter()
            scores = stage.run(key, [states[i].graph for i in idx], traces[idx[0]])
            backend = stage.backend_of(key)
            self._observe(key, backend, len(idx), t0)
            for i, s in zip(idx, scores):
                out[i] = ScoredOne(s, len(idx), backend, self.node_id)
        return [o for o in out if o is not None]

    async def infer_batches(self, key: ModelKey, buckets: Sequence[Bucket],
                            trace: dict[str, str] | None = None) -> ScoredBatch:
        """The padded buckets of one batch request, one model call each (no dynamic
        batching across requests: the request is its own batch)."""
        stage = self._stage()
        key = ModelKey(*key)
        t0 = time.perf_counter()
        scores = stage.run_batches(key, [b.graphs for b in buckets], trace)
        backend = stage.backend_of(key)
        self._observe(key, backend, sum(len(b.states) for b in buckets), t0)
        return ScoredBatch(scores, backend, self.node_id)

    def _observe(self, key: ModelKey, backend: str, n: int, t0: float) -> None:
        self.metrics.batch_size.observe(n, tags={"model": key.name})
        self.metrics.model_ms.observe((time.perf_counter() - t0) * 1000,
                                      tags={"model": key.name, "backend": backend})

    async def describe(self) -> list[ModelInfo]:
        return self._stage().describe()

    async def failures(self) -> dict[str, str]:
        """Versions that failed to load, and why (e.g. a checksum mismatch)."""
        return {f"{k.name} v{k.version}": why for k, why in self._stage().failures.items()}

    async def batch_config(self) -> BatchConfig:
        inf = self.config.inference
        return BatchConfig(inf.max_batch_size, inf.batch_wait_timeout_s)

    async def check_health(self) -> None:
        """Healthy means every loaded model still answers a probe with finite scores."""
        await asyncio.to_thread(self._stage().check)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.metrics.model_memory.set(rss)


@serve.deployment
class PolicyInference(BatchedPolicy):
    """BatchedPolicy as its own deployment."""
