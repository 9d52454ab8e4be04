"""The decision log's journal: records accepted by a process that is then killed
outright (SIGKILL: no close(), no flush) still reach the database, exactly once,
through another DecisionLog in the same spool directory (a sibling or the replacement
replica) that adopts what the dead one left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from edge_allocator.store import DecisionLog

CHILD = """
import sys, time
from tests.test_store import make_record
from edge_allocator.store import DecisionLog
log = DecisionLog(sys.argv[1], spool_path=sys.argv[2], flush_interval_s=3600,
                  batch_size=10**6, journal=sys.argv[3] == "1")
recs = [make_record(i) for i in range(40)]
for r in recs[:30]:
    log.record(r)
log.flush()  # these 30 are written; the next 10 only queued
log.record_many(recs[30:])
print(" ".join(r.decision_id for r in recs), flush=True)
time.sleep(600)
"""


def _killed_child(url: str, spool: Path, journal: bool) -> list[str]:
    """Ids of the 40 records a child accepted before it was SIGKILLed (10 never written)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url, str(spool), "1" if journal
                             else "0"], stdout=subprocess.PIPE, cwd=Path(__file__).parents[1])
    assert proc.stdout is not None
    ids = proc.stdout.readline().decode().split()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(ids) == 40
    return ids


def _stored(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text("SELECT decision_id FROM predictions"))]
    finally:
        engine.dispose()


def _adopted(url: str, spool_dir: Path, expected: set[str], **kw: object) -> list[str]:
    log = DecisionLog(url, spool_path=spool_dir / "d.2.jsonl", adopt_glob="d.*.jsonl",
                      flush_interval_s=0.05, **kw)  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 10
        while not expected <= set(_stored(url)) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        log.close()
    return _stored(url)


def test_killed_process_loses_no_accepted_record(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    ids = _killed_child(url, tmp_path / "spool" / "d.1.jsonl", journal=True)
    assert len(_stored(url)) == 30  # the child died with 10 records only in memory
    stored = _adopted(url, tmp_path / "spool", set(ids))
    assert sorted(stored) == sorted(ids)  # all 40, none twice (30 were in the journal too)
    left = sorted(p.name for p in (tmp_path / "spool").iterdir())
    assert left == ["d.2.jsonl.lock"]  # the dead log's journal, spool and lock are gone


def test_without_the_journal_the_queue_dies_with_the_process(tmp_path: Path) -> None:
    """What the journal is for: the same kill without it loses the 10 queued records."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    ids = _killed_child(url, tmp_path / "spool" / "d.1.jsonl", journal=False)
    stored = _adopted(url, tmp_path / "spool", set(ids))
    assert sorted(stored) == sorted(ids[:30])


def test_a_live_siblings_journal_is_left_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    from tests.test_store import make_record

    live = DecisionLog(url, spool_path=tmp_path / "spool" / "d.1.jsonl",
                       flush_interval_s=3600, batch_size=10**6)
    recs = [make_record(i) for i in range(5)]
    live.record_many(recs)
    other = DecisionLog(url, spool_path=tmp_path / "spool" / "d.2.jsonl",
                        adopt_glob="d.*.jsonl", flush_interval_s=0.05)
    time.sleep(0.5)
    assert _stored(url) == []  # its owner lives: not adopted (it writes them itself)
    other.close()
    live.close()
    assert sorted(_stored(url)) == sorted(r.decision_id for r in recs)


def test_a_batch_line_holds_its_records_exactly(tmp_path: Path) -> None:
    """record_many journals the batch as one line (a row per record, the node matrices
    in one blob): read back, every field equals the record's, whatever its node count,
    ids or predictions; an older per-record line beside it is still read."""
    import dataclasses

    from edge_allocator.store.journal import encode_batch, read_journal
    from tests.test_store import make_record

    recs = [make_record(i, n_nodes=2 + i % 4, index_ids=i % 3 == 0) for i in range(9)]
    recs[4] = dataclasses.replace(recs[4], expected_ms=12.5, transfer_ms=0.25, cached=True)
    path = tmp_path / "d.jsonl.journal.0"
    path.write_bytes(recs[0].to_json() + b"\n" + encode_batch(recs[1:]))
    assert len(path.read_bytes().splitlines()) == 2
    unreadable: list[bytes] = []
    back = list(read_journal(path, unreadable))
    assert not unreadable and len(back) == len(recs)
    for got, want in zip(back, recs):
        assert got == want and (got.node_values == want.node_values).all()
        assert got.node_ids == want.node_ids and got.expected_ms == want.expected_ms


def test_a_batch_line_cut_by_the_kill_is_kept_as_unreadable(tmp_path: Path) -> None:
    from edge_allocator.store.journal import encode_batch, read_journal
    from tests.test_store import make_record

    whole, cut = encode_batch([make_record(i) for i in range(3)]), encode_batch(
        [make_record(i) for i in range(3, 6)])
    path = tmp_path / "d.jsonl.journal.0"
    assert encode_batch([]) == b""  # record_many([]) journals nothing, and never raises
    path.write_bytes(whole + cut[: len(cut) // 2])
    unreadable: list[bytes] = []
    assert len(list(read_journal(path, unreadable))) == 3
    assert unreadable == [cut[: len(cut) // 2]]
