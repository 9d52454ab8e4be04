"""Bulk, idempotent insertion of decision records.

Every write — first attempt or spool replay — goes through :func:`insert_records`, which
skips decision ids already in ``predictions`` (a lookup before COPY, which has no ON
CONFLICT; ``ON CONFLICT DO NOTHING`` in the statement elsewhere). That one rule is what makes replay
exactly-once: a batch whose commit was lost in transit, or a replay cut short, can be
written again without storing a prediction twice.

One row per decision (node states are packed into it), written in bulk: ``COPY ... FROM
STDIN`` on PostgreSQL through psycopg 3, multi-row ``INSERT`` statements on SQLite, an
executemany ``INSERT`` on PostgreSQL drivers without ``cursor.copy``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from edge_allocator.store.records import (
    NODE_FORMAT,
    DecisionRecord,
    pack_node_ids,
    pack_node_values,
    pack_scores,
)
from edge_allocator.store.runs import DecisionRun, decisions_of
from edge_allocator.store.tables import decision_runs, predictions

#: Ids per ``IN (...)`` lookup; far below SQLite's and PostgreSQL's parameter limits.
ID_LOOKUP_CHUNK = 500
#: Columns of ``predictions`` in table order: the COPY column list and row layout.
PREDICTION_COLUMNS: tuple[str, ...] = tuple(c.name for c in predictions.columns)
_COPY_SQL = f"COPY predictions ({', '.join(PREDICTION_COLUMNS)}) FROM STDIN"
_JSON_COLUMNS = frozenset(c.name for c in predictions.columns if isinstance(c.type, sa.JSON))


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


def copy_available(conn: Connection) -> bool:
    """Whether ``conn`` can COPY: PostgreSQL through a driver whose cursors have
    ``copy()`` (psycopg 3; not psycopg2, asyncpg or pg8000)."""
    if conn.dialect.name != "postgresql":
        return False
    cursor_class = getattr(conn.connection.driver_connection, "cursor_factory", None)
    return hasattr(cursor_class, "copy")


def _copy_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """``COPY predictions FROM STDIN`` (text format) in the caller's transaction.

    The driver's errors are raised as SQLAlchemy's (IntegrityError, DataError,
    OperationalError...), as an executemany would raise them, so the log tells bad
    data from an outage the same way on both paths.
    """
    try:  # a value JSON cannot hold is bad data, as SQLAlchemy's binding would say
        values = [
            [orjson.dumps(row[c]).decode() if c in _JSON_COLUMNS and row[c] is not None
             else row[c] for c in PREDICTION_COLUMNS]
            for row in rows
        ]
    except TypeError as err:
        raise exc.StatementError(str(err), _COPY_SQL, None, err) from err
    driver_conn: Any = conn.connection.driver_connection
    try:
        with driver_conn.cursor() as cur, cur.copy(_COPY_SQL) as copy:
            for row_values in values:
                copy.write_row(row_values)
    except conn.dialect.loaded_dbapi.Error as err:
        raise exc.DBAPIError.instance(
            _COPY_SQL, None, err, conn.dialect.loaded_dbapi.Error,
            hide_parameters=True, dialect=conn.dialect,
        ) from err


#: Rows per SQLite ``INSERT`` statement at most (x 19 columns: 19,456 parameters, below
#: SQLite's 32,766).
SQLITE_ROWS_PER_STATEMENT = 1024
_SQLITE_ROW = f"({', '.join('?' * len(PREDICTION_COLUMNS))})"


@functools.lru_cache(maxsize=64)
def _sqlite_sql(rows: int) -> str:
    """One INSERT of ``rows`` rows, duplicates skipped (``ON CONFLICT DO NOTHING``).
    Under load the writer's batches are full (``DecisionLog.batch_size``), so the same
    few statements recur and stay in sqlite3's statement cache."""
    return (f"INSERT INTO predictions ({', '.join(PREDICTION_COLUMNS)}) VALUES "
            + ", ".join([_SQLITE_ROW] * rows) + " ON CONFLICT (decision_id) DO NOTHING")


def _sqlite_time(value: datetime) -> str:
    """What SQLAlchemy binds for a UTC datetime on SQLite: its naive DATETIME text."""
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(" ", "microseconds")[:26]  # drops the "+00:00"


def _sqlite_row(rec: DecisionRecord, times: dict[datetime, str],
                packed_ids: dict[tuple[str, ...], bytes | None]) -> tuple[Any, ...]:
    """One record as the values SQLAlchemy's type processing would bind on SQLite, in
    ``PREDICTION_COLUMNS`` order, built straight from the record (no row dict, no
    per-column dispatch: the writer shares the ingress's process and core). ``times``
    memoises the timestamp text: a batch request's decisions share one ``created_at``,
    and formatting it was a fifth of the row's cost. ``packed_ids`` memoises the node
    ids' msgpack: the states of one client's batch name the same nodes."""
    n = rec.node_values.shape[0]
    at = times.get(rec.created_at)
    if at is None:
        at = times[rec.created_at] = _sqlite_time(rec.created_at)
    ids: bytes | None = None
    if rec.node_ids is not None:
        named = tuple(rec.node_ids)
        try:
            ids = packed_ids[named]
        except KeyError:
            ids = packed_ids[named] = pack_node_ids(rec.node_ids, n)
        except TypeError:  # an unhashable id (a spooled record from elsewhere): no memo
            ids = pack_node_ids(rec.node_ids, n)
    packed = rec.score_values
    return (rec.decision_id, at, rec.model_name, rec.model_version,
            rec.backend, rec.node_id, rec.node_index, rec.confidence,
            orjson.dumps(rec.scores).decode() if packed is None else None,
            rec.latency_ms, rec.request_hash,
            int(rec.cached), NODE_FORMAT, n, pack_node_values(rec.node_values),
            ids, rec.expected_ms, rec.transfer_ms, rec.shadow_of,
            None if packed is None else pack_scores(packed))


