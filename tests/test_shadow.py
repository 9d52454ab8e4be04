"""Shadow mode without Ray: config checks, shadow decisions in a real SQLite decision log
(live id, candidate version, out of every live figure), the bounded queue, a failing
candidate, and ``edge-allocator report --shadow`` computed from real rows."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from edge_allocator.cli import main as cli_main
from edge_allocator.columnar import decode_batch, decode_state
from edge_allocator.config import ModelSpec, ServiceConfig, ShadowSpec
from edge_allocator.graph_batch import Bucket
from edge_allocator.policies import build_policy
from edge_allocator.responses import BatchConfig
from edge_allocator.runtime.export import save_artifact
from edge_allocator.service import AllocatorService
from edge_allocator.service.api import AllocatorApi
from edge_allocator.service.chain import DirectPolicy, StagesHere
from edge_allocator.service.observe import DecisionCounts, NullObserver
from edge_allocator.service.routing import ModelRouter
from edge_allocator.service.shadow import concat_states
from edge_allocator.service.stages import ModelKey, PolicyStage, ScoredBatch
from edge_allocator.store import DecisionLog, DecisionRecord, new_decision_id, utc_now
from edge_allocator.store.journal import BATCH_PREFIX, encode_batch, read_journal
from edge_allocator.store.log import UnknownDecision
from edge_allocator.store.runs import DecisionRun
from edge_allocator.store.tables import decision_runs
from tests.conftest import node


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """hybrid v1 and v2: two independently initialised models (they disagree on some
    states), and a flat dqn."""
    root = tmp_path_factory.mktemp("models")
    for seed in (0, 1):
        import torch

        torch.manual_seed(seed)
        m = build_policy("hybrid", {"hidden": 16})
        save_artifact(m, "hybrid", m.config.to_dict(), root)
    m = build_policy("dqn", {"max_nodes": 12, "hidden": 16})
    save_artifact(m, "dqn", m.config.to_dict(), root)
    return root


def _states(n: int, start: int = 0, nodes: int = 8) -> list[dict[str, Any]]:
    return [{"nodes": [node(node_id=f"n{k}", cpu_util=((i * 7 + k * 3) % 10) / 10,
                            latency=1 + (i * k) % 13, queue_len=(i + k) % 4,
                            bandwidth=20 + 30 * ((i + 2 * k) % 5), node_type=k % 3)
                       for k in range(nodes)],
             "task": {"compute_gcycles": 1 + (start + i) / 100}} for i in range(n)]


class Recorder(NullObserver):
    """Every decision count and shadow outcome the service reports."""

    def __init__(self) -> None:
        self.decided: Counter[tuple[str, str]] = Counter()
        self.shadowed: Counter[tuple[str, str, str]] = Counter()

    def decisions(self, counts: DecisionCounts) -> None:
        for (model, version, *_), n in counts.items():
            self.decided[(model, version)] += n

    def shadow(self, model: str, version: str, outcome: str, n: int) -> None:
        self.shadowed[(model, version, outcome)] += n


class CountingPolicy(DirectPolicy):
    """The real in-process policy, remembering each batch call: (version, states)."""

    def __init__(self, stage: PolicyStage) -> None:
        super().__init__(stage, BatchConfig(64, 0.002))
        self.calls: list[tuple[str, int]] = []

    async def infer_batches(self, key: ModelKey, buckets: Sequence[Bucket],
                            trace: dict[str, str] | None) -> ScoredBatch:
        self.calls.append((key.version, sum(len(b.states) for b in buckets)))
        return await super().infer_batches(key, buckets, trace)


def _api(models: Path, tmp: Path, shadow: dict[str, Any] | None = None,
         database: bool = True) -> tuple[AllocatorApi, CountingPolicy, Recorder]:
    cfg = ServiceConfig(
        models_dir=models, cache="none",
        database_url=f"sqlite:///{tmp / 'decisions.db'}" if database else None,
        spool_path=tmp / "spool" / "decisions.jsonl",
        models={"hybrid": ModelSpec(version="1"), "dqn": ModelSpec()}, shadow=shadow or {})
    stage = PolicyStage(models)
    policy, observer = CountingPolicy(stage), Recorder()
    api = AllocatorApi(cfg, StagesHere(policy), observer, replica_tag="t")
    stage.load([ModelKey(*k) for k in
                api.router.versions_in_use() + api.router.shadow_versions()])
    return api, policy, observer


async def _decide(api: AllocatorApi, singles: list[dict[str, Any]],
                  batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Singles one by one, then one batch request; every live decision as a dict."""
    out = [(await api.decide(decode_state(s), None, "/v1/allocate")).to_dict()
           for s in singles]
    await api.shadow.drain()
    if batch:
        b, model = decode_batch({"states": batch})
        out += [d.to_dict() for d in
                (await api.decide_many(b, model, "/v1/allocate/batch")).decisions()]
    assert await api.shadow.drain()
    return out


