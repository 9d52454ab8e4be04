"""Node states packed into predictions: one value per decision instead of one row per node.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Adds to ``predictions``:

* ``node_format`` (smallint): field order of ``node_values``; 1 = cpu_util, mem_util,
  energy, latency, bandwidth, queue_len, node_type;
* ``node_count`` (integer): N;
* ``node_values`` (blob / bytea): the [N, 7] matrix as little-endian float32, N * 28 bytes;
* ``node_ids`` (blob / bytea, NULL = the index ids "0".."N-1"): msgpack list of N strings.

Upgrade packs each decision's ``network_metrics`` rows into them (in ``id`` order, the
order the nodes were written in) and then drops ``network_metrics``. Values go from
double to float32, which is what the models read anyway (``graph.node_matrix``); the
per-node ``timestamp`` was always the decision's ``created_at`` and is not kept. Rows that
belong to no stored decision (``decision_id`` NULL or unknown: never written by the log,
but the 0001 schema allowed them) cannot be packed; they stay in ``network_metrics``,
which is then kept rather than dropped, with a warning.

Downgrade unpacks back into ``network_metrics`` (timestamp = ``created_at``, values as
float32 widened to double) and drops the new columns.

The format is spelled out here rather than imported from ``edge_allocator.store.records``
so that this revision keeps doing the same thing when the records module moves on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs, no py.typed
import numpy as np
import sqlalchemy as sa
from alembic import context, op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)

FORMAT = 1
FIELDS: tuple[str, ...] = (
    "cpu_util", "mem_util", "energy", "latency", "bandwidth", "queue_len", "node_type",
)
#: Decisions converted per round trip.
CHUNK = 1000
_F32LE = np.dtype("<f4")
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_utc = sa.DateTime(timezone=True)
_NEW_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any], bool], ...] = (
    ("node_format", sa.SmallInteger(), False),
    ("node_count", sa.Integer(), False),
    ("node_values", sa.LargeBinary(), False),
    ("node_ids", sa.LargeBinary(), True),
)

_predictions = sa.table(
    "predictions",
    sa.column("decision_id", sa.String()),
    sa.column("created_at", _utc),
    sa.column("node_format", sa.SmallInteger()),
    sa.column("node_count", sa.Integer()),
    sa.column("node_values", sa.LargeBinary()),
    sa.column("node_ids", sa.LargeBinary()),
)
_metrics = sa.table(
    "network_metrics",
    sa.column("id", sa.BigInteger()),
    sa.column("decision_id", sa.String()),
    sa.column("node_id", sa.String()),
    sa.column("timestamp", _utc),
    *(sa.column(f, sa.Float()) for f in FIELDS),
)


def _index_ids(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def _decision_chunks(bind: sa.Connection) -> Iterator[list[str]]:
    """All decision ids in id order, CHUNK at a time (keyset paging on the primary key,
    so a chunk is read only when the previous one is done and memory stays bounded)."""
    last = ""
    col = _predictions.c.decision_id
    while True:
        ids = list(bind.scalars(sa.select(col).where(col > last).order_by(col).limit(CHUNK)))
        if not ids:
            return
        yield ids
        last = ids[-1]


def _online_only() -> sa.Connection:
    if context.is_offline_mode():
        raise RuntimeError("revision 0002 converts stored rows in Python and cannot be "
                           "rendered as SQL (--sql); run it against the database")
    return op.get_bind()


def upgrade() -> None:
    bind = _online_only()
    for name, type_, _ in _NEW_COLUMNS:
        op.add_column("predictions", sa.Column(name, type_, nullable=True))
    # Without it every chunk's lookup would scan network_metrics; dropped with the table.
    op.create_index("ix_network_metrics_decision_id_0002", "network_metrics",
                    ["decision_id", "id"])

    m, p = _metrics, _predictions
    fill = (
        sa.update(p)
        .where(p.c.decision_id == sa.bindparam("b_decision_id"))
        .values(node_format=FORMAT, node_count=sa.bindparam("b_count"),
                node_values=sa.bindparam("b_values"), node_ids=sa.bindparam("b_ids"))
    )
    for ids in _decision_chunks(bind):
        nodes: dict[str, tuple[list[str], list[tuple[float, ...]]]] = {i: ([], []) for i in ids}
        for row in bind.execute(
            sa.select(m.c.decision_id, m.c.node_id, *(m.c[f] for f in FIELDS))
            .where(m.c.decision_id.in_(ids))
            .order_by(m.c.decision_id, m.c.id)
        ):
            node_ids, values = nodes[row[0]]
            node_ids.append(row[1])
            values.append(tuple(row[2:]))
        params = []
        for decision_id, (node_ids, values) in nodes.items():
            n = len(values)
            packed = np.array(values, dtype=_F32LE).reshape(n, len(FIELDS)).tobytes()
            params.append({
                "b_decision_id": decision_id,
                "b_count": n,
                "b_values": packed,
                "b_ids": None if node_ids == _index_ids(n) else msgpack.packb(node_ids),
            })
        bind.execute(fill, params)

    with op.batch_alter_table("predictions") as batch:
        for name, type_, nullable in _NEW_COLUMNS:
            if not nullable:
                batch.alter_column(name, existing_type=type_, nullable=False)

    orphans = bind.scalar(
        sa.select(sa.func.count()).select_from(m).where(
            sa.or_(m.c.decision_id.is_(None),
                   ~sa.exists().where(p.c.decision_id == m.c.decision_id))
        )
    )
    if orphans:
        bind.execute(sa.delete(m).where(m.c.decision_id.in_(sa.select(p.c.decision_id))))
        op.drop_index("ix_network_metrics_decision_id_0002", table_name="network_metrics")
        log.warning("migration 0002: %d network_metrics rows belong to no stored decision "
                    "and cannot be packed; they stay in network_metrics", orphans)
        return
    op.drop_index("ix_network_metrics_decision_id_0002", table_name="network_metrics")
    op.drop_index("ix_network_metrics_node_id_timestamp", table_name="network_metrics")
    op.drop_table("network_metrics")


def downgrade() -> None:
    bind = _online_only()
    if not sa.inspect(bind).has_table("network_metrics"):
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

    p = _predictions
    for ids in _decision_chunks(bind):
        rows = []
        for decision_id, created_at, fmt, n, packed, packed_ids in bind.execute(
            sa.select(p.c.decision_id, p.c.created_at, p.c.node_format, p.c.node_count,
                      p.c.node_values, p.c.node_ids)
            .where(p.c.decision_id.in_(ids))
            .order_by(p.c.decision_id)
        ):
            if fmt != FORMAT:
                raise RuntimeError(f"decision {decision_id}: node_format {fmt} is newer than "
                                   f"this migration knows ({FORMAT}); cannot unpack")
            values = np.frombuffer(packed, dtype=_F32LE).reshape(n, len(FIELDS)).tolist()
            node_ids = _index_ids(n) if packed_ids is None else msgpack.unpackb(packed_ids)
            for node_id, row in zip(node_ids, values):
                metric: dict[str, object] = {"decision_id": decision_id, "node_id": node_id,
                                             "timestamp": created_at}
                metric.update(zip(FIELDS, row))
                metric["node_type"] = int(row[-1])
                rows.append(metric)
        if rows:
            bind.execute(sa.insert(_metrics), rows)

    with op.batch_alter_table("predictions") as batch:
        for name, _, _ in reversed(_NEW_COLUMNS):
            batch.drop_column(name)
