"""Body formats: JSON or msgpack in, JSON or msgpack out, and the columnar batch shape.

Row-wise JSON costs most of a batch's CPU before any model runs: parsing ~18 µs and
pulling 7 fields out of 20 node objects ~22 µs per state, as much as the model. So
``/v1/allocate/batch`` also takes

* ``application/msgpack``: the same shapes, by Content-Type (answered in msgpack when
  Accept asks for it);
* the columnar shape (JSON or msgpack), one array per node field over every node of
  the batch::

      {"node_counts": [20, 20, ...],                  # nodes per state, B entries
       "nodes": {"cpu_util": [...], ..., "node_type": [...],   # T = sum(node_counts)
                 "node_id": ["a", ...]?},             # optional; default: indices
       "edge_counts": [34, 34, ...]?,                 # edges per state; omitted: each
       "edges": [s0, t0, s1, t1, ...]?,               #   state's default topology
       "tasks": {"compute_gcycles": [...], ...}?,     # B entries per field; optional
       "model": "hybrid"?}

  In msgpack each numeric array may be packed: ``bin`` of little-endian float32
  (node fields, tasks) or int32 (counts, edges, node_type). Edge indices are within
  their own state.

Every format has the semantics and error paths of the row shape: a bad value names its
state and node (``states.3.nodes.7.cpu_util``), and a batch with one bad state is
rejected whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed
import msgspec
import numpy as np

from edge_allocator.capacity import LIMIT_DEFAULTS, LIMIT_FIELDS, LIMIT_RANGES
from edge_allocator.columnar import (
    NODE_RANGES,
    TASK_RANGES,
    StateBatch,
    edge_list_key,
    valid_model,
)
from edge_allocator.constants import MAX_BATCH_STATES, MAX_EDGES, MAX_NODES
from edge_allocator.schema import NODE_FIELDS, REFERENCE_TASK, TASK_FIELDS, RequestError

JSON = "application/json"
MSGPACK = "application/msgpack"
_MSGPACK_TYPES = (MSGPACK, "application/x-msgpack", "application/vnd.msgpack")


def media_type(content_type: str | None) -> str:
    """JSON or MSGPACK from a Content-Type header; anything else is a 415."""
    ctype = (content_type or JSON).split(";")[0].strip().lower()
    if ctype in _MSGPACK_TYPES:
        return MSGPACK
    if ctype in ("", JSON) or ctype.endswith("+json"):
        return JSON
    raise RequestError(415, f"content-type {ctype!r} is not supported; send {JSON} or {MSGPACK}")


def wants_msgpack(accept: str | None) -> bool:
    return any(t in (accept or "") for t in _MSGPACK_TYPES)


def decode_msgpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise RequestError(400, f"malformed msgpack: {exc}") from None


def _numpy_plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot pack {type(obj).__name__}")


#: msgspec packs dataclasses in C (msgpack-python called back into Python once per
#: decision, which made a msgpack answer slower to write than the JSON one).
_MSGPACK_ENCODER = msgspec.msgpack.Encoder(enc_hook=_numpy_plain)


def encode_msgpack(obj: Any) -> bytes:
    return _MSGPACK_ENCODER.encode(obj)


# --- the columnar batch shape ----------------------------------------------------------------


#: The key that marks the columnar batch shape.
COLUMNAR_KEY = "node_counts"


def is_columnar(data: Mapping[str, Any]) -> bool:
    return COLUMNAR_KEY in data


def _bad(loc: str, msg: str) -> RequestError:
    return RequestError(422, f"{loc}: {msg}", [{"loc": loc, "msg": msg}])


def _array(value: Any, loc: str, packed: str, length: int | None) -> np.ndarray:
    """A numeric array from a list (JSON, msgpack) or packed little-endian bytes."""
    if isinstance(value, bytes):
        if len(value) % 4:
            raise _bad(loc, f"packed array of {len(value)} bytes is not a multiple of 4")
        arr = np.frombuffer(value, dtype=np.dtype(packed).newbyteorder("<")).astype(
            np.float64 if packed == "f4" else np.int64)
    elif isinstance(value, list):
        try:
            raw = np.array(value)
        except (ValueError, OverflowError):
            raise _bad(loc, "must be a flat array of numbers") from None
        if raw.ndim != 1 or (raw.size and raw.dtype.kind not in "biuf"):
            raise _bad(loc, "must be a flat array of numbers")
        if packed == "i4" and raw.dtype.kind == "f":
            raise _bad(loc, "must hold integers")
        arr = raw.astype(np.float64 if packed == "f4" else np.int64)
    else:
        raise _bad(loc, "must be an array (or packed bytes in msgpack)")
    if length is not None and len(arr) != length:
        raise _bad(loc, f"has {len(arr)} entries, expected {length}")
    return arr


def _state_node(offsets: np.ndarray, flat: int) -> tuple[int, int]:
    i = int(np.searchsorted(offsets, flat, side="right") - 1)
    return i, flat - int(offsets[i])


def _check_range(col: np.ndarray, lo: float, hi: float, name: str, offsets: np.ndarray) -> None:
    bad = ~np.isfinite(col) | (col < lo) | (col > hi)
    if bad.any():
        i, j = _state_node(offsets, int(np.flatnonzero(bad)[0]))
        v = col[np.flatnonzero(bad)[0]]
        why = ("Input should be a finite number" if not np.isfinite(v) else
               f"Input should be greater than or equal to {lo:g}" if v < lo else
               f"Input should be less than or equal to {hi:g}")
        raise _bad(f"states.{i}.nodes.{j}.{name}", why)


def _node_ids(ids: Any, offsets: np.ndarray) -> list[list[str] | None]:
    b = len(offsets) - 1
    if ids is None:
        return [None] * b
    if not isinstance(ids, list) or len(ids) != offsets[-1]:
        raise _bad("nodes.node_id", f"must be an array of {offsets[-1]} strings")
    bounds = offsets.tolist()
    chunks = [ids[bounds[i]:bounds[i + 1]] for i in range(b)]
    if set(map(type, ids)) == {str} and max(map(len, ids)) <= 128 \
            and all(len(set(c)) == len(c) for c in chunks):
        return list(chunks)  # the common case, checked in bulk
    out: list[list[str] | None] = []
    for i, chunk in enumerate(chunks):
        seen: dict[str, int] = {}
        for j, nid in enumerate(chunk):
            if not isinstance(nid, str) or len(nid) > 128:
                raise _bad(f"states.{i}.nodes.{j}.node_id", "must be a string of at most 128 "
                           "characters")
            if nid in seen:
                raise _bad(f"states.{i}.nodes.{j}.node_id",
                           f"duplicate node_id {nid!r} (also nodes.{seen[nid]})")
            seen[nid] = j
        out.append(chunk)
    return out


def _edges(data: Mapping[str, Any], offsets: np.ndarray
           ) -> tuple[list[np.ndarray | None], list[bytes | None] | None]:
    """Each state's [E, 2] edges (None: default topology), checked in one pass over all
    of them, and each list's topology key, made once per distinct list (states of one
    batch mostly share a topology; per state the checks and keys were ~3 µs)."""
    b = len(offsets) - 1
    if data.get("edge_counts") is None:
        if data.get("edges") is not None:
            raise _bad("edge_counts", "required with edges: edges per state")
        return [None] * b, None
    counts = _array(data["edge_counts"], "edge_counts", "i4", b)
    if (counts < 0).any() or (counts > MAX_EDGES).any():
        raise _bad("edge_counts", f"each count must be between 0 and {MAX_EDGES}")
    flat = _array(data.get("edges", []), "edges", "i4", 2 * int(counts.sum()))
    pairs = flat.reshape(-1, 2)
    sizes = np.diff(offsets)
    outside = ((pairs < 0) | (pairs >= np.repeat(sizes, counts)[:, None])).any(axis=1)
    starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        i = int(np.searchsorted(starts, k, side="right")) - 1
        src, dst = pairs[k]
        raise _bad(f"states.{i}.edges.{k - starts[i]}", f"edge [{src}, {dst}] points to a "
                   f"node index outside 0..{sizes[i] - 1}")
    pairs.setflags(write=False)
    edges: list[np.ndarray | None] = []
    keys: list[bytes | None] = []
    known: dict[tuple[int, bytes], tuple[np.ndarray, bytes]] = {}
    blob, row = pairs.tobytes(), 2 * pairs.itemsize  # state i's: row * starts[i] ...
    for n, lo, hi in zip(sizes.tolist(), starts, starts[1:]):
        sent = (n, blob[row * lo:row * hi])
        got = known.get(sent)
        if got is None:
            e = pairs[lo:hi]
            got = known[sent] = (e, edge_list_key(n, e))
        edges.append(got[0])
        keys.append(got[1])
    return edges, keys


def _tasks(tasks: Any, b: int) -> np.ndarray:
    out = np.tile(np.array([getattr(REFERENCE_TASK, f) for f in TASK_FIELDS], np.float64),
                  (b, 1))
    if tasks is None:
        return out
    if not isinstance(tasks, Mapping):
        raise _bad("tasks", "must be an object of per-state arrays")
    for k, name in enumerate(TASK_FIELDS):
        if tasks.get(name) is None:
            continue
        col = _array(tasks[name], f"tasks.{name}", "f4", b)
        lo, exclusive, hi = TASK_RANGES[name]
        bad = ~np.isfinite(col) | ((col <= lo) if exclusive else (col < lo)) | (col > hi)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _bad(f"states.{i}.task.{name}",
                       f"Input should be {'greater than' if exclusive else 'at least'} {lo:g} "
                       f"and at most {hi:g}")
        out[:, k] = col
    return out


def columnar_batch(data: Mapping[str, Any]) -> tuple[StateBatch, str | None]:
    """The columnar shape -> (states, model), with the row shape's limits and checks."""
    counts = _array(data.get("node_counts"), "node_counts", "i4", None)
    b = len(counts)
    if not 1 <= b <= MAX_BATCH_STATES:
        raise _bad("node_counts", f"between 1 and {MAX_BATCH_STATES} states, got {b}")
    small = np.flatnonzero((counts < 1) | (counts > MAX_NODES))
    if len(small):
        raise _bad(f"states.{small[0]}.nodes", f"between 1 and {MAX_NODES} nodes, got "
                   f"{counts[small[0]]}")
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(offsets[-1])
    nodes = data.get("nodes")
    if not isinstance(nodes, Mapping):
        raise _bad("nodes", "must be an object of per-field arrays")
    cols = []
    for name in NODE_FIELDS:
        if name not in nodes:
            raise _bad(f"nodes.{name}", "Field required")
        col = _array(nodes[name], f"nodes.{name}", "i4" if name == "node_type" else "f4", total)
        if name == "node_type":
            bad = ~np.isin(col, (0, 1, 2))
            if bad.any():
                i, j = _state_node(offsets, int(np.flatnonzero(bad)[0]))
                raise _bad(f"states.{i}.nodes.{j}.node_type", "Input should be 0, 1 or 2")
        else:
            _check_range(col, *NODE_RANGES[name], name, offsets)
        cols.append(col.astype(np.float64))
    declared = _declared(nodes, offsets)
    model = data.get("model")
    if not valid_model(model):
        raise _bad("model", "must be a string of at most 64 characters")
    edges, edge_keys = _edges(data, offsets)
    batch = StateBatch(
        values=np.stack(cols, axis=1), offsets=offsets,
        node_ids=_node_ids(nodes.get("node_id"), offsets), edges=edges, edge_keys=edge_keys,
        tasks=_tasks(data.get("tasks"), b), models=[None] * b, declared=declared)
    return batch, model


