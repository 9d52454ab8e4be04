"""The decisions of one batch request as one row of ``decision_runs`` (migration 0006).

Why not a ``predictions`` row each: a row costs SQLite ~5 µs of CPU to bind and insert
whatever it holds (20 columns, two text indexes), and building 256 records, their score
maps and their journal rows cost the request path as much again, so the log took 12-19
µs a decision against the issue's 10 (``benchmarks/results/handler_cost.*``). A run is one
row whatever its size: every per-decision value is a packed column (little-endian
arrays, msgpack for strings), as node states already were per decision.

Ids: a run's decisions are ``run_id + f"{i:04x}"``: 28 hex characters of one UUIDv7
(``new_run_ids``; its time and version digits as any decision id's, so
``decision_id_time`` and ``peer_write_deadline`` read them alike) and the decision's
index. Character 16 of every id says where it lives: 'a' or 'b' in a run, '8' or '9' a
``predictions`` row (``records.new_decision_ids``). Feedback looks a run decision up by
its run's primary key and index.

A run is written, spooled, journalled and, if the database refuses it, set aside whole:
its decisions are all stored or none, so a replay skips it by its primary key alone.
Each decision keeps its ``request_hash`` (the state's key, equal for an equal state
sent alone or in a batch), packed as 16 bytes.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed
import numpy as np
import orjson

from edge_allocator.store.records import (
    HEX_ID_CHARS,
    NODE_FORMAT,
    NUM_NODE_VALUES,
    index_ids,
    pack_node_values,
    scores_map,
    unpack_node_values,
)

#: Hex characters of a run id; the decision's index fills the rest of its 32.
RUN_ID_CHARS = 28
#: Decisions a run holds at most (the index is 4 hex digits).
MAX_RUN = 0x10000
#: Where an id says whether it is a run's (``RUN_MARKS``) or a single row's.
MARK_AT = 16
RUN_MARKS = frozenset("ab")
#: How a journal or spool line holding a run begins.
RUN_PREFIX = b'{"run":1,'

_F32, _F64, _I32 = np.dtype("<f4"), np.dtype("<f8"), np.dtype("<i4")


def new_run_ids(n: int) -> tuple[str, tuple[str, ...]]:
    """(run id, the ``n`` decision ids of a run): a UUIDv7 as ``new_decision_ids`` makes
    it (48 bits of Unix ms, version 7), its variant nibble set to mark a run, its last
    four hex digits the decision's index (so ids sort in state order)."""
    if not 0 < n <= MAX_RUN:
        raise ValueError(f"a run holds 1 to {MAX_RUN} decisions, got {n}")
    raw = bytearray(os.urandom(16))
    raw[:6] = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0xA0 | (raw[8] & 0x1F)  # variant 10, then 1: a run's
    run = raw.hex()[:RUN_ID_CHARS]
    return run, tuple(f"{run}{i:04x}" for i in range(n))


def is_run_decision(decision_id: str) -> bool:
    """Whether ``decision_id`` names a decision of a run (by its mark, not a lookup)."""
    return len(decision_id) == HEX_ID_CHARS and decision_id[MARK_AT] in RUN_MARKS


def split_run_decision(decision_id: str) -> tuple[str, int]:
    """(run id, index) of a run decision's id (``is_run_decision``)."""
    return decision_id[:RUN_ID_CHARS], int(decision_id[RUN_ID_CHARS:], 16)


class RunDecision(NamedTuple):
    """One decision of a stored run, as readers need it."""

    decision_id: str
    request_hash: str
    node_id: str
    node_index: int
    confidence: float
    expected_ms: float
    transfer_ms: float
    node_count: int


def unpack_run_choice(row: Any, index: int) -> tuple[str, float, float]:
    """(chosen node id, expected ms, transfer ms) of decision ``index`` of a stored run
    (``row``: its ``chosen_ids``, ``expected_ms`` and ``transfer_ms`` columns)."""
    ids = msgpack.unpackb(row.chosen_ids)
    return (str(ids[index]), float(np.frombuffer(row.expected_ms, _F64)[index]),
            float(np.frombuffer(row.transfer_ms, _F64)[index]))


