"""The gRPC API (``edge_allocator/grpc/edge_allocator.proto``) over ``AllocatorApi``.

Each request message becomes exactly the JSON object the HTTP API takes, and goes
through the same ``AllocatorApi.allocate`` / ``allocate_batch``: the same validation,
routing, cache, log and chain of stages, so the same states give the same decisions and
the same errors. The Ray Serve ingress only passes each RPC and Serve's gRPC context
here; nothing in this module imports Ray, and it is tested without a cluster.

Errors become gRPC status codes, the details string being the HTTP error message (which
names the field path first, e.g. ``nodes.3.cpu_util: ...``):

==========================================  =====================
HTTP                                        gRPC
==========================================  =====================
400 malformed, 422 invalid field            INVALID_ARGUMENT
413 request over ``max_body_bytes``         INVALID_ARGUMENT (too large: do not retry)
401 missing or wrong bearer token           UNAUTHENTICATED
404 unknown model                           NOT_FOUND
503 overloaded / replica lost               UNAVAILABLE (+ ``retry-after`` trailer)
500 anything unexpected                     INTERNAL
==========================================  =====================

RESOURCE_EXHAUSTED is left to Ray Serve, which answers it when a replica's queue is full
(backpressure): a client may retry it, but never a request that is too large.

Trailing metadata of an error: ``http-status`` (the HTTP API's status for the same
request) and ``error-details`` (the HTTP body's ``details`` as ASCII JSON, cut to
``MAX_DETAILS_CHARS``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import grpc

from edge_allocator.capacity import LIMIT_FIELDS
from edge_allocator.grpc import edge_allocator_pb2 as pb
from edge_allocator.responses import BatchDecisions, Decision
from edge_allocator.schema import (
    NODE_FIELDS,
    REFERENCE_TASK,
    TASK_FIELDS,
    RequestError,
    ServiceUnavailable,
)
from edge_allocator.service.api import AllocatorApi
from edge_allocator.service.quota import QuotaExceeded

log = logging.getLogger(__name__)

SERVICE = "edge_allocator.v1.EdgeAllocator"
#: Full method names, the route tag of error metrics (two values: bounded).
ALLOCATE = f"/{SERVICE}/Allocate"
ALLOCATE_BATCH = f"/{SERVICE}/AllocateBatch"
#: ``error-details`` trailer cap: gRPC clients refuse metadata over 8 KiB by default.
MAX_DETAILS_CHARS = 2000

#: HTTP status of a RequestError -> gRPC status code (others: 4xx INVALID_ARGUMENT,
#: 5xx INTERNAL).
STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


class ServicerContext(Protocol):
    """What is used of a gRPC servicer context (``grpc.aio.ServicerContext`` or Ray
    Serve's ``RayServegRPCContext``, which replays code, details and trailers onto the
    real one)."""

    def invocation_metadata(self) -> Any: ...

    def set_code(self, code: grpc.StatusCode) -> None: ...

    def set_details(self, details: str) -> None: ...

    def set_trailing_metadata(self, trailing_metadata: list[tuple[str, str]]) -> None: ...


def grpc_status(status: int) -> grpc.StatusCode:
    """The gRPC status code of an HTTP error status."""
    if status in STATUS_CODES:
        return STATUS_CODES[status]
    return grpc.StatusCode.INVALID_ARGUMENT if status < 500 else grpc.StatusCode.INTERNAL


# --- proto -> the HTTP API's JSON object --------------------------------------------------


def _present(msg: Any) -> dict[str, Any]:
    """The fields of ``msg`` that are set (``optional`` fields: also when set to 0)."""
    return {fd.name: value for fd, value in msg.ListFields()}


def state_dict(req: pb.AllocateRequest) -> dict[str, Any]:
    """An AllocateRequest as the JSON object POST /v1/allocate takes."""
    out: dict[str, Any] = {"nodes": [_present(n) for n in req.nodes]}
    if req.HasField("edges"):
        out["edges"] = [[e.source, e.target] for e in req.edges.items]
    if req.HasField("task"):
        out["task"] = _present(req.task)
    if req.HasField("model"):
        out["model"] = req.model
    return out


def _columns_body(cols: pb.NodeColumns) -> dict[str, Any]:
    """NodeColumns as the columnar batch shape (``edge_allocator.wire``): decoded into
    arrays and checked vectorised, as the HTTP endpoint's columnar bodies are."""
    counts = list(cols.node_counts)
    total = sum(counts)
    columns = {f: list(getattr(cols, f)) for f in NODE_FIELDS}
    if len(cols.node_id):
        columns["node_id"] = list(cols.node_id)
    for f in LIMIT_FIELDS:  # optional: empty means the type defaults
        if len(getattr(cols, f)):
            columns[f] = list(getattr(cols, f))
    for name, values in columns.items():
        if len(values) != total:
            raise RequestError(422, f"columns.{name}: {len(values)} values, but node_counts "
                                    f"add up to {total}",
                               [{"loc": f"columns.{name}", "msg": "length mismatch"}])
    if len(cols.tasks) not in (0, len(counts)):
        raise RequestError(422, f"columns.tasks: {len(cols.tasks)} tasks for {len(counts)} "
                                "states (send none, or one per state)",
                           [{"loc": "columns.tasks", "msg": "length mismatch"}])
    body: dict[str, Any] = {"node_counts": counts, "nodes": columns}
    if len(cols.tasks):
        tasks = [_present(t) for t in cols.tasks]
        body["tasks"] = {f: [t.get(f, getattr(REFERENCE_TASK, f)) for t in tasks]
                         for f in TASK_FIELDS}
    return body


