"""Request and response models of the HTTP API, and the one place input is validated.

Everything a client sends passes through these pydantic models, so every 422 names the
field path at fault, NaN/inf never reach a model, and unknown fields are ignored (old
clients keep working when fields are added).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_allocator.capacity import LIMIT_RANGES, default_text
from edge_allocator.constants import MAX_BATCH_STATES, MAX_EDGES, MAX_NODES

FiniteNonNeg = Annotated[float, Field(ge=0.0, allow_inf_nan=False, strict=True)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)]

#: The seven node fields, in the order the feature builder reads them.
NODE_FIELDS: tuple[str, ...] = (
    "cpu_util",
    "mem_util",
    "energy",
    "latency",
    "bandwidth",
    "queue_len",
    "node_type",
)
#: The task fields, in feature order.
TASK_FIELDS: tuple[str, ...] = ("compute_gcycles", "memory_mb", "data_mb", "deadline_ms")


def _limit(name: str) -> Any:
    """The constraints of one optional node field (``capacity.LIMIT_RANGES``)."""
    r = LIMIT_RANGES[name]
    if r.integer:
        return Field(gt=int(r.above), le=int(r.at_most), strict=True)
    return Field(gt=r.above, le=r.at_most, allow_inf_nan=False, strict=True)


CapacityGcps = Annotated[float, _limit("capacity_gcps")]
MemoryMb = Annotated[float, _limit("memory_mb")]
QueueCapacity = Annotated[int, _limit("queue_capacity")]
ObservedSpeed = Annotated[float, _limit("observed_speed")]


class _Strictish(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


class Node(_Strictish):
    """One node of the network as the operator observes it, relative to the task source.

    ``latency`` and ``bandwidth`` describe the path from the task's source to this node.
    ``energy`` is the energy this node spends to execute one giga-cycle, in joules.
    """

    node_id: str | None = Field(default=None, max_length=128)
    cpu_util: Fraction = Field(description="Share of CPU busy with other work, 0..1")
    mem_util: Fraction = Field(description="Share of memory in use, 0..1")
    energy: FiniteNonNeg = Field(description="Joules to execute one giga-cycle")
    latency: FiniteNonNeg = Field(description="Network latency from the source, ms")
    bandwidth: FiniteNonNeg = Field(
        description="Path bandwidth from the source, Mbps; 0 = unreachable"
    )
    queue_len: Annotated[float, Field(ge=0.0, le=1e6, allow_inf_nan=False, strict=True)] = Field(
        description="Tasks waiting on the node"
    )
    node_type: Literal[0, 1, 2] = Field(description="0 sensor/gateway, 1 edge/fog, 2 cloud")
    # Optional capacities (issue 12): omitted, the node type's nominal value applies,
    # which is exactly what the policies were trained on.
    capacity_gcps: CapacityGcps | None = Field(
        default=None, description="Compute capacity, giga-cycles per second; omitted: by "
        f"node_type, {default_text('capacity_gcps')}")
    memory_mb: MemoryMb | None = Field(
        default=None, description="Memory available to tasks, MB (mem_util is a share of "
        f"it); omitted: by node_type, {default_text('memory_mb')}")
    queue_capacity: QueueCapacity | None = Field(
        default=None, description="Queue length at which the node takes no more tasks; "
        f"omitted: {default_text('queue_capacity')}")
    observed_speed: ObservedSpeed | None = Field(
        default=None, description="Realised speed relative to capacity_gcps (0.5: tasks "
        "take twice as long as predicted); scales the capacity the model sees. Omitted: "
        "the service's estimate learned from /v1/feedback (GET /v1/nodes/{node_id}), 1.0 "
        "for a node never heard from")


class Task(_Strictish):
    """The task to place. Omitted in a request, the reference task below is used."""

    compute_gcycles: Annotated[float, Field(gt=0.0, le=1e6, allow_inf_nan=False, strict=True)] = 1.0
    memory_mb: Annotated[float, Field(ge=0.0, le=1e7, allow_inf_nan=False, strict=True)] = 256.0
    data_mb: Annotated[float, Field(ge=0.0, le=1e6, allow_inf_nan=False, strict=True)] = 1.0
    deadline_ms: Annotated[float, Field(gt=0.0, le=1e9, allow_inf_nan=False, strict=True)] = 1000.0


REFERENCE_TASK = Task()

Edge = tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]


class NetworkState(_Strictish):
    """Nodes plus optional links. Without ``edges`` a default topology is built from the
    node types (see ``graph.default_edges``)."""

    nodes: list[Node] = Field(min_length=1, max_length=MAX_NODES)
    edges: list[Edge] | None = Field(default=None, max_length=MAX_EDGES)

    @model_validator(mode="after")
    def _check_ids_and_edges(self) -> NetworkState:
        n = len(self.nodes)
        seen: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            nid = node.node_id if node.node_id is not None else str(i)
            if nid in seen:
                raise ValueError(
                    f"nodes.{i}.node_id: duplicate node_id {nid!r} (also nodes.{seen[nid]})"
                )
            seen[nid] = i
        _check_edges(self.edges, n)
        return self

    def node_ids(self) -> list[str]:
        return [n.node_id if n.node_id is not None else str(i) for i, n in enumerate(self.nodes)]


class AllocateRequest(NetworkState):
    """POST /v1/allocate."""

    task: Task | None = None
    model: str | None = Field(default=None, max_length=64)


class ExplainRequest(AllocateRequest):
    """POST /v1/explain: a /v1/allocate body, the node to explain and one to compare."""

    model: str | None = Field(default=None, max_length=64, description=(
        "A served model (or alias), or a heuristic: random, round_robin, least_loaded, "
        "lowest_latency, greedy_eft"))
    node_id: str | None = Field(default=None, max_length=128, description=(
        "The node whose score to explain; default: the chosen node"))
    compare_to: str | None = Field(default=None, max_length=128, description=(
        "Another node: why the explained node scored above (or below) it"))


class BatchAllocateRequest(_Strictish):
    """POST /v1/allocate/batch: many states answered in one vectorised pass."""

    states: list[AllocateRequest] = Field(min_length=1, max_length=MAX_BATCH_STATES)
    model: str | None = Field(default=None, max_length=64)


#: Keys of a full state that a request on the live network must not carry.
_STATE_KEYS = ("nodes", "edges", "states", "node_counts")


class _OnLiveNetwork(_Strictish):
    network: Literal["live"] = Field(
        description="Decide on the live network view (MQTT telemetry; GET /v1/network)")
    model: str | None = Field(default=None, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _no_state(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _STATE_KEYS:
                if key in data:
                    raise ValueError(f"{key}: not allowed with network 'live' (the nodes "
                                     "come from the live view); send one or the other")
        return data


class LiveAllocateRequest(_OnLiveNetwork):
    """POST /v1/allocate on the live network: only the task."""

    task: Task | None = None


class LiveBatchRequest(_OnLiveNetwork):
    """POST /v1/allocate/batch on the live network: many tasks, one snapshot."""

    tasks: list[Task] = Field(min_length=1, max_length=MAX_BATCH_STATES)


class ColumnarNodes(_Strictish):
    """Every node of the batch, field by field (T = sum of node_counts entries each).
    In msgpack a numeric array may be ``bin``: little-endian float32 (int32 for
    node_type)."""

    cpu_util: list[float]
    mem_util: list[float]
    energy: list[float]
    latency: list[float]
    bandwidth: list[float]
    queue_len: list[float]
    node_type: list[Literal[0, 1, 2]]
    node_id: list[str] | None = Field(default=None, description="Default: indices per state")
    capacity_gcps: list[float] | None = Field(
        default=None, description="Optional, one per node (no gaps); omitted: type defaults")
    memory_mb: list[float] | None = Field(
        default=None, description="Optional, one per node; omitted: type defaults")
    queue_capacity: list[int] | None = Field(
        default=None, description="Optional, one per node (int32 bin); omitted: 32")
    observed_speed: list[float] | None = Field(
        default=None, description="Optional, one per node; omitted: learned from feedback")


class ColumnarBatchRequest(_Strictish):
    """POST /v1/allocate/batch, columnar: one array per field over the whole batch.
    Same checks and error paths as ``states`` (``states.3.nodes.7.cpu_util``).
    (Documentation of the shape; ``edge_allocator.wire`` validates it vectorised.)"""

    node_counts: list[int] = Field(description="Nodes per state (int32 bin in msgpack)")
    nodes: ColumnarNodes
    edge_counts: list[int] | None = Field(
        default=None, description="Edges per state; omitted: default topologies")
    edges: list[int] | None = Field(
        default=None, description="Flat [s0, t0, s1, t1, ...], indices within each state")
    tasks: dict[str, list[float]] | None = Field(
        default=None, description="Per task field, one value per state; default: reference task")
    model: str | None = Field(default=None, max_length=64)


class FeedbackRequest(_Strictish):
    """POST /v1/feedback: what actually happened to a decision."""

    decision_id: str = Field(min_length=1, max_length=64)
    completion_ms: FiniteNonNeg | None = None
    success: bool = Field(default=True, strict=True)
    energy_j: FiniteNonNeg | None = None


# --- The original AI Edge Allocator API, kept so its clients work unchanged ---------------


class LegacyNetworkState(_Strictish):
    nodes: list[Node] = Field(min_length=1, max_length=MAX_NODES)
    edges: list[Edge] | None = Field(default=None, max_length=MAX_EDGES)

    @model_validator(mode="after")
    def _edges_in_range(self) -> LegacyNetworkState:
        _check_edges(self.edges, len(self.nodes))  # was an IndexError, a 500 (Schemathesis)
        return self


def _check_edges(edges: list[Edge] | None, n: int) -> None:
    for k, (s, t) in enumerate(edges or ()):
        if s >= n or t >= n:
            raise ValueError(
                f"edges.{k}: edge [{s}, {t}] points to a node index >= {n} (the node count)")


class LegacyPredictRequest(_Strictish):
    network_state: LegacyNetworkState
    model_type: str = Field(default="hybrid", max_length=64)


class LegacyBatchRequest(_Strictish):
    network_states: list[LegacyNetworkState] = Field(min_length=1, max_length=MAX_BATCH_STATES)
    model_type: str = Field(default="hybrid", max_length=64)


#: Network sizes the simulator generates on request (/v1/sample, /generate-mock-network).
SIM_MIN_NODES, SIM_MAX_NODES = 5, 1000
#: Each tier of a /generate-mock-network request in its per-tier form: (field, fewest).
MOCK_TIERS: tuple[tuple[str, int], ...] = (("num_devices", 1), ("num_fog", 1), ("num_cloud", 0))


class MockNetworkRequest(_Strictish):
    """POST /generate-mock-network: a network from the simulator's synthetic scenario.

    Either ``num_nodes`` (the simulator splits them into tiers: about 30% fog, one cloud
    per 60 nodes, the rest gateways) or the node count of every tier (``num_devices``
    sensors/gateways, ``num_fog``, ``num_cloud``); neither: 10 nodes. ``num_edges`` caps
    the links returned (a spanning tree of the topology first); omitted: every link."""

    num_nodes: int | None = Field(default=None, strict=True, ge=SIM_MIN_NODES, le=SIM_MAX_NODES)
    num_edges: int | None = Field(default=None, strict=True, ge=0, le=MAX_EDGES)
    num_devices: int | None = Field(default=None, strict=True, ge=1, le=SIM_MAX_NODES,
                                    description="Sensors / gateways (node_type 0)")
    num_fog: int | None = Field(default=None, strict=True, ge=1, le=SIM_MAX_NODES,
                                description="Edge / fog nodes (node_type 1)")
    num_cloud: int | None = Field(default=None, strict=True, ge=0, le=SIM_MAX_NODES,
                                  description="Cloud nodes (node_type 2)")
    seed: int | None = Field(default=None, strict=True, ge=0, le=2**32 - 1,
                             description="Same seed, same network; omitted: a new one")

    @model_validator(mode="after")
    def _one_form(self) -> MockNetworkRequest:
        given = [name for name, _ in MOCK_TIERS if getattr(self, name) is not None]
        if not given:
            return self
        for name, _ in MOCK_TIERS:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: required with {', '.join(given)} (node counts "
                                 "per tier: num_devices, num_fog, num_cloud)")
        total = sum(self.tiers() or ())
        if total > SIM_MAX_NODES:
            raise ValueError(f"num_devices: num_devices + num_fog + num_cloud = {total} "
                             f"exceeds {SIM_MAX_NODES} nodes")
        if self.num_nodes is not None and self.num_nodes != total:
            raise ValueError(f"num_nodes: {self.num_nodes} is not num_devices + num_fog + "
                             f"num_cloud = {total}; send one or the other")
        return self

    def tiers(self) -> tuple[int, int, int] | None:
        """(gateways, fog, cloud) of the per-tier form, or None."""
        if self.num_devices is None or self.num_fog is None or self.num_cloud is None:
            return None
        return self.num_devices, self.num_fog, self.num_cloud


class RequestError(ValueError):
    """A client error with an HTTP status and a list of ``{loc, msg}`` details."""

    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []

    def __reduce__(self) -> tuple[Any, ...]:  # crosses Ray process boundaries intact
        return (RequestError, (self.status, self.message, self.details))

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status, "details": self.details}


class ServiceUnavailable(RequestError):
    """503 with Retry-After: overloaded, or a replica was lost mid-request. The message
    says which; the client may retry either."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(503, message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[Any, ...]:
        return (ServiceUnavailable, (self.message, self.retry_after_s))


def validation_error(exc: ValidationError) -> RequestError:
    """Turn pydantic's error into a 422 whose details name each field path."""
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not loc and ": " in msg:  # cross-field checks name their path as "path: why"
            loc, msg = msg.split(": ", 1)
        details.append({"loc": loc, "msg": msg})
    first = details[0] if details else {"loc": "", "msg": "invalid request"}
    where = f"{first['loc']}: " if first["loc"] else ""
    return RequestError(422, f"{where}{first['msg']}", details)


def parse(model: type[BaseModel], data: Any) -> Any:
    """Validate ``data`` against ``model``; raise RequestError(422) naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
