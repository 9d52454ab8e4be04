"""Validated states as columns: decoded JSON straight into arrays, checked vectorised.

Why: validating a 20-node state with pydantic builds 20 node objects and costs ~100 us;
a batch of 256 states needs none of those objects, only one array per field. So the
batch (and single) path reads each node field across the whole batch into one array
and checks types and ranges with numpy.

Same verdicts as the pydantic models, by construction: the fast checks accept only
input that is certainly valid (exact JSON types, finite numbers in range, unique ids,
edges inside the state). Anything else — a bad value, but also any input pydantic's lax
mode might still accept (``"0.5"``, ``true``, ``1.0`` as an edge index) — is handed to
pydantic (``schema.AllocateRequest`` / ``BatchAllocateRequest``), which either raises
the same 422 as always or returns models that are converted to columns. Pydantic stays
the schema (OpenAPI) and writes every error message; a differential test over
generated states checks that both paths agree.

Shapes: B states, T nodes over all states, E_i edges of state i.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson

from edge_allocator.capacity import LIMIT_FIELDS, LIMIT_RANGES, SPEED, mask_reasons, resolve_limits
from edge_allocator.constants import MAX_BATCH_STATES, MAX_EDGES, MAX_NODES
from edge_allocator.graph import NODE_TYPE_COLUMN
from edge_allocator.schema import (
    NODE_FIELDS,
    REFERENCE_TASK,
    TASK_FIELDS,
    AllocateRequest,
    BatchAllocateRequest,
    RequestError,
    parse,
)

_NUMBER = (int, float)
_MISSING = object()
#: Inclusive ranges of the float node fields (pydantic: ge/le, finite numbers).
NODE_RANGES: dict[str, tuple[float, float]] = {
    "cpu_util": (0.0, 1.0), "mem_util": (0.0, 1.0), "energy": (0.0, np.inf),
    "latency": (0.0, np.inf), "bandwidth": (0.0, np.inf), "queue_len": (0.0, 1e6),
}
#: Task fields: (lower, lower is exclusive, upper), as in ``schema.Task``.
TASK_RANGES: dict[str, tuple[float, bool, float]] = {
    "compute_gcycles": (0.0, True, 1e6), "memory_mb": (0.0, False, 1e7),
    "data_mb": (0.0, False, 1e6), "deadline_ms": (0.0, True, 1e9),
}
_NUMBER_TYPES = {int, float}
_NODE_GETTER = operator.itemgetter(*NODE_FIELDS)
_MEM, _BANDWIDTH, _QUEUE = (NODE_FIELDS.index(f) for f in ("mem_util", "bandwidth", "queue_len"))
_HAS_ID = operator.methodcaller("__contains__", "node_id")
_LIMIT_GETTERS = [(k, name, operator.methodcaller("get", name), LIMIT_RANGES[name])
                  for k, name in enumerate(LIMIT_FIELDS)]
_FLOAT_OR_NONE = {int, float, type(None)}
_INT_OR_NONE = {int, type(None)}
_LOWER = np.array([NODE_RANGES.get(f, (0.0, 2.0))[0] for f in NODE_FIELDS])
_UPPER = np.array([NODE_RANGES.get(f, (0.0, 2.0))[1] for f in NODE_FIELDS])
_REFERENCE_TUPLE: tuple[float, ...] = tuple(float(getattr(REFERENCE_TASK, f))
                                             for f in TASK_FIELDS)
_TASK_CHECKS = [(name, TASK_RANGES[name]) for name in TASK_FIELDS]
_DICT = {dict}
_STR = {str}
_NONE = {type(None)}
_STR_OR_NONE = {str, type(None)}
_MAX_ID_CHARS = 128
#: Distinct edge lists whose validation is remembered.
EDGE_LIST_CACHE_ENTRIES = 4096
MAX_MODEL_CHARS = 64


class _Irregular(Exception):
    """The fast checks cannot vouch for this input; pydantic decides."""


def _key_hasher(model: str, version: str) -> hashlib.blake2b:
    """The state key's hash with its model prefix fed: copied per state (``StateBatch
    .key``); one stream, so the key is the hash of the parts joined."""
    return hashlib.blake2b(f"{model}\0{version}\0".encode(), digest_size=16)


@dataclass(slots=True)
class StateBatch:
    """B validated states as arrays.

    ``values`` holds every node of every state in ``NODE_FIELDS`` order, state after
    state; state ``i`` owns rows ``offsets[i]:offsets[i + 1]``. Values are float64 as
    sent (the model takes float32 later), so keys and logs see exactly what was sent.
    """

    values: np.ndarray  # [T, 7] float64
    offsets: np.ndarray  # [B + 1] int64
    node_ids: list[list[str] | None]  # None: ids are the indices "0".."N-1"
    edges: list[np.ndarray | None]  # [E_i, 2] int64; None: default topology
    tasks: np.ndarray  # [B, 4] float64 in TASK_FIELDS order (reference task if omitted)
    models: list[str | None]  # each state's own "model" field
    #: [T, L] the optional node fields (``capacity.LIMIT_FIELDS``) as sent, NaN where a
    #: node omitted one; None when no node of the batch sent any (today's clients).
    declared: np.ndarray | None = None
    #: Per state, the topology cache's key of its edge list (``edge_list_key``) where the
    #: decoder already had it (one per distinct list, not per state); None: made later.
    edge_keys: list[bytes | None] | None = None
    _values32: np.ndarray | None = None
    _limits: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.node_ids)

    @property
    def sizes(self) -> np.ndarray:
        out: np.ndarray = np.diff(self.offsets)
        return out

    def nodes_of(self, i: int) -> np.ndarray:
        out: np.ndarray = self.values[self.offsets[i]:self.offsets[i + 1]]
        return out

    @property
    def values32(self) -> np.ndarray:
        """``values`` as float32 (what the models and the decision log take), made once."""
        if self._values32 is None:
            self._values32 = self.values.astype(np.float32)
        return self._values32

    @property
    def limits(self) -> np.ndarray:
        """[T, L] every node's limits: as declared, or its type's defaults."""
        if self._limits is None:
            self._limits = resolve_limits(self.declared, self.values[:, NODE_TYPE_COLUMN])
        return self._limits

    def declares_speed(self) -> bool:
        """Whether any node of the batch sent its own ``observed_speed``."""
        return self.declared is not None and bool((~np.isnan(self.declared[:, SPEED])).any())

    def fill_speeds(self, speed: np.ndarray) -> None:
        """Nodes that sent no ``observed_speed`` take ``speed`` ([T]; the service's
        estimate learned from feedback). Before keys are made: the key covers it."""
        declared = self.declared
        if declared is None:
            declared = np.full((len(self.values), len(LIMIT_FIELDS)), np.nan)
        declared[:, SPEED] = np.where(np.isnan(declared[:, SPEED]), speed, declared[:, SPEED])
        self.declared, self._limits = declared, None

    def nodes32_of(self, i: int) -> np.ndarray:
        out: np.ndarray = self.values32[self.offsets[i]:self.offsets[i + 1]]
        return out

    def ids_of(self, i: int) -> list[str]:
        ids = self.node_ids[i]
        return ids if ids is not None else [str(k) for k in range(self.sizes[i])]

    def key(self, i: int, model: str, version: str) -> str:
        """32-hex key of (state i, model, version) for the decision cache and log:
        equal for equal states however they were sent (single or batch, key order,
        ``1`` or ``1.0``); an omitted ``edges`` (default topology) differs from ``[]``."""
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return self._key(_key_hasher(model, version), self.values[lo:hi].tobytes(),
                         self.tasks[i].tobytes(), i, self._declared_of(i))

    def keys(self, model: str, version: str) -> list[str]:
        """``key(i, model, version)`` of every state: the arrays' bytes taken once for
        the batch and fed to each state's hash as views, no per-state copies (the
        per-state calls cost ~2 µs a state more; copies and joins ~0.5 more)."""
        base = _key_hasher(model, version)
        row = self.values.itemsize * self.values.shape[1]
        task = self.tasks.itemsize * self.tasks.shape[1]
        values, tasks = memoryview(self.values.tobytes()), memoryview(self.tasks.tobytes())
        bounds = (self.offsets * row).tolist()
        return [self._key(base, values[bounds[i]:bounds[i + 1]],
                          tasks[i * task:(i + 1) * task], i, self._declared_of(i))
                for i in range(len(self))]

    def key_digests(self, model: str, version: str) -> bytes:
        """``keys`` as 16 raw bytes a state, joined (what a decision run stores)."""
        return bytes.fromhex("".join(self.keys(model, version)))

    def _declared_of(self, i: int) -> np.ndarray | None:
        """State i's declared limits if a node of it declared one, else None: only then
        are they keyed, so a state keys alike alone or in a batch with states that
        declare some."""
        if self.declared is None:
            return None
        lim = self.declared[self.offsets[i]:self.offsets[i + 1]]
        return None if np.isnan(lim).all() else lim

    def _key(self, base: hashlib.blake2b, values: bytes | memoryview, task: bytes | memoryview,
             i: int, lim: np.ndarray | None) -> str:
        h = base.copy()
        h.update(values)
        h.update(task)
        ids, e = self.node_ids[i], self.edges[i]
        h.update(b"\1" + "\0".join(ids).encode() if ids is not None else b"\0")
        h.update(b"\1" + e.tobytes() if e is not None else b"\0")
        if lim is not None:
            h.update(b"\1" + lim.tobytes())
        return h.hexdigest()

    def masked_reasons(self, mask: np.ndarray) -> list[dict[str, str]]:
        """Per state, {node_id: why} of its masked nodes (``mask`` [T]): the checks and
        strings are made for the masked rows only (``capacity.mask_reasons``)."""
        out: list[dict[str, str]] = [{} for _ in range(len(self))]
        rows = np.flatnonzero(~mask)
        if not len(rows):
            return out
        v = self.values32[rows]
        task_mem = np.repeat(self.tasks[:, 1].astype(np.float32), self.sizes)[rows]
        text = mask_reasons(v[:, _MEM], v[:, _BANDWIDTH], v[:, _QUEUE], task_mem,
                            self.limits[rows])
        states = np.searchsorted(self.offsets, rows, side="right") - 1
        local = (rows - self.offsets[states]).tolist()
        # rows ascend, so each state's masked nodes are one run: one dict per state
        cuts = (np.flatnonzero(np.diff(states)) + 1).tolist()
        node_ids = self.node_ids
        for a, b, i in zip([0, *cuts], [*cuts, len(rows)], states[[0, *cuts]].tolist()):
            ids = node_ids[i]
            names = [ids[k] for k in local[a:b]] if ids is not None \
                else [str(k) for k in local[a:b]]
            out[i] = dict(zip(names, text[a:b]))
        return out


def edge_list_key(n: int, edges: np.ndarray) -> bytes:
    """The topology cache's key of an [E, 2] int64 edge list over ``n`` nodes."""
    return b"e" + hashlib.blake2b(n.to_bytes(4, "little") + edges.tobytes(),
                                  digest_size=16).digest()


