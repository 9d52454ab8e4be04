"""The original AI Edge Allocator API on top of the v1 API, so its clients work unchanged.

Its nodes carry no ids: a node is its index, so v1 node ids are index strings here. Its
model types are model names, or aliases of them (``hybrid_attention``: the GAT hybrid).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from edge_allocator import __version__
from edge_allocator.columnar import from_models
from edge_allocator.constants import MASKED_SCORE
from edge_allocator.graph import probe_graph
from edge_allocator.responses import (
    Decision,
    LegacyBatchPrediction,
    LegacyHealth,
    LegacyLoadResult,
    LegacyModelInfo,
    LegacyModelSummary,
    LegacyPrediction,
    MockNetwork,
    ServiceInfo,
)
from edge_allocator.schema import (
    AllocateRequest,
    LegacyBatchRequest,
    LegacyNetworkState,
    LegacyPredictRequest,
    parse,
)
from edge_allocator.service.api import AllocatorApi
from edge_allocator.service.sample import mock_network
from edge_allocator.service.stages import ModelKey, PreparedState

SERVICE_NAME = "Edge Allocator"


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
    """GET /, POST /predict, POST /batch-predict, GET /health, GET /models,
    GET /models/{name}, POST /models/{name}/load, POST /generate-mock-network."""

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
        router = self.api.router
        loaded = {name: True for name in router.names()}
        for name, version in router.versions_in_use():
            loaded[name] = loaded[name] and (name, version) in loaded_versions
        loaded.update({alias: loaded[router.aliases[alias]] for alias in router.served_aliases()})
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
        """A model type's info; an alias answers with the model it names."""
        router = self.api.router
        name = router.resolve(name, loc="name")
        versions = [v for n, v in router.versions_in_use() if n == name]
        return LegacyModelInfo(name, versions, router.kind(name, versions[-1]),
                               name == self.api.cfg.default_model)

    async def load(self, name: str) -> LegacyLoadResult:
        """Load a model type, or confirm it is loaded: every version routed to it runs a
        probe graph through the policy (which loads a version it does not hold yet). A
        version that failed to load (a checksum mismatch, say) stays refused: 503 naming
        why."""
        router = self.api.router
        model = router.resolve(name, loc="model_type")
        probe = PreparedState(probe_graph(), ["0", "1", "2", "3"])
        versions = [v for n, v in router.versions_in_use() if n == model]
        for version in versions:
            await self.api.chain.policy.infer_one(ModelKey(model, version), probe, None)
        served = f" (served by {model})" if model != name else ""
        return LegacyLoadResult("success", f"Model '{name}'{served} loaded successfully: "
                                           f"version {', '.join(versions)}")

    @staticmethod
    async def mock_network(data: dict[str, Any]) -> MockNetwork:
        """A network from the simulator, off the event loop (a 1,000-node one takes a
        while to simulate)."""
        return await asyncio.to_thread(mock_network, data)

    @staticmethod
    def info() -> ServiceInfo:
        return ServiceInfo(SERVICE_NAME, __version__, "running", "/docs", "/health")
