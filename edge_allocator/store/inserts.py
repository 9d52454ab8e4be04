"""Bulk, idempotent insertion of decision records.

Every write — first attempt or spool replay — goes through :func:`insert_records`, which
skips decision ids already in ``predictions``. That one rule is what makes replay
exactly-once: a batch whose commit was lost in transit, or a replay cut short, can be
written again without duplicating a prediction or its ``network_metrics`` rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from edge_allocator.store.records import DecisionRecord
from edge_allocator.store.tables import network_metrics, predictions

#: Ids per ``IN (...)`` lookup; far below SQLite's and PostgreSQL's parameter limits.
ID_LOOKUP_CHUNK = 500


def _insert_predictions(dialect_name: str) -> sa.Insert:
    # ON CONFLICT DO NOTHING also covers a second writer racing on the same id.
    if dialect_name == "postgresql":
        return postgresql.insert(predictions).on_conflict_do_nothing(
            index_elements=["decision_id"]
        )
    if dialect_name == "sqlite":
        return sqlite.insert(predictions).on_conflict_do_nothing(index_elements=["decision_id"])
    return sa.insert(predictions)


def existing_ids(conn: Connection, ids: list[str]) -> set[str]:
    """Which of ``ids`` already have a row in ``predictions``."""
    found: set[str] = set()
    col = predictions.c.decision_id
    for i in range(0, len(ids), ID_LOOKUP_CHUNK):
        found.update(conn.scalars(sa.select(col).where(col.in_(ids[i : i + ID_LOOKUP_CHUNK]))))
    return found


def insert_records(conn: Connection, records: list[DecisionRecord]) -> int:
    """Insert the records not yet stored, in the caller's transaction (executemany).

    Returns how many predictions were inserted; duplicates within ``records`` count once.
    """
    fresh: dict[str, DecisionRecord] = {}
    for rec in records:
        fresh.setdefault(rec.decision_id, rec)
    for decision_id in existing_ids(conn, list(fresh)):
        del fresh[decision_id]
    if not fresh:
        return 0
    rows = list(fresh.values())
    conn.execute(_insert_predictions(conn.dialect.name), [r.prediction_row() for r in rows])
    metric_rows = [m for r in rows for m in r.metric_rows()]
    if metric_rows:
        conn.execute(sa.insert(network_metrics), metric_rows)
    return len(rows)
