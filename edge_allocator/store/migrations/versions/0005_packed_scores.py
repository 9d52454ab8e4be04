"""Scores packed: a batch decision's scores as one float32 blob instead of a JSON map.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Adds to ``predictions`` one nullable column and lets ``scores`` be NULL:

* ``score_values`` (blob / bytea): the model's score of each of the decision's
  ``node_count`` nodes, in node order, as little-endian float32 (``node_count * 4``
  bytes), NaN where the node was masked (not scored);
* ``scores``: NULL on a row that stores ``score_values``; the JSON map as before on
  every other row (every row logged before, and decisions logged without packed scores).

Why: the JSON map of a 20-node decision was ~250 bytes of text for its ~10 feasible
nodes in the benchmarks' states (~475 with all 20 scored), encoded on the writer thread
and written by SQLite for every decision of a batch request; the models score in
float32, so 80 bytes hold the same values exactly. Existing rows are not rewritten:
readers take whichever form a row has (``store.records.stored_scores``).

On SQLite, letting a column be NULL rebuilds the table (Alembic's batch mode copies it
once): measured here, 1.1 s for a log of 102,400 decisions (111 MiB), so about 10 s per
million; PostgreSQL only changes its catalogue.

Downgrade fills ``scores`` from ``score_values`` (the node ids of the row) and drops the
column. The format is spelled out here rather than imported from
``edge_allocator.store.records`` so that this revision keeps doing the same thing when
the records module moves on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed
import numpy as np
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_F32LE = np.dtype("<f4")
#: Rows converted per round trip on downgrade.
CHUNK = 1000


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("score_values", sa.LargeBinary(), nullable=True))
        batch.alter_column("scores", existing_type=_json(), nullable=True)


def downgrade() -> None:
    conn = op.get_bind()
    table = sa.table("predictions", sa.column("decision_id", sa.String()),
                     sa.column("scores", _json()), sa.column("score_values", sa.LargeBinary()),
                     sa.column("node_ids", sa.LargeBinary()), sa.column("node_count", sa.Integer()))
    while True:
        rows = conn.execute(
            sa.select(table.c.decision_id, table.c.score_values, table.c.node_ids,
                      table.c.node_count)
            .where(table.c.scores.is_(None)).limit(CHUNK)).all()
        if not rows:
            break
        for decision_id, packed, node_ids, n in rows:
            values = np.frombuffer(packed or b"", _F32LE)
            ids = msgpack.unpackb(node_ids) if node_ids is not None else [str(i) for i in range(n)]
            scores = {ids[k]: float(values[k]) for k in range(len(values))
                      if not np.isnan(values[k])}
            conn.execute(table.update().where(table.c.decision_id == decision_id)
                         .values(scores=scores))
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("score_values")
        batch.alter_column("scores", existing_type=_json(), nullable=False)