def _check_nodes(nodes: Sequence[dict[str, Any]]) -> np.ndarray:
    """[T, 7] values of nodes (any number of states) or _Irregular. A node type may be
    ``1.0`` (pydantic's ``Literal[0, 1, 2]`` accepts it too).

    One ``itemgetter`` call per node and one flat list for the whole batch: measured
    faster than a list per field (benchmarks.batch_path, validate column)."""
    try:
        flat = list(itertools.chain.from_iterable(map(_NODE_GETTER, nodes)))
    except KeyError as exc:
        raise _Irregular(str(exc)) from None
    if not set(map(type, flat)) <= _NUMBER_TYPES:
        raise _Irregular("node field")
    try:
        values = np.array(flat, dtype=np.float64).reshape(len(nodes), len(NODE_FIELDS))
    except OverflowError:  # an int beyond float range: pydantic says how
        raise _Irregular("node field") from None
    return check_values(values)


def check_values(values: np.ndarray) -> np.ndarray:
    """``values`` ([T, 7] float64 in NODE_FIELDS order) if every value is in range (as
    the pydantic ``Node`` requires), else _Irregular."""
    if not (np.isfinite(values).all() and (values >= _LOWER).all()
            and (values <= _UPPER).all()):
        raise _Irregular("range")
    types = values[:, NODE_TYPE_COLUMN]
    if not ((types == 0.0) | (types == 1.0) | (types == 2.0)).all():
        raise _Irregular("node_type")
    return values