def batch_dict(req: pb.BatchAllocateRequest) -> dict[str, Any]:
    """A BatchAllocateRequest as the JSON object POST /v1/allocate/batch takes."""
    if req.HasField("columns"):
        if len(req.states):
            raise RequestError(422, "columns: send either states or columns, not both",
                               [{"loc": "columns", "msg": "states given too"}])
        out = _columns_body(req.columns)
    else:
        out = {"states": [state_dict(s) for s in req.states]}
    if req.HasField("model"):
        out["model"] = req.model
    return out


# --- Decision -> proto --------------------------------------------------------------------


def decision_message(d: Decision) -> pb.Decision:
    return pb.Decision(
        decision_id=d.decision_id, node_id=d.node_id, node_index=d.node_index,
        confidence=d.confidence, scores=d.scores, ranking=d.ranking,
        probabilities=d.probabilities,
        model=pb.ModelRef(name=d.model.name, version=d.model.version, backend=d.model.backend),
        cached=d.cached, latency_ms=d.latency_ms, batch_size=d.batch_size,
        inference_node=d.inference_node, infeasible=d.infeasible)


# --- the HTTP API's JSON -> proto (clients, tests, benchmarks) ----------------------------


def state_message(state: dict[str, Any]) -> pb.AllocateRequest:
    """A JSON state (POST /v1/allocate's body) as an AllocateRequest."""
    req = pb.AllocateRequest(nodes=[pb.Node(**n) for n in state["nodes"]])
    if state.get("edges") is not None:
        req.edges.SetInParent()
        req.edges.items.extend(pb.Edge(source=s, target=t) for s, t in state["edges"])
    if state.get("task") is not None:
        req.task.CopyFrom(pb.Task(**state["task"]))
    if state.get("model") is not None:
        req.model = state["model"]
    return req


def columns_message(states: Sequence[dict[str, Any]]) -> pb.NodeColumns:
    """Many JSON states (default topology: edges are not carried) as NodeColumns."""
    nodes = [n for s in states for n in s["nodes"]]
    cols = pb.NodeColumns(node_counts=[len(s["nodes"]) for s in states],
                          **{f: [n[f] for n in nodes] for f in NODE_FIELDS})
    if any("node_id" in n for n in nodes):
        cols.node_id.extend(str(n.get("node_id", i)) for s in states
                            for i, n in enumerate(s["nodes"]))
    if any(s.get("task") is not None for s in states):
        cols.tasks.extend(pb.Task(**(s.get("task") or {})) for s in states)
    return cols


