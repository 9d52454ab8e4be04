"""The three serving stages as plain classes: graph building, policy running, response
assembly, and the typed values that pass between them. Ray Serve deployments wrap them
one to one; ``chain.StagesHere`` runs graph building and assembly in-process."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edge_allocator.columnar import StateBatch
from edge_allocator.constants import TOPOLOGY_CACHE_ENTRIES
from edge_allocator.graph import GraphBatch, GraphInputs, TopologyCache, collate, probe_graph
from edge_allocator.graph_batch import (
    Bucket,
    TopologyKeys,
    bucket_size,
    buckets,
    check_feasible,
    node_features,
    one_graph,
)
from edge_allocator.responses import Decision, ModelInfo, ModelRef
from edge_allocator.runtime.artifacts import Artifact, ArtifactError, load_artifact
from edge_allocator.runtime.backends import Backend, make_backend
from edge_allocator.schema import RequestError
from edge_allocator.service.columns import DecisionColumns, assemble_columns
from edge_allocator.store.records import new_decision_id, new_decision_ids
from edge_allocator.tracing import span


class PreparedState(NamedTuple):
    """One validated state turned into model inputs (the single-request path)."""

    graph: GraphInputs
    node_ids: list[str]
    infeasible: dict[str, str] = {}  # {node_id: why} of masked nodes (read-only)


class ModelKey(NamedTuple):
    name: str
    version: str


class ScoredOne(NamedTuple):
    """The policy's answer for one state that rode in a dynamic batch."""

    scores: np.ndarray  # [N] float32, unpadded
    batch_size: int  # states that shared the model call
    backend: str  # the backend that actually ran
    node: str  # the Ray node (or process) that ran it


class ScoredBatch(NamedTuple):
    """The policy's answer for the buckets of one batch request: scores [b, P] each."""

    scores: list[np.ndarray]
    backend: str
    node: str


class GraphStage:
    """Validated states (columns) -> model inputs. Holds the topology cache, so identical
    topologies (the common case: same network, new loads) reuse their adjacency."""

    def __init__(self, topology_cache_entries: int = TOPOLOGY_CACHE_ENTRIES):
        self.cache = TopologyCache(topology_cache_entries)
        self.topology = TopologyKeys(self.cache)

    def prepare(self, batch: StateBatch, trace: dict[str, str] | None = None) -> PreparedState:
        """The one state of ``batch``, unpadded: the policy batches it with other
        requests' states."""
        with span("graph.prepare", trace, nodes=int(batch.sizes[0])):
            x, mask = node_features(batch)
            check_feasible(batch, mask, in_batch=False)
            reasons = batch.masked_reasons(mask)[0] if not mask.all() else {}
            return PreparedState(one_graph(batch, self.topology, x, mask), batch.ids_of(0),
                                 reasons)

    def prepare_batch(self, batch: StateBatch,
                      trace: dict[str, str] | None = None) -> list[Bucket]:
        """Every state of ``batch`` in padded buckets: one span for the whole batch (a
        span per state cost more than building its graph)."""
        with span("graph.prepare_many", trace, states=len(batch)):
            x, mask = node_features(batch)
            check_feasible(batch, mask, in_batch=True)
            return buckets(batch, self.topology, x, mask)


class LoadedModel(NamedTuple):
    artifact: Artifact
    backend: Backend
    backend_name: str