@dataclass(frozen=True, slots=True, eq=False)
class DecisionRun:
    """The decisions of one batch request (``new_run_ids``), columns as the service has
    them: state ``i`` owns rows ``offsets[i]:offsets[i + 1]`` of ``node_values`` ([T, 7]
    float32, ``StateBatch.values32``) and of ``score_values`` ([T] float64, as the model
    scored, NaN where masked); ``state_node_ids`` are each state's node ids (None: the
    indices)."""

    run_id: str
    request_hashes: bytes  # 16 bytes a decision: StateBatch.key_digests
    created_at: datetime
    model_name: str
    model_version: str
    backend: str
    latency_ms: float
    node_ids: Sequence[str]  # the chosen node's id, per decision
    node_index: np.ndarray  # [D] int
    confidence: np.ndarray  # [D] float
    state_node_ids: Sequence[list[str] | None]
    node_values: np.ndarray
    offsets: np.ndarray  # [D + 1] int
    score_values: np.ndarray
    expected_ms: np.ndarray  # [D] float
    transfer_ms: np.ndarray  # [D] float
    _row: dict[str, Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        """The checks that would otherwise poison the writer's whole batch later, O(1)
        Python calls (the values themselves were validated as the request was)."""
        d = len(self.node_ids)
        if not (isinstance(self.run_id, str) and len(self.run_id) == RUN_ID_CHARS
                and self.run_id[MARK_AT] in RUN_MARKS
                and all(c in "0123456789abcdef" for c in self.run_id)):
            raise ValueError(f"DecisionRun.run_id must come from new_run_ids, got "
                             f"{self.run_id!r}")
        if not 0 < d <= MAX_RUN:
            raise ValueError(f"DecisionRun holds 1 to {MAX_RUN} decisions, got {d}")
        if not isinstance(self.created_at, datetime) or self.created_at.tzinfo is None:
            raise ValueError(f"DecisionRun.created_at must be a timezone-aware datetime, "
                             f"got {self.created_at!r}")
        v, off = self.node_values, np.asarray(self.offsets)
        if v.ndim != 2 or v.shape[1] != NUM_NODE_VALUES:
            raise ValueError(f"DecisionRun.node_values must be [T, {NUM_NODE_VALUES}]")
        if off.shape != (d + 1,) or off[0] != 0 or off[-1] != len(v) \
                or (np.diff(off) < 0).any():
            raise ValueError(f"DecisionRun.offsets must rise from 0 to {len(v)} over {d} "
                             "decisions")
        if len(self.state_node_ids) != d or len(self.request_hashes) != 16 * d \
                or self.score_values.shape != (len(v),) or any(
                np.shape(c) != (d,) for c in (self.node_index, self.confidence,
                                              self.expected_ms, self.transfer_ms)):
            raise ValueError(f"DecisionRun columns do not all hold {d} decisions")

    def __len__(self) -> int:
        return len(self.node_ids)

    @property
    def decision_ids(self) -> tuple[str, ...]:
        return tuple(f"{self.run_id}{i:04x}" for i in range(len(self)))

    def row(self) -> dict[str, Any]:
        """The ``decision_runs`` row: every column packed, once (the journal line on the
        request path and the insert on the writer thread share it)."""
        packed = self._row
        if packed is None:
            packed = self._pack()
            object.__setattr__(self, "_row", packed)
        return packed

    def _pack(self) -> dict[str, Any]:
        ids = None if all(i is None for i in self.state_node_ids) else msgpack.packb(
            list(self.state_node_ids))
        return {
            "run_id": self.run_id, "request_hashes": bytes(self.request_hashes),
            "created_at": self.created_at,
            "model_name": self.model_name, "model_version": self.model_version,
            "backend": self.backend, "latency_ms": float(self.latency_ms),
            "decision_count": len(self),
            "confidence_sum": float(np.sum(self.confidence, dtype=np.float64)),
            "node_format": NODE_FORMAT,
            "node_counts": np.diff(self.offsets).astype(_I32).tobytes(),
            "node_values": pack_node_values(self.node_values),
            "node_ids": ids,
            "chosen_ids": msgpack.packb(list(self.node_ids)),
            "node_index": np.asarray(self.node_index, dtype=_I32).tobytes(),
            "confidence": np.asarray(self.confidence, dtype=_F64).tobytes(),
            "score_values": np.asarray(self.score_values, dtype=_F64).tobytes(),
            "expected_ms": np.asarray(self.expected_ms, dtype=_F64).tobytes(),
            "transfer_ms": np.asarray(self.transfer_ms, dtype=_F64).tobytes(),
        }

    @classmethod
    def from_row(cls, row: Any) -> DecisionRun:
        """A ``decision_runs`` row (a mapping or Row with its columns) back as a run."""
        counts = np.frombuffer(row.node_counts, _I32).astype(np.int64)
        ids = msgpack.unpackb(row.node_ids) if row.node_ids is not None else [None] * len(counts)
        return cls(
            run_id=row.run_id, request_hashes=bytes(row.request_hashes),
            created_at=row.created_at, model_name=row.model_name,
            model_version=row.model_version, backend=row.backend, latency_ms=row.latency_ms,
            node_ids=msgpack.unpackb(row.chosen_ids),
            node_index=np.frombuffer(row.node_index, _I32).astype(np.int64),
            confidence=np.frombuffer(row.confidence, _F64).copy(), state_node_ids=ids,
            node_values=unpack_node_values(row.node_values, row.node_format).copy(),
            offsets=np.concatenate([[0], np.cumsum(counts)]),
            score_values=np.frombuffer(row.score_values, _F64).copy(),
            expected_ms=np.frombuffer(row.expected_ms, _F64).copy(),
            transfer_ms=np.frombuffer(row.transfer_ms, _F64).copy())

    def decision(self, i: int) -> RunDecision:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return RunDecision(f"{self.run_id}{i:04x}", self.request_hashes[16 * i:16 * i + 16].hex(),
                           self.node_ids[i],
                           int(self.node_index[i]),
                           float(self.confidence[i]), float(self.expected_ms[i]),
                           float(self.transfer_ms[i]), hi - lo)

    def scores_of(self, i: int) -> dict[str, float]:
        """Decision ``i``'s {node id: score} of its scored nodes, as the response said."""
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        ids = self.state_node_ids[i]
        return scores_map(self.score_values[lo:hi], ids if ids is not None
                          else index_ids(hi - lo))

    def to_json(self) -> bytes:
        """One JSON line's content (no newline) for the journal and the spool, arrays as
        base64 of the bytes the database stores; :meth:`from_json` reads it back."""
        row = self.row()
        doc = {k: (base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v)
               for k, v in row.items() if k != "confidence_sum"}
        return RUN_PREFIX + orjson.dumps(doc)[1:]

    @classmethod
    def from_json(cls, line: bytes) -> DecisionRun:
        """What :meth:`to_json` wrote; ``ValueError`` on anything else."""
        try:
            obj = orjson.loads(line)
            obj.pop("run")
            count = obj.pop("decision_count")
            for k in _BLOBS:
                if obj.get(k) is not None:
                    obj[k] = base64.b64decode(obj[k], validate=True)
            obj["created_at"] = datetime.fromisoformat(obj["created_at"])
            run = cls.from_row(_Row(**obj))
            if len(run) != count:
                raise ValueError(f"a run line of {count} decisions holds {len(run)}")
            return run
        except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error,
                msgpack.UnpackException) as exc:
            raise ValueError(f"not a DecisionRun JSON document: {exc}") from exc


