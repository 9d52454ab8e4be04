"""Request bodies decoded straight into a StateBatch by msgspec typed structs.

Why: the row-shaped batch is the shape most clients send, and turning it into columns
was the largest CPU cost of a decision: ``orjson.loads`` builds a dict per node and
per state (~10 µs a 20-node state), then the fast checks pull 7 fields out of each
dict and check their types in Python (~18 µs). msgspec decodes the same bytes into
``gc=False`` structs whose field types (``float`` rejects booleans and strings, ``str``,
two-int edges, length limits) are checked in C while parsing, so what remains in Python
is one ``attrgetter`` per node into one ``np.fromiter`` and the numpy range checks
``columnar`` already uses. msgpack bodies gain most: their floats are binary.

Same verdicts as the dict path by construction, which stays the reference: these
structs accept only bodies that the dict path's fast checks accept too (the same
ranges, unique ids, edges inside the state), and anything else — a type msgspec
rejects, a value out of range, a body with the live network's or the columnar shape's
keys — returns None, and the caller takes the dict path (``columnar.decode_batch``,
then pydantic), which writes every error. A test holds the structs' fields to the
pydantic models' and a differential test compares both paths on generated bodies.
"""

from __future__ import annotations

import itertools
import operator
from typing import Annotated, Any, NamedTuple

import msgspec
import numpy as np

from edge_allocator.capacity import LIMIT_FIELDS, LIMIT_RANGES
from edge_allocator.columnar import (
    TASK_RANGES,
    StateBatch,
    _Irregular,
    check_ids,
    check_values,
    edge_list,
)
from edge_allocator.constants import MAX_BATCH_STATES, MAX_NODES
from edge_allocator.schema import NODE_FIELDS, REFERENCE_TASK, TASK_FIELDS
from edge_allocator.wire import COLUMNAR_KEY

_Id = Annotated[str, msgspec.Meta(max_length=128)]
_Model = Annotated[str, msgspec.Meta(max_length=64)]


