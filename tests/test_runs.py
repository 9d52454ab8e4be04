"""Decision runs (``store.runs``, migration 0006): a batch request's decisions as one row,
on SQLite and a real PostgreSQL. Ids, the JSON line, and every reader (feedback, report,
the decisions browser) finding a run's decisions as they found ``predictions`` rows; the
outage path (spool, replay exactly once) and the killed-process path (journal adoption)
keep a run whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from edge_allocator.store import DecisionLog, UnknownDecision, new_decision_ids, utc_now
from edge_allocator.store.records import decision_id_time
from edge_allocator.store.runs import (
    DecisionRun,
    is_run_decision,
    new_run_ids,
    split_run_decision,
)
from edge_allocator.store.tables import decision_runs
from tests.test_store import count, db_url, open_log, pg_db_name, pg_server  # noqa: F401

assert db_url and pg_db_name and pg_server  # fixtures, used by name


def make_run(states: int = 5, nodes: int = 4, seed: int = 0, named: bool = True,
             model: tuple[str, str] = ("hybrid", "2")) -> DecisionRun:
    """A run as the batch path makes it: states of ``nodes`` nodes, node 1 masked."""
    rng = np.random.default_rng(seed)
    run_id, _ = new_run_ids(states)
    values = rng.random((states * nodes, 7)).astype(np.float32)
    scores = rng.standard_normal(states * nodes)
    scores[1::nodes] = np.nan
    best = np.array([int(np.nanargmax(scores[i * nodes:(i + 1) * nodes]))
                     for i in range(states)])
    ids = [[f"s{seed}-{i}-n{k}" for k in range(nodes)] if named else None
           for i in range(states)]
    chosen = [ids[i][b] if ids[i] else str(b) for i, b in enumerate(best)]  # type: ignore[index]
    return DecisionRun(run_id=run_id, request_hashes=os.urandom(16 * states),
                       created_at=utc_now(), model_name=model[0],
                       model_version=model[1], backend="onnx", latency_ms=3.5,
                       node_ids=chosen, node_index=best, confidence=rng.random(states),
                       state_node_ids=ids, node_values=values,
                       offsets=np.arange(states + 1) * nodes, score_values=scores,
                       expected_ms=rng.random(states) * 100, transfer_ms=rng.random(states))


def _run_rows(url: str) -> list[DecisionRun]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [DecisionRun.from_row(r) for r in conn.execute(sa.select(decision_runs))]
    finally:
        engine.dispose()


def _same(a: DecisionRun, b: DecisionRun) -> bool:
    return (a.run_id == b.run_id and a.created_at == b.created_at
            and a.request_hashes == b.request_hashes
            and list(a.node_ids) == list(b.node_ids)
            and list(a.state_node_ids) == list(b.state_node_ids)
            and all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True)
                    for f in ("node_index", "confidence", "node_values", "offsets",
                              "score_values", "expected_ms", "transfer_ms")))


def test_run_ids_are_uuid7_in_state_order_and_marked():
    run_id, ids = new_run_ids(300)
    assert len(run_id) == 28 and all(i.startswith(run_id) for i in ids)
    assert list(ids) == sorted(ids) and len(set(ids)) == 300
    assert all(is_run_decision(i) for i in ids)
    assert split_run_decision(ids[257]) == (run_id, 257)
    assert abs(decision_id_time(ids[0]) - time.time()) < 5  # type: ignore[operator]
    assert not any(is_run_decision(i) for i in new_decision_ids(2000))  # single rows' ids
    with pytest.raises(ValueError, match="1 to 65536"):
        new_run_ids(0)


def test_a_run_round_trips_as_json_and_as_a_row_and_refuses_bad_columns():
    for named in (True, False):
        run = make_run(named=named)
        assert _same(DecisionRun.from_json(run.to_json()), run)
    run = make_run()
    with pytest.raises(ValueError, match="offsets"):
        DecisionRun(**{**_fields(run), "offsets": run.offsets[:-1]})
    with pytest.raises(ValueError, match="do not all hold 5"):
        DecisionRun(**{**_fields(run), "confidence": run.confidence[:4]})
    with pytest.raises(ValueError, match="new_run_ids"):
        DecisionRun(**{**_fields(run), "run_id": new_decision_ids(1)[0][:28]})
    with pytest.raises(ValueError, match="not a DecisionRun"):
        DecisionRun.from_json(run.to_json()[:-20])


def _fields(run: DecisionRun) -> dict[str, object]:
    return {f: getattr(run, f) for f in DecisionRun.__dataclass_fields__ if f != "_row"}


def test_a_run_is_one_row_and_every_reader_finds_its_decisions(db_url: str,  # noqa: F811
                                                                tmp_path: Path):
    runs = [make_run(seed=s) for s in range(3)]
    with open_log(db_url, tmp_path) as log:
        for run in runs:
            log.record_run(run)
        assert log.flush(10) and log.pending() == (0, 0)
        assert count(db_url, "decision_runs") == 3 and count(db_url, "predictions") == 0
        stored = {r.run_id: r for r in _run_rows(db_url)}
        assert all(_same(stored[r.run_id], r) for r in runs)

        d = runs[1].decision(3)
        got = log.record_outcome(d.decision_id, 120.0, True)
        assert (got.node_id, got.expected_ms, got.transfer_ms) == (
            d.node_id, d.expected_ms, d.transfer_ms)
        log.record_outcome(runs[0].decision(0).decision_id, 80.0, False)
        with pytest.raises(UnknownDecision):  # past the run's last decision
            log.record_outcome(runs[0].run_id + "0005", 1.0, True)
        with pytest.raises(UnknownDecision):  # a run that does not exist
            log.record_outcome(new_run_ids(1)[1][0], 1.0, True, wait_for_peers=False)

        (row,) = log.report()
        assert (row.decisions, row.feedback_count, row.success_rate) == (15, 2, 0.5)
        assert row.mean_completion_ms == pytest.approx(100.0)
        assert row.mean_confidence == pytest.approx(
            np.mean(np.concatenate([r.confidence for r in runs])))
        assert row.cache_hit_rate == 0.0

        newest = log.recent(7)
        assert [r.decision_id for r in newest] == list(runs[2].decision_ids) + list(
            runs[1].decision_ids[:2])
        assert newest[0].node_id == runs[2].node_ids[0] and newest[0].node_count == 4
        by_id = log.recent(3, id_prefix=d.decision_id[:30])  # the run id and "00"
        assert [r.decision_id for r in by_id] == [runs[1].decision_ids[i] for i in (4, 3, 2)]
        (exact,) = log.recent(10, id_prefix=d.decision_id)
        assert [f.completion_ms for f in exact.feedback] == [120.0]
        assert [r.decision_id for r in log.recent(10, id_prefix=runs[0].run_id)] == list(
            reversed(runs[0].decision_ids))


def test_an_outage_spools_a_run_whole_and_replays_it_once(tmp_path: Path):
    db_dir = tmp_path / "not-yet"
    url = f"sqlite:///{db_dir / 'log.db'}"
    runs = [make_run(states=300, seed=s) for s in range(2)]
    log = open_log(url, tmp_path, batch_size=100)  # a run is never split at batch_size
    for run in runs:
        log.record_run(run)
    assert log.flush(5) and log.pending() == (0, 600)
    spool_copy = log.spool_path.read_bytes()
    assert len(spool_copy.splitlines()) == 2  # one line a run
    db_dir.mkdir()
    assert log.flush(10) and log.pending() == (0, 0)
    log.close()
    assert count(url, "decision_runs") == 2
    log.spool_path.write_bytes(spool_copy)  # the crash between commit and truncate
    with open_log(url, tmp_path) as again:
        assert again.pending().spooled == 600
        assert again.flush(10) and again.pending() == (0, 0)
    assert count(url, "decision_runs") == 2
    assert sorted(r.run_id for r in _run_rows(url)) == sorted(r.run_id for r in runs)
    assert not log.spool_path.with_name(log.spool_path.name + ".rejected").exists()


CHILD = """
import sys, time
from tests.test_runs import make_run
from edge_allocator.store import DecisionLog
log = DecisionLog(sys.argv[1], spool_path=sys.argv[2], flush_interval_s=3600,
                  batch_size=10**6)