def _check_declared(nodes: Sequence[dict[str, Any]]) -> np.ndarray | None:
    """[T, L] the optional node fields (NaN where omitted or null), None when no node
    sends any, or _Irregular. Today's clients pay two C-level passes: a node with only
    the seven fields (and perhaps node_id) has no other key."""
    keys = sum(map(len, nodes))
    if keys == len(NODE_FIELDS) * len(nodes) + sum(map(_HAS_ID, nodes)):
        return None
    present = set(itertools.chain.from_iterable(map(dict.keys, nodes)))
    getters = [g for g in _LIMIT_GETTERS if g[1] in present]
    if not getters:
        return None  # unknown keys only: ignored, as pydantic ignores them
    out = np.full((len(nodes), len(LIMIT_FIELDS)), np.nan)
    for k, name, get, rng in getters:
        col = list(map(get, nodes))
        if not set(map(type, col)) <= (_INT_OR_NONE if rng.integer else _FLOAT_OR_NONE):
            raise _Irregular(name)
        omitted = np.array([v is None for v in col])
        try:
            arr = np.array([1.0 if v is None else v for v in col], np.float64)
        except OverflowError:
            raise _Irregular(name) from None
        if not (np.isfinite(arr).all() and (arr > rng.above).all()
                and (arr <= rng.at_most).all()):
            raise _Irregular(name)  # NaN sent is not "omitted": pydantic says why
        arr[omitted] = math.nan
        out[:, k] = arr
    return None if np.isnan(out).all() else out  # only nulls: as if omitted


