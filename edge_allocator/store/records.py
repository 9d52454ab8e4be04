"""One decision as the log stores it, its packed node columns, and its JSON form for the spool.

A :class:`DecisionRecord` is built on the request path, so construction does only O(1)
work: it checks what would otherwise poison a whole batch later (a malformed id, a naive
timestamp, node arrays of the wrong shape) and never touches the nodes one by one; the
HTTP schema has already validated the values themselves. Packing the nodes for the
database happens on the writer thread (:meth:`DecisionRecord.prediction_row`).

Node states are stored as one value per decision, not one row per node:

* ``node_values``: the ``[N, 7]`` float32 matrix in :data:`NODE_VALUE_FIELDS` order,
  as little-endian bytes (``N * 28`` bytes);
* ``node_ids``: msgpack of the N id strings, or NULL when the ids are the indices
  ``"0".."N-1"`` (what a request without ``node_id`` gets);
* ``node_format``: which field order and encoding ``node_values`` uses
  (:data:`NODE_FORMATS`), so the order can change later without rewriting old rows.

A batch request's scores are stored the same way (migration 0005): ``score_values``,
the model's ``[N]`` float32 scores in node order, NaN where a node was masked, as
little-endian bytes, with ``scores`` (a JSON map of the scored nodes) NULL. The models
score in float32, so the map the response shows (those values widened to float64) is
rebuilt exactly (:func:`stored_scores`); the JSON map of a 20-node state's ~10 feasible
nodes was ~250 bytes of text to encode per decision, against 80 bytes here. Records
that carry no packed scores (single requests, shadow decisions, older spools) keep the
JSON map.

JSON (orjson) is the spool's serialisation: it must be readable by any later version and
must never execute anything it reads, which rules out pickle. The arrays travel in it as
base64 of the same bytes the database stores.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed
import numpy as np
import orjson

from edge_allocator.schema import NODE_FIELDS

#: Field order (columns of ``node_values``) of each stored ``node_format``. A format is
#: never changed once written; a new field order gets a new number.
NODE_FORMATS: dict[int, tuple[str, ...]] = {
    1: ("cpu_util", "mem_util", "energy", "latency", "bandwidth", "queue_len", "node_type"),
}
#: The format this version writes.
NODE_FORMAT = 1
#: Columns of :attr:`DecisionRecord.node_values`, in order (the request schema's order).
NODE_VALUE_FIELDS: tuple[str, ...] = NODE_FORMATS[NODE_FORMAT]
if NODE_VALUE_FIELDS != NODE_FIELDS:  # pragma: no cover - guards a schema change
    raise ImportError(
        "edge_allocator.schema.NODE_FIELDS changed: add a new NODE_FORMATS entry for the "
        "new field order and make it NODE_FORMAT (stored rows keep their old format)"
    )
NUM_NODE_VALUES = len(NODE_VALUE_FIELDS)
#: Bytes of one stored node: 7 little-endian float32.
NODE_RECORD_BYTES = NUM_NODE_VALUES * 4

_F32 = np.dtype(np.float32)
_F32LE = np.dtype("<f4")
_HEX = frozenset("0123456789abcdef")
#: Length of decision ids and request hashes: 128 bits as lowercase hex.
HEX_ID_CHARS = 32


def new_decision_ids(n: int) -> tuple[str, ...]:
    """``n`` fresh decision ids: UUIDv7 (RFC 9562) as 32 lowercase hex characters each.

    Why time-ordered, not random (UUID4): the decision id is the log's primary key, and a
    random key lands each insert on a random page of an ever larger index. On a SQLite
    log of 400k decisions that cost 14.9 us of CPU per insert against 4.2 with
    time-ordered keys (wall 28 vs 5 us), and PostgreSQL's B-trees behave the same way.

    Layout: 48 bits of Unix milliseconds, the version (7), 12 bits counting the ids of
    this call (so one batch's ids sort in state order), the variant, 0 (a single row's, where
    ``store.runs.new_run_ids`` puts 1), 61 random bits from one read of the system's
    random source."""
    if n <= 0:
        return ()
    raw = np.frombuffer(os.urandom(16 * n), np.uint8).reshape(n, 16).copy()
    ms = time.time_ns() // 1_000_000
    raw[:, :6] = np.frombuffer(ms.to_bytes(8, "big")[2:], np.uint8)
    seq = np.arange(n, dtype=np.uint32) & 0xFFF
    raw[:, 6] = 0x70 | (seq >> 8).astype(np.uint8)
    raw[:, 7] = (seq & 0xFF).astype(np.uint8)
    raw[:, 8] = (raw[:, 8] & 0x1F) | 0x80  # variant 10, then 0: not a run's (store.runs)
    blob = raw.tobytes().hex()
    return tuple(blob[k:k + HEX_ID_CHARS] for k in range(0, HEX_ID_CHARS * n, HEX_ID_CHARS))


def decision_id_time(decision_id: str) -> float | None:
    """The Unix time (s) a decision id of :func:`new_decision_ids` was made at, or None
    for an id that is not a UUIDv7 (its version digit is not 7)."""
    if len(decision_id) != HEX_ID_CHARS or decision_id[12] != "7":
        return None
    try:
        return int(decision_id[:12], 16) / 1000.0
    except ValueError:
        return None


def new_decision_id() -> str:
    """One fresh decision id (see :func:`new_decision_ids`)."""
    return new_decision_ids(1)[0]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (the only kind the log accepts)."""
    return datetime.now(timezone.utc)