def _answer(d: dict[str, Any]) -> dict[str, Any]:
    """What a client is told, less what differs by run (its id, the time taken)."""
    return {k: v for k, v in d.items() if k not in ("decision_id", "latency_ms")}


def _runs(db: Path) -> list[DecisionRun]:
    """The batch requests' runs of a log (``store.runs``)."""
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return [DecisionRun.from_row(r) for r in conn.execute(sa.select(decision_runs))]
    finally:
        engine.dispose()


def _rows(db: Path) -> dict[str, tuple[Any, ...]]:
    """Every logged decision: (model version, node id, shadow_of, node count) by id, from
    ``predictions`` rows and from runs alike."""
    with sqlite3.connect(db) as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT decision_id, model_version, node_id, shadow_of, node_count FROM predictions")}
    for run in _runs(db):
        for i in range(len(run)):
            d = run.decision(i)
            rows[d.decision_id] = (run.model_version, d.node_id, None, d.node_count)
    return rows


# --- config ------------------------------------------------------------------------------

def test_shadow_config_errors_name_the_key(models):
    with pytest.raises(ValidationError, match=r"shadow: \['nope'\] are not served models"):
        ServiceConfig(models_dir=models, shadow={"nope": {"version": "1"}})
    for share in (0, -0.1, 1.5):
        with pytest.raises(ValidationError, match="share"):
            ServiceConfig(models_dir=models, shadow={"hybrid": {"version": "2", "share": share}})
    with pytest.raises(ValidationError, match="version"):
        ServiceConfig(models_dir=models, shadow={"hybrid": {"share": 0.5}})
    with pytest.raises(ValidationError, match="extra"):
        ServiceConfig(models_dir=models, shadow={"hybrid": {"version": "2", "sample": 0.5}})
    specs = {"hybrid": ModelSpec(version="1")}
    with pytest.raises(ValueError, match=r"shadow.hybrid.version='9' not found \(have"):
        ModelRouter(models, specs, "hybrid", shadow={"hybrid": ShadowSpec(version="9")})
    with pytest.raises(ValueError, match="is the live version"):
        ModelRouter(models, specs, "hybrid", shadow={"hybrid": ShadowSpec(version="1")})
    # what reconfigure builds: the deployment fails with the same message
    with pytest.raises(ValueError, match="shadow.hybrid.version='9'"):
        AllocatorService(ServiceConfig(models_dir=models, database_url=None, cache="none",
                                       models=specs, shadow={"hybrid": {"version": "9"}}))
    r = ModelRouter(models, {"hybrid": ModelSpec(ab={"1": 1, "2": 1})}, "hybrid",
                    shadow={"hybrid": ShadowSpec(version="2", share=0.25)})
    assert r.shadow_of("hybrid") == ("hybrid", "2", 0.25) and r.shadow_of("dqn") is None
    assert r.shadow_versions() == [("hybrid", "2")]


# --- shadow decisions ---------------------------------------------------------------------