def _check_ids(nodes: Sequence[dict[str, Any]]) -> list[str] | None:
    return check_ids([n.get("node_id") for n in nodes])


def check_ids(ids: list[Any]) -> list[str] | None:
    """One state's node ids (None where omitted): the ids if unique (None when every id
    was omitted: the indices), else _Irregular."""
    types = set(map(type, ids))
    if types == _STR:
        out: list[str] = ids  # every id is a str
    elif types == _NONE:
        return None
    elif types <= _STR_OR_NONE:
        out = [i if i is not None else str(k) for k, i in enumerate(ids)]
    else:
        raise _Irregular("node_id")
    if len(set(out)) != len(out) or max(map(len, out)) > _MAX_ID_CHARS:
        raise _Irregular("node_id")
    return out


def _check_edges(edges: Any, n: int) -> np.ndarray | None:
    if edges is None:
        return None
    if type(edges) is not list or len(edges) > MAX_EDGES:
        raise _Irregular("edges")
    try:  # operators resend the same topology: validate each distinct edge list once
        blob = orjson.dumps(edges)
    except (TypeError, orjson.JSONEncodeError):
        raise _Irregular("edges") from None
    got = edge_list(n, blob, False)
    if got is None:
        raise _Irregular("edges")
    return got[0]


#: A state's ``edges``: pairs of node indices (past MAX_NODES never valid), or null
#: (the default topology), as the typed decoders read them.
_Index = Annotated[int, msgspec.Meta(ge=0, lt=MAX_NODES)]
_EdgeList = Annotated[list[tuple[_Index, _Index]], msgspec.Meta(max_length=MAX_EDGES)] | None
_EDGE_DECODERS = msgspec.json.Decoder(_EdgeList), msgspec.msgpack.Decoder(_EdgeList)


@functools.lru_cache(maxsize=EDGE_LIST_CACHE_ENTRIES)
def edge_list(n: int, raw: bytes, msgpack: bool
              ) -> tuple[np.ndarray | None, bytes | None] | None:
    """(read-only [E, 2] array, topology key) of an edge list as sent (JSON or msgpack
    bytes) if it is certainly valid for ``n`` nodes, (None, None) for null (the default
    topology), else None. The same bytes always give the same verdict, so it is cached:
    a batch's states mostly share one topology, which is then decoded, checked and
    keyed once (per state it was ~3 µs). Both the dict path and the typed one use it."""
    try:
        pairs = _EDGE_DECODERS[msgpack].decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if pairs is None:
        return None, None
    arr = np.array(pairs, np.int64).reshape(-1, 2)
    if (arr >= n).any():
        return None
    arr.setflags(write=False)
    return arr, edge_list_key(n, arr)


def _check_task(task: Any) -> tuple[float, ...]:
    """A task's values in ``TASK_FIELDS`` order (the reference task's where omitted);
    scalar checks with ``math`` (numpy's cost more than the check on one number)."""
    if task is None:
        return _REFERENCE_TUPLE
    if type(task) is not dict:
        raise _Irregular("task")
    out = list(_REFERENCE_TUPLE)
    for k, (name, (lo, exclusive, hi)) in enumerate(_TASK_CHECKS):
        v = task.get(name, _MISSING)
        if v is _MISSING:
            continue
        if type(v) not in _NUMBER:
            raise _Irregular(name)
        try:
            x = float(v)
        except OverflowError:
            raise _Irregular(name) from None
        if not (math.isfinite(x) and (x > lo if exclusive else x >= lo) and x <= hi):
            raise _Irregular(name)
        out[k] = x
    return tuple(out)


def valid_model(model: Any) -> bool:
    """A state's or batch's ``model``: absent, or a name of at most MAX_MODEL_CHARS."""
    return model is None or (type(model) is str and len(model) <= MAX_MODEL_CHARS)


