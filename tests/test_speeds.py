"""Node speeds learned from feedback (issue 12 §2): the estimator, its stores (in process
and a real Redis shared by two replicas), the API's feedback -> decisions loop and
/v1/nodes/{node_id}, and the simulator's same signal. No Ray."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_allocator.config import ServiceConfig
from edge_allocator.graph import FEATURE_INDEX, features
from edge_allocator.responses import BatchConfig
from edge_allocator.service.api import AllocatorApi
from edge_allocator.service.chain import DirectPolicy, StagesHere
from edge_allocator.service.http import FrontDoor
from edge_allocator.service.node_speeds import NodeSpeeds
from edge_allocator.service.stages import PolicyStage
from edge_allocator.sim import EdgeAllocationEnv, EnvConfig
from edge_allocator.speeds import LocalSpeeds, SpeedParams, observe, observed_ratio
from tests.conftest import missing

P = SpeedParams(prior_weight=2.0, half_life_s=100.0, max_weight=10.0)
REDIS_URL = "redis://127.0.0.1:6379/14"


def test_a_node_never_heard_from_is_at_speed_one():
    assert LocalSpeeds(P).speeds(["a", "b"], 0.0) is None
    s = LocalSpeeds(P)
    s.observe("a", 5.0, 0.0)
    np.testing.assert_allclose(s.speeds(["b", "a"], 0.0), [1.0, math.exp(-math.log(5) / 3)])


def test_estimate_converges_gains_confidence_and_decays():
    est = None
    for _ in range(30):
        est = observe(est, 5.0, 0.0, P)
    assert est is not None and est.count == 30
    assert est.weight == pytest.approx(10.0)  # capped: older evidence fades
    assert est.speed(0.0, P) == pytest.approx(math.exp(-math.log(5) * 10 / 12))
    assert est.confidence(0.0, P) == pytest.approx(10 / 12)
    assert est.confidence(100.0, P) == pytest.approx(5 / 7)  # one half-life later
    assert est.speed(1e6, P) == pytest.approx(1.0)  # forgotten in the end
    fast_slow = observe(observe(None, 2.0, 0.0, P), 0.5, 0.0, P)
    assert fast_slow.speed(0.0, P) == pytest.approx(1.0)  # ratios average in logs


def test_observed_ratio_counts_what_follows_the_transfer():
    assert observed_ratio(completion_ms=600, transfer_ms=100, expected_ms=100) == 5.0
    assert observed_ratio(50, 100, 100) == 0.01  # clipped, never 0
    assert observed_ratio(600, 100, 0.1) is None  # too small a prediction to learn from


# --- the API: feedback -> estimate -> decisions --------------------------------------------


def _node(nid: str, **kw: Any) -> dict[str, Any]:
    return {"node_id": nid, "cpu_util": 0.3, "mem_util": 0.3, "energy": 6.7, "latency": 5.0,
            "bandwidth": 300.0, "queue_len": 1, "node_type": 1, **kw}


def two_twins(prefix: str) -> dict[str, Any]:
    """A gateway and two identical fog nodes; a 3-gigacycle task."""
    return {"nodes": [_node(f"{prefix}gw", node_type=0, cpu_util=0.5, energy=4.0, latency=0,
                            bandwidth=10000.0, queue_len=3),
                      _node(f"{prefix}a"), _node(f"{prefix}b")],
            "task": {"compute_gcycles": 3.0}}


def five_times_slower(state: dict[str, Any], node_index: int) -> float:
    """completion_ms of a task that took 5x the features' predicted wait + execution."""
    from edge_allocator.columnar import decode_state
    from edge_allocator.graph_batch import predicted_times

    expected, transfer = predicted_times(decode_state(state), np.array([node_index]))
    return float(transfer[0] + 5 * expected[0])


@pytest.fixture
def api(tmp_path: Path) -> AllocatorApi:
    cfg = ServiceConfig(database_url=f"sqlite:///{tmp_path / 'log.db'}", cache="local",
                        spool_path=tmp_path / "spool.jsonl")
    out = AllocatorApi(cfg, StagesHere(DirectPolicy(PolicyStage(cfg.models_dir),
                                                    BatchConfig(8, 0.01))))
    yield out
    out.close()


