"""Decision log: every decision, the network it saw (packed, one value per decision), and
its observed outcome.

SQLAlchemy Core on SQLite (default) or PostgreSQL, schema by Alembic migrations, writes
batched off the request path with a local spool for database outages. No Ray imports.

    from edge_allocator.store import DecisionLog, DecisionRecord, format_report

    with DecisionLog("sqlite:///decisions.db") as log:
        log.record(rec)
        log.record_feedback(rec.decision_id, completion_ms=42.0, success=True)
        print(format_report(log.report()))
"""

from edge_allocator.store.engine import create_schema, make_engine, safe_url
from edge_allocator.store.log import (
    PEER_POLL_S,
    DecisionLog,
    Pending,
    StoreUnavailable,
    UnknownDecision,
)
from edge_allocator.store.records import (
    NODE_FORMAT,
    NODE_VALUE_FIELDS,
    DecisionRecord,
    RecordBatch,
    new_decision_id,
    new_decision_ids,
    pack_node_ids,
    pack_node_values,
    unpack_node_ids,
    unpack_node_values,
    utc_now,
)
from edge_allocator.store.report import ReportRow, build_report, format_report
from edge_allocator.store.shadow_report import (
    ShadowRow,
    build_shadow_report,
    format_shadow_report,
)
from edge_allocator.store.tables import feedback, metadata, predictions

__all__ = [
    "NODE_FORMAT",
    "NODE_VALUE_FIELDS",
    "PEER_POLL_S",
    "DecisionLog",
    "DecisionRecord",
    "Pending",
    "RecordBatch",
    "ReportRow",
    "ShadowRow",
    "StoreUnavailable",
    "UnknownDecision",
    "build_report",
    "build_shadow_report",
    "create_schema",
    "feedback",
    "format_report",
    "format_shadow_report",
    "make_engine",
    "metadata",
    "new_decision_id",
    "new_decision_ids",
    "pack_node_ids",
    "pack_node_values",
    "predictions",
    "safe_url",
    "unpack_node_ids",
    "unpack_node_values",
    "utc_now",
]
