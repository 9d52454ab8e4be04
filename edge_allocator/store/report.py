"""Per-model summary of the decision log: volume, outcome, latency, confidence, caching.

Live decisions only (``predictions`` rows and batch requests' runs): shadow decisions
(``shadow_of`` set) are a candidate's opinion, never served, and have their own report
(``store.shadow_report``).

Aggregates run in the database; only the 90th percentile of completion time falls back
to Python on dialects without ``percentile_cont`` (SQLite), using the same linear
interpolation so both backends report the same number.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from edge_allocator.store.runs import RUN_ID_CHARS
from edge_allocator.store.tables import decision_runs, feedback, predictions

#: The completion-time percentile the report shows.
COMPLETION_PERCENTILE = 0.9


class ReportRow(NamedTuple):
    """Summary of one model version. Feedback-based fields are None without feedback."""

    model_name: str
    model_version: str
    decisions: int
    feedback_count: int
    success_rate: float | None
    mean_completion_ms: float | None
    p90_completion_ms: float | None
    mean_confidence: float | None
    cache_hit_rate: float | None


def percentile(values: list[float], q: float) -> float | None:
    """``percentile_cont(q)``: linear interpolation between the two nearest ranks."""
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _as_rate(flag: sa.ColumnElement[bool]) -> sa.ColumnElement[float]:
    # avg() of a boolean is not portable (PostgreSQL refuses it); average 1.0/0.0 instead.
    return sa.func.avg(sa.case((flag, 1.0), else_=0.0))


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def build_report(db: Session | Connection, since: datetime | None = None) -> list[ReportRow]:
    """One :class:`ReportRow` per (model_name, model_version), sorted by both.

    Decisions are ``predictions`` rows and the decisions of ``decision_runs`` (batch
    requests, ``store.runs``): counted by the runs' ``decision_count`` and confidence
    sums, their feedback found through the run id that starts each of their ids.

    Args:
        db: an open Session or Connection on the decision-log database.
        since: count only decisions made at or after this (timezone-aware) time, and
            the feedback on them.
    """
    p, r, f = predictions, decision_runs, feedback
    dialect = db.dialect.name if isinstance(db, Connection) else db.get_bind().dialect.name
    key = (p.c.model_name, p.c.model_version)
    run_key = (r.c.model_name, r.c.model_version)
    where: list[sa.ColumnElement[bool]] = [p.c.shadow_of.is_(None)]  # live decisions only
    run_where: list[sa.ColumnElement[bool]] = []
    if since is not None:
        where.append(p.c.created_at >= since)
        run_where.append(r.c.created_at >= since)

    # (model_name, model_version) -> [decisions, confidence sum, cached]
    decided: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for name, version, n, conf, cached in db.execute(
        sa.select(*key, sa.func.count(), sa.func.sum(p.c.confidence),
                  sa.func.sum(sa.case((p.c.cached, 1), else_=0)))
        .where(*where).group_by(*key)
    ).all():
        acc = decided[(name, version)]
        acc[0] += n
        acc[1] += conf or 0.0
        acc[2] += cached or 0
    for name, version, n, conf in db.execute(
        sa.select(*run_key, sa.func.sum(r.c.decision_count), sa.func.sum(r.c.confidence_sum))
        .where(*run_where).group_by(*run_key)
    ).all():
        acc = decided[(name, version)]
        acc[0] += n
        acc[1] += conf

    # every feedback row with its decision's model: on a predictions row, or on a run's
    outcomes_of = sa.union_all(
        sa.select(*key, f.c.id, f.c.success, f.c.completion_ms)
        .select_from(f.join(p, f.c.decision_id == p.c.decision_id)).where(*where),
        sa.select(*run_key, f.c.id, f.c.success, f.c.completion_ms)
        .select_from(f.join(r, sa.func.substr(f.c.decision_id, 1, RUN_ID_CHARS)
                            == r.c.run_id)).where(*run_where),
    ).subquery()
    u = outcomes_of.c
    ukey = (u.model_name, u.model_version)
    outcome_cols = [sa.func.count(u.id), _as_rate(u.success), sa.func.avg(u.completion_ms)]
    native_pct = dialect == "postgresql"
    if native_pct:
        outcome_cols.append(
            sa.func.percentile_cont(COMPLETION_PERCENTILE).within_group(u.completion_ms)
        )
    # (model_name, model_version) -> (feedback count, success rate, mean ms, p90 ms)
    outcomes: dict[tuple[str, str], tuple[Any, ...]] = {
        (row[0], row[1]): row[2:]
        for row in db.execute(sa.select(*ukey, *outcome_cols).group_by(*ukey)).all()
    }
    if not native_pct:
        samples: dict[tuple[str, str], list[float]] = defaultdict(list)
        for name, version, ms in db.execute(
            sa.select(*ukey, u.completion_ms).where(u.completion_ms.is_not(None))
        ):
            samples[(name, version)].append(ms)
        outcomes = {
            k: (*v, percentile(samples.get(k, []), COMPLETION_PERCENTILE))
            for k, v in outcomes.items()
        }

    rows = []
    for (name, version), (n, conf_sum, cached) in decided.items():
        n_fb, success, mean_ms, p90 = outcomes.get((name, version), (0, None, None, None))
        rows.append(
            ReportRow(
                model_name=name,
                model_version=version,
                decisions=int(n),
                feedback_count=int(n_fb),
                success_rate=_float(success) if n_fb else None,
                mean_completion_ms=_float(mean_ms),
                p90_completion_ms=_float(p90),
                mean_confidence=float(conf_sum) / n if n else None,
                cache_hit_rate=float(cached) / n if n else None,
            )
        )
    return sorted(rows, key=lambda r: (r.model_name, r.model_version))


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def format_report(rows: list[ReportRow]) -> str:
    """The report as a markdown table (rates in percent, times in ms, "–" for no data)."""
    lines = [
        "| model | version | decisions | feedback | success | mean completion (ms) "
        "| p90 completion (ms) | mean confidence | cache hits |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        success = None if r.success_rate is None else 100 * r.success_rate
        cache = None if r.cache_hit_rate is None else 100 * r.cache_hit_rate
        cells = [
            r.model_name,
            r.model_version,
            str(r.decisions),
            str(r.feedback_count),
            _fmt(success, ".1f", "%"),
            _fmt(r.mean_completion_ms, ".1f"),
            _fmt(r.p90_completion_ms, ".1f"),
            _fmt(r.mean_confidence, ".3f"),
            _fmt(cache, ".1f", "%"),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