def empty_node_values() -> np.ndarray:
    """A ``[0, 7]`` float32 matrix: a decision logged without its node states."""
    return np.zeros((0, NUM_NODE_VALUES), dtype=_F32)


def index_ids(n: int) -> list[str]:
    """The ids nodes without a ``node_id`` get: their indices as strings."""
    return [str(i) for i in range(n)]


@functools.lru_cache(maxsize=64)
def _index_ids_cached(n: int) -> list[str]:
    return index_ids(n)  # compared against only, never handed out


def pack_node_values(values: np.ndarray) -> bytes:
    """``[N, 7]`` float32 -> ``N * 28`` little-endian bytes (what ``node_values`` stores)."""
    return np.ascontiguousarray(values, dtype=_F32LE).tobytes()


def unpack_node_values(data: bytes, node_format: int = NODE_FORMAT) -> np.ndarray:
    """The bytes :func:`pack_node_values` wrote -> a read-only ``[N, 7]`` float32 matrix
    whose columns are ``NODE_FORMATS[node_format]``."""
    width = len(NODE_FORMATS[node_format])
    if len(data) % (width * 4):
        raise ValueError(f"node_values holds {len(data)} bytes, not a multiple of {width * 4}")
    return np.frombuffer(data, dtype=_F32LE).astype(_F32, copy=False).reshape(-1, width)


def pack_scores(values: np.ndarray) -> bytes:
    """``[N]`` float32 scores (NaN: not scored) -> ``N * 4`` little-endian bytes."""
    return np.ascontiguousarray(values, dtype=_F32LE).tobytes()


def unpack_scores(data: bytes) -> np.ndarray:
    """The bytes :func:`pack_scores` wrote -> a read-only ``[N]`` float32 array."""
    if len(data) % 4:
        raise ValueError(f"score_values holds {len(data)} bytes, not a multiple of 4")
    return np.frombuffer(data, dtype=_F32LE).astype(_F32, copy=False)