def decision_dict(msg: pb.Decision) -> dict[str, Any]:
    """A Decision message as the HTTP API's JSON object."""
    return {"decision_id": msg.decision_id, "node_id": msg.node_id,
            "node_index": msg.node_index, "confidence": msg.confidence,
            "scores": dict(msg.scores), "ranking": list(msg.ranking),
            "probabilities": dict(msg.probabilities),
            "model": {"name": msg.model.name, "version": msg.model.version,
                      "backend": msg.model.backend},
            "cached": msg.cached, "latency_ms": msg.latency_ms, "batch_size": msg.batch_size,
            "inference_node": msg.inference_node if msg.HasField("inference_node") else None,
            "infeasible": dict(msg.infeasible)}


# --- the servicer ---------------------------------------------------------------------------

Reply = TypeVar("Reply", pb.Decision, pb.BatchDecisions)


def _metadata(context: ServicerContext) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in (context.invocation_metadata() or ())}


def _details_json(details: Sequence[dict[str, Any]]) -> str:
    """The error details as printable-ASCII JSON (a valid metadata value), capped."""
    kept: list[dict[str, str]] = []
    for d in details:
        entry = {"loc": str(d.get("loc", "")), "msg": str(d.get("msg", ""))}
        if len(json.dumps([*kept, entry])) > MAX_DETAILS_CHARS:
            break
        kept.append(entry)
    return json.dumps(kept)


class GrpcFrontDoor:
    """Answers the two RPCs: auth from the ``authorization`` metadata (``Bearer
    <token>``, the HTTP API's tokens), the request size limit, conversion, and errors
    as status codes set on the context (the reply is then an empty message, which
    clients never see: a non-OK status carries no message)."""

    def __init__(self, api: Callable[[], AllocatorApi]) -> None:
        """``api`` returns the AllocatorApi in force (the ingress builds it on first
        use and reconfigures it in place)."""
        self._api = api

    async def allocate(self, request: pb.AllocateRequest,
                       context: ServicerContext) -> pb.Decision:
        return await self._answer(ALLOCATE, request, context, self._allocate, pb.Decision)

    async def allocate_batch(self, request: pb.BatchAllocateRequest,
                             context: ServicerContext) -> pb.BatchDecisions:
        return await self._answer(ALLOCATE_BATCH, request, context, self._allocate_batch,
                                  pb.BatchDecisions)

    @staticmethod
    async def _allocate(api: AllocatorApi, request: Any) -> pb.Decision:
        decision = await api.allocate(state_dict(request))
        if not isinstance(decision, Decision):  # only a field selection returns a dict
            raise TypeError(f"allocate returned {type(decision).__name__}")
        return decision_message(decision)

    @staticmethod
    async def _allocate_batch(api: AllocatorApi, request: Any) -> pb.BatchDecisions:
        out = await api.allocate_batch(batch_dict(request))
        if not isinstance(out, BatchDecisions):
            raise TypeError(f"allocate_batch returned {type(out).__name__}")
        return pb.BatchDecisions(decisions=[decision_message(d) for d in out.decisions])

    async def _answer(self, method: str, request: Any, context: ServicerContext,
                      handler: Callable[[AllocatorApi, Any], Any],
                      empty: Callable[[], Reply]) -> Reply:
        api = self._api()
        try:
            caller = api.auth.check(_metadata(context).get("authorization"))
            if caller is not None:
                api.quota.take(caller)  # RESOURCE_EXHAUSTED + retry-after over the rate
            size = request.ByteSize()
            if size > api.cfg.max_body_bytes:
                raise RequestError(413, f"request of {size} bytes exceeds the limit of "
                                        f"{api.cfg.max_body_bytes}")
            reply: Reply = await handler(api, request)
            return reply
        except RequestError as err:
            self._error(api, err, method, context)
        except Exception as exc:
            log.exception("internal error on %s", method)
            self._error(api, RequestError(500, f"internal error ({type(exc).__name__})"),
                        method, context)
        return empty()

    @staticmethod
    def _error(api: AllocatorApi, err: RequestError, method: str,
               context: ServicerContext) -> None:
        api.observer.error(err.status, method)
        context.set_code(grpc_status(err.status))
        context.set_details(err.message)
        trailers = [("http-status", str(err.status))]
        if err.details:
            trailers.append(("error-details", _details_json(err.details)))
        if isinstance(err, ServiceUnavailable | QuotaExceeded):
            trailers.append(("retry-after", str(err.retry_after_s)))
        context.set_trailing_metadata(trailers)