def test_shadow_decisions_are_logged_with_the_live_id_and_kept_out_of_live_figures(
        models, tmp_path):
    singles, batch = _states(12), _states(9, start=100)
    api, policy, observer = _api(models, tmp_path / "on", {"hybrid": {"version": "2"}})
    plain, _, _ = _api(models, tmp_path / "off")
    try:
        async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
            with_shadow = await _decide(api, singles, [])
            calls_before_batch = len(policy.calls)
            with_shadow += await _decide(api, [], batch)
            return with_shadow, await _decide(plain, singles, batch), calls_before_batch

        live, without, calls_before_batch = asyncio.run(both())
        # the live answer is the same with and without a shadow
        assert [_answer(d) for d in live] == [_answer(d) for d in without]
        # the batch request was scored by the candidate in one model call, whole
        assert policy.calls[calls_before_batch:] == [("1", 9), ("2", 9)]

        v2 = AllocatorService(ServiceConfig(models_dir=models, database_url=None, cache="none",
                                            models={"hybrid": ModelSpec(version="2")}))
        expected = [d.node_id for d in v2.allocate_many({"states": singles + batch})]
        v2.close()
        assert api.decision_log is not None and api.decision_log.flush()
        rows = _rows(tmp_path / "on" / "decisions.db")
        live_ids = [d["decision_id"] for d in live]
        shadow = {r[2]: r for i, r in rows.items() if r[2] is not None}
        assert sorted(shadow) == sorted(live_ids)  # one shadow decision per live one
        assert [shadow[i][:2] for i in live_ids] == [("2", n) for n in expected]
        assert all(r[3] == 0 for r in shadow.values())  # node states stay in the live row
        assert all(rows[i][0] == "1" and rows[i][2] is None for i in live_ids)
        assert expected != [d["node_id"] for d in live], "v1 and v2 agree: nothing tested"

        # out of the live metrics, /v1/stats, the report and the decisions browser
        n = len(live)
        assert observer.decided == Counter({("hybrid", "1"): n})
        agree = sum(a == d["node_id"] for a, d in zip(expected, live))
        assert observer.shadowed == Counter({("hybrid", "2", "agree"): agree,
                                             ("hybrid", "2", "disagree"): n - agree})
        assert dict(api.stats.by_version) == {("hybrid", "1"): n}
        report = api.decision_log.report()
        assert [(r.model_version, r.decisions) for r in report] == [("1", n)]
        recent = {r.decision_id for r in api.decision_log.recent(100)}
        assert recent == set(live_ids)
        some_shadow = next(iter(i for i, r in rows.items() if r[2] is not None))
        with pytest.raises(UnknownDecision):  # never answered: no feedback on it
            api.decision_log.record_feedback(some_shadow, 10.0, True)
        # /v1/stats: the live traffic knows v1 only, the shadow section v2's work
        from edge_allocator.service.explorer import ExplorerApi

        stats = asyncio.run(ExplorerApi(api).stats({}))
        assert {(t.model, t.version): t.decisions for t in stats.traffic}[("hybrid", "1")] == n
        assert ("hybrid", "2") not in {(t.model, t.version) for t in stats.traffic}
        (sh,) = stats.shadow
        assert (sh.model, sh.version, sh.share, sh.scored) == ("hybrid", "2", 1.0, n)
        assert sh.agreement == pytest.approx(agree / n) and (sh.dropped, sh.failed) == (0, 0)
        # the shadow's report: every pair, the agreement the counters saw
        (row,) = api.decision_log.shadow_report()
        assert (row.live_version, row.shadow_version, row.pairs) == ("1", "2", n)
        assert row.agreement_rate == pytest.approx(agree / n)
    finally:
        api.close()
        plain.close()


