"""Decision runs: the decisions of one batch request as one row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08

Adds the table ``decision_runs`` (``edge_allocator.store.runs``): one row per batch
request, each per-decision value a packed column. Why: a ``predictions`` row costs the
writer ~5 µs of SQLite whatever it holds, and a batch request's decisions were 256 of
them; the log's whole cost a decision was 12-19 µs against the 10 it may take.

Existing rows are not converted: every decision logged before stays a ``predictions``
row, and every reader (feedback, report, the decisions browser, the shadow report)
reads both tables. Single decisions and shadow decisions keep being ``predictions``
rows. Downgrade copies nothing back: it refuses while runs are stored, so no decision is
dropped by it (convert or archive them first).

Types are spelled out here rather than imported from ``edge_allocator.store.tables``, so
this revision keeps doing the same thing when the tables module moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "decision_runs",
        sa.Column("run_id", sa.String(28), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("backend", sa.String(128), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("request_hashes", sa.LargeBinary(), nullable=False),
        sa.Column("decision_count", sa.Integer(), nullable=False),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        sa.Column("node_format", sa.SmallInteger(), nullable=False),
        sa.Column("node_counts", sa.LargeBinary(), nullable=False),
        sa.Column("node_values", sa.LargeBinary(), nullable=False),
        sa.Column("node_ids", sa.LargeBinary(), nullable=True),
        sa.Column("chosen_ids", sa.LargeBinary(), nullable=False),
        sa.Column("node_index", sa.LargeBinary(), nullable=False),
        sa.Column("confidence", sa.LargeBinary(), nullable=False),
        sa.Column("score_values", sa.LargeBinary(), nullable=False),
        sa.Column("expected_ms", sa.LargeBinary(), nullable=False),
        sa.Column("transfer_ms", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_decision_runs_created_at", "decision_runs", ["created_at"])


def downgrade() -> None:
    runs = op.get_bind().scalar(sa.text("SELECT count(*) FROM decision_runs"))
    if runs:
        raise RuntimeError(f"decision_runs holds {runs} runs: downgrading past 0006 would "
                           "drop their decisions; export or archive them first")
    op.drop_index("ix_decision_runs_created_at", table_name="decision_runs")
    op.drop_table("decision_runs")
