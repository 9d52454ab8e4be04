"""Shadow decisions: a candidate version's decision on a live decision's state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Adds to ``predictions`` one nullable column and its index:

* ``shadow_of``: for a shadow decision (``user_config`` ``shadow``), the id of the live
  decision whose state the candidate scored off the response path; NULL for live
  decisions (every row logged before).

Shadow rows keep their own decision id, the candidate's name and version, its choice,
confidence and scores; they store no node states (those are the live row's). Every live
figure (``edge-allocator report``, /v1/decisions, feedback) reads ``shadow_of IS NULL``;
``edge-allocator report --shadow`` joins the two on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("shadow_of", sa.String(32), nullable=True))
        batch.create_index("ix_predictions_shadow_of", ["shadow_of"])


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_index("ix_predictions_shadow_of")
        batch.drop_column("shadow_of")
