"""What the features predicted for the chosen node, so feedback can be compared with it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Adds to ``predictions`` two nullable doubles (NULL for decisions logged before):

* ``expected_ms``: the predicted queueing wait plus execution on the chosen node at its
  declared (or nominal) capacity, observed speed 1 (``est_wait_ms + est_exec_ms``);
* ``transfer_ms``: the predicted transfer to it (``est_transfer_ms``).

``/v1/feedback``'s ``completion_ms`` minus ``transfer_ms``, over ``expected_ms``, is the
ratio the per-node speed estimate learns from (``edge_allocator.speeds``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("expected_ms", sa.Float(), nullable=True))
        batch.add_column(sa.Column("transfer_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("transfer_ms")
        batch.drop_column("expected_ms")
