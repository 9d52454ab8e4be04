"""Scores of a whole batch -> decisions, columnar: argmax, softmax and ranking for every
state of a bucket in one array operation each; per-node maps are built only when the
client asks for them (``fields``).

``DecisionColumns`` keeps the batch as arrays; ``decisions()`` gives the full typed
``Decision``s (the default response, identical to the one-at-a-time assembly), and
``rows(fields)`` only the keys a client selected, e.g. ``node_id,confidence``, without
building ``scores``, ``probabilities`` or ``ranking`` unless selected.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_allocator.columnar import StateBatch
from edge_allocator.constants import MAX_NODES
from edge_allocator.graph_batch import Bucket, feasibility
from edge_allocator.responses import DECISION_FIELDS, Decision, ModelRef
from edge_allocator.schema import RequestError

#: Node ids of states sent without ids: their indices as strings, made once.
_INDEX_IDS = [str(i) for i in range(MAX_NODES + 1)]
_PER_NODE = frozenset({"scores", "probabilities", "ranking"})


def parse_fields(spec: str | None) -> tuple[str, ...] | None:
    """``"node_id,confidence"`` -> the selected keys in the decision's own order; None
    (or empty) means every key. An unknown key is a 422 naming it."""
    if spec is None or not spec.strip():
        return None
    asked = {f.strip() for f in spec.split(",") if f.strip()}
    unknown = sorted(asked - set(DECISION_FIELDS))
    if unknown:
        raise RequestError(422, f"fields: unknown field(s) {unknown}; choose from "
                           f"{list(DECISION_FIELDS)}", [{"loc": "fields", "msg": "unknown field"}])
    return tuple(f for f in DECISION_FIELDS if f in asked)


@dataclass(slots=True)
class DecisionColumns:
    """Decisions of a batch as arrays (state order)."""

    batch: StateBatch
    decision_ids: Sequence[str]
    model: ModelRef
    batch_size: int
    inference_node: str
    best: np.ndarray  # [B] node index of the choice
    confidence: np.ndarray  # [B] float64
    scores: list[np.ndarray]  # per state [n] float64
    probs: list[np.ndarray]  # per state [n] float64 (0 where masked)
    order: list[np.ndarray]  # per state feasible node indices, best first
    latency_ms: float = 0.0
    cached: bool = False
    _built: list[Decision] | None = None
    _score_maps: list[dict[str, float] | None] | None = None
    _infeasible: list[dict[str, str]] | None = None
    _feasible_of: list[tuple[list[int], list[str]] | None] | None = None
    _mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.decision_ids)

    def _ids(self, i: int) -> list[str]:
        ids = self.batch.node_ids[i]
        return ids if ids is not None else _INDEX_IDS

    def decision(self, i: int) -> Decision:
        return self.decisions()[i]

    def node_id(self, i: int) -> str:
        return self._ids(i)[int(self.best[i])]

    def node_ids(self) -> list[str]:
        """The chosen node's id of every decision."""
        return [self._ids(i)[b] for i, b in enumerate(self.best.tolist())]

    def scores_of(self, i: int) -> dict[str, float]:
        """State i's scores of feasible nodes, in node order (what the decision log keeps),
        without building the rest of the decision; made once, shared with the response
        (the log asks first, the response after)."""
        if self._score_maps is None:
            self._score_maps = [None] * len(self)
        made = self._score_maps[i]
        if made is None:
            feasible, keys = self._feasible(i)
            made = self._score_maps[i] = dict(zip(keys, self.scores[i][feasible].tolist()))
        return made

    def _feasible(self, i: int) -> tuple[list[int], list[str]]:
        """State i's feasible node indices in node order, and their ids (the keys of its
        per-node maps); made once, for the log's scores and the response's maps."""
        if self._feasible_of is None:
            self._feasible_of = [None] * len(self)
        made = self._feasible_of[i]
        if made is None:
            feasible = sorted(self.order[i].tolist())
            ids = self._ids(i)
            made = self._feasible_of[i] = (feasible, [ids[k] for k in feasible])
        return made

    def run_scores(self) -> np.ndarray:
        """[T] every node's score in the batch's node order as the model gave it
        (float64), NaN where masked: a decision run's ``score_values`` (``store.runs``)."""
        values = (np.concatenate(self.scores).astype(np.float64) if self.scores
                  else np.empty(0))
        values[~self._feasibility()] = np.nan
        return values

    def infeasible(self) -> list[dict[str, str]]:
        """Per state {node_id: why} of its masked nodes, made once and for masked nodes
        only (``StateBatch.masked_reasons``)."""
        if self._infeasible is None:
            self._infeasible = self.batch.masked_reasons(self._feasibility())
        return self._infeasible

    def _feasibility(self) -> np.ndarray:
        """[T] the batch's feasibility mask, made once (the log's packed scores and the
        answer's reasons both read it)."""
        if self._mask is None:
            self._mask = feasibility(self.batch)
        return self._mask

    def _decision(self, i: int) -> Decision:
        ids, order = self._ids(i), self.order[i].tolist()
        feasible, keys = self._feasible(i)  # maps keep node order, as one state's do
        return Decision(
            decision_id=self.decision_ids[i],
            node_id=ids[int(self.best[i])],
            node_index=int(self.best[i]),
            confidence=float(self.confidence[i]),
            scores=self.scores_of(i),
            ranking=[ids[k] for k in order],
            probabilities=dict(zip(keys, self.probs[i][feasible].tolist())),
            model=self.model,
            cached=self.cached,
            latency_ms=self.latency_ms,
            batch_size=self.batch_size,
            inference_node=self.inference_node,
            infeasible=self.infeasible()[i],
        )

    def decisions(self) -> list[Decision]:
        """Every decision in full, built once (the response and the log share them);
        ``latency_ms`` is the columns' value when first built."""
        if self._built is None:
            self._built = [self._decision(i) for i in range(len(self))]
        return self._built

    def rows(self, selected: tuple[str, ...]) -> list[dict[str, Any]]:
        """Only the selected keys; per-node maps only if selected."""
        if _PER_NODE & set(selected):
            return [{f: getattr(d, f) for f in selected} for d in self.decisions()]
        model = {"name": self.model.name, "version": self.model.version,
                 "backend": self.model.backend}
        columns: dict[str, list[Any]] = {}
        for f in selected:
            if f == "decision_id":
                columns[f] = list(self.decision_ids)
            elif f == "node_id":
                columns[f] = self.node_ids()
            elif f == "node_index":
                columns[f] = self.best.tolist()
            elif f == "confidence":
                columns[f] = self.confidence.tolist()
            elif f == "infeasible":
                columns[f] = self.infeasible()
            else:
                value = {"model": model, "cached": self.cached, "latency_ms": self.latency_ms,
                         "batch_size": self.batch_size,
                         "inference_node": self.inference_node}[f]
                columns[f] = [value] * len(self)
        return [dict(zip(selected, vals)) for vals in zip(*columns.values())]


