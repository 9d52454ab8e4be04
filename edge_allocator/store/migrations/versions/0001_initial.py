"""Initial schema: predictions, network_metrics, feedback.

Revision ID: 0001
Revises:
Create Date: 2025-11-26

Types are spelled out here rather than imported from ``edge_allocator.store.tables`` so
that this revision keeps creating the same schema when the tables module moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_json = sa.JSON().with_variant(JSONB(), "postgresql")
_utc = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("decision_id", sa.String(32), primary_key=True),
        sa.Column("created_at", _utc, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("backend", sa.String(128), nullable=False),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("node_index", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("scores", _json, nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("request_hash", sa.String(32), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])

    op.create_table(
        "network_metrics",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True),
        sa.Column("decision_id", sa.String(32), nullable=True),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("timestamp", _utc, nullable=False),
        sa.Column("cpu_util", sa.Float(), nullable=False),
        sa.Column("mem_util", sa.Float(), nullable=False),
        sa.Column("energy", sa.Float(), nullable=False),
        sa.Column("latency", sa.Float(), nullable=False),
        sa.Column("bandwidth", sa.Float(), nullable=False),
        sa.Column("queue_len", sa.Float(), nullable=False),
        sa.Column("node_type", sa.SmallInteger(), nullable=False),
    )
    op.create_index(
        "ix_network_metrics_node_id_timestamp", "network_metrics", ["node_id", "timestamp"]
    )

    op.create_table(
        "feedback",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True),
        sa.Column("decision_id", sa.String(32), nullable=False),
        sa.Column("received_at", _utc, nullable=False),
        sa.Column("completion_ms", sa.Float(), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("energy_j", sa.Float(), nullable=True),
    )
    op.create_index("ix_feedback_decision_id", "feedback", ["decision_id"])


def downgrade() -> None:
    op.drop_index("ix_feedback_decision_id", table_name="feedback")
    op.drop_table("feedback")
    op.drop_index("ix_network_metrics_node_id_timestamp", table_name="network_metrics")
    op.drop_table("network_metrics")
    op.drop_index("ix_predictions_created_at", table_name="predictions")
    op.drop_table("predictions")