class PolicyStage:
    """Loaded artifacts and their backends; runs many graphs of one model in one call."""

    def __init__(self, models_dir: Path, backend: str = "onnx", device: str = "auto"):
        self.models_dir = Path(models_dir)
        self.backend_name = backend
        self.device = device
        self.models: dict[ModelKey, LoadedModel] = {}
        #: Versions that failed to load (tampered, missing), with the reason: readiness
        #: reports them and requests for them get a 503 naming the reason.
        self.failures: dict[ModelKey, str] = {}

    def load(self, keys: Sequence[ModelKey]) -> None:
        """Load (verify checksums, build backends) everything first, then swap the
        serving set in one assignment, so no request sees a half-loaded model. A version
        that fails to load is recorded, not fatal: the others keep serving."""
        fresh, failures = {}, {}
        for key in keys:
            if key in self.models and self.models[key].backend_name == self.backend_name:
                fresh[key] = self.models[key]
                continue
            try:
                art = load_artifact(self.models_dir, key.name, key.version)
                fresh[key] = LoadedModel(art, make_backend(art, self.backend_name, self.device),
                                         self.backend_name)
            except (ArtifactError, OSError, ValueError, RuntimeError) as exc:
                failures[key] = f"{type(exc).__name__}: {exc}"
        self.models, self.failures = fresh, failures

    def get(self, key: ModelKey) -> LoadedModel:
        model = self.models.get(key)
        if model is None and key not in self.failures:
            self.load([*self.models, key])  # a version routed here before preload finished
            model = self.models.get(key)
        if model is None:
            raise RequestError(503, f"model {key.name} v{key.version} is unavailable: "
                               f"{self.failures.get(key, 'not loaded')}")
        return model

    def backend_of(self, key: ModelKey) -> str:
        """The backend that runs ``key`` (what responses report)."""
        return self.get(key).backend_name

    def check(self) -> None:
        """Healthy means every loaded model still answers a probe with finite scores."""
        probe = probe_graph()
        for key in list(self.models):
            if not np.isfinite(self._run(key, [probe])[0]).all():
                raise RuntimeError(f"model {key.name} v{key.version} returned non-finite scores")

    def run(self, key: ModelKey, graphs: Sequence[GraphInputs],
            trace: dict[str, str] | None = None) -> list[np.ndarray]:
        """Scores per graph ([N] each, unpadded), in input order."""
        with span("policy.infer", trace, model=key.name, version=key.version,
                  batch_size=len(graphs), backend=self.backend_name):
            return self._run(key, graphs)

    def _run(self, key: ModelKey, graphs: Sequence[GraphInputs]) -> list[np.ndarray]:
        sizes = [g.x.shape[0] for g in graphs]
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(sizes):
            groups.setdefault(bucket_size(n), []).append(i)
        order = [i for idx in groups.values() for i in idx]
        padded = [collate([graphs[i] for i in idx], pad_to=pad) for pad, idx in groups.items()]
        out: list[np.ndarray | None] = [None] * len(graphs)
        rows = (row for scores in self._run_padded(key, padded) for row in scores)
        for i, row in zip(order, rows):
            out[i] = row[: sizes[i]]
        return [o for o in out if o is not None]

    def run_batches(self, key: ModelKey, batches: Sequence[GraphBatch],
                    trace: dict[str, str] | None = None) -> list[np.ndarray]:
        """Scores [b, P] per padded batch, one model call each (the columnar path)."""
        with span("policy.infer", trace, model=key.name, version=key.version,
                  batch_size=sum(len(b.sizes) for b in batches), backend=self.backend_name):
            return self._run_padded(key, batches)

    def _run_padded(self, key: ModelKey, batches: Sequence[GraphBatch]) -> list[np.ndarray]:
        model = self.get(key)
        fixed = model.artifact.max_nodes
        out = []
        for b in batches:
            if fixed is not None:  # flat models take exactly their input size
                if int(b.sizes.max()) > fixed:
                    raise RequestError(
                        422, f"nodes: model {key.name!r} takes at most {fixed} nodes, got "
                        f"{int(b.sizes.max())}; use the 'hybrid' model for larger networks",
                        [{"loc": "nodes", "msg": f"at most {fixed} nodes for {key.name}"}])
                b = repad(b, fixed)
            out.append(model.backend.run(b.x, b.adj, b.mask))
        return out

    def describe(self) -> list[ModelInfo]:
        return [
            ModelInfo(k.name, k.version, m.artifact.kind, m.backend_name, m.artifact.max_nodes,
                      "torch" in sys.modules,  # ONNX replicas must stay torch-free
                      list(m.artifact.manifest.get("evaluation", [])))
            for k, m in self.models.items()
        ]


def repad(b: GraphBatch, pad: int) -> GraphBatch:
    """``b`` padded (or cropped: padding only) to ``pad`` nodes per graph."""
    p = b.x.shape[1]
    if p == pad:
        return b
    k = min(p, pad)
    x = np.zeros((len(b.sizes), pad, b.x.shape[2]), np.float32)
    adj = np.zeros((len(b.sizes), pad, pad), np.float32)
    mask = np.zeros((len(b.sizes), pad), bool)
    x[:, :k], adj[:, :k, :k], mask[:, :k] = b.x[:, :k], b.adj[:, :k, :k], b.mask[:, :k]
    return GraphBatch(x, adj, mask, b.sizes)


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max())
    out: np.ndarray = e / e.sum()
    return out


class AssembleMeta(NamedTuple):
    """What the assembler needs besides the scores."""

    model: ModelKey
    batch_size: int
    started_at: float  # time.perf_counter() at the ingress
    decision_ids: tuple[str, ...] = ()  # made at the ingress so every span can carry them
    trace: dict[str, str] | None = None


class ResponseStage:
    """Scores -> decision: mask, pick, confidence, ranking, decision id."""

    def assemble(self, state: PreparedState, scored: ScoredOne, meta: AssembleMeta) -> Decision:
        decision_id = meta.decision_ids[0] if meta.decision_ids else new_decision_id()
        with span("response.assemble", meta.trace, decision_id=decision_id):
            return self._assemble(state, scored.scores, meta, decision_id, scored.batch_size,
                                  scored.backend, scored.node)

    def assemble_batch(self, batch: StateBatch, buckets: Sequence[Bucket],
                       scored: ScoredBatch, meta: AssembleMeta) -> DecisionColumns:
        ids = meta.decision_ids or new_decision_ids(len(batch))
        with span("response.assemble_many", meta.trace, states=len(batch),
                  decision_ids=list(ids)):  # one span per batch, as in prepare_batch
            return assemble_columns(batch, buckets, scored.scores, ids,
                                    ModelRef(meta.model.name, meta.model.version,
                                             scored.backend), scored.node, meta.started_at)

    @staticmethod
    def _assemble(state: PreparedState, scores: np.ndarray, meta: AssembleMeta,
                  decision_id: str, batch_size: int, backend: str, node: str) -> Decision:
        mask = state.graph.mask
        feasible = np.flatnonzero(mask)
        s = scores[feasible].astype(np.float64)
        probs = softmax(s)
        order = np.argsort(-s, kind="stable")
        best = int(feasible[order[0]])
        ids = state.node_ids
        return Decision(
            decision_id=decision_id,
            node_id=ids[best],
            node_index=best,
            confidence=float(probs[order[0]]),
            scores={ids[int(i)]: float(v) for i, v in zip(feasible, s)},
            ranking=[ids[int(feasible[k])] for k in order],
            probabilities={ids[int(i)]: float(p) for i, p in zip(feasible, probs)},
            model=ModelRef(meta.model.name, meta.model.version, backend),
            cached=False,
            latency_ms=(time.perf_counter() - meta.started_at) * 1000.0,
            batch_size=batch_size,
            inference_node=node,
            infeasible=dict(state.infeasible),
        )
