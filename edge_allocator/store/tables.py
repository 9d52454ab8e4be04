"""The two tables of the decision log, as SQLAlchemy Core metadata.

The schema itself is created by the Alembic migrations in ``edge_allocator/store/migrations``;
this metadata mirrors them for queries and inserts, and a test checks the two agree.
Core tables rather than ORM classes: the log only bulk-inserts dict rows and aggregates,
so mapped objects would add per-row cost and nothing else.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A datetime that is timezone-aware UTC on the way in and on the way out.

    SQLite has no timezone type and hands back naive values, so UTC is stored there as a
    naive string and tagged again on read; PostgreSQL keeps ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the decision log stores UTC only")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stored: datetime = value  # the driver's value for a DateTime column
        if stored.tzinfo is None:
            return stored.replace(tzinfo=timezone.utc)
        return stored.astimezone(timezone.utc)


#: 64-bit ids on PostgreSQL (feedback grows without bound); on SQLite
#: only INTEGER PRIMARY KEY autoincrements, and it is 64-bit there anyway.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: JSONB on PostgreSQL (queryable, compact), JSON text elsewhere; None is SQL NULL.
Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

metadata = sa.MetaData()

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("decision_id", sa.String(32), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Column("backend", sa.String(128), nullable=False),
    sa.Column("node_id", sa.String(128), nullable=False),
    sa.Column("node_index", sa.Integer(), nullable=False),
    sa.Column("confidence", sa.Float(), nullable=False),
    # The scored nodes' {node_id: score}; NULL where score_values holds them (0005).
    sa.Column("scores", Json, nullable=True),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    sa.Column("request_hash", sa.String(32), nullable=False),
    sa.Column("cached", sa.Boolean(), nullable=False),
    # The node states the decision was made on, packed (see store.records): which field
    # order, how many nodes, [N, 7] little-endian float32, msgpack ids or NULL for the
    # index ids "0".."N-1". One value per decision instead of one row per node.
    sa.Column("node_format", sa.SmallInteger(), nullable=False),
    sa.Column("node_count", sa.Integer(), nullable=False),
    sa.Column("node_values", sa.LargeBinary(), nullable=False),
    sa.Column("node_ids", sa.LargeBinary(), nullable=True),
    # What the features predicted for the chosen node at observed speed 1 (migration
    # 0003): wait + execution, and transfer; feedback is compared with them.
    sa.Column("expected_ms", sa.Float(), nullable=True),
    sa.Column("transfer_ms", sa.Float(), nullable=True),
    # Shadow decisions (migration 0004): the live decision whose state a candidate
    # version scored off the response path; NULL for live decisions. Every live figure
    # (report, decisions browser, feedback) reads the rows where it is NULL.
    sa.Column("shadow_of", sa.String(32), nullable=True),
    # Scores packed (migration 0005, see store.records): [node_count] little-endian
    # float32 in node order, NaN where masked; NULL where ``scores`` holds the map.
    sa.Column("score_values", sa.LargeBinary(), nullable=True),
    sa.Index("ix_predictions_created_at", "created_at"),
    sa.Index("ix_predictions_shadow_of", "shadow_of"),
)

# The decisions of one batch request (migration 0006, ``store.runs``): one row, every
# per-decision value packed (little-endian arrays; msgpack for the ids). Decision i of a
# run has the id ``run_id + f"{i:04x}"``. Live decisions only, never cached.
decision_runs = sa.Table(
    "decision_runs",
    metadata,
    sa.Column("run_id", sa.String(28), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Column("backend", sa.String(128), nullable=False),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    sa.Column("request_hashes", sa.LargeBinary(), nullable=False),  # 16 bytes x D
    sa.Column("decision_count", sa.Integer(), nullable=False),
    # the sum of the decisions' confidences: the report's mean without unpacking
    sa.Column("confidence_sum", sa.Float(), nullable=False),
    sa.Column("node_format", sa.SmallInteger(), nullable=False),
    sa.Column("node_counts", sa.LargeBinary(), nullable=False),  # int32 [D]
    sa.Column("node_values", sa.LargeBinary(), nullable=False),  # float32 [T, 7]
    sa.Column("node_ids", sa.LargeBinary(), nullable=True),  # msgpack [D] of list | None
    sa.Column("chosen_ids", sa.LargeBinary(), nullable=False),  # msgpack [D] of str
    sa.Column("node_index", sa.LargeBinary(), nullable=False),  # int32 [D]
    sa.Column("confidence", sa.LargeBinary(), nullable=False),  # float64 [D]
    sa.Column("score_values", sa.LargeBinary(), nullable=False),  # float64 [T], NaN masked
    sa.Column("expected_ms", sa.LargeBinary(), nullable=False),  # float64 [D]
    sa.Column("transfer_ms", sa.LargeBinary(), nullable=False),  # float64 [D]
    sa.Index("ix_decision_runs_created_at", "created_at"),
)

# decision_id is deliberately not a foreign key: predictions can then be pruned or
# partitioned by time without touching feedback, and feedback inserts take no lock on
# predictions. record_feedback() checks the id exists instead.
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("decision_id", sa.String(32), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("completion_ms", sa.Float(), nullable=True),
    sa.Column("success", sa.Boolean(), nullable=False),
    sa.Column("energy_j", sa.Float(), nullable=True),
    sa.Index("ix_feedback_decision_id", "decision_id"),
)
