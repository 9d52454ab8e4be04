"""Live against shadow, per (model, live version, candidate version): how often the
candidate would have chosen the same node, how far apart the two choices are in each
model's own scores, and what the live choice realised where feedback came back.

A shadow row (``shadow_of`` set) is joined to the live decision it scored: a
``predictions`` row, or a decision of a batch request's run (``store.runs``, unpacked in
Python). The score gaps
are read from both rows' stored scores, in Python (JSON maps, or packed float32 for a
batch's live rows: ``store.records.stored_scores``); agreement
and outcomes are aggregated in the database.

Why two gaps rather than one: the two models' scores are on scales of their own, so a
difference between a live score and a shadow score means nothing. Each model is asked
about the other's choice instead:

* live gap: the live model's score of its own choice minus its score of the candidate's
  choice (how much worse the live model thinks the candidate's pick is);
* shadow gap: the candidate's score of its choice minus its score of the live choice
  (how much better the candidate thinks its pick is).

Both are >= 0 and are averaged over the disagreements only (0 wherever they agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from edge_allocator.store.records import stored_scores
from edge_allocator.store.runs import RUN_ID_CHARS, DecisionRun, split_run_decision
from edge_allocator.store.tables import decision_runs, feedback, predictions


class Outcome(NamedTuple):
    """Feedback on the live decisions of one group of pairs (None without feedback)."""

    feedback_count: int
    success_rate: float | None
    mean_completion_ms: float | None


class ShadowRow(NamedTuple):
    """One (model, live version, shadow version): live decisions that were shadowed."""

    model_name: str
    live_version: str
    shadow_name: str
    shadow_version: str
    pairs: int
    agreement_rate: float
    mean_live_gap: float | None  # over disagreements; None when they always agree
    mean_shadow_gap: float | None
    agreed: Outcome  # realised outcome of the live choice where the candidate agreed
    disagreed: Outcome  # ... and where it chose another node


_NO_FEEDBACK = Outcome(0, None, None)
_Key = tuple[str, str, str, str]


@dataclass
class _Sums:
    pairs: int = 0
    agreed: int = 0
    gaps: int = 0
    live_gap: float = 0.0
    shadow_gap: float = 0.0


@dataclass
class _Tally:
    """Feedback on the live decisions of one group: counts and a sum, so the groups of
    ``predictions`` rows and of runs add up before the rates are taken."""

    n: int = 0
    ok: int = 0
    timed: int = 0
    ms: float = 0.0

    def outcome(self) -> Outcome:
        return Outcome(self.n, self.ok / self.n if self.n else None,
                       self.ms / self.timed if self.timed else None)


def _run_pairs(db: Session | Connection, since: datetime | None,
               sums: dict[_Key, _Sums], tally: dict[tuple[_Key, bool], _Tally]) -> None:
    """The pairs whose live decision is a batch request's (a ``decision_runs`` row):
    the live choice and scores are unpacked from the run, in Python."""
    r, shadow = decision_runs, predictions.alias("shadow")
    where: list[Any] = [r.c.created_at >= since] if since is not None else []
    found = db.execute(
        sa.select(shadow.c.shadow_of, shadow.c.model_name, shadow.c.model_version,
                  shadow.c.node_id, shadow.c.scores, shadow.c.score_values, shadow.c.node_ids,
                  shadow.c.node_count, r.c.run_id)
        .select_from(shadow.join(r, sa.func.substr(shadow.c.shadow_of, 1, RUN_ID_CHARS)
                                 == r.c.run_id))
        .where(*where).order_by(r.c.run_id)).all()
    runs: dict[str, DecisionRun] = {}
    keys: dict[str, tuple[_Key, bool]] = {}
    for live_id, sname, sv, shadow_node, *stored, run_id in found:
        run = runs.get(run_id)
        if run is None:
            row = db.execute(sa.select(decision_runs).where(r.c.run_id == run_id)).one()
            run = runs[run_id] = DecisionRun.from_row(row)
        i = split_run_decision(live_id)[1]
        if i >= len(run):
            continue
        live_node = run.node_ids[i]
        k: _Key = (run.model_name, run.model_version, sname, sv)
        acc = sums.setdefault(k, _Sums())
        acc.pairs += 1
        keys[live_id] = (k, live_node == shadow_node)
        if live_node == shadow_node:
            acc.agreed += 1
            continue
        gl = _gap(run.scores_of(i), live_node, shadow_node)
        gs = _gap(stored_scores(*stored), shadow_node, live_node)
        if gl is not None and gs is not None:
            acc.gaps += 1
            acc.live_gap += gl
            acc.shadow_gap += gs
    f = feedback.c
    ids = list(keys)
    for start in range(0, len(ids), 500):
        for decision_id, success, ms in db.execute(
                sa.select(f.decision_id, f.success, f.completion_ms)
                .where(f.decision_id.in_(ids[start:start + 500]))):
            t = tally.setdefault(keys[decision_id], _Tally())
            t.n += 1
            t.ok += bool(success)
            if ms is not None:
                t.timed += 1
                t.ms += float(ms)


def _gap(scores: Mapping[str, float], own: str, other: str) -> float | None:
    if own not in scores or other not in scores:
        return None  # a row written without that node's score: no gap from it
    return float(scores[own]) - float(scores[other])


def build_shadow_report(db: Session | Connection,
                        since: datetime | None = None) -> list[ShadowRow]:
    """One :class:`ShadowRow` per (model, live version, shadow model, shadow version),
    sorted; ``since`` keeps the live decisions made at or after that time."""
    live, shadow = predictions.alias("live"), predictions.alias("shadow")
    key = (live.c.model_name, live.c.model_version, shadow.c.model_name, shadow.c.model_version)
    pairs = shadow.join(live, shadow.c.shadow_of == live.c.decision_id)
    where: list[Any] = [live.c.shadow_of.is_(None)]
    if since is not None:
        where.append(live.c.created_at >= since)

    sums: dict[_Key, _Sums] = {}
    def scores_of(t: Any) -> tuple[Any, ...]:  # either stored form (store.records)
        return t.c.scores, t.c.score_values, t.c.node_ids, t.c.node_count

    for name, lv, sname, sv, live_node, shadow_node, *stored in db.execute(
            sa.select(*key, live.c.node_id, shadow.c.node_id, *scores_of(live),
                      *scores_of(shadow))
            .select_from(pairs).where(*where)):
        acc = sums.setdefault((name, lv, sname, sv), _Sums())
        acc.pairs += 1
        if live_node == shadow_node:
            acc.agreed += 1
            continue
        gl = _gap(stored_scores(*stored[:4]), live_node, shadow_node)
        gs = _gap(stored_scores(*stored[4:]), shadow_node, live_node)
        if gl is not None and gs is not None:
            acc.gaps += 1
            acc.live_gap += gl
            acc.shadow_gap += gs

    f = feedback
    agree = sa.case((live.c.node_id == shadow.c.node_id, 1), else_=0)
    ok = sa.func.sum(sa.case((f.c.success, 1), else_=0))  # sum(bool) is not portable
    tally: dict[tuple[_Key, bool], _Tally] = {}
    for *k, agreed, n, n_ok, n_ms, sum_ms in db.execute(
            sa.select(*key, agree, sa.func.count(f.c.id), ok, sa.func.count(f.c.completion_ms),
                      sa.func.sum(f.c.completion_ms))
            .select_from(pairs.join(f, f.c.decision_id == live.c.decision_id))
            .where(*where).group_by(*key, agree)):
        tally[(tuple(k), bool(agreed))] = _Tally(int(n), int(n_ok or 0), int(n_ms),
                                                 float(sum_ms or 0.0))
    _run_pairs(db, since, sums, tally)
    outcomes = {k: t.outcome() for k, t in tally.items()}

    rows = [ShadowRow(*k, pairs=s.pairs, agreement_rate=s.agreed / s.pairs,
                      mean_live_gap=s.live_gap / s.gaps if s.gaps else None,
                      mean_shadow_gap=s.shadow_gap / s.gaps if s.gaps else None,
                      agreed=outcomes.get((k, True), _NO_FEEDBACK),
                      disagreed=outcomes.get((k, False), _NO_FEEDBACK))
            for k, s in sums.items()]
    return sorted(rows, key=lambda r: (r.model_name, r.live_version, r.shadow_name,
                                       r.shadow_version))


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def _pct(value: float | None) -> str:
    return _fmt(None if value is None else 100 * value, ".1f", "%")


def format_shadow_report(rows: list[ShadowRow]) -> str:
    """The shadow report as a markdown table ("–" for no data). Outcomes are those of
    the live choice (the only one that ran), split by whether the candidate agreed."""
    lines = [
        "| model | live | shadow | pairs | agreement | live gap | shadow gap "
        "| feedback (agreed) | success (agreed) | mean completion ms (agreed) "
        "| feedback (disagreed) | success (disagreed) | mean completion ms (disagreed) |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        shadow = r.shadow_version if r.shadow_name == r.model_name else \
            f"{r.shadow_name} {r.shadow_version}"
        cells = [r.model_name, r.live_version, shadow, str(r.pairs), _pct(r.agreement_rate),
                 _fmt(r.mean_live_gap, ".4f"), _fmt(r.mean_shadow_gap, ".4f")]
        for o in (r.agreed, r.disagreed):
            cells += [str(o.feedback_count), _pct(o.success_rate),
                      _fmt(o.mean_completion_ms, ".1f")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