def assemble_columns(batch: StateBatch, buckets: Sequence[Bucket],
                     scores: Sequence[np.ndarray], decision_ids: Sequence[str],
                     model: ModelRef, node: str, started_at: float) -> DecisionColumns:
    """One vectorised pass per bucket: the choice is the best feasible score, confidence
    its softmax probability over feasible nodes, ranking the feasible nodes by score
    (ties by index), exactly as the one-state assembly computes them."""
    b = len(batch)
    best = np.zeros(b, np.int64)
    conf = np.zeros(b, np.float64)
    per_scores: list[np.ndarray] = [np.empty(0)] * b
    per_probs: list[np.ndarray] = [np.empty(0)] * b
    per_order: list[np.ndarray] = [np.empty(0, np.int64)] * b
    for bucket, raw in zip(buckets, scores):
        s = raw.astype(np.float64)
        m = bucket.graphs.mask[:, : s.shape[1]]
        s = s[:, : m.shape[1]]
        masked = np.where(m, s, -np.inf)
        e = np.where(m, np.exp(s - masked.max(axis=1, keepdims=True)), 0.0)
        probs = e / e.sum(axis=1, keepdims=True)
        order = np.argsort(-masked, axis=1, kind="stable")
        rows = np.arange(len(bucket.states))
        top = order[:, 0]
        best[bucket.states] = top
        conf[bucket.states] = probs[rows, top]
        feasible = m.sum(axis=1)
        for j, i in enumerate(bucket.states.tolist()):
            n = int(bucket.graphs.sizes[j])
            per_scores[i] = s[j, :n]
            per_probs[i] = probs[j, :n]
            per_order[i] = order[j, : feasible[j]]
    return DecisionColumns(batch, decision_ids, model, b, node, best, conf, per_scores,
                           per_probs, per_order,
                           latency_ms=(time.perf_counter() - started_at) * 1000.0)