def _declared(nodes: Mapping[str, Any], offsets: np.ndarray) -> np.ndarray | None:
    """The optional node fields (``capacity.LIMIT_FIELDS``), each a full column when
    sent (no gaps: omit the field for the type defaults); None when none is sent."""
    sent = [(k, name) for k, name in enumerate(LIMIT_FIELDS) if nodes.get(name) is not None]
    if not sent:
        return None
    total = int(offsets[-1])
    out = np.full((total, len(LIMIT_FIELDS)), np.nan)
    for k, name in sent:
        rng = LIMIT_RANGES[name]
        col = _array(nodes[name], f"nodes.{name}", "i4" if rng.integer else "f4", total)
        bad = ~np.isfinite(col) | (col <= rng.above) | (col > rng.at_most)
        if bad.any():
            i, j = _state_node(offsets, int(np.flatnonzero(bad)[0]))
            raise _bad(f"states.{i}.nodes.{j}.{name}", f"Input should be greater than "
                       f"{rng.above:g} and at most {rng.at_most:g}")
        out[:, k] = col
    return out


def columnar_request(states: list[Mapping[str, Any]], packed: bool = False,
                     model: str | None = None) -> dict[str, Any]:
    """Row-shaped states (as /v1/allocate takes them) in the columnar shape, for clients;
    ``packed``: numeric arrays as little-endian float32/int32 bytes (for msgpack).
    States without ``edges`` keep their default topology only if none has edges."""
    counts = [len(s["nodes"]) for s in states]
    f4 = np.dtype("<f4")
    i4 = np.dtype("<i4")

    def pack(values: list[Any], dtype: np.dtype[Any]) -> Any:
        return np.asarray(values, dtype=dtype).tobytes() if packed else values

    nodes: dict[str, Any] = {
        f: pack([n[f] for s in states for n in s["nodes"]], i4 if f == "node_type" else f4)
        for f in NODE_FIELDS}
    for k, f in enumerate(LIMIT_FIELDS):  # optional: a full column when any node sends it
        if not any(n.get(f) is not None for s in states for n in s["nodes"]):
            continue
        if f == "observed_speed" and not all(n.get(f) is not None for s in states
                                             for n in s["nodes"]):
            raise ValueError("columnar_request: observed_speed on some nodes only; the "
                             "columnar shape takes it for every node or none")
        cast = int if LIMIT_RANGES[f].integer else float
        col = [n[f] if n.get(f) is not None else cast(LIMIT_DEFAULTS[int(n["node_type"]), k])
               for s in states for n in s["nodes"]]  # gaps: the type's default, explicit
        nodes[f] = pack(col, i4 if LIMIT_RANGES[f].integer else f4)
    if any("node_id" in n for s in states for n in s["nodes"]):
        nodes["node_id"] = [n.get("node_id", str(j)) for s in states
                            for j, n in enumerate(s["nodes"])]
    body: dict[str, Any] = {"node_counts": pack(counts, i4), "nodes": nodes}
    if any(s.get("edges") is not None for s in states):
        body["edge_counts"] = pack([len(s.get("edges") or []) for s in states], i4)
        body["edges"] = pack([v for s in states for p in (s.get("edges") or []) for v in p], i4)
    tasks = [s.get("task") or {} for s in states]
    if any(tasks):
        ref = {f: getattr(REFERENCE_TASK, f) for f in TASK_FIELDS}
        body["tasks"] = {f: pack([t.get(f, ref[f]) for t in tasks], f4) for f in TASK_FIELDS}
    if model is not None:
        body["model"] = model
    return body