def decisions_of(item: object) -> int:
    """How many decisions a log item holds: a run's length, else 1 (one record)."""
    return len(item) if isinstance(item, DecisionRun) else 1


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` (records and runs) in order, about ``size`` decisions a chunk: a run is
    never split (it is stored whole or not at all), so a chunk holding one is as large
    as it needs to be."""
    chunk: list[Any] = []
    held = 0
    for item in items:
        chunk.append(item)
        held += decisions_of(item)
        if held >= size:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def line_decisions(line: bytes) -> int:
    """How many decisions a journal or spool line holds (a run's, or one record's)."""
    if not line.startswith(RUN_PREFIX):
        return 1
    try:
        return int(orjson.loads(line)["decision_count"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0  # unreadable: replay sets it aside


_BLOBS = ("request_hashes", "node_counts", "node_values", "node_ids", "chosen_ids", "node_index",
          "confidence",
          "score_values", "expected_ms", "transfer_ms")


class _Row(NamedTuple):
    """A run's JSON document with the attribute access of a database row."""

    run_id: str
    request_hashes: bytes
    created_at: datetime
    model_name: str
    model_version: str
    backend: str
    latency_ms: float
    node_format: int
    node_counts: bytes
    node_values: bytes
    node_ids: bytes | None
    chosen_ids: bytes
    node_index: bytes
    confidence: bytes
    score_values: bytes
    expected_ms: bytes
    transfer_ms: bytes