def test_a_batch_logs_one_run_and_reads_back_what_was_answered(models, tmp_path):
    """The batch path logs its decisions as one run (``store.runs``): every score read
    back is the answer's, float for float, masked nodes left out, and so are the chosen
    node and confidence. A single request's row keeps the JSON map."""
    states = _states(10)
    for st in states:
        st["nodes"][2]["bandwidth"] = 0  # unreachable: masked, no score
    api, _, _ = _api(models, tmp_path)
    try:
        answered = asyncio.run(_decide(api, states[:1], states[1:]))
        assert api.decision_log is not None and api.decision_log.flush()
    finally:
        api.close()
    with sqlite3.connect(tmp_path / "decisions.db") as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT decision_id, scores, score_values, node_count FROM predictions")}
    single, *batch = answered
    assert set(rows) == {single["decision_id"]}  # the batch's decisions: not one row each
    scores, packed, n = rows[single["decision_id"]]
    assert packed is None and json.loads(scores) == single["scores"] and len(single["scores"]) < n
    (run,) = _runs(tmp_path / "decisions.db")
    assert run.decision_ids == tuple(d["decision_id"] for d in batch)
    for i, d in enumerate(batch):
        got = run.decision(i)
        assert run.scores_of(i) == d["scores"] and len(d["scores"]) < got.node_count
        assert (got.node_id, got.node_index, got.confidence) == (
            d["node_id"], d["node_index"], d["confidence"])


def test_share_samples_requests(models, tmp_path):
    api, _, observer = _api(models, tmp_path, {"hybrid": {"version": "2", "share": 0.25}},
                            database=False)
    api._shadow_rng.seed(0)
    asyncio.run(_decide(api, _states(200), []))
    shadowed = sum(observer.shadowed.values())
    assert 30 <= shadowed <= 70, shadowed  # binomial(200, 0.25): mean 50, sd 6.1
    api.close()


def test_a_large_batch_is_scored_in_bounded_slices(models, tmp_path):
    """Above ``batch_states`` a batch request goes to the candidate in slices (one call
    each): every state still gets its own shadow decision, on its own live id."""
    api, policy, _ = _api(models, tmp_path, {"hybrid": {"version": "2"}})
    api.shadow.batch_states = 4
    states = _states(10, start=300)
    live = asyncio.run(_decide(api, [], states))
    assert [c for c in policy.calls if c[0] == "2"] == [("2", 4), ("2", 4), ("2", 2)]
    v2 = AllocatorService(ServiceConfig(models_dir=models, database_url=None, cache="none",
                                        models={"hybrid": ModelSpec(version="2")}))
    expected = [d.node_id for d in v2.allocate_many({"states": states})]
    v2.close()
    assert api.decision_log is not None and api.decision_log.flush()
    shadow = {r[2]: r[:2] for r in _rows(tmp_path / "decisions.db").values() if r[2]}
    assert [shadow[d["decision_id"]] for d in live] == [("2", n) for n in expected]
    api.close()


def test_a_full_queue_drops_and_counts_never_blocks(models, tmp_path):
    api, policy, observer = _api(models, tmp_path, {"hybrid": {"version": "2"}},
                                 database=False)
    api.shadow.max_states = 5

    async def burst() -> list[dict[str, Any]]:
        b, model = decode_batch({"states": _states(4)})
        await api.decide_many(b, model, "/v1/allocate/batch")  # 4 queued
        b, model = decode_batch({"states": _states(3, start=50)})
        await api.decide_many(b, model, "/v1/allocate/batch")  # 4 + 3 > 5: dropped
        assert api.shadow.snapshot().queued == 4  # the worker has not run yet
        assert await api.shadow.drain()
        return []

    asyncio.run(burst())
    assert observer.shadowed[("hybrid", "2", "dropped")] == 3
    assert sum(v for (_, _, o), v in observer.shadowed.items() if o in ("agree", "disagree")) \
        == 4
    assert [c for c in policy.calls if c[0] == "2"] == [("2", 4)]
    api.close()


def test_a_failing_candidate_never_touches_live_answers(models, tmp_path):
    broken = tmp_path / "models"
    shutil.copytree(models, broken)
    (broken / "hybrid" / "2" / "model.onnx").write_bytes(b"tampered")
    api, _, observer = _api(broken, tmp_path / "on", {"hybrid": {"version": "2"}})
    plain, _, _ = _api(broken, tmp_path / "off")
    try:
        async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
            states = _states(6)
            return (await _decide(api, states, states[:3]), await _decide(plain, states,
                                                                          states[:3]),
                    await api.readiness())

        live, without, ready = asyncio.run(run())
        assert [_answer(d) for d in live] == [_answer(d) for d in without]
        assert observer.shadowed == Counter({("hybrid", "2", "failed"): 9})
        assert ready.status == "ready", ready.reason  # the candidate is not live
        assert api.decision_log is not None and api.decision_log.flush()
        rows = _rows(tmp_path / "on" / "decisions.db")
        assert len(rows) == 9 and all(r[2] is None for r in rows.values())
    finally:
        api.close()
        plain.close()