def _check_model(model: Any) -> str | None:
    if valid_model(model):
        return model  # type: ignore[no-any-return]
    raise _Irregular("model")


def _fast(states: Sequence[Any]) -> StateBatch:
    """Every state through the fast checks, or _Irregular."""
    node_lists = []
    for s in states:
        if type(s) is not dict:
            raise _Irregular("state")
        nodes = s.get("nodes")
        if type(nodes) is not list or not 1 <= len(nodes) <= MAX_NODES \
                or set(map(type, nodes)) != _DICT:
            raise _Irregular("nodes")
        node_lists.append(nodes)
    sizes = [len(ns) for ns in node_lists]
    offsets = np.zeros(len(states) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    flat = [n for ns in node_lists for n in ns]
    values = _check_nodes(flat)
    return StateBatch(
        values=values,
        offsets=offsets,
        node_ids=[_check_ids(ns) for ns in node_lists],
        edges=[_check_edges(s.get("edges"), n) for s, n in zip(states, sizes)],
        tasks=np.array([_check_task(s.get("task")) for s in states], np.float64),
        models=[_check_model(s.get("model")) for s in states],
        declared=_check_declared(flat),
    )


def from_models(states: Sequence[AllocateRequest]) -> StateBatch:
    """Columns of states pydantic validated (the slow path's output)."""
    values = np.array([[getattr(n, f) for f in NODE_FIELDS] for s in states for n in s.nodes],
                      dtype=np.float64).reshape(-1, len(NODE_FIELDS))
    offsets = np.zeros(len(states) + 1, np.int64)
    np.cumsum([len(s.nodes) for s in states], out=offsets[1:])
    ids = [s.node_ids() if any(n.node_id is not None for n in s.nodes) else None
           for s in states]
    return StateBatch(
        values=values, offsets=offsets, node_ids=ids,
        edges=[np.array(s.edges, np.int64).reshape(-1, 2) if s.edges is not None else None
               for s in states],
        tasks=np.array([[getattr(s.task or REFERENCE_TASK, f) for f in TASK_FIELDS]
                        for s in states], np.float64).reshape(-1, len(TASK_FIELDS)),
        models=[s.model for s in states],
        declared=_declared_of([n for s in states for n in s.nodes]),
    )


def _declared_of(nodes: Sequence[Any]) -> np.ndarray | None:
    """``StateBatch.declared`` of validated ``schema.Node`` objects."""
    rows = [[getattr(n, f) for f in LIMIT_FIELDS] for n in nodes]
    if all(v is None for row in rows for v in row):
        return None
    return np.array([[math.nan if v is None else v for v in row] for row in rows], np.float64)


def decode_state(data: dict[str, Any]) -> StateBatch:
    """POST /v1/allocate's body as a batch of one; the same 422s as ``AllocateRequest``."""
    try:
        return _fast([data])
    except _Irregular:
        return from_models([parse(AllocateRequest, data)])


def decode_batch(data: dict[str, Any]) -> tuple[StateBatch, str | None]:
    """POST /v1/allocate/batch's body -> (states, the batch's ``model``); the same 422s
    as ``BatchAllocateRequest`` (a bad state rejects the batch, its index in the path)."""
    states = data.get("states")
    model = data.get("model")
    if type(states) is list and 1 <= len(states) <= MAX_BATCH_STATES:
        try:
            return _fast(states), _check_model(model)
        except _Irregular:
            pass
    req = parse(BatchAllocateRequest, data)
    return from_models(req.states), req.model


#: Per-node reasons the 422's message names (the details list every node).
REASONS_IN_MESSAGE = 5


def no_feasible_node(reasons: dict[str, str], where: str = "") -> RequestError:
    """The 422 for a state whose every node is masked: why, for each node (``reasons``:
    {node_id: why}; the details name each node by index, as other 422s do)."""
    loc = f"{where}nodes"
    named = "; ".join(f"{nid}: {why}" for nid, why in
                      itertools.islice(reasons.items(), REASONS_IN_MESSAGE))
    more = f"; and {len(reasons) - REASONS_IN_MESSAGE} more" \
        if len(reasons) > REASONS_IN_MESSAGE else ""
    details = [{"loc": loc, "msg": "no feasible node"}] + [
        {"loc": f"{loc}.{j}", "msg": f"{nid}: {why}"} for j, (nid, why) in enumerate(
            reasons.items())]
    return RequestError(422, f"{loc}: no feasible node ({named}{more})", details)
