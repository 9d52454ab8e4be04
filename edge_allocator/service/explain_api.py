"""POST /v1/explain: a decision and why its policy scored a node as it did.

The ingress validates the request exactly as /v1/allocate does (same decoder, same
422s and limits), makes the decision through ``AllocatorApi.decide`` (routing, cache,
decision log, as any decision; the explanation itself is never cached), then asks an
``ExplainPort`` for the attributions. The port runs where torch is allowed: in this
process (``LocalExplainer``: tests, the CLI) or on the Explainer deployment
(``deployments/explainer.py``), so the replicas that make decisions stay torch-free.

For a heuristic (``model`` one of ``explain.HEURISTICS``) the decision is the
heuristic's own, made on the port too; it is neither cached nor logged (it is not a
decision this service made), and its ``model.version`` is ``heuristic``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Protocol

from edge_allocator.columnar import decode_state
from edge_allocator.explain import HEURISTICS
from edge_allocator.explain.attribution import (
    Attribution,
    NodeAttribution,
    RuleResult,
    comparison,
    explanation,
)
from edge_allocator.graph import GraphInputs
from edge_allocator.responses import Decision, ExplainResponse, HeuristicRule
from edge_allocator.schema import RequestError
from edge_allocator.service.api import AllocatorApi
from edge_allocator.service.stages import (
    AssembleMeta,
    GraphStage,
    ModelKey,
    PreparedState,
    ResponseStage,
    ScoredOne,
)
from edge_allocator.store import new_decision_id

ROUTE = "/v1/explain"
#: ``model.version`` and ``model.backend`` of a heuristic's decision.
HEURISTIC_VERSION, HEURISTIC_BACKEND = "heuristic", "numpy"
MAX_ID_CHARS = 128


class ExplainPort(Protocol):
    """Where attributions are computed."""

    async def attribute(self, models_dir: str, key: ModelKey, graph: GraphInputs,
                        target: int, compare: int | None) -> Attribution: ...

    async def explain_rule(self, name: str, graph: GraphInputs, node_ids: list[str],
                           target: int | None, compare: int | None) -> RuleResult: ...


class LocalExplainer:
    """Attributions in this process: torch and Captum are imported on first use."""

    def __init__(self) -> None:
        self._explainers: dict[str, Any] = {}

    def attribute_now(self, models_dir: str, key: ModelKey, graph: GraphInputs,
                      target: int, compare: int | None) -> Attribution:
        from edge_allocator.explain.gradients import BASELINE, GradientExplainer

        explainer = self._explainers.get(models_dir)
        if explainer is None:
            explainer = self._explainers[models_dir] = GradientExplainer(Path(models_dir))
        attrs: list[NodeAttribution] = explainer.attribute(
            key.name, key.version, graph, [target] + ([compare] if compare is not None else []))
        return Attribution(attrs[0], attrs[1] if compare is not None else None, BASELINE)

    @staticmethod
    def explain_rule_now(name: str, graph: GraphInputs, node_ids: list[str],
                         target: int | None, compare: int | None) -> RuleResult:
        from edge_allocator.explain.rules import explain_rule

        return explain_rule(name, graph, node_ids, target, compare)

    async def attribute(self, models_dir: str, key: ModelKey, graph: GraphInputs,
                        target: int, compare: int | None) -> Attribution:
        return await asyncio.to_thread(self.attribute_now, models_dir, key, graph, target,
                                       compare)

    async def explain_rule(self, name: str, graph: GraphInputs, node_ids: list[str],
                           target: int | None, compare: int | None) -> RuleResult:
        return await asyncio.to_thread(self.explain_rule_now, name, graph, node_ids,
                                       target, compare)


def _node_field(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if type(value) is not str or not 1 <= len(value) <= MAX_ID_CHARS:
        raise RequestError(422, f"{name}: a node_id of the state (a string of 1 to "
                           f"{MAX_ID_CHARS} characters)", [{"loc": name, "msg": "not a node id"}])
    return value


def _index(prepared: PreparedState, node_id: str, name: str) -> int:
    """The index of ``node_id``; 422 at ``name`` if the state has none, or if it is
    infeasible (it has no score: the decision never ranks it)."""
    try:
        i = prepared.node_ids.index(node_id)
    except ValueError:
        raise RequestError(422, f"{name}: no node {node_id!r} in this state",
                           [{"loc": name, "msg": "unknown node"}]) from None
    if not prepared.graph.mask[i]:
        raise RequestError(422, f"{name}: node {node_id!r} is infeasible for this task "
                           "(unreachable, queue full or short of memory): it has no score "
                           "to explain", [{"loc": name, "msg": "infeasible node"}])
    return i


class ExplainApi:
    """POST /v1/explain over ``AllocatorApi`` and an ``ExplainPort``."""

    def __init__(self, api: AllocatorApi, port: ExplainPort | None = None) -> None:
        self.api = api
        self.port: ExplainPort = port or LocalExplainer()
        self.graphs = GraphStage()
        self.assembler = ResponseStage()

    async def explain(self, data: dict[str, Any]) -> ExplainResponse:
        t0 = time.perf_counter()
        if "network" in data:
            raise RequestError(422, "network: /v1/explain takes the state in full (nodes), "
                               "not the live network", [{"loc": "network",
                                                         "msg": "not supported here"}])
        node_id, compare_to = _node_field(data, "node_id"), _node_field(data, "compare_to")
        state = decode_state(data)  # the same checks and 422s as /v1/allocate
        prepared = self.graphs.prepare(state)  # 422 when no node is feasible
        target = _index(prepared, node_id, "node_id") if node_id is not None else None
        compare = _index(prepared, compare_to, "compare_to") if compare_to is not None \
            else None
        model = state.models[0]
        if model in HEURISTICS:
            return await self._heuristic(model, prepared, target, compare, t0)
        decision = await self.api.decide(state, None, ROUTE)
        target = decision.node_index if target is None else target
        if compare is not None and compare == target:
            raise _same_node()
        key = ModelKey(decision.model.name, decision.model.version)
        attr = await self.port.attribute(str(self.api.cfg.models_dir), key, prepared.graph,
                                         target, compare)
        return _response(decision, attr, prepared.node_ids, None)

    async def _heuristic(self, name: str, prepared: PreparedState, target: int | None,
                         compare: int | None, t0: float) -> ExplainResponse:
        if compare is not None and compare == target:
            raise _same_node()
        answer = await self.port.explain_rule(name, prepared.graph, prepared.node_ids,
                                              target, compare)
        explained = answer.attribution.explained
        if compare is not None and compare == explained.node_index:
            raise _same_node()
        meta = AssembleMeta(ModelKey(name, HEURISTIC_VERSION), 1, t0, (new_decision_id(),))
        decision = self.assembler.assemble(
            prepared, ScoredOne(answer.scores, 1, HEURISTIC_BACKEND, "ingress"), meta)
        return _response(decision, answer.attribution, prepared.node_ids, answer.rule)


def _same_node() -> RequestError:
    return RequestError(422, "compare_to: the same node as the one explained; name "
                        "another node", [{"loc": "compare_to", "msg": "same node"}])


def _response(decision: Decision, attr: Attribution, node_ids: list[str],
              rule: HeuristicRule | None) -> ExplainResponse:
    return ExplainResponse(
        decision, explanation(attr.explained, node_ids, attr.baseline, rule),
        comparison(attr.explained, attr.compared, node_ids)
        if attr.compared is not None else None)
