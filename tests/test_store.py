"""Tests of the decision log (edge_allocator.store) on SQLite and, when reachable, PostgreSQL.

PostgreSQL tests create a database of their own (unique name) on the server at
EDGE_ALLOCATOR_TEST_PG_URL (default: local trust auth) and drop it afterwards, so parallel
runs never share tables; they are skipped with the reason when no server answers.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from edge_allocator.store import (
    DecisionLog,
    DecisionRecord,
    ReportRow,
    StoreUnavailable,
    UnknownDecision,
    format_report,
    make_engine,
    metadata,
    new_decision_id,
)

PG_URL = os.environ.get(
    "EDGE_ALLOCATOR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
#: Short, so tests that wait on the writer stay fast.
FAST_FLUSH_S = 0.05
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


def make_record(
    i: int = 0,
    *,
    model: str = "hybrid",
    version: str = "1",
    confidence: float = 0.5,
    cached: bool = False,
    n_nodes: int = 3,
) -> DecisionRecord:
    nodes = [
        {
            "node_id": f"n{j}",
            "cpu_util": 0.1 * j,
            "mem_util": 0.2,
            "energy": 1.5,
            "latency": 10.0 + j,
            "bandwidth": 100.0,
            "queue_len": float(j),
            "node_type": j % 3,
            "ignored_extra": "x",
        }
        for j in range(n_nodes)
    ]
    return DecisionRecord(
        decision_id=new_decision_id(),
        created_at=T0 + timedelta(seconds=i),
        model_name=model,
        model_version=version,
        backend="onnx",
        node_id="n1",
        node_index=1,
        confidence=confidence,
        scores={f"n{j}": 1.0 / n_nodes for j in range(n_nodes)},
        latency_ms=2.5,
        request_hash=uuid.uuid4().hex,
        cached=cached,
        nodes=nodes,
    )


def count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(sa.text(f"SELECT count(*) FROM {table}")))
    finally:
        engine.dispose()


# ------------------------------------------------------------------------ fixtures


def _pg_admin() -> sa.Engine:
    url = make_url(PG_URL).set(database="postgres")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2})


@pytest.fixture(scope="module")
def pg_server() -> Iterator[sa.Engine]:
    admin = _pg_admin()
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as err:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {make_url(PG_URL).render_as_string()}: "
                    f"{str(err.orig).splitlines()[0]}")
    yield admin
    admin.dispose()


@pytest.fixture
def pg_db_name(pg_server: sa.Engine) -> Iterator[str]:
    """A unique database name on the server; dropped after the test if it was created."""
    name = f"test_store_{uuid.uuid4().hex[:12]}"
    yield name
    with pg_server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _pg_url(name: str) -> str:
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    server = request.getfixturevalue("pg_server")
    name = request.getfixturevalue("pg_db_name")
    with server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return _pg_url(name)


def open_log(url: str, tmp_path: Path, **kwargs: object) -> DecisionLog:
    opts: dict[str, object] = {"spool_path": tmp_path / "spool" / "log.jsonl",
                               "flush_interval_s": FAST_FLUSH_S}
    opts.update(kwargs)
    return DecisionLog(url, **opts)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- records


def test_record_json_round_trip_and_validation() -> None:
    rec = make_record(7)
    back = DecisionRecord.from_json(rec.to_json())
    assert back == rec
    assert back.created_at.tzinfo is not None
    assert b"\n" not in rec.to_json()
    with pytest.raises(ValueError, match="timezone-aware"):
        DecisionRecord(**{**_fields(rec), "created_at": datetime(2025, 1, 1)})
    with pytest.raises(ValueError, match="decision_id"):
        DecisionRecord(**{**_fields(rec), "decision_id": "not-hex"})
    with pytest.raises(ValueError, match=r"nodes\[0\] lacks \['queue_len'\]"):
        DecisionRecord(**{**_fields(rec), "nodes": [{k: v for k, v in rec.nodes[0].items()
                                                      if k != "queue_len"}]})
    with pytest.raises(ValueError, match="not a DecisionRecord"):
        DecisionRecord.from_json(b'{"decision_id": "x"')


def _fields(rec: DecisionRecord) -> dict[str, object]:
    return {name: getattr(rec, name) for name in rec.__dataclass_fields__}


# ---------------------------------------------------------------------- schema


def test_migrations_create_tables_and_indexes(db_url: str, tmp_path: Path) -> None:
    with open_log(db_url, tmp_path) as log:
        insp = sa.inspect(log.engine)
        assert {"predictions", "network_metrics", "feedback", "alembic_version"} <= set(
            insp.get_table_names()
        )
        indexes = {
            table: {ix["name"]: ix["column_names"] for ix in insp.get_indexes(table)}
            for table in ("predictions", "network_metrics", "feedback")
        }
        assert indexes["predictions"]["ix_predictions_created_at"] == ["created_at"]
        assert indexes["network_metrics"]["ix_network_metrics_node_id_timestamp"] == [
            "node_id", "timestamp"]
        assert indexes["feedback"]["ix_feedback_decision_id"] == ["decision_id"]
        assert insp.get_pk_constraint("predictions")["constrained_columns"] == ["decision_id"]
        with log.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0001"
            # The Core metadata the code queries must be exactly what the migrations built.
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []


# ------------------------------------------------------------------------ writes


def test_bulk_writes_land_with_one_metrics_row_per_node(db_url: str, tmp_path: Path) -> None:
    recs = [make_record(i, n_nodes=3) for i in range(1200)]
    with open_log(db_url, tmp_path, batch_size=500) as log:
        for rec in recs:
            log.record(rec)
        assert log.flush(10)
        assert log.pending().total == 0
        with log.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM predictions")) == 1200
            assert conn.scalar(sa.text("SELECT count(*) FROM network_metrics")) == 3600
            row = conn.execute(
                sa.select(metadata.tables["predictions"]).where(
                    metadata.tables["predictions"].c.decision_id == recs[5].decision_id)
            ).one()
            nodes = conn.execute(
                sa.select(metadata.tables["network_metrics"])
                .where(metadata.tables["network_metrics"].c.decision_id == recs[5].decision_id)
                .order_by(metadata.tables["network_metrics"].c.node_id)
            ).all()
    assert row.created_at == recs[5].created_at and row.created_at.tzinfo is not None
    assert row.scores == recs[5].scores and row.cached is False and row.node_index == 1
    assert [n.node_id for n in nodes] == ["n0", "n1", "n2"]
    assert [n.queue_len for n in nodes] == [0.0, 1.0, 2.0]
    assert [n.node_type for n in nodes] == [0, 1, 2]
    assert all(n.timestamp == recs[5].created_at for n in nodes)


def test_close_flushes_and_refuses_new_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    # Neither the timer nor the batch size would write these before close() does.
    log = open_log(url, tmp_path, flush_interval_s=60.0, batch_size=10_000)
    for i in range(25):
        log.record(make_record(i))
    assert log.pending().queued == 25
    log.close()
    assert count(url, "predictions") == 25
    assert count(url, "network_metrics") == 75
    with pytest.raises(RuntimeError, match="closed"):
        log.record(make_record())


def test_rejected_record_does_not_block_the_batch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    good = [make_record(i) for i in range(4)]
    bad = make_record(99)
    bad.nodes[0]["node_id"] = None  # NOT NULL in network_metrics: the database refuses it
    with open_log(url, tmp_path) as log:
        for rec in [good[0], good[1], bad, good[2], good[3]]:
            log.record(rec)
        assert log.flush(5)
        assert log.pending().total == 0
        rejected = log.spool_path.with_name(log.spool_path.name + ".rejected")
    assert count(url, "predictions") == 4
    lines = rejected.read_bytes().splitlines()
    assert [DecisionRecord.from_json(x).decision_id for x in lines] == [bad.decision_id]


# ---------------------------------------------------------------------- feedback


def test_feedback_for_fresh_decision_and_unknown_id(db_url: str, tmp_path: Path) -> None:
    rec = make_record()
    with open_log(db_url, tmp_path, flush_interval_s=60.0) as log:
        log.record(rec)  # still queued: record_feedback must flush to find it
        fid = log.record_feedback(rec.decision_id, completion_ms=12.5, success=True,
                                  energy_j=0.3)
        assert fid >= 1
        with pytest.raises(UnknownDecision) as info:
            log.record_feedback(new_decision_id(), completion_ms=1.0, success=False)
        assert isinstance(info.value, KeyError)
        with pytest.raises(UnknownDecision):
            log.record_feedback("garbage", completion_ms=1.0, success=False)
        with pytest.raises(ValueError, match="completion_ms"):
            log.record_feedback(rec.decision_id, completion_ms=-1.0, success=True)
        with log.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT decision_id, completion_ms, success, energy_j "
                                        "FROM feedback")).all()
    assert [(r[0], r[1], bool(r[2]), r[3]) for r in rows] == [
        (rec.decision_id, 12.5, True, 0.3)]


# ------------------------------------------------------------------------ report


def test_report_numbers(db_url: str, tmp_path: Path) -> None:
    a = [make_record(i, model="hybrid", version="2", confidence=c, cached=(i == 0))
         for i, c in enumerate([0.2, 0.4, 0.6, 0.8])]
    b = make_record(10, model="dqn", version="1", confidence=0.9, cached=True)
    with open_log(db_url, tmp_path) as log:
        for rec in [*a, b]:
            log.record(rec)
        log.record_feedback(a[0].decision_id, 10.0, True)
        log.record_feedback(a[1].decision_id, 20.0, True)
        log.record_feedback(a[2].decision_id, 40.0, False)
        log.record_feedback(a[2].decision_id, None, True)  # outcome without a timing
        rows = log.report()
        with Session(log.engine) as session:
            assert log.report(session) == rows
        since = log.report(since=T0 + timedelta(seconds=2))
    dqn, hybrid = rows
    assert dqn == ReportRow("dqn", "1", 1, 0, None, None, None, pytest.approx(0.9), 1.0)
    assert hybrid.model_name == "hybrid" and hybrid.model_version == "2"
    assert hybrid.decisions == 4 and hybrid.feedback_count == 4
    assert hybrid.success_rate == pytest.approx(0.75)
    assert hybrid.mean_completion_ms == pytest.approx(70.0 / 3)
    # percentile_cont(0.9) of [10, 20, 40]: rank 1.8 -> 20 + 0.8 * (40 - 20)
    assert hybrid.p90_completion_ms == pytest.approx(36.0)
    assert hybrid.mean_confidence == pytest.approx(0.5)
    assert hybrid.cache_hit_rate == pytest.approx(0.25)
    # since= keeps decisions 2, 3 and 10 and the feedback on decision 2 only.
    assert [(r.model_name, r.decisions, r.feedback_count) for r in since] == [
        ("dqn", 1, 0), ("hybrid", 2, 2)]
    assert since[1].p90_completion_ms == pytest.approx(40.0)

    table = format_report(rows).splitlines()
    assert len(table) == 4 and table[0].startswith("| model | version |")
    assert table[2] == "| dqn | 1 | 1 | 0 | – | – | – | 0.900 | 100.0% |"
    assert table[3] == "| hybrid | 2 | 4 | 4 | 75.0% | 23.3 | 36.0 | 0.500 | 25.0% |"


# ------------------------------------------------------------ outage, spool, replay


def _metric_order(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ids = conn.scalars(sa.text("SELECT decision_id FROM network_metrics ORDER BY id"))
            return list(dict.fromkeys(ids))
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_outage_spools_then_replays_in_order_exactly_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        db_dir = tmp_path / "not-yet"  # the database cannot be opened until this exists
        url = f"sqlite:///{db_dir / 'log.db'}"

        def bring_back() -> None:
            db_dir.mkdir()
    else:
        server = request.getfixturevalue("pg_server")
        name = request.getfixturevalue("pg_db_name")
        url = _pg_url(name)  # the database does not exist yet

        def bring_back() -> None:
            with server.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    first = [make_record(i) for i in range(30)]
    later = [make_record(100 + i) for i in range(5)]
    log = open_log(url, tmp_path, batch_size=8)
    for rec in first:
        log.record(rec)
    assert log.flush(5)
    assert log.pending() == (0, 30)
    spool_copy = log.spool_path.read_bytes()
    assert len(spool_copy.splitlines()) == 30
    with pytest.raises(StoreUnavailable):
        log.record_feedback(first[0].decision_id, 1.0, True)

    bring_back()
    for rec in later:  # accepted while older records still wait in the spool
        log.record(rec)
    assert log.flush(10)
    assert log.pending() == (0, 0)
    assert log.spool_path.read_bytes() == b""
    log.record_feedback(first[0].decision_id, 1.0, True)
    log.close()
    expected = [r.decision_id for r in first + later]
    assert count(url, "predictions") == 35 and count(url, "network_metrics") == 105
    assert _metric_order(url) == expected

    # A crash after the commit but before the spool was emptied: the same spool comes
    # back on the next start, and replaying it must not store anything twice.
    log.spool_path.write_bytes(spool_copy)
    with open_log(url, tmp_path) as log2:
        assert log2.pending().spooled == 30
        assert log2.flush(10)
        assert log2.pending() == (0, 0)
    assert count(url, "predictions") == 35 and count(url, "network_metrics") == 105
    assert _metric_order(url) == expected


def test_torn_spool_line_is_set_aside_and_the_rest_replayed(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    url = f"sqlite:///{db_dir / 'log.db'}"
    old, new = make_record(1), make_record(2)
    spool = tmp_path / "spool" / "log.jsonl"
    spool.parent.mkdir()
    spool.write_bytes(old.to_json() + b"\n" + b'{"decision_id": "tor')  # crash mid-write
    log = open_log(url, tmp_path, spool_path=spool)
    log.record(new)  # database still absent: appended after the torn line, not onto it
    assert log.flush(5)
    assert log.pending() == (0, 3)
    db_dir.mkdir()
    assert log.flush(5)
    log.close()
    assert _metric_order(url) == [old.decision_id, new.decision_id]
    rejected = spool.with_name(spool.name + ".rejected").read_bytes()
    assert rejected == b'{"decision_id": "tor\n'


def test_errors_and_logs_never_show_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-pa55"
    url = f"postgresql+psycopg://edge:{secret}@127.0.0.1:1/decisions"  # nothing listens
    caplog.set_level(logging.DEBUG, logger="edge_allocator")
    log = open_log(url, tmp_path)
    try:
        assert secret not in log.url and "***" in log.url
        log.record(make_record())
        assert log.flush(10)
        assert log.pending().spooled == 1
        with pytest.raises(StoreUnavailable) as info:
            log.report()
    finally:
        log.close()
    assert "127.0.0.1" in str(info.value) and secret not in str(info.value)
    assert info.value.__suppress_context__  # the driver's exception is not chained on
    assert "unavailable" in caplog.text
    assert secret not in caplog.text


def test_spool_is_owned_by_one_log_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = open_log(url, tmp_path)
    with pytest.raises(ValueError, match="in use by another DecisionLog"):
        open_log(url, tmp_path)
    log.close()
    open_log(url, tmp_path).close()  # released on close


def test_store_imports_no_ray() -> None:
    code = "import sys, edge_allocator.store; print(sorted(m for m in sys.modules if m == 'ray'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        make_engine("sqlite://")