def test_shadow_work_waits_while_live_requests_run(models, tmp_path):
    api, policy, observer = _api(models, tmp_path, {"hybrid": {"version": "2"}},
                                 database=False)
    api.shadow.max_defer_s, api.shadow.quiet_s = 30.0, 0.3

    async def run() -> None:
        with api.shadow.live_request():  # another live request, still being decided
            await api.decide(decode_state(_states(1)[0]), None, "/v1/allocate")
            await asyncio.sleep(0.2)  # the worker has woken and gathered (5 ms)
            assert api.shadow.snapshot().queued == 1
            assert not [c for c in policy.calls if c[0] == "2"]
        await asyncio.sleep(0.1)  # quiet, but not for quiet_s yet
        assert not [c for c in policy.calls if c[0] == "2"]
        assert await api.shadow.drain(timeout_s=5)  # quiet for 0.3 s: it runs

    asyncio.run(run())
    assert [c for c in policy.calls if c[0] == "2"] == [("2", 1)]
    assert sum(observer.shadowed.values()) == 1
    api.close()


def test_reconfigure_drops_work_for_a_replaced_candidate(models, tmp_path):
    api, policy, observer = _api(models, tmp_path, {"hybrid": {"version": "2"}},
                                 database=False)

    async def run() -> None:
        await api.decide(decode_state(_states(1)[0]), None, "/v1/allocate")  # queued
        api.reconfigure(api.cfg.model_copy(update={"shadow": {}}))  # promoted or removed
        assert await api.shadow.drain()

    asyncio.run(run())
    assert observer.shadowed == Counter({("hybrid", "2", "dropped"): 1})
    assert not [c for c in policy.calls if c[0] == "2"]
    api.close()


def test_concatenated_states_decide_as_each_alone(models):
    svc = AllocatorService(ServiceConfig(models_dir=models, database_url=None, cache="none",
                                         models={"hybrid": ModelSpec(version="2")}))
    states = _states(3) + _states(2, start=9, nodes=5)
    states[1]["nodes"][2]["capacity_gcps"] = 3.0  # one declared field: NaN elsewhere
    parts = [decode_batch({"states": states[:2]})[0], decode_state(states[2]),
             decode_batch({"states": states[3:]})[0]]
    joined = concat_states(parts)
    whole = decode_batch({"states": states})[0]
    assert joined.keys("m", "1") == whole.keys("m", "1")
    assert np.array_equal(joined.offsets, whole.offsets)

    async def decide() -> list[str]:
        cols = await svc.api.decide_many(joined, None, "/v1/allocate/batch")
        return [d.node_id for d in cols.decisions()]

    assert asyncio.run(decide()) == [d.node_id for d in svc.allocate_many({"states": states})]
    svc.close()


# --- report --shadow ----------------------------------------------------------------------

def _record(version: str, node_id: str, scores: dict[str, float],
            shadow_of: str | None = None, packed: bool = False) -> DecisionRecord:
    """``packed``: as the batch path logs a live decision, its three nodes' states and
    scores packed (the row's ``scores`` is then NULL)."""
    extra: dict[str, Any] = {}
    if packed:
        ids = ["n0", "n1", "n2"]
        extra = {"node_ids": ids, "node_values": np.zeros((3, 7), np.float32),
                 "score_values": np.array([scores.get(i, np.nan) for i in ids], np.float32)}
    return DecisionRecord(
        decision_id=new_decision_id(), created_at=utc_now(), model_name="hybrid",
        model_version=version, backend="onnx", node_id=node_id,
        node_index=int(node_id[1:]), confidence=0.5, scores=scores, latency_ms=1.0,
        request_hash=new_decision_id(), shadow_of=shadow_of, **extra)


