"""Reading decisions back: the latest ones, or those whose id starts with a prefix, each
with its feedback (the explorer's Decisions view). Two queries, whatever the count: the
decisions, then the feedback of exactly those ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from edge_allocator.store.runs import RUN_ID_CHARS, DecisionRun
from edge_allocator.store.tables import decision_runs, feedback, predictions


class FeedbackRow(NamedTuple):
    received_at: datetime
    completion_ms: float | None
    success: bool
    energy_j: float | None


class DecisionRow(NamedTuple):
    decision_id: str
    created_at: datetime
    model_name: str
    model_version: str
    backend: str
    node_id: str
    confidence: float
    latency_ms: float
    cached: bool
    node_count: int
    feedback: list[FeedbackRow]


def recent_decisions(conn: Connection, limit: int, id_prefix: str | None = None
                     ) -> list[DecisionRow]:
    """Newest first, live decisions only (never shadow ones), of ``predictions`` rows and
    of batch requests' runs alike. ``id_prefix`` is lowercase
    hex (the caller checks): no LIKE wildcards can reach the query."""
    p = predictions.c
    query = sa.select(p.decision_id, p.created_at, p.model_name, p.model_version, p.backend,
                      p.node_id, p.confidence, p.latency_ms, p.cached, p.node_count
                      ).where(p.shadow_of.is_(None))
    if id_prefix:
        # A range on the primary key, not LIKE 'prefix%' (no index serves an escaped
        # LIKE, and newest-first by created_at then scanned every row for a prefix that
        # matches few: 30 s on the fuzzed log). Ids are lowercase hex and "g" sorts after
        # every hex digit; they are UUIDv7, so id order is time order.
        query = query.where(p.decision_id >= id_prefix, p.decision_id < id_prefix + "g")
        order: tuple[Any, ...] = (p.decision_id.desc(),)
    else:
        order = (p.created_at.desc(), p.decision_id)
    rows = [DecisionRow(r.decision_id, r.created_at, r.model_name, r.model_version,
                        r.backend, r.node_id, r.confidence, r.latency_ms, r.cached,
                        r.node_count, [])
            for r in conn.execute(query.order_by(*order).limit(limit)).all()]
    rows += _run_decisions(conn, limit, id_prefix)
    if id_prefix:
        rows.sort(key=lambda d: d.decision_id, reverse=True)
    else:  # newest first, then by id (a run's decisions share their time)
        rows.sort(key=lambda d: d.decision_id)
        rows.sort(key=lambda d: d.created_at, reverse=True)
    rows = rows[:limit]
    ids = [r.decision_id for r in rows]
    found: dict[str, list[FeedbackRow]] = {i: [] for i in ids}
    if ids:
        f = feedback.c
        for r in conn.execute(sa.select(f.decision_id, f.received_at, f.completion_ms,
                                        f.success, f.energy_j)
                              .where(f.decision_id.in_(ids)).order_by(f.id)):
            found[r.decision_id].append(FeedbackRow(r.received_at, r.completion_ms, r.success,
                                                    r.energy_j))
    return [r._replace(feedback=found[r.decision_id]) for r in rows]


def _run_decisions(conn: Connection, limit: int, id_prefix: str | None) -> list[DecisionRow]:
    """Up to ``limit`` decisions of batch requests' runs, newest first (or, with
    ``id_prefix``, highest id first among those it starts): at most ``limit`` runs hold
    them, so no more are read."""
    r = decision_runs.c
    query = sa.select(decision_runs)
    if id_prefix:
        head = id_prefix[:RUN_ID_CHARS]  # a run's id is the start of its decisions' ids
        query = query.where(r.run_id >= head, r.run_id < head + "g").order_by(r.run_id.desc())
    else:
        query = query.order_by(r.created_at.desc(), r.run_id)
    out: list[DecisionRow] = []
    for row in conn.execute(query.limit(limit)):
        run = DecisionRun.from_row(row)
        picked = [i for i in range(len(run)) if not id_prefix
                  or f"{run.run_id}{i:04x}".startswith(id_prefix)]
        if id_prefix:
            picked.reverse()
        for i in picked[:limit]:
            d = run.decision(i)
            out.append(DecisionRow(d.decision_id, run.created_at, run.model_name,
                                   run.model_version, run.backend, d.node_id, d.confidence,
                                   run.latency_ms, False, d.node_count, []))
        if len(out) >= limit:
            break
    return out