def test_feedback_on_young_unknown_ids_holds_no_thread(api: AllocatorApi, monkeypatch):
    """Feedback on fresh-looking ids that no replica wrote waits out the peer-write window
    on the event loop, not in a thread: with one thread in the pool, work queued after 20
    such feedbacks still runs before any of them ends (with the wait in the thread it ran
    only when the window closed), and each is a 404 once the window has passed. Only the
    first look flushes this replica's own queue: the later ones never wake its writer
    early. A decision that another replica's log writes half a second later is found."""
    from concurrent.futures import ThreadPoolExecutor

    from edge_allocator.schema import RequestError
    from edge_allocator.store import Pending, new_decision_id

    assert api.decision_log is not None
    flushes: list[float] = []
    real_flush = api.decision_log.flush
    monkeypatch.setattr(api.decision_log, "pending", lambda: Pending(queued=1, spooled=0))
    monkeypatch.setattr(api.decision_log, "flush",
                        lambda *a, **k: flushes.append(time.time()) or real_flush(*a, **k))

    async def run() -> tuple[bool, list[Any], float]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
        t0 = time.perf_counter()
        waiting = [asyncio.ensure_future(api.feedback(
            {"decision_id": new_decision_id(), "success": True, "completion_ms": 1.0}))
            for _ in range(20)]
        await asyncio.sleep(0.3)
        probe = asyncio.ensure_future(asyncio.to_thread(lambda: None))
        done, _ = await asyncio.wait([probe, *waiting], return_when=asyncio.FIRST_COMPLETED)
        results = await asyncio.gather(*waiting, return_exceptions=True)
        return done == {probe}, results, time.perf_counter() - t0

    probe_first, results, seconds = asyncio.run(run())
    assert probe_first  # the queued work ran while all 20 were still waiting
    assert seconds >= 2.5  # they did wait out the window
    assert all(isinstance(r, RequestError) and r.status == 404 for r in results), results
    assert len(flushes) == 20, len(flushes)  # one per feedback, its first look
    monkeypatch.undo()

    from tests.test_store import make_record, open_log

    assert api.decision_log is not None
    peer = open_log(api.decision_log.url, api.cfg.spool_path.parent / "peer",
                    flush_interval_s=0.5)
    try:
        rec = make_record()
        peer.record(rec)  # queued on the peer; its writer writes within 0.5 s
        receipt = asyncio.run(api.feedback({"decision_id": rec.decision_id,
                                            "success": True, "completion_ms": 2.0}))
        assert receipt.decision_id == rec.decision_id and receipt.recorded
    finally:
        peer.close()


def test_feedback_moves_decisions_and_a_reset_moves_them_back(api: AllocatorApi):
    state = two_twins("")
    first = asyncio.run(api.allocate(state))
    assert first.node_id in ("a", "b")
    other = "b" if first.node_id == "a" else "a"
    for _ in range(8):  # the chosen twin keeps taking 5x longer than predicted
        d = asyncio.run(api.allocate(state))
        if d.node_id != first.node_id:
            break
        asyncio.run(api.feedback({"decision_id": d.decision_id, "completion_ms":
                                  five_times_slower(state, d.node_index)}))
    assert asyncio.run(api.allocate(state)).node_id == other  # cached before: not served
    info = api.node_speed(first.node_id)
    # applied once 3x slower (node_speeds.apply_beyond): five 5x reports against the
    # prior's two observations at 1.0 give 5 ** (-5/7) = 0.32
    assert info.observed_speed <= 1 / 3 and info.count == 5 and info.applied
    assert api.node_speed(other).observed_speed == 1.0 and api.node_speed(other).count == 0
    batch = asyncio.run(api.allocate_batch({"states": [state, state]}))
    assert [d.node_id for d in batch.decisions] == [other, other]
    assert api.reset_node_speed(first.node_id).reset
    assert asyncio.run(api.allocate(state)).node_id == first.node_id
    assert api.node_speed(first.node_id).count == 0


def test_small_deviations_are_learned_but_not_applied(api: AllocatorApi):
    """One 5x report moves the estimate to 0.58 only (the prior is worth two reports at
    1.0): within node_speeds.apply_beyond (3x) the node keeps its nominal capacity, so
    the decision and its cache key stay as they were; with apply_beyond 1 it moves."""
    state = two_twins("")
    first = asyncio.run(api.allocate(state))
    asyncio.run(api.feedback({"decision_id": first.decision_id, "completion_ms":
                              five_times_slower(state, first.node_index)}))
    info = api.node_speed(first.node_id)
    assert 0.5 < info.observed_speed < 0.6 and info.count == 1 and not info.applied
    again = asyncio.run(api.allocate(state))
    assert again.node_id == first.node_id and again.cached  # same key: nothing applied
    api.cfg = api.cfg.model_copy(update={"node_speeds": api.cfg.node_speeds.model_copy(
        update={"apply_beyond": 1.0})})
    assert api.node_speed(first.node_id).applied
    moved = asyncio.run(api.allocate(state))
    assert moved.node_id != first.node_id and not moved.cached


def test_a_state_may_carry_the_speed_itself(api: AllocatorApi):
    state = two_twins("")
    first = asyncio.run(api.allocate(state)).node_id
    i = 1 if first == "a" else 2
    state["nodes"][i]["observed_speed"] = 0.2
    assert asyncio.run(api.allocate(state)).node_id != first


def test_failed_tasks_and_old_decisions_teach_nothing(api: AllocatorApi):
    state = two_twins("")
    d = asyncio.run(api.allocate(state))
    asyncio.run(api.feedback({"decision_id": d.decision_id, "success": False,
                              "completion_ms": 1e6}))
    assert api.node_speed(d.node_id).count == 0