def scores_map(values: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
    """{node id: score} of the scored (not NaN) nodes, in node order: the map the
    response showed, from packed scores."""
    scored = ~np.isnan(values)
    return {ids[k]: v for k, v in zip(np.flatnonzero(scored).tolist(),
                                      values[scored].astype(np.float64).tolist())}


def stored_scores(scores: dict[str, float] | None, score_values: bytes | None,
                  node_ids: bytes | None, node_count: int) -> dict[str, float]:
    """A stored decision's scores map, from whichever form its row holds (the JSON map,
    or the packed ``score_values`` with the row's node ids)."""
    if score_values is None:
        if scores is None:
            raise ValueError("a predictions row with neither scores nor score_values")
        return scores
    values = unpack_scores(score_values)
    if len(values) != node_count:
        raise ValueError(f"score_values holds {len(values)} scores for {node_count} nodes")
    return scores_map(values, unpack_node_ids(node_ids, node_count))


def pack_node_ids(ids: list[str] | None, n: int) -> bytes | None:
    """msgpack of the ids, or None (stored as NULL) when they are the index ids."""
    if ids is None or (len(ids) == n and (n == 0 or ids[0] == "0")
                       and ids == _index_ids_cached(n)):
        return None
    packed: bytes = msgpack.packb(ids)
    return packed


def unpack_node_ids(data: bytes | None, n: int) -> list[str]:
    """The ids :func:`pack_node_ids` stored for a decision of ``n`` nodes."""
    if data is None:
        return index_ids(n)
    ids = msgpack.unpackb(data)
    if not (isinstance(ids, list) and len(ids) == n):
        raise ValueError(f"node_ids does not hold {n} ids")
    return ids


def _check_hex_id(name: str, value: str) -> None:
    if not (isinstance(value, str) and len(value) == HEX_ID_CHARS and _HEX.issuperset(value)):
        raise ValueError(
            f"DecisionRecord.{name} must be {HEX_ID_CHARS} lowercase hex characters, "
            f"got {value!r}; use new_decision_id()"
        )


def _node_values_from_dicts(nodes: list[dict[str, Any]]) -> tuple[list[str], np.ndarray]:
    """Nodes as the spool of older versions held them (one dict per node)."""
    ids = [node["node_id"] for node in nodes]
    if not all(isinstance(i, str) for i in ids):
        raise ValueError("a node_id in nodes is not a string")
    values = np.array([[node[f] for f in NODE_VALUE_FIELDS] for node in nodes], dtype=_F32)
    return ids, values.reshape(len(nodes), NUM_NODE_VALUES)


def _json_default(obj: object) -> str:
    if isinstance(obj, np.ndarray):
        return base64.b64encode(pack_node_values(obj)).decode("ascii")
    raise TypeError(f"cannot serialise {type(obj).__name__}")


@dataclass(slots=True, eq=False)
class DecisionRecord:
    """One row of ``predictions``, node states included.

    ``node_values`` is the ``[N, 7]`` float32 matrix of the request's nodes in
    :data:`NODE_VALUE_FIELDS` order (what ``graph.node_matrix`` returns). A C-contiguous
    float32 array is kept as is, not copied: do not write to it after passing it in.
    Anything else is converted once. ``node_ids`` are the N node ids, or None when they
    are the indices ``"0".."N-1"``.
    """

    decision_id: str
    created_at: datetime
    model_name: str
    model_version: str
    backend: str
    node_id: str
    node_index: int
    confidence: float
    scores: dict[str, float]
    latency_ms: float
    request_hash: str
    cached: bool = False
    node_ids: list[str] | None = None
    node_values: np.ndarray = field(default_factory=empty_node_values)
    #: Predicted wait + execution (ms) on the chosen node at observed speed 1, and the
    #: predicted transfer: what feedback's completion_ms is compared with (speeds.py).
    expected_ms: float | None = None
    transfer_ms: float | None = None
    #: A shadow decision (migration 0004): the id of the live decision whose state the
    #: candidate version scored. None for live decisions, the only ones clients see.
    shadow_of: str | None = None
    #: ``scores`` packed (migration 0005): [N] float32 in node order, NaN where not
    #: scored; what the database stores instead of the JSON map when given. The batch
    #: path hands it over from the model's output; it must say what ``scores`` says.
    score_values: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_hex_id("decision_id", self.decision_id)
        _check_hex_id("request_hash", self.request_hash)
        if self.shadow_of is not None:
            _check_hex_id("shadow_of", self.shadow_of)
        if not isinstance(self.created_at, datetime) or self.created_at.tzinfo is None:
            raise ValueError(
                f"DecisionRecord.created_at must be a timezone-aware datetime, got "
                f"{self.created_at!r}; use datetime.now(timezone.utc)"
            )
        v = self.node_values
        if type(v) is not np.ndarray or v.dtype is not _F32 or not v.flags.c_contiguous:
            v = self.node_values = np.ascontiguousarray(v, dtype=_F32)
        if v.ndim != 2 or v.shape[1] != NUM_NODE_VALUES:
            raise ValueError(
                f"DecisionRecord.node_values must be [N, {NUM_NODE_VALUES}] "
                f"({', '.join(NODE_VALUE_FIELDS)}), got shape {v.shape}"
            )
        if self.node_ids is not None and len(self.node_ids) != v.shape[0]:
            raise ValueError(
                f"DecisionRecord.node_ids has {len(self.node_ids)} ids for "
                f"{v.shape[0]} rows of node_values"
            )
        sv = self.score_values
        if sv is not None:
            if type(sv) is not np.ndarray or sv.dtype is not _F32:
                sv = self.score_values = np.ascontiguousarray(sv, dtype=_F32)
            if sv.shape != (v.shape[0],):
                raise ValueError(f"DecisionRecord.score_values must be [{v.shape[0]}] (one "
                                 f"per node), got shape {sv.shape}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DecisionRecord):
            return NotImplemented
        n = self.node_values.shape[0]
        return (
            all(getattr(self, f) == getattr(other, f) for f in _SCALAR_FIELDS)
            and (self.node_ids or index_ids(n)) == (other.node_ids or index_ids(n))
            and np.array_equal(self.node_values, other.node_values)
        )

    def node_dicts(self) -> list[dict[str, Any]]:
        """The node states as one dict per node (``node_id`` plus the seven fields);
        for reading and tests, never on the request path."""
        ids = self.node_ids or index_ids(self.node_values.shape[0])
        rows = self.node_values.tolist()
        return [
            {"node_id": nid, **dict(zip(NODE_VALUE_FIELDS, row))} for nid, row in zip(ids, rows)
        ]

    def prediction_row(self) -> dict[str, Any]:
        """The ``predictions`` row, nodes packed, as a dict for an executemany insert."""
        n = self.node_values.shape[0]
        return {
            "decision_id": self.decision_id,
            "created_at": self.created_at,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "backend": self.backend,
            "node_id": self.node_id,
            "node_index": self.node_index,
            "confidence": self.confidence,
            "scores": self.scores if self.score_values is None else None,
            "latency_ms": self.latency_ms,
            "request_hash": self.request_hash,
            "cached": self.cached,
            "node_format": NODE_FORMAT,
            "node_count": n,
            "node_values": pack_node_values(self.node_values),
            "node_ids": pack_node_ids(self.node_ids, n),
            "expected_ms": self.expected_ms,
            "transfer_ms": self.transfer_ms,
            "shadow_of": self.shadow_of,
            "score_values": (None if self.score_values is None
                             else pack_scores(self.score_values)),
        }

    def to_json(self) -> bytes:
        """One JSON document (no newline) that :meth:`from_json` turns back into an equal
        record; ``node_values`` as base64 of its little-endian float32 bytes."""
        # orjson serialises dataclasses and aware datetimes; default= handles the array.
        return orjson.dumps(self, default=_json_default)

    @classmethod
    def from_json(cls, data: bytes | str) -> DecisionRecord:
        """Parse what :meth:`to_json` wrote, now or in an older version (``nodes`` as one
        dict per node); raises ``ValueError`` on anything else."""
        try:
            obj = orjson.loads(data)
            obj["created_at"] = datetime.fromisoformat(obj["created_at"])
            if "nodes" in obj:  # written before node states were packed
                obj["node_ids"], obj["node_values"] = _node_values_from_dicts(obj.pop("nodes"))
            elif "node_values" in obj:
                raw = base64.b64decode(obj["node_values"], validate=True)
                obj["node_values"] = unpack_node_values(raw).copy()
            if obj.get("score_values") is not None:
                raw = base64.b64decode(obj["score_values"], validate=True)
                obj["score_values"] = unpack_scores(raw).copy()
            return cls(**obj)
        except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"not a DecisionRecord JSON document: {exc}") from exc


#: Fields compared with ``==`` by :meth:`DecisionRecord.__eq__` (all but the node ones).
_SCALAR_FIELDS: tuple[str, ...] = tuple(
    f for f in DecisionRecord.__dataclass_fields__
    if f not in ("node_ids", "node_values", "score_values")
)


def _check_hex_ids(name: str, values: Sequence[str]) -> None:
    """:func:`_check_hex_id` for a whole column at once (two passes in C)."""
    if not (all(type(v) is str for v in values)
            and set(map(len, values)) <= {HEX_ID_CHARS} and _HEX.issuperset("".join(values))):
        bad = next(v for v in values if not (isinstance(v, str) and len(v) == HEX_ID_CHARS
                                             and _HEX.issuperset(v)))
        _check_hex_id(name, bad)


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """The decisions of one batch request as columns, turned into DecisionRecords by
    :meth:`records` with the checks of ``DecisionRecord.__post_init__`` made once for
    the batch instead of once per record (they were ~2 µs of a record's ~2.8 µs on the
    batch path, 256 records a request, timeit: 0.67 µs a record made here against 2.80).

    ``node_values`` holds every state's nodes, state ``i`` owning rows
    ``offsets[i]:offsets[i + 1]`` (``StateBatch.values32``); ``state_node_ids`` are each
    state's node ids (None: the indices). ``score_values``, if given, is every node's
    score the same way ([T] float32, NaN where masked; ``DecisionRecord.score_values``)."""

    decision_ids: Sequence[str]
    request_hashes: Sequence[str]
    created_at: datetime
    model_name: str
    model_version: str
    backend: str
    node_ids: Sequence[str]  # the chosen node's id, per decision
    node_index: Sequence[int]
    confidence: Sequence[float]
    scores: Sequence[dict[str, float]]
    latency_ms: float
    state_node_ids: Sequence[list[str] | None]
    node_values: np.ndarray
    offsets: Sequence[int]
    expected_ms: Sequence[float]
    transfer_ms: Sequence[float]
    score_values: np.ndarray | None = None

    def _check(self) -> None:
        n = len(self.decision_ids)
        lengths = {len(c) for c in (self.request_hashes, self.node_ids, self.node_index,
                                    self.confidence, self.scores, self.state_node_ids,
                                    self.expected_ms, self.transfer_ms)}
        if lengths != {n} or len(self.offsets) != n + 1:
            raise ValueError(f"RecordBatch columns of lengths {sorted(lengths)} and "
                             f"{len(self.offsets)} offsets for {n} decisions")
        _check_hex_ids("decision_id", self.decision_ids)
        _check_hex_ids("request_hash", self.request_hashes)
        if not isinstance(self.created_at, datetime) or self.created_at.tzinfo is None:
            raise ValueError(f"RecordBatch.created_at must be a timezone-aware datetime, "
                             f"got {self.created_at!r}")
        v = self.node_values
        if type(v) is not np.ndarray or v.dtype is not _F32 or not v.flags.c_contiguous \
                or v.ndim != 2 or v.shape[1] != NUM_NODE_VALUES:
            raise ValueError(f"RecordBatch.node_values must be a C-contiguous float32 "
                             f"[T, {NUM_NODE_VALUES}] matrix")
        if self.offsets[0] != 0 or self.offsets[-1] != v.shape[0]:
            raise ValueError(f"RecordBatch.offsets span {self.offsets[0]}..{self.offsets[-1]}"
                             f", node_values has {v.shape[0]} rows")
        sv = self.score_values
        if sv is not None and (type(sv) is not np.ndarray or sv.dtype is not _F32
                               or sv.shape != (v.shape[0],)):
            raise ValueError(f"RecordBatch.score_values must be float32 [{v.shape[0]}]")
        for ids, lo, hi in zip(self.state_node_ids, self.offsets, self.offsets[1:]):
            if hi < lo or (ids is not None and len(ids) != hi - lo):
                raise ValueError(f"RecordBatch: {hi - lo} node rows for node ids {ids!r}")

    def records(self) -> list[DecisionRecord]:
        """One DecisionRecord per decision, equal to the one ``DecisionRecord(...)``
        would make from the same values (the batch is checked first; ValueError as the
        constructor raises it)."""
        self._check()
        out = []
        new = object.__new__
        values, bounds, packed = self.node_values, list(self.offsets), self.score_values
        for i, (decision_id, key, node_id, index, conf, scores, ids, expected, transfer) in \
                enumerate(zip(self.decision_ids, self.request_hashes, self.node_ids,
                              self.node_index, self.confidence, self.scores,
                              self.state_node_ids, self.expected_ms, self.transfer_ms)):
            rec: DecisionRecord = new(DecisionRecord)
            rec.decision_id = decision_id
            rec.created_at = self.created_at
            rec.model_name = self.model_name
            rec.model_version = self.model_version
            rec.backend = self.backend
            rec.node_id = node_id
            rec.node_index = index
            rec.confidence = conf
            rec.scores = scores
            rec.latency_ms = self.latency_ms
            rec.request_hash = key
            rec.cached = False
            rec.node_ids = ids
            rec.node_values = values[bounds[i]:bounds[i + 1]]
            rec.expected_ms = expected
            rec.transfer_ms = transfer
            rec.shadow_of = None
            rec.score_values = None if packed is None else packed[bounds[i]:bounds[i + 1]]
            out.append(rec)
        return out


#: Every field RecordBatch.records sets, in DecisionRecord's order: a new field must be
#: set there too (checked at import).
_BATCH_SETS = ("decision_id", "created_at", "model_name", "model_version", "backend",
               "node_id", "node_index", "confidence", "scores", "latency_ms", "request_hash",
               "cached", "node_ids", "node_values", "expected_ms", "transfer_ms", "shadow_of",
               "score_values")
if _BATCH_SETS != tuple(DecisionRecord.__dataclass_fields__):
    raise RuntimeError(f"RecordBatch.records sets {_BATCH_SETS}, DecisionRecord has "
                       f"{tuple(DecisionRecord.__dataclass_fields__)}")