class PlainNode(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A node as today's clients send it: the seven fields and perhaps ``node_id``, no
    other key. A body whose nodes are all plain is decoded with these and skips the scan
    for the optional fields (~3.5 µs a 20-node state); any other key (a capacity, or one
    pydantic would ignore) fails here, and the body is decoded again with TypedNode."""

    cpu_util: float
    mem_util: float
    energy: float
    latency: float
    bandwidth: float
    queue_len: float
    node_type: float
    node_id: _Id | None = None


class TypedNode(PlainNode, gc=False, forbid_unknown_fields=False):
    """``schema.Node``: ranges are checked afterwards, vectorised (``check_values``);
    ``node_type`` is a float here and must then be 0, 1 or 2. Unknown keys are ignored,
    as pydantic ignores them."""

    # the optional capacities (capacity.LIMIT_FIELDS): UNSET when omitted, None when
    # sent as null (both: the type's default)
    capacity_gcps: float | None | msgspec.UnsetType = msgspec.UNSET
    memory_mb: float | None | msgspec.UnsetType = msgspec.UNSET
    queue_capacity: int | None | msgspec.UnsetType = msgspec.UNSET
    observed_speed: float | None | msgspec.UnsetType = msgspec.UNSET


class TypedTask(msgspec.Struct, gc=False):
    """``schema.Task``, defaults included; ranges checked vectorised."""

    compute_gcycles: float = REFERENCE_TASK.compute_gcycles
    memory_mb: float = REFERENCE_TASK.memory_mb
    data_mb: float = REFERENCE_TASK.data_mb
    deadline_ms: float = REFERENCE_TASK.deadline_ms


class TypedState(msgspec.Struct, gc=False):
    """``schema.AllocateRequest``. ``network`` (the live network's request) is not a
    state: its presence sends the body to the dict path."""

    nodes: Annotated[list[TypedNode], msgspec.Meta(min_length=1, max_length=MAX_NODES)]
    # the edge list's bytes as sent, decoded and checked once per distinct list
    # (``columnar.edge_list``): operators resend the same topology with every state
    edges: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    task: TypedTask | None = None
    model: _Model | None = None
    network: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET  # presence only: not decoded


class TypedBatch(msgspec.Struct, gc=False):
    """``schema.BatchAllocateRequest`` plus the body's ``fields`` option; ``network``
    sends the body to the dict path (so does the columnar shape)."""

    states: Annotated[list[TypedState], msgspec.Meta(min_length=1, max_length=MAX_BATCH_STATES)]
    model: _Model | None = None
    fields: Any = msgspec.UNSET
    network: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET  # presence only: not decoded


class PlainState(TypedState, gc=False):
    """TypedState of plain nodes."""

    nodes: Annotated[list[PlainNode],  # type: ignore[assignment]
                     msgspec.Meta(min_length=1, max_length=MAX_NODES)]


class PlainBatch(TypedBatch, gc=False):
    """TypedBatch of plain nodes."""

    states: Annotated[list[PlainState],  # type: ignore[assignment]
                      msgspec.Meta(min_length=1, max_length=MAX_BATCH_STATES)]


#: ``wire.COLUMNAR_KEY`` as bytes: it appears verbatim in a JSON body and in a msgpack
#: one (a str is stored as its UTF-8 bytes).
_COLUMNAR = COLUMNAR_KEY.encode()


class DecodedBatch(NamedTuple):
    batch: StateBatch
    model: str | None
    fields: Any  # the body's ``fields`` as sent (msgspec.UNSET when absent)


_NODE_GETTER = operator.attrgetter(*NODE_FIELDS)
_ID_GETTER = operator.attrgetter("node_id")
_LIMIT_GETTER = operator.attrgetter(*LIMIT_FIELDS)
_LIMIT_ABOVE = np.array([LIMIT_RANGES[f].above for f in LIMIT_FIELDS])
_LIMIT_AT_MOST = np.array([LIMIT_RANGES[f].at_most for f in LIMIT_FIELDS])
_NOT_SENT = {msgspec.UNSET, None}
_TASK_GETTER = operator.attrgetter(*TASK_FIELDS)
_REFERENCE = np.array([float(getattr(REFERENCE_TASK, f)) for f in TASK_FIELDS])
_TASK_LO = np.array([TASK_RANGES[f][0] for f in TASK_FIELDS])
_TASK_EXCLUSIVE = np.array([TASK_RANGES[f][1] for f in TASK_FIELDS])
_TASK_HI = np.array([TASK_RANGES[f][2] for f in TASK_FIELDS])
#: What msgspec raises on a body the structs cannot take: malformed, of another type,
#: or nested past its depth limit (RecursionError: ``[{"nodes": [`` 500 times deep).
_NOT_TYPED = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)
_BATCH_JSON, _BATCH_MSGPACK = msgspec.json.Decoder(TypedBatch), msgspec.msgpack.Decoder(TypedBatch)
_STATE_JSON, _STATE_MSGPACK = msgspec.json.Decoder(TypedState), msgspec.msgpack.Decoder(TypedState)
_PLAIN_BATCH = msgspec.json.Decoder(PlainBatch), msgspec.msgpack.Decoder(PlainBatch)
_PLAIN_STATE = msgspec.json.Decoder(PlainState), msgspec.msgpack.Decoder(PlainState)


def decode_batch_body(body: bytes, msgpack: bool) -> DecodedBatch | None:
    """A row-shaped ``/v1/allocate/batch`` body as columns, or None: the dict path
    decides (and words any error)."""
    # The columnar shape (or a row body that names its key) goes to the dict path before
    # msgspec scans a body it cannot take (that scan cost ~3 µs a state).
    if _COLUMNAR in body:
        return None
    req = _decode(body, _PLAIN_BATCH[msgpack],
                  _BATCH_MSGPACK if msgpack else _BATCH_JSON)
    if req is None or req.network is not msgspec.UNSET:
        return None
    try:
        return DecodedBatch(_columns(req.states, msgpack), req.model, req.fields)
    except _Irregular:
        return None


def decode_state_body(body: bytes, msgpack: bool) -> StateBatch | None:
    """A ``/v1/allocate`` body as a batch of one, or None (the dict path decides)."""
    state = _decode(body, _PLAIN_STATE[msgpack],
                    _STATE_MSGPACK if msgpack else _STATE_JSON)
    if state is None or state.network is not msgspec.UNSET:
        return None
    try:
        return _columns([state], msgpack)
    except _Irregular:
        return None


def _decode(body: bytes, plain: Any, typed: Any) -> Any:
    """``body`` by the plain decoder, else (a key beyond the plain node's, or a bad
    value) by the typed one, else None. Malformed bytes are not read twice."""
    try:
        return plain.decode(body)
    except msgspec.ValidationError:
        pass
    except _NOT_TYPED:
        return None
    try:
        return typed.decode(body)
    except _NOT_TYPED:
        return None


def _columns(states: list[TypedState], msgpack: bool) -> StateBatch:
    node_lists = [s.nodes for s in states]
    sizes = np.fromiter(map(len, node_lists), np.int64, count=len(states))
    offsets = np.zeros(len(states) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total = int(offsets[-1])
    flat = np.fromiter(
        itertools.chain.from_iterable(map(_NODE_GETTER, itertools.chain.from_iterable(
            node_lists))), np.float64, count=total * len(NODE_FIELDS))
    values = check_values(flat.reshape(total, len(NODE_FIELDS)))
    edges, edge_keys = _edges(states, sizes, msgpack)
    plain = type(states[0]) is PlainState  # one decoder made every state
    return StateBatch(
        values=values,
        offsets=offsets,
        node_ids=[_ids(list(map(_ID_GETTER, ns))) for ns in node_lists],
        edges=edges,
        edge_keys=edge_keys,
        tasks=_tasks(states),
        models=[s.model for s in states],
        declared=None if plain else _declared(
            list(itertools.chain.from_iterable(node_lists))),
    )


def _ids(ids: list[str | None]) -> list[str] | None:
    """``columnar.check_ids`` for ids msgspec already typed (str of at most 128
    characters, or None): when every node sent one, only uniqueness is left to check."""
    if None in ids:
        return check_ids(ids)
    if len(set(ids)) != len(ids):
        raise _Irregular("node_id")
    return ids  # type: ignore[return-value]  # no None in it


def _declared(nodes: list[TypedNode]) -> np.ndarray | None:
    """``StateBatch.declared``, or None when no node sends an optional field (one pass
    in C for today's clients: a set of the attributes' values), or _Irregular."""
    sent = list(itertools.chain.from_iterable(map(_LIMIT_GETTER, nodes)))
    if set(sent) <= _NOT_SENT:
        return None
    omitted = np.array([v is msgspec.UNSET or v is None for v in sent]).reshape(
        -1, len(LIMIT_FIELDS))
    try:
        arr = np.array([1.0 if v is msgspec.UNSET or v is None else v for v in sent],
                       np.float64).reshape(-1, len(LIMIT_FIELDS))
    except OverflowError:
        raise _Irregular("limit") from None
    if not (np.isfinite(arr).all() and (arr > _LIMIT_ABOVE).all()
            and (arr <= _LIMIT_AT_MOST).all()):
        raise _Irregular("limit")  # an explicit NaN (msgpack) too: the dict path words it
    arr[omitted] = np.nan
    return None if omitted.all() else arr


def _tasks(states: list[TypedState]) -> np.ndarray:
    """[B, 4] tasks in TASK_FIELDS order, the reference task where omitted."""
    tasks = np.tile(_REFERENCE, (len(states), 1))
    given = [i for i, s in enumerate(states) if s.task is not None]
    if given:
        sent = np.array([_TASK_GETTER(states[i].task) for i in given], np.float64)
        ok = np.isfinite(sent) & (sent <= _TASK_HI) & np.where(
            _TASK_EXCLUSIVE, sent > _TASK_LO, sent >= _TASK_LO)
        if not ok.all():
            raise _Irregular("task")
        tasks[given] = sent
    return tasks


def _edges(states: list[TypedState], sizes: np.ndarray, msgpack: bool
           ) -> tuple[list[np.ndarray | None], list[bytes | None]]:
    """Each state's [E, 2] edge array (None: default topology) and its topology key,
    or _Irregular: each distinct list decoded, checked and keyed once
    (``columnar.edge_list``)."""
    edges: list[np.ndarray | None] = []
    keys: list[bytes | None] = []
    unset = msgspec.UNSET
    for s, n in zip(states, sizes.tolist()):
        raw = s.edges
        if raw is unset:
            edges.append(None)
            keys.append(None)
            continue
        got = edge_list(n, bytes(raw), msgpack)
        if got is None:
            raise _Irregular("edges")
        edges.append(got[0])
        keys.append(got[1])
    return edges, keys