def test_nodes_route_needs_the_token_and_names_its_methods(api: AllocatorApi, monkeypatch):
    monkeypatch.setenv("EDGE_ALLOCATOR_TOKENS", "t0k3n")
    api.reconfigure(api.cfg)
    door = FrontDoor(api)

    async def call(method: str, path: str, token: str | None = None) -> Any:
        async def body() -> bytes:
            return b""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return await door.handle(method, path, headers, {}, body)

    assert asyncio.run(call("GET", "/v1/nodes/a")).status == 401
    assert asyncio.run(call("DELETE", "/v1/nodes/a")).status == 401
    ok = asyncio.run(call("GET", "/v1/nodes/a", "t0k3n"))
    assert ok.status == 200 and b'"observed_speed":1.0' in ok.body
    assert asyncio.run(call("DELETE", "/v1/nodes/a", "t0k3n")).status == 200
    bad = asyncio.run(call("POST", "/v1/nodes/a", "t0k3n"))
    assert bad.status == 405 and bad.headers["allow"] == "DELETE, GET"
    assert asyncio.run(call("GET", "/v1/nodes/" + "x" * 129, "t0k3n")).status == 422
    for method in ("GET", "DELETE"):  # an empty id (the fuzz's undocumented 404)
        empty = asyncio.run(call(method, "/v1/nodes/", "t0k3n"))
        assert empty.status == 422 and b'"loc":"node_id"' in empty.body, empty.body
    assert door.route_of("GET", f"/v1/nodes/{uuid.uuid4()}") == "/v1/nodes/{node_id}"


# --- Redis: shared by replicas, JSON not pickle --------------------------------------------


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        missing("Redis at 127.0.0.1:6379", f"unreachable ({exc})")
    return REDIS_URL


def test_replicas_share_the_estimates_through_redis(redis_url: str):
    import orjson
    import redis

    key = f"test:speeds:{uuid.uuid4().hex}"
    one, two = (NodeSpeeds(P, redis_url, key=key, refresh_s=0.0) for _ in range(2))
    try:
        assert two.speeds(["n"], 0.0) is None
        one.observe("n", 5.0, now=0.0)
        one.observe("n", 5.0, now=0.0)
        np.testing.assert_allclose(two.speeds(["n"], 0.0), [math.exp(-2 * math.log(5) / 4)])
        assert two.get("n").count == 2
        raw = redis.Redis.from_url(redis_url).hget(key, "n")
        assert orjson.loads(raw)["n"] == 2  # plain JSON
        assert two.reset("n") and one.get("n") is None
        assert one.speeds(["n"], 0.0) is None
    finally:
        redis.Redis.from_url(redis_url).delete(key)
        one.close()
        two.close()


# --- the simulator: the same signal through the same estimator -----------------------------


def test_the_simulator_learns_each_nodes_real_speed():
    env = EdgeAllocationEnv(EnvConfig(min_nodes=12, max_nodes=12, tasks_per_episode=400,
                                      observed_speed=True))
    env.reset(seed=1)
    assert (env.learned_speeds() == 1.0).all()
    for _ in range(399):
        env.step(int(np.flatnonzero(env.graph().mask)[env._count % env.graph().mask.sum()]))
    net = env.network
    from edge_allocator.profiles import PROFILES

    real = net.capacity_gcps / np.array([PROFILES[t].capacity_gcps for t in net.node_type])
    learned = env.learned_speeds()
    heard = np.array([env.speeds.get(str(i)) is not None and env.speeds.get(str(i)).count > 5
                      for i in range(net.n)])
    assert heard.sum() >= 4
    # faster-than-nominal nodes are learned faster than slower ones (rank agreement)
    corr = np.corrcoef(np.log(real[heard]), np.log(learned[heard]))[0, 1]
    assert corr > 0.5, (real[heard], learned[heard])
    x = env.graph().x
    nominal = features(env.node_fields(), env.task_vector())
    k = FEATURE_INDEX["est_exec_ms"]
    np.testing.assert_allclose(x[:, k] * learned, nominal[:, k], rtol=1e-4)  # applied


def test_observed_features_differ_from_nominal_after_feedback():
    """The same seed and actions with and without ``observed_speed``: identical features
    before any task finished (every speed 1.0), different est_wait/est_exec once
    completions were fed back, and the same dynamics (rewards) throughout."""
    envs = [EdgeAllocationEnv(EnvConfig(min_nodes=15, max_nodes=15, tasks_per_episode=200,
                                        observed_speed=o)) for o in (False, True)]
    for e in envs:
        e.reset(seed=7)
    np.testing.assert_array_equal(envs[0].graph().x, envs[1].graph().x)
    k = [FEATURE_INDEX["est_wait_ms"], FEATURE_INDEX["est_exec_ms"]]
    for step in range(150):
        action = int(np.argmax(np.where(envs[0].graph().mask, envs[0].oracle_rewards(),
                                        -np.inf)))
        rewards = [e.step(action)[1] for e in envs]
        assert rewards[0] == rewards[1], step
    nominal, observed = envs[0].graph().x, envs[1].graph().x
    assert not np.allclose(nominal[:, k], observed[:, k])
    others = [i for i in range(nominal.shape[1]) if i not in k]
    np.testing.assert_array_equal(nominal[:, others], observed[:, others])
    assert (envs[0].learned_speeds() != 1.0).any()  # both learn; only one shows it
