"""The original AI Edge Allocator API on top of the v1 API, so its clients work unchanged.

Its nodes carry no ids: a node is its index, so v1 node ids are index strings here.
"""

from __future__ import annotations

import time
from typing import Any

from edge_allocator import __version__
from edge_allocator.columnar import from_models
from edge_allocator.constants import MASKED_SCORE
from edge_allocator.responses import (
    Decision,
    LegacyBatchPrediction,
    LegacyHealth,
    LegacyModelInfo,
    LegacyModelSummary,
    LegacyPrediction,
)
from edge_allocator.schema import (
    AllocateRequest,
    LegacyBatchRequest,
    LegacyNetworkState,
    LegacyPredictRequest,
    RequestError,
    parse,
)
from edge_allocator.service.api import AllocatorApi


def legacy_prediction(d: Decision, kind: str, n_nodes: int) -> LegacyPrediction:
    """A v1 decision in the original /predict shape; DQN's Q-values in reward units,
    infeasible nodes at ``MASKED_SCORE``."""
    node_scores = {str(i): 0.0 for i in range(n_nodes)}
    node_scores.update(d.probabilities)
    q_values = None
    if kind == "dqn":
        q = [MASKED_SCORE] * n_nodes
        for nid, v in d.scores.items():
            q[int(nid)] = v
        q_values = q
    return LegacyPrediction(d.node_index, d.confidence, q_values, node_scores, d.latency_ms,
                            d.model.version, d.decision_id)


def to_v1(state: LegacyNetworkState) -> AllocateRequest:
    """An original-API network state as a validated v1 request: its nodes are
    identified by index, whatever ``node_id`` they carry."""
    nodes = [n.model_copy(update={"node_id": None}) for n in state.nodes]
    return AllocateRequest.model_construct(nodes=nodes, edges=state.edges, task=None,
                                           model=None)


class LegacyApi:
    """POST /predict, POST /batch-predict, GET /health, GET /models, GET /models/{name}."""

    def __init__(self, api: AllocatorApi) -> None:
        self.api = api

    async def predict(self, data: dict[str, Any]) -> LegacyPrediction:
        req = parse(LegacyPredictRequest, data)
        state = from_models([to_v1(req.network_state)])
        d = await self.api.decide(state, req.model_type, "/predict")
        return legacy_prediction(d, self.api.router.kind(d.model.name, d.model.version),
                                 int(state.sizes[0]))

    async def batch_predict(self, data: dict[str, Any]) -> LegacyBatchPrediction:
        t0 = time.perf_counter()
        req = parse(LegacyBatchRequest, data)
        batch = from_models([to_v1(s) for s in req.network_states])
        cols = await self.api.decide_many(batch, req.model_type, "/batch-predict")
        kind = self.api.router.kind(cols.model.name, cols.model.version)
        return LegacyBatchPrediction(
            [legacy_prediction(cols.decision(i), kind, int(n))
             for i, n in enumerate(batch.sizes.tolist())],
            (time.perf_counter() - t0) * 1000)

    async def health(self) -> LegacyHealth:
        """What actually loaded: a routed model with a version that failed to load (a
        checksum mismatch, say) is false, and the status is then 'degraded'."""
        described = await self.api.chain.policy.describe()
        loaded_versions = {(d.name, d.version) for d in described}
        loaded = {name: True for name in self.api.router.names()}
        for name, version in self.api.router.versions_in_use():
            loaded[name] = loaded[name] and (name, version) in loaded_versions
        return LegacyHealth("healthy" if all(loaded.values()) else "degraded", __version__,
                            loaded, time.time() - self.api.started_at)

    async def models(self) -> dict[str, LegacyModelSummary]:
        out: dict[str, LegacyModelSummary] = {}
        for d in await self.api.chain.policy.describe():
            entry = out.setdefault(d.name, LegacyModelSummary(d.name, [], d.kind, d.backend,
                                                              d.max_nodes))
            entry.versions.append(d.version)
        return out

    def model(self, name: str) -> LegacyModelInfo:
        router = self.api.router
        if name not in router.names():
            raise RequestError(404, f"model {name!r} is not served; available: {router.names()}")
        versions = [v for n, v in router.versions_in_use() if n == name]
        return LegacyModelInfo(name, versions, router.kind(name, versions[-1]),
                               name == self.api.cfg.default_model)