def test_report_shadow_numbers_from_real_rows(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    # four live decisions of v1, each shadowed by v3: two agree, two do not
    live = [_record("1", "n0", {"n0": 2.0, "n1": 1.0}),
            _record("1", "n1", {"n0": 0.5, "n1": 3.0}),
            _record("1", "n0", {"n0": 4.0, "n1": 1.5}, packed=True),  # v3: n1, gap 2.5
            _record("1", "n2", {"n0": 1.0, "n2": 2.0}, packed=True)]  # v3: n0, gap 1.0
    shadow = [_record("3", "n0", {"n0": 9.0, "n1": 1.0}, live[0].decision_id),
              _record("3", "n1", {"n0": 0.0, "n1": 1.0}, live[1].decision_id),
              _record("3", "n1", {"n0": -1.0, "n1": 1.0}, live[2].decision_id),  # gap 2.0
              _record("3", "n0", {"n0": 5.0, "n2": 1.0}, live[3].decision_id)]  # gap 4.0
    unshadowed = _record("2", "n0", {"n0": 1.0})
    with DecisionLog(url, spool_path=tmp_path / "spool.jsonl") as log:
        log.record_many([*live, unshadowed, *shadow])
        log.record_feedback(live[0].decision_id, 100.0, True)  # agreed
        log.record_feedback(live[1].decision_id, 200.0, False)  # agreed
        log.record_feedback(live[2].decision_id, 400.0, True)  # disagreed
        (row,) = log.shadow_report()
        assert (row.model_name, row.live_version, row.shadow_version, row.pairs) == \
            ("hybrid", "1", "3", 4)
        assert row.agreement_rate == 0.5
        assert row.mean_live_gap == pytest.approx((2.5 + 1.0) / 2)
        assert row.mean_shadow_gap == pytest.approx((2.0 + 4.0) / 2)
        assert row.agreed == (2, 0.5, 150.0)
        assert row.disagreed == (1, 1.0, 400.0)
        assert log.shadow_report(since=utc_now() + timedelta(hours=1)) == []
        # the normal report: live decisions only, unchanged
        report = {r.model_version: (r.decisions, r.feedback_count) for r in log.report()}
        assert report == {"1": (4, 3), "2": (1, 0)}
    cli_main(["report", "--db", url, "--shadow"])
    out = capsys.readouterr().out
    assert "| hybrid | 1 | 3 | 4 | 50.0% | 1.7500 | 3.0000 | 2 | 50.0% | 150.0 | 1 | 100.0% " \
        "| 400.0 |" in out, out
    cli_main(["report", "--db", url])
    plain = capsys.readouterr().out
    assert "| hybrid | 1 | 4 | 3 |" in plain and "| hybrid | 3 |" not in plain, plain


def test_shadow_of_survives_the_journal_and_spool_json(tmp_path):
    rec = _record("3", "n0", {"n0": 1.0}, new_decision_id())
    assert DecisionRecord.from_json(rec.to_json()) == rec
    assert DecisionRecord.from_json(rec.to_json()).shadow_of == rec.shadow_of
    live = _record("1", "n1", {"n1": 2.0})
    line = encode_batch([rec, live])  # record_many's one line for a batch
    # the same line as written before shadow_of existed: rows one value shorter
    obj = orjson.loads(line)
    obj["rows"] = [row[:15] + row[16:] for row in obj["rows"]]
    older = BATCH_PREFIX + orjson.dumps({k: v for k, v in obj.items() if k != "batch"})[1:]
    path = tmp_path / "d.jsonl.journal.0"
    path.write_bytes(line + older + b"\n")
    unreadable: list[bytes] = []
    back = list(read_journal(path, unreadable))
    assert not unreadable
    assert [r.shadow_of for r in back] == [rec.shadow_of, None, None, None]
    assert back[:2] == [rec, live] and back[3] == live
    with pytest.raises(ValueError, match="shadow_of"):
        _record("3", "n0", {"n0": 1.0}, "not-an-id")
