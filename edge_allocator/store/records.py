"""One decision as the log stores it, and its JSON form for the spool.

A :class:`DecisionRecord` is built on the request path, so construction only checks what
would otherwise poison a whole batch later (a malformed id, a naive timestamp, a node
without its fields); the HTTP schema has already validated the values themselves.
JSON (orjson) is the one serialisation: the spool must be readable by any later version
and must never execute anything it reads, which rules out pickle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from edge_allocator.schema import NODE_FIELDS

#: Node fields copied into ``network_metrics``, one row per node of the request.
NODE_COLUMNS: tuple[str, ...] = ("node_id", *NODE_FIELDS)
_NODE_KEYS = frozenset(NODE_COLUMNS)
_HEX = frozenset("0123456789abcdef")
#: Length of decision ids and request hashes: 128 bits as lowercase hex.
HEX_ID_CHARS = 32


def new_decision_id() -> str:
    """A fresh decision id: a random UUID4 as 32 lowercase hex characters."""
    return uuid.uuid4().hex


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC (the only kind the log accepts)."""
    return datetime.now(timezone.utc)


def _check_hex_id(name: str, value: str) -> None:
    if not (isinstance(value, str) and len(value) == HEX_ID_CHARS and _HEX.issuperset(value)):
        raise ValueError(
            f"DecisionRecord.{name} must be {HEX_ID_CHARS} lowercase hex characters, "
            f"got {value!r}; use uuid.uuid4().hex or new_decision_id()"
        )


@dataclass(slots=True)
class DecisionRecord:
    """One row of ``predictions`` plus the node observations it was made on.

    ``nodes`` holds one dict per node of the request with the keys of
    :data:`NODE_COLUMNS`; each becomes a ``network_metrics`` row stamped with
    ``created_at``. Extra keys in a node dict are ignored.
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
    nodes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_hex_id("decision_id", self.decision_id)
        _check_hex_id("request_hash", self.request_hash)
        if not isinstance(self.created_at, datetime) or self.created_at.tzinfo is None:
            raise ValueError(
                f"DecisionRecord.created_at must be a timezone-aware datetime, got "
                f"{self.created_at!r}; use datetime.now(timezone.utc)"
            )
        for i, node in enumerate(self.nodes):
            if not _NODE_KEYS.issubset(node):
                missing = sorted(_NODE_KEYS.difference(node))
                raise ValueError(f"DecisionRecord.nodes[{i}] lacks {missing}")

    def prediction_row(self) -> dict[str, Any]:
        """The ``predictions`` row, as a dict for an executemany insert."""
        return {
            "decision_id": self.decision_id,
            "created_at": self.created_at,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "backend": self.backend,
            "node_id": self.node_id,
            "node_index": self.node_index,
            "confidence": self.confidence,
            "scores": self.scores,
            "latency_ms": self.latency_ms,
            "request_hash": self.request_hash,
            "cached": self.cached,
        }

    def metric_rows(self) -> list[dict[str, Any]]:
        """One ``network_metrics`` row per node, tied to this decision and its time."""
        base = {"decision_id": self.decision_id, "timestamp": self.created_at}
        return [base | {k: node[k] for k in NODE_COLUMNS} for node in self.nodes]

    def to_json(self) -> bytes:
        """One JSON document (no newline) that :meth:`from_json` turns back into an equal record."""
        return orjson.dumps(self)  # orjson serialises dataclasses and aware datetimes

    @classmethod
    def from_json(cls, data: bytes | str) -> DecisionRecord:
        """Parse what :meth:`to_json` wrote; raises ``ValueError`` on anything else."""
        try:
            obj = orjson.loads(data)
            obj["created_at"] = datetime.fromisoformat(obj["created_at"])
            return cls(**obj)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a DecisionRecord JSON document: {exc}") from exc
