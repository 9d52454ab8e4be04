"""Tests of the decision log (edge_allocator.store) on SQLite and, when reachable, PostgreSQL.

PostgreSQL tests create a database of their own (unique name) on the server at
EDGE_ALLOCATOR_TEST_PG_URL (default: local trust auth) and drop it afterwards, so parallel
runs never share tables; they are skipped with the reason when no server answers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from edge_allocator.store import (
    NODE_VALUE_FIELDS,
    DecisionLog,
    DecisionRecord,
    RecordBatch,
    ReportRow,
    StoreUnavailable,
    UnknownDecision,
    format_report,
    inserts,
    make_engine,
    metadata,
    new_decision_id,
    new_decision_ids,
    predictions,
    unpack_node_ids,
    unpack_node_values,
)
from edge_allocator.store.engine import alembic_config
from tests.conftest import missing

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
    index_ids: bool = False,
) -> DecisionRecord:
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
        node_ids=None if index_ids else [f"n{j}" for j in range(n_nodes)],
        node_values=node_matrix(n_nodes),
    )


def node_matrix(n_nodes: int) -> np.ndarray:
    """[N, 7] float32 node states in NODE_VALUE_FIELDS order, distinct per node."""
    j = np.arange(n_nodes, dtype=np.float64)
    cols = {
        "cpu_util": 0.1 * j, "mem_util": np.full(n_nodes, 0.2), "energy": np.full(n_nodes, 1.5),
        "latency": 10.0 + j, "bandwidth": np.full(n_nodes, 100.0), "queue_len": j,
        "node_type": j % 3,
    }
    return np.stack([cols[f] for f in NODE_VALUE_FIELDS], axis=1).astype(np.float32)


def stored_nodes(url: str, decision_id: str) -> tuple[list[str], np.ndarray]:
    """The node ids and [N, 7] values stored for a decision, unpacked."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(predictions.c.node_format, predictions.c.node_count,
                          predictions.c.node_values, predictions.c.node_ids)
                .where(predictions.c.decision_id == decision_id)
            ).one()
    finally:
        engine.dispose()
    assert row.node_format == 1
    values = unpack_node_values(row.node_values, row.node_format)
    assert values.shape == (row.node_count, 7)
    return unpack_node_ids(row.node_ids, row.node_count), values


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
        missing("PostgreSQL", f"it is not reachable at {make_url(PG_URL).render_as_string()}: "
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


def test_decision_ids_are_uuid7_time_ordered_and_unique() -> None:
    import time

    first = new_decision_ids(300)
    time.sleep(0.002)
    later = new_decision_id()
    ids = [*first, later]
    assert len(set(ids)) == len(ids)
    for i in ids:  # 32 lowercase hex, version 7, RFC 9562 variant
        assert len(i) == 32 and set(i) <= set("0123456789abcdef")
        assert uuid.UUID(hex=i).version == 7 and uuid.UUID(hex=i).variant == uuid.RFC_4122
    assert list(first) == sorted(first)  # one batch's ids sort in state order
    assert later > max(first)  # a later millisecond sorts after
    ms = int(later[:12], 16)
    assert abs(ms - time.time() * 1000) < 5000  # the prefix is the Unix time in ms
    assert new_decision_ids(0) == ()
    dataclasses.replace(make_record(0), decision_id=later)  # the log takes it


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
    with pytest.raises(ValueError, match=r"node_values must be \[N, 7\].*got shape \(3, 6\)"):
        DecisionRecord(**{**_fields(rec), "node_values": rec.node_values[:, :6]})
    with pytest.raises(ValueError, match=r"node_values must be \[N, 7\]"):
        DecisionRecord(**{**_fields(rec), "node_values": rec.node_values.ravel()})
    with pytest.raises(ValueError, match="node_ids has 2 ids for 3 rows"):
        DecisionRecord(**{**_fields(rec), "node_ids": ["a", "b"]})
    with pytest.raises(ValueError, match="not a DecisionRecord"):
        DecisionRecord.from_json(b'{"decision_id": "x"')
    with pytest.raises(ValueError, match="not a DecisionRecord"):  # not base64
        DecisionRecord.from_json(rec.to_json().replace(b'"node_values":"', b'"node_values":"*'))


def test_record_keeps_float32_arrays_and_converts_the_rest() -> None:
    rec = make_record()
    values = node_matrix(4)
    kept = DecisionRecord(**{**_fields(rec), "node_ids": None, "node_values": values})
    assert kept.node_values is values  # no copy on the request path
    as_f64 = DecisionRecord(**{**_fields(rec), "node_ids": None,
                               "node_values": values.astype(np.float64)})
    assert as_f64.node_values.dtype == np.float32 and as_f64 == kept
    strided = np.asfortranarray(values)
    assert DecisionRecord(**{**_fields(rec), "node_ids": None,
                             "node_values": strided}).node_values.flags.c_contiguous
    # No node states at all (what a caller without them logs): a [0, 7] matrix.
    bare = DecisionRecord(**{k: v for k, v in _fields(rec).items()
                             if k not in ("node_ids", "node_values")})
    assert bare.node_values.shape == (0, 7) and bare.node_ids is None
    assert DecisionRecord.from_json(bare.to_json()) == bare


def _record_batch(**changes: Any) -> RecordBatch:
    ids, keys = new_decision_ids(3), [uuid.uuid4().hex for _ in range(3)]
    values = np.arange(9 * 7, dtype=np.float32).reshape(9, 7)
    fields: dict[str, Any] = dict(
        decision_ids=ids, request_hashes=keys, created_at=datetime.now(timezone.utc),
        model_name="hybrid", model_version="2", backend="onnx", node_ids=["b", "1", "x"],
        node_index=[1, 1, 3], confidence=[0.5, 0.25, 0.9],
        scores=[{"a": 1.0, "b": 2.0}, {"1": 0.5}, {"x": 3.0}], latency_ms=1.5,
        state_node_ids=[["a", "b"], None, ["u", "v", "w", "x"]], node_values=values,
        offsets=[0, 2, 5, 9], expected_ms=[10.0, 20.0, 30.0], transfer_ms=[1.0, 2.0, 3.0])
    return RecordBatch(**{**fields, **changes})


def test_record_batch_makes_the_records_the_constructor_makes() -> None:
    """The batch path's records (checked once per batch) equal DecisionRecord(...)'s,
    field by field, and the batch refuses what the constructor refuses."""
    batch = _record_batch()
    made = batch.records()
    for i, rec in enumerate(made):
        lo, hi = batch.offsets[i], batch.offsets[i + 1]
        ref = DecisionRecord(
            decision_id=batch.decision_ids[i], created_at=batch.created_at,
            model_name="hybrid", model_version="2", backend="onnx",
            node_id=batch.node_ids[i], node_index=batch.node_index[i],
            confidence=batch.confidence[i], scores=batch.scores[i], latency_ms=1.5,
            request_hash=batch.request_hashes[i], node_ids=batch.state_node_ids[i],
            node_values=batch.node_values[lo:hi], expected_ms=batch.expected_ms[i],
            transfer_ms=batch.transfer_ms[i])
        assert rec == ref and rec.to_json() == ref.to_json()
        assert np.shares_memory(rec.node_values, batch.node_values)  # a view: no copy
    bad: list[dict[str, Any]] = [
        {"decision_ids": ("A" * 32, *new_decision_ids(2))},
        {"request_hashes": ["0" * 31, "0" * 32, "0" * 32]},
        {"created_at": datetime.now()},
        {"node_values": np.zeros((9, 7), np.float64)},
        {"node_values": np.zeros((9, 6), np.float32)},
        {"offsets": [0, 2, 5, 8]},
        {"offsets": [0, 3, 5, 9]},  # 3 rows for the first state's 2 ids
        {"confidence": [0.5]},
    ]
    for change in bad:
        with pytest.raises(ValueError):
            _record_batch(**change).records()


def test_record_json_is_compact_and_round_trips_packed_states() -> None:
    rec = make_record(n_nodes=20)
    doc = orjson.loads(rec.to_json())
    assert "nodes" not in doc and isinstance(doc["node_values"], str)  # base64, one string
    assert len(doc["node_values"]) == 4 * -(-20 * 28 // 3)
    back = DecisionRecord.from_json(rec.to_json())
    assert back == rec and back.node_values.dtype == np.float32
    assert np.array_equal(back.node_values, rec.node_values) and back.node_ids == rec.node_ids
    back.node_values[0, 0] = 0.75  # a record read back owns a writable array
    assert back != rec
    index = make_record(index_ids=True)
    assert orjson.loads(index.to_json())["node_ids"] is None
    assert DecisionRecord.from_json(index.to_json()) == index
    # Index ids given as a list are the same record as ids left out.
    assert index == DecisionRecord(**{**_fields(index), "node_ids": ["0", "1", "2"]})
    assert [n["node_id"] for n in rec.node_dicts()] == ["n0", "n1", "n2"] + [
        f"n{j}" for j in range(3, 20)]
    assert rec.node_dicts()[2]["queue_len"] == 2.0


def old_format_json(rec: DecisionRecord) -> bytes:
    """``rec`` as versions before packed node states spooled it: one dict per node."""
    doc = orjson.loads(rec.to_json())
    del doc["node_ids"], doc["node_values"]
    doc["nodes"] = [{**n, "node_type": int(n["node_type"]), "ignored_extra": "x"}
                    for n in rec.node_dicts()]
    return orjson.dumps(doc)


def test_record_reads_the_old_spool_format() -> None:
    rec = make_record(3, n_nodes=5)
    old = old_format_json(rec)
    assert b'"nodes":[{"node_id":"n0","cpu_util":0.0' in old
    assert DecisionRecord.from_json(old) == rec
    doc = orjson.loads(old)
    del doc["nodes"][1]["queue_len"]  # the old format required every field of every node
    with pytest.raises(ValueError, match="not a DecisionRecord.*queue_len"):
        DecisionRecord.from_json(orjson.dumps(doc))


def _fields(rec: DecisionRecord) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in rec.__dataclass_fields__}


# ---------------------------------------------------------------------- schema


def test_migrations_create_tables_and_indexes(db_url: str, tmp_path: Path) -> None:
    with open_log(db_url, tmp_path) as log:
        insp = sa.inspect(log.engine)
        assert set(insp.get_table_names()) == {"predictions", "feedback", "decision_runs",
                                               "alembic_version"}
        indexes = {
            table: {ix["name"]: ix["column_names"] for ix in insp.get_indexes(table)}
            for table in ("predictions", "feedback", "decision_runs")
        }
        assert indexes["decision_runs"] == {"ix_decision_runs_created_at": ["created_at"]}
        assert insp.get_pk_constraint("decision_runs")["constrained_columns"] == ["run_id"]
        assert indexes["predictions"] == {"ix_predictions_created_at": ["created_at"],
                                          "ix_predictions_shadow_of": ["shadow_of"]}
        assert indexes["feedback"]["ix_feedback_decision_id"] == ["decision_id"]
        assert insp.get_pk_constraint("predictions")["constrained_columns"] == ["decision_id"]
        with log.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0006"
            # The Core metadata the code queries must be exactly what the migrations built.
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []


# ------------------------------------------------------------------------ writes


def test_bulk_writes_land_with_packed_node_states(db_url: str, tmp_path: Path) -> None:
    recs = [make_record(i, n_nodes=1 + i % 25, index_ids=i % 2 == 1) for i in range(1200)]
    with open_log(db_url, tmp_path, batch_size=500) as log:
        for rec in recs:
            log.record(rec)
        assert log.flush(10)
        assert log.pending().total == 0
        with log.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM predictions")) == 1200
            row = conn.execute(
                sa.select(predictions).where(predictions.c.decision_id == recs[5].decision_id)
            ).one()
            # Index ids ("0".."N-1") are not stored: NULL, for every such decision.
            assert conn.scalar(sa.text("SELECT count(*) FROM predictions "
                                       "WHERE node_ids IS NULL")) == 600
    assert row.created_at == recs[5].created_at and row.created_at.tzinfo is not None
    assert row.scores == recs[5].scores and row.cached is False and row.node_index == 1
    assert row.node_count == 6 and len(row.node_values) == 6 * 28
    for rec in (recs[5], recs[6], recs[24]):
        ids, values = stored_nodes(db_url, rec.decision_id)
        n = rec.node_values.shape[0]
        assert ids == (rec.node_ids or [str(j) for j in range(n)])
        assert values.dtype == np.float32 and np.array_equal(values, rec.node_values)
    ids, values = stored_nodes(db_url, recs[5].decision_id)
    assert values[:, NODE_VALUE_FIELDS.index("queue_len")].tolist() == [0, 1, 2, 3, 4, 5]
    assert values[:, NODE_VALUE_FIELDS.index("node_type")].tolist() == [0, 1, 2, 0, 1, 2]


def _packed_batch() -> RecordBatch:
    """``_record_batch`` with its scores packed as the batch path hands them over:
    float32 in node order, NaN where masked, the maps saying the same."""
    from edge_allocator.store.records import scores_map

    values = np.array([0.1, -2.7, np.nan, 0.33, np.nan, np.nan, 1e-7, np.nan, 7.125],
                      np.float32)
    offsets, ids = [0, 2, 5, 9], [["a", "b"], None, ["u", "v", "w", "x"]]
    maps = [scores_map(values[lo:hi], i or [str(k) for k in range(hi - lo)])
            for lo, hi, i in zip(offsets, offsets[1:], ids)]
    assert maps[1] == {"1": float(np.float32(0.33))}  # 0.33000001311302185
    return _record_batch(scores=maps, score_values=values)


def test_packed_scores_are_stored_as_float32_and_read_back_exactly(db_url: str,
                                                                   tmp_path: Path) -> None:
    """A batch's scores land as score_values (80 bytes for 20 nodes instead of a JSON
    map) with ``scores`` NULL, and read back as the very floats the response showed; a
    record without packed scores keeps its JSON map in the same log. The journal's
    batch line and the spool's JSON carry the packed scores too."""
    from edge_allocator.store.journal import decode_batch, encode_batch
    from edge_allocator.store.records import stored_scores

    recs = _packed_batch().records()
    plain = make_record(1)
    with open_log(db_url, tmp_path) as log:
        log.record_many([*recs, plain])
        assert log.flush(10)
        with log.engine.connect() as conn:
            rows = {r.decision_id: r for r in conn.execute(sa.select(predictions))}
    for rec in recs:
        row = rows[rec.decision_id]
        assert row.scores is None and len(row.score_values) == 4 * row.node_count
        assert stored_scores(row.scores, row.score_values, row.node_ids,
                             row.node_count) == rec.scores
    row = rows[plain.decision_id]
    assert row.score_values is None and row.scores == plain.scores
    assert stored_scores(row.scores, row.score_values, row.node_ids,
                         row.node_count) == plain.scores
    line = encode_batch(recs)
    doc = orjson.loads(line)  # one blob for the batch's scores, no map in any row
    assert isinstance(doc["scores"], str) and all(r[8] is None for r in doc["rows"])
    back = decode_batch(line)
    assert back == recs and [r.scores for r in back] == [r.scores for r in recs]
    assert all(np.array_equal(a.score_values, b.score_values, equal_nan=True)
               for a, b in zip(back, recs))
    spooled = DecisionRecord.from_json(recs[2].to_json())
    assert spooled == recs[2] and np.array_equal(spooled.score_values, recs[2].score_values,
                                                 equal_nan=True)
    with pytest.raises(ValueError):  # one score per node, or none
        DecisionRecord(**{**_fields(recs[0]), "score_values": np.zeros(3, np.float32)})
    with pytest.raises(ValueError):
        _record_batch(score_values=np.zeros(8, np.float32)).records()


def test_sqlite_inserts_span_statements_and_skip_duplicates(tmp_path: Path) -> None:
    """SQLite takes a batch as multi-row INSERTs of up to SQLITE_ROWS_PER_STATEMENT rows:
    a batch longer than one statement lands whole, in every column, and an id already
    stored or repeated within the batch (in another statement) is inserted once."""
    from edge_allocator.store.inserts import SQLITE_ROWS_PER_STATEMENT, insert_records

    url = f"sqlite:///{tmp_path / 'multi.db'}"
    count = 2 * SQLITE_ROWS_PER_STATEMENT + 37
    recs = [make_record(i, n_nodes=1 + i % 7) for i in range(count)]
    with open_log(url, tmp_path) as log:
        assert log.flush(10)  # schema made
        with log.engine.begin() as conn:
            assert insert_records(conn, recs[:10]) == 10
        with log.engine.begin() as conn:  # 10 already stored, 1 repeated further on
            assert insert_records(conn, recs + [recs[3], recs[-1]]) == count - 10
        with log.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM predictions")) == count
            rows = {r.decision_id: r for r in conn.execute(sa.select(predictions))}
    for rec in (recs[0], recs[SQLITE_ROWS_PER_STATEMENT], recs[-1]):
        row = rows[rec.decision_id]
        assert (row.created_at, row.scores, row.node_count, row.request_hash) == (
            rec.created_at, rec.scores, rec.node_values.shape[0], rec.request_hash)
        ids, values = stored_nodes(url, rec.decision_id)
        assert ids == rec.node_ids and np.array_equal(values, rec.node_values)


def test_a_new_sqlite_log_takes_large_pages_and_an_old_one_keeps_its_own(
        tmp_path: Path) -> None:
    """A log file created by the service has SQLITE_PAGE_SIZE pages (what makes its
    writer cheaper); a file made earlier at SQLite's default keeps 4 KiB pages and is
    written as before (the pragma cannot change a file already written)."""
    import sqlite3

    from edge_allocator.store.engine import SQLITE_PAGE_SIZE

    old = tmp_path / "old.db"
    raw = sqlite3.connect(old)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("CREATE TABLE t (x)")
    raw.close()
    for path, size in ((tmp_path / "new.db", SQLITE_PAGE_SIZE), (old, 4096)):
        with open_log(f"sqlite:///{path}", tmp_path / path.stem) as log:
            log.record(make_record(1))
            assert log.flush(10)
            with log.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA page_size").scalar() == size
                assert conn.scalar(sa.text("SELECT count(*) FROM predictions")) == 1


def test_close_flushes_and_refuses_new_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    # Neither the timer nor the batch size would write these before close() does.
    log = open_log(url, tmp_path, flush_interval_s=60.0, batch_size=10_000)
    for i in range(25):
        log.record(make_record(i))
    assert log.pending().queued == 25
    log.close()
    assert count(url, "predictions") == 25
    with pytest.raises(RuntimeError, match="closed"):
        log.record(make_record())


def test_rejected_record_does_not_block_the_batch(db_url: str, tmp_path: Path) -> None:
    url = db_url
    good = [make_record(i) for i in range(4)]
    bad = make_record(99)
    bad.node_index = None  # type: ignore[assignment]  # NOT NULL: the database refuses it
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


def test_feedback_finds_a_decision_another_replica_has_not_written_yet(
        db_url: str, tmp_path: Path) -> None:
    """Two replicas' logs on one database: feedback reaching the second a moment after
    the first decided waits for the first one's writer instead of a 404; an id made long
    ago (or not by new_decision_ids) is refused without waiting."""
    rec = make_record()
    with open_log(db_url, tmp_path / "a", flush_interval_s=0.5) as deciding, \
            open_log(db_url, tmp_path / "b") as told:
        assert told.flush(10)  # schema made
        deciding.record(rec)  # queued on replica a; its writer writes within 0.5 s
        assert told.record_feedback(rec.decision_id, completion_ms=5.0, success=True) >= 1
        old = "0" * 12 + "7" + rec.decision_id[13:]
        with pytest.raises(UnknownDecision):
            told.record_feedback(old, completion_ms=1.0, success=False)


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


def _insert_order(url: str) -> list[str]:
    """Decision ids in the order they were inserted: SQLite's rowid, PostgreSQL's
    physical order (ctid), which follows insertion in a table never updated or vacuumed."""
    engine = sa.create_engine(url)
    order = "ctid" if engine.dialect.name == "postgresql" else "rowid"
    try:
        with engine.connect() as conn:
            return list(conn.scalars(sa.text(f"SELECT decision_id FROM predictions "
                                             f"ORDER BY {order}")))
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
    assert count(url, "predictions") == 35
    assert _insert_order(url) == expected

    # A crash after the commit but before the spool was emptied: the same spool comes
    # back on the next start, and replaying it must not store anything twice.
    log.spool_path.write_bytes(spool_copy)
    with open_log(url, tmp_path) as log2:
        assert log2.pending().spooled == 30
        assert log2.flush(10)
        assert log2.pending() == (0, 0)
    assert count(url, "predictions") == 35
    assert _insert_order(url) == expected


def test_retries_during_an_outage_do_not_read_the_spool_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the database stays down, a replay retry costs one probe, not a parse of the
    spooled records (the soak's ingress replicas kept ~10 MiB from that churn)."""
    from edge_allocator.store.spool import Spool

    reads: list[int] = []
    real = Spool.read_batches

    def counting(self: Spool, *a: Any, **kw: Any) -> Iterator[list[DecisionRecord]]:
        reads.append(self.count)
        return real(self, *a, **kw)

    monkeypatch.setattr(Spool, "read_batches", counting)
    db_dir = tmp_path / "not-yet"
    url = f"sqlite:///{db_dir / 'log.db'}"
    log = open_log(url, tmp_path, batch_size=8)
    for i in range(20):
        log.record(make_record(i))
    assert log.flush(5)
    for _ in range(3):  # a forced flush retries at once, backoff or not
        log.record(make_record(50))
        assert log.flush(5)
    assert log.pending() == (0, 23)
    assert reads == []
    db_dir.mkdir()
    assert log.flush(10)
    assert log.pending() == (0, 0) and reads == [23]
    log.close()
    assert count(url, "predictions") == 23


def test_a_failed_write_does_not_keep_its_batch_alive(tmp_path: Path) -> None:
    """The driver's error, wrapped by SQLAlchemy, forms reference cycles through its
    frames; with the collector off (the replicas defer it), the batch it was writing must
    still be freed once spooled."""
    import gc
    import weakref

    url = f"sqlite:///{tmp_path / 'not-yet' / 'log.db'}"
    log = open_log(url, tmp_path, batch_size=8)
    recs = [make_record(i) for i in range(5)]
    arrays = [weakref.ref(r.node_values) for r in recs]
    gc.disable()
    try:
        log.record_many(recs)
        del recs
        assert log.flush(5)
        assert log.pending() == (0, 5)
        time.sleep(FAST_FLUSH_S * 4)  # the writer's next round lets go of its last batch
        assert [a() is None for a in arrays] == [True] * 5
    finally:
        gc.enable()
        log.close()


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
    assert _insert_order(url) == [old.decision_id, new.decision_id]
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


# ------------------------------------------------------ spool formats, COPY, migrations


def test_spool_left_by_an_older_version_replays(db_url: str, tmp_path: Path) -> None:
    old = [make_record(i, n_nodes=4) for i in range(3)]
    new = make_record(10, n_nodes=2, index_ids=True)
    spool = tmp_path / "spool" / "log.jsonl"
    spool.parent.mkdir()
    # Old and new formats side by side: a spool an upgrade found and then appended to.
    spool.write_bytes(b"".join(old_format_json(r) + b"\n" for r in old)
                      + new.to_json() + b"\n")
    with open_log(db_url, tmp_path, spool_path=spool) as log:
        assert log.pending().spooled == 4
        assert log.flush(10)
        assert log.pending() == (0, 0)
    assert not spool.with_name(spool.name + ".rejected").exists()
    assert _insert_order(db_url) == [r.decision_id for r in [*old, new]]
    for rec in [*old, new]:
        ids, values = stored_nodes(db_url, rec.decision_id)
        assert ids == (rec.node_ids or ["0", "1"])
        assert np.array_equal(values, rec.node_values)


def test_spool_round_trips_packed_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent' / 'log.db'}"  # unreachable: everything spools
    recs = [make_record(i, n_nodes=i, index_ids=i % 2 == 0) for i in range(6)]
    with open_log(url, tmp_path) as log:
        for rec in recs:
            log.record(rec)
        assert log.flush(5)
        spool = log.spool_path
        assert log.pending() == (0, 6)
    lines = spool.read_bytes().splitlines()
    assert [DecisionRecord.from_json(x) for x in lines] == recs


def test_postgresql_writes_by_copy_and_falls_back_to_executemany(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = request.getfixturevalue("pg_server")
    name = request.getfixturevalue("pg_db_name")
    with server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name)
    copied: list[int] = []
    real_copy = inserts._copy_rows

    def spy(conn: sa.Connection, rows: list[dict[str, object]]) -> None:
        copied.append(len(rows))
        real_copy(conn, rows)

    monkeypatch.setattr(inserts, "_copy_rows", spy)
    by_copy = [make_record(i, n_nodes=20, index_ids=i == 0) for i in range(50)]
    # Awkward text for COPY's text format: tab, newline, backslash, quote, non-ASCII.
    by_copy[1].model_name = 'tab\tnew\nline\\back"slash é'
    by_copy[1].scores = {"a\tb": 0.25, "ü\\": 0.75}
    by_copy[2].node_ids = [f"id\t{j}\\N" for j in range(20)]
    with open_log(url, tmp_path, batch_size=500) as log:
        for rec in by_copy:
            log.record(rec)
        assert log.flush(10)
        assert copied == [50]
        # Duplicates (a replay of what is stored, a repeat within a batch) are skipped.
        log.record(by_copy[3])
        log.record(by_copy[3])
        assert log.flush(10)
        assert copied == [50]  # nothing new: no COPY at all

        monkeypatch.setattr(inserts, "copy_available", lambda conn: False)
        by_insert = [make_record(100 + i, n_nodes=3) for i in range(10)]
        for rec in [*by_insert, by_copy[4]]:
            log.record(rec)
        assert log.flush(10)
        assert copied == [50]
        assert log.pending().total == 0
        with log.engine.connect() as conn:
            row = conn.execute(sa.select(predictions.c.model_name, predictions.c.scores)
                               .where(predictions.c.decision_id == by_copy[1].decision_id)).one()
    assert tuple(row) == (by_copy[1].model_name, by_copy[1].scores)
    assert count(url, "predictions") == 60
    for rec in [by_copy[0], by_copy[2], by_copy[49], by_insert[0]]:
        ids, values = stored_nodes(url, rec.decision_id)
        assert ids == (rec.node_ids or [str(j) for j in range(20)])
        assert np.array_equal(values, rec.node_values)


def test_copy_is_used_only_where_the_driver_has_it(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert not inserts.copy_available(conn)
    finally:
        engine.dispose()


def migrate(url: str, revision: str, *, down: bool = False) -> None:
    engine = make_engine(url)
    cfg = alembic_config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)
    finally:
        engine.dispose()


#: Old-format node values that float32 cannot hold exactly (0.1, 10.3...), to show the
#: migration rounds each one to the nearest float32 and nothing else.
def _old_metric(decision_id: str | None, j: int, when: datetime) -> dict[str, object]:
    return {"decision_id": decision_id, "node_id": f"node-{j}", "timestamp": when,
            "cpu_util": 0.1 * (j % 10), "mem_util": 0.3, "energy": 1.7 + j,
            "latency": 10.3 * j, "bandwidth": 99.9, "queue_len": float(j), "node_type": j % 3}


def _write_0001_log(url: str) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """A log at revision 0001 with decisions of 0, 1, 3 and 7 nodes (one with the index
    ids "0".."N-1", as requests without node ids were logged), more than one chunk of
    decisions; returns (predictions rows, network_metrics rows) as written."""
    migrate(url, "0001")
    engine = sa.create_engine(url)
    old = sa.MetaData()
    old.reflect(engine, only=["predictions", "network_metrics"])
    preds, metrics = old.tables["predictions"], old.tables["network_metrics"]
    p_rows: list[dict[str, object]] = []
    per_decision: list[list[dict[str, object]]] = []
    for i, n in enumerate([0, 1, 3, 7] + [2] * 1100):
        did, when = new_decision_id(), T0 + timedelta(seconds=i)
        p_rows.append({"decision_id": did, "created_at": when, "model_name": "hybrid",
                       "model_version": "1", "backend": "onnx", "node_id": "node-0",
                       "node_index": 0, "confidence": 0.5, "scores": {"node-0": 1.0},
                       "latency_ms": 1.0, "request_hash": "ab" * 16, "cached": False})
        per_decision.append([_old_metric(did, j, when) for j in range(n)])
        for j, m in enumerate(per_decision[-1]):
            if i == 2:  # ids out of sorting order: node order is id order, not name order
                m["node_id"] = "cab"[j]
            if i == 3:
                m["node_id"] = str(j)
    # Decisions' rows written newest first: row ids follow neither decision nor time.
    inserted = [m for rows in reversed(per_decision) for m in rows]
    try:
        with engine.begin() as conn:
            conn.execute(preds.insert(), p_rows)
            conn.execute(metrics.insert(), inserted)
    finally:
        engine.dispose()
    return p_rows, sorted(inserted, key=lambda m: str(m["decision_id"]))  # stable: id order


def _expected_nodes(rows: list[dict[str, object]], decision_id: object) -> tuple[
        list[object], np.ndarray]:
    mine = [m for m in rows if m["decision_id"] == decision_id]
    values = np.array([[m[f] for f in NODE_VALUE_FIELDS] for m in mine],
                      dtype=np.float32).reshape(len(mine), 7)
    return [m["node_id"] for m in mine], values


def _json_map(value: Any) -> Any:
    """A JSON column read with plain SQL: text on SQLite, parsed already on PostgreSQL."""
    return orjson.loads(value) if isinstance(value, str) else value


def _assert_packed(url: str, m_rows: list[dict[str, object]], decision_id: object) -> None:
    ids, values = stored_nodes(url, str(decision_id))
    want_ids, want_values = _expected_nodes(m_rows, decision_id)
    assert ids == want_ids and np.array_equal(values, want_values) and len(ids) > 0


def test_migration_packs_network_metrics_and_unpacks_on_downgrade(
    db_url: str, tmp_path: Path
) -> None:
    p_rows, m_rows = _write_0001_log(db_url)
    migrate(db_url, "head")

    engine = make_engine(db_url)
    try:
        insp = sa.inspect(engine)
        assert "network_metrics" not in insp.get_table_names()
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            stored = {r.decision_id: r for r in conn.execute(sa.select(predictions))}
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0006"
    finally:
        engine.dispose()
    assert len(stored) == len(p_rows)
    for i, p in enumerate(p_rows[:8]):
        row = stored[p["decision_id"]]
        ids, values = _expected_nodes(m_rows, p["decision_id"])
        assert row.node_format == 1 and row.node_count == len(ids)
        assert np.array_equal(unpack_node_values(row.node_values), values)
        # Decision 3 had the index ids: stored as NULL, read back as "0".."6".
        assert (row.node_ids is None) == (i in (0, 3))
        assert unpack_node_ids(row.node_ids, row.node_count) == ids
        assert row.created_at == p["created_at"]
    assert stored[p_rows[2]["decision_id"]].node_count == 3
    assert unpack_node_ids(stored[p_rows[2]["decision_id"]].node_ids, 3) == ["c", "a", "b"]

    # The new schema is written to, then everything goes back to one row per node.
    with open_log(db_url, tmp_path) as log:
        fresh = make_record(5000, n_nodes=2)
        log.record(fresh)
        packed = _packed_batch().records()  # 9 nodes, scores packed (0005)
        log.record_many(packed)
        assert log.flush(10)
    migrate(db_url, "0004", down=True)  # packed scores back into the JSON maps
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            maps = dict(conn.execute(sa.text("SELECT decision_id, scores FROM predictions")
                                     ).all())
    finally:
        engine.dispose()
    assert [_json_map(maps[r.decision_id]) for r in packed] == [r.scores for r in packed]
    migrate(db_url, "0001", down=True)
    engine = sa.create_engine(db_url)
    try:
        insp = sa.inspect(engine)
        assert "node_values" not in {c["name"] for c in insp.get_columns("predictions")}
        assert {ix["name"] for ix in insp.get_indexes("network_metrics")} == {
            "ix_network_metrics_node_id_timestamp"}
        with engine.connect() as conn:
            back = conn.execute(sa.text(
                "SELECT decision_id, node_id, timestamp, cpu_util, mem_util, energy, latency, "
                "bandwidth, queue_len, node_type FROM network_metrics ORDER BY id")).all()
    finally:
        engine.dispose()
    assert len(back) == len(m_rows) + 2 + 9
    for p in [*p_rows[:8], p_rows[-1]]:
        ids, values = _expected_nodes(m_rows, p["decision_id"])
        mine = [r for r in back if r.decision_id == p["decision_id"]]
        assert [r.node_id for r in mine] == ids
        assert np.array_equal(np.array([list(r[3:]) for r in mine], np.float32).reshape(-1, 7),
                              values)
        assert all(type(r.node_type) is int for r in mine)
    mine = [r for r in back if r.decision_id == fresh.decision_id]
    assert [r.node_id for r in mine] == ["n0", "n1"]
    assert [r.latency for r in mine] == [10.0, 11.0]

    migrate(db_url, "head")  # and forward again: the same packed values
    _assert_packed(db_url, m_rows, p_rows[7]["decision_id"])


def test_migration_keeps_metrics_that_belong_to_no_decision(db_url: str) -> None:
    p_rows, m_rows = _write_0001_log(db_url)
    engine = sa.create_engine(db_url)
    orphans = [_old_metric(None, 1, T0), _old_metric(new_decision_id(), 2, T0)]
    try:
        with engine.begin() as conn:
            conn.execute(sa.table("network_metrics", *(sa.column(k) for k in orphans[0]))
                         .insert(), orphans)
    finally:
        engine.dispose()
    migrate(db_url, "head")
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            left = conn.execute(sa.text("SELECT decision_id, node_id FROM network_metrics "
                                        "ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in left] == [(None, "node-1"), (orphans[1]["decision_id"], "node-2")]
    _assert_packed(db_url, m_rows, p_rows[2]["decision_id"])


def test_migration_0002_refuses_offline_sql_but_0001_renders(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    cfg = alembic_config()
    cfg.set_main_option("sqlalchemy.url", f"sqlite:///{tmp_path / 'x.db'}")
    command.upgrade(cfg, "0001", sql=True)
    assert "CREATE TABLE network_metrics" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="cannot be rendered as SQL"):
        command.upgrade(cfg, "0001:0002", sql=True)


def test_values_no_encoding_can_hold_are_bad_data_on_every_path(db_url: str) -> None:
    from edge_allocator.store.engine import create_schema
    from edge_allocator.store.log import _is_data_error

    bad_scores = make_record(1)
    bad_scores.scores = {"n0": {1, 2}}  # type: ignore[dict-item]  # JSON has no sets
    bad_ids = make_record(2)
    bad_ids.node_ids = [2**70, 1, 2]  # type: ignore[list-item]  # beyond msgpack's ints
    engine = make_engine(db_url)
    create_schema(engine)
    try:
        for rec in (bad_scores, bad_ids):
            with pytest.raises(sa.exc.StatementError) as info, engine.begin() as conn:
                inserts.insert_records(conn, [rec])
            assert _is_data_error(info.value), info.value  # set aside, never retried
    finally:
        engine.dispose()
    assert count(db_url, "predictions") == 0