#: The columns ``_sqlite_row`` fills, in its order; checked against the table at import.
_SQLITE_ROW_COLUMNS = ("decision_id", "created_at", "model_name", "model_version", "backend",
                       "node_id", "node_index", "confidence", "scores", "latency_ms",
                       "request_hash", "cached", "node_format", "node_count", "node_values",
                       "node_ids", "expected_ms", "transfer_ms", "shadow_of", "score_values")
if _SQLITE_ROW_COLUMNS != PREDICTION_COLUMNS:  # a new column must be added to both
    raise RuntimeError(f"_sqlite_row fills {_SQLITE_ROW_COLUMNS}, the table has "
                       f"{PREDICTION_COLUMNS}")


def _sqlite_insert(conn: Connection, records: list[DecisionRecord]) -> int:
    """Multi-row INSERTs straight on the sqlite3 cursor (up to 1,024 rows a statement),
    duplicates skipped by ``ON CONFLICT DO NOTHING`` (no lookup of existing ids first).
    Returns the rows inserted. Driver errors are raised as SQLAlchemy's, as on every path.

    Why not executemany: sqlite3 releases and retakes the GIL for every row it steps,
    and while the ingress's event loop thread runs Python each retake can wait for the
    interpreter's switch interval (5 ms). Beside a thread running Python without pause
    executemany stored 266 decisions/s and 256-row statements 1,318 (one measurement,
    2026-12-07); with benchmarks.log_bench's busy caller (60 µs of Python per decision)
    the whole went from 8,786 to 10,065 decisions/s, and from 18,755 to 24,188 with an
    idle one. The writer fell furthest behind exactly when traffic was highest."""
    try:
        times: dict[datetime, str] = {}
        packed_ids: dict[tuple[str, ...], bytes | None] = {}
        values = [_sqlite_row(r, times, packed_ids) for r in records]
    except (TypeError, ValueError, AttributeError, OverflowError) as err:
        raise exc.StatementError(str(err), _sqlite_sql(1), None, err) from err
    dbapi_conn: Any = conn.connection.driver_connection
    before = dbapi_conn.total_changes
    for start in range(0, len(values), SQLITE_ROWS_PER_STATEMENT):
        chunk = values[start:start + SQLITE_ROWS_PER_STATEMENT]
        params = tuple(itertools.chain.from_iterable(chunk))
        conn.exec_driver_sql(_sqlite_sql(len(chunk)), params)  # errors wrapped by SQLAlchemy
    return int(dbapi_conn.total_changes - before)


#: What the log queues, journals, spools and inserts: one decision, or one batch request's.
LogItem = DecisionRecord | DecisionRun


def decisions_in(items: Sequence[LogItem]) -> int:
    """How many decisions ``items`` hold."""
    return sum(map(decisions_of, items))


def item_key(item: LogItem) -> str:
    """What tells two copies of one item apart from two items (journal and spool overlap)."""
    return item.run_id if isinstance(item, DecisionRun) else item.decision_id


def insert_items(conn: Connection, items: list[LogItem]) -> int:
    """Insert the records and runs not yet stored, in the caller's transaction; returns
    how many decisions were inserted. A run is stored whole or skipped whole (its
    primary key: a replay of it stores nothing twice)."""
    runs = [i for i in items if isinstance(i, DecisionRun)]
    records = [i for i in items if not isinstance(i, DecisionRun)]
    done = insert_records(conn, records) if records else 0
    if runs:
        stmt = (postgresql.insert(decision_runs) if conn.dialect.name == "postgresql"
                else sqlite.insert(decision_runs) if conn.dialect.name == "sqlite" else None)
        if stmt is None:
            raise NotImplementedError(f"decision runs on {conn.dialect.name}")
        try:
            rows = [r.row() for r in {r.run_id: r for r in runs}.values()]
        except (TypeError, ValueError, OverflowError) as err:  # ids msgpack cannot hold
            raise exc.StatementError(str(err), "DecisionRun.row", None, err) from err
        for row in rows:  # one row a batch request: rowcount says whether it was new
            result = conn.execute(stmt.on_conflict_do_nothing(index_elements=["run_id"]), row)
            done += row["decision_count"] if result.rowcount else 0
    return done


def insert_records(conn: Connection, records: list[DecisionRecord]) -> int:
    """Insert the records not yet stored, in the caller's transaction.

    COPY on PostgreSQL with psycopg 3, executemany otherwise. Returns how many
    predictions were inserted; duplicates within ``records`` count once.
    """
    if conn.dialect.name == "sqlite":
        return _sqlite_insert(conn, records)
    fresh: dict[str, DecisionRecord] = {}
    for rec in records:
        fresh.setdefault(rec.decision_id, rec)
    for decision_id in existing_ids(conn, list(fresh)):
        del fresh[decision_id]
    if not fresh:
        return 0
    try:
        rows = [r.prediction_row() for r in fresh.values()]
    except (TypeError, ValueError, OverflowError) as err:  # ids msgpack cannot hold
        raise exc.StatementError(str(err), "DecisionRecord.prediction_row", None, err) from err
    if copy_available(conn):
        _copy_rows(conn, rows)
    else:
        conn.execute(_insert_predictions(conn.dialect.name), rows)
    return len(rows)
