"""GET /v1/decisions' prefix search on a large log: found by the 32,279-case Schemathesis
run, where one prefix query timed out (30 s) because the escaped LIKE could use no index
and the newest-first order walked every row. The prefix is now a range on the primary
key: the query plan searches the key's index and never scans the table."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from edge_allocator.store import DecisionLog
from edge_allocator.store.browse import recent_decisions
from tests.test_store import make_record


def test_a_prefix_search_reads_the_key_range_not_the_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = DecisionLog(url, spool_path=tmp_path / "spool.jsonl", flush_interval_s=0.05)
    recs = [make_record(i) for i in range(200)]
    log.record_many(recs)
    assert log.flush()
    target = recs[123].decision_id
    rows = log.recent(5, target)
    assert [r.decision_id for r in rows] == [target]
    assert log.recent(5, "f" * 32) == []
    newest_first = [r.decision_id for r in log.recent(300, target[:1])]
    assert newest_first == sorted((r.decision_id for r in recs if r.decision_id[0] == target[0]),
                                  reverse=True)
    log.close()

    engine = sa.create_engine(url)
    seen: list[tuple[str, object]] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cur, stmt, params, ctx, many: seen.append((stmt, params)))
    with engine.connect() as conn:
        recent_decisions(conn, 5, target[:12])
        stmt, params = next((s, p) for s, p in seen if "FROM predictions" in s)
        plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {stmt}", params).all())  # type: ignore[arg-type]
        stmt, params = next((s, p) for s, p in seen if "FROM decision_runs" in s)
        run_plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {stmt}", params).all())  # type: ignore[arg-type]
    engine.dispose()
    assert "SCAN predictions" not in plan and "SEARCH predictions" in plan, plan
    # batch requests' runs: by a range on their key too (a run id starts its decisions')
    assert "SCAN decision_runs" not in run_plan and "SEARCH decision_runs" in run_plan, run_plan