written, queued = make_run(seed=1), make_run(states=7, seed=2)
log.record_run(written)
log.flush()
log.record_run(queued)  # only queued (and journalled) when the process dies
print(" ".join(written.decision_ids + queued.decision_ids), flush=True)
time.sleep(600)
"""


def test_a_killed_process_loses_no_run(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    spool = tmp_path / "spool"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url, str(spool / "d.1.jsonl")],
                            stdout=subprocess.PIPE, cwd=Path(__file__).parents[1])
    assert proc.stdout is not None
    ids = proc.stdout.readline().decode().split()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(ids) == 12 and count(url, "decision_runs") == 1
    log = DecisionLog(url, spool_path=spool / "d.2.jsonl", adopt_glob="d.*.jsonl",
                      flush_interval_s=0.05)
    try:
        deadline = time.monotonic() + 10
        while count(url, "decision_runs") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        log.close()
    stored = [i for r in _run_rows(url) for i in r.decision_ids]
    assert sorted(stored) == sorted(ids)  # both runs, the journalled one once


def test_the_downgrade_past_runs_refuses_to_drop_them(tmp_path: Path):
    from tests.test_store import migrate

    url = f"sqlite:///{tmp_path / 'log.db'}"
    with open_log(url, tmp_path) as log:
        log.record_run(make_run())
    with pytest.raises(RuntimeError, match="decision_runs holds 1 runs"):
        migrate(url, "0005", down=True)
    assert count(url, "decision_runs") == 1


def test_a_runs_request_hashes_are_the_states_keys():
    """``StateBatch.key_digests`` (what a run stores) gives every state the key the cache
    and a single request's row use: ids or none, edges or none, declared limits or none."""
    from edge_allocator.columnar import decode_batch
    from tests.test_speeds import two_twins

    plain, named = two_twins("x-"), two_twins("y-")
    for n in plain["nodes"]:
        del n["node_id"]
    declared = two_twins("z-")
    declared["nodes"][1]["capacity_gcps"] = 9.0
    wired = {**two_twins("w-"), "edges": [[0, 1], [0, 2]]}
    batch, _ = decode_batch({"states": [plain, named, declared, wired]})
    digests = batch.key_digests("hybrid", "2")
    assert [digests[16 * i:16 * i + 16].hex() for i in range(4)] == batch.keys("hybrid", "2")
    assert len(set(batch.keys("hybrid", "2"))) == 4
    assert batch.key_digests("hybrid", "3") != digests  # the model is in the key
