"""POST /v1/compare: one state decided by every served model version and every heuristic,
with what each choice would cost in the simulator's completion-time model.

Comparisons are what-ifs, not decisions: they bypass the decision cache, are not written
to the decision log and are not counted as decisions; the models still run through the
same chain (and batching) as /v1/allocate, so a model's choice here is its choice there.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np

from edge_allocator.columnar import StateBatch, decode_state
from edge_allocator.explorer_responses import NodeOutcome, PolicyChoice, PolicyComparison
from edge_allocator.graph import NODE_TYPE_COLUMN, default_edges
from edge_allocator.policies.heuristics import all_heuristics
from edge_allocator.service.chain import Chain
from edge_allocator.service.routing import ModelRouter
from edge_allocator.service.stages import AssembleMeta, GraphStage, ModelKey
from edge_allocator.sim.estimate import COST_MODEL, Outcomes, estimate

_GRAPHS = GraphStage()


def state_edges_of(batch: StateBatch) -> np.ndarray:
    """The links the state's graph uses: its own, or the default topology."""
    edges = batch.edges[0]
    if edges is not None:
        return edges
    return default_edges(batch.nodes_of(0)[:, NODE_TYPE_COLUMN])


def _choice(policy: str, kind: Literal["model", "heuristic"], version: str | None,
            backend: str | None, index: int, ids: list[str], out: Outcomes) -> PolicyChoice:
    return PolicyChoice(policy, kind, version, backend, ids[index], index,
                        float(out.completion_ms[index]), float(out.cost[index]),
                        bool(out.missed[index]))


async def compare(data: dict[str, Any], chain: Chain, router: ModelRouter) -> PolicyComparison:
    """Validated as /v1/allocate (same 422s, including no feasible node)."""
    batch = decode_state(data)
    edges = state_edges_of(batch)
    ids = batch.ids_of(0)
    out = estimate(batch.nodes_of(0), batch.tasks[0], edges)
    choices: list[PolicyChoice] = []
    for name, version in router.versions_in_use():
        meta = AssembleMeta(ModelKey(name, version), 1, time.perf_counter())
        d = await chain.decide_one(batch, meta)
        choices.append(_choice(name, "model", version, d.model.backend, d.node_index, ids, out))
    prepared = _GRAPHS.prepare(batch).graph  # heuristics see what the models see
    for h in all_heuristics(seed=0):
        best = int(np.argmax(h.scores(prepared)))
        choices.append(_choice(h.name, "heuristic", None, None, best, ids, out))
    nodes = [NodeOutcome(ids[i], bool(out.feasible[i]), out.reasons[i],
                         float(out.completion_ms[i]), float(out.transfer_ms[i]),
                         float(out.wait_ms[i]), float(out.exec_ms[i]), float(out.energy_j[i]),
                         bool(out.missed[i]), float(out.cost[i])) for i in range(len(ids))]
    return PolicyComparison(ids, [(int(a), int(b)) for a, b in edges.tolist()], nodes, choices,
                      COST_MODEL)

