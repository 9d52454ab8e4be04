"""``models.<name>.feedback_version`` (issue 12 §3, cold start): the version trained on
learned speeds answers only states some node of which is known, the routed one the cold
starts; checked at deploy, in the API (no Ray) and in the simulator's ``GatedAgent``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from edge_allocator.config import ModelSpec, ServiceConfig
from edge_allocator.constants import MODELS_DIR
from edge_allocator.policies.heuristics import all_heuristics
from edge_allocator.responses import BatchConfig
from edge_allocator.service.api import AllocatorApi
from edge_allocator.service.chain import DirectPolicy, StagesHere
from edge_allocator.service.routing import ModelRouter
from edge_allocator.service.stages import PolicyStage
from edge_allocator.sim import EdgeAllocationEnv, EnvConfig
from edge_allocator.train.agents import GatedAgent
from tests.test_speeds import five_times_slower, two_twins


def _router(**spec: str) -> ModelRouter:
    return ModelRouter(MODELS_DIR, {"hybrid": ModelSpec(**spec)}, "hybrid")


def test_a_feedback_version_is_checked_at_deploy():
    with pytest.raises(ValueError, match=r"models.hybrid.feedback_version='9' not found"):
        _router(version="2", feedback_version="9")
    with pytest.raises(ValueError, match="also answers cold starts"):
        _router(version="3", feedback_version="3")
    with pytest.raises(ValueError, match="not trained on learned node speeds"):
        _router(version="3", feedback_version="2")  # v2: nominal capacities
    r = _router(version="2", feedback_version="3")
    assert r.feedback_version("hybrid") == "3"
    assert ("hybrid", "3") in r.versions_in_use()  # loaded, and readiness waits for it
    assert _router(version="2").feedback_version("hybrid") is None


@pytest.fixture
def gated(tmp_path: Path) -> AllocatorApi:
    cfg = ServiceConfig(database_url=f"sqlite:///{tmp_path / 'log.db'}", cache="local",
                        spool_path=tmp_path / "spool.jsonl",
                        models={"hybrid": ModelSpec(version="2", feedback_version="3")})
    out = AllocatorApi(cfg, StagesHere(DirectPolicy(PolicyStage(cfg.models_dir),
                                                    BatchConfig(8, 0.01))))
    yield out
    out.close()


def test_cold_states_go_to_the_routed_version_known_ones_to_the_feedback_version(
        gated: AllocatorApi):
    state, stranger = two_twins(""), two_twins("other-")
    first = asyncio.run(gated.allocate(state))
    assert first.model.version == "2"  # nothing heard yet: the cold-start version
    asyncio.run(gated.feedback({"decision_id": first.decision_id, "completion_ms":
                                five_times_slower(state, first.node_index)}))
    info = gated.node_speed(first.node_id)
    assert 0.5 < info.observed_speed < 0.6  # within apply_beyond (3x): v2 would ignore it
    warm = asyncio.run(gated.allocate(state))
    assert warm.model.version == "3" and not warm.cached
    assert warm.node_id != first.node_id  # every estimate applied for the version trained on them
    assert asyncio.run(gated.allocate(stranger)).model.version == "2"  # none of its nodes known
    batch = asyncio.run(gated.allocate_batch({"states": [stranger, state]}))
    assert {d.model.version for d in batch.decisions} == {"3"}  # a batch goes whole
    declared = two_twins("declared-")
    declared["nodes"][1]["observed_speed"] = 0.9
    assert asyncio.run(gated.allocate(declared)).model.version == "3"
    logged = {r.decision_id: r.model_version for r in gated.decision_log.recent(20)}
    assert logged[first.decision_id] == "2" and logged[warm.decision_id] == "3"
    assert gated.reset_node_speed(first.node_id).reset
    again = asyncio.run(gated.allocate(state))
    assert again.model.version == "2" and again.node_id == first.node_id


class _Recorder:
    """A real heuristic's scores, remembering how often it was asked."""

    def __init__(self, index: int) -> None:
        self.inner, self.calls = all_heuristics(seed=0)[index], 0
        self.name = self.inner.name

    def scores(self, graph):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner.scores(graph)


@pytest.mark.parametrize("observed", [False, True])
def test_the_simulators_gate_switches_once_a_node_is_heard_from(observed: bool):
    env = EdgeAllocationEnv(EnvConfig(min_nodes=12, max_nodes=12, tasks_per_episode=120,
                                      observed_speed=observed))
    env.reset(seed=3)
    cold, warm = _Recorder(2), _Recorder(4)  # least_loaded, greedy_eft: stateless
    gate = GatedAgent("gate", cold, warm, env)
    switched_at = None
    for step in range(119):
        heard = env.feedback_heard()
        used = warm if heard else cold
        before = used.calls
        s = gate.scores(env.graph())
        assert used.calls == before + 1
        np.testing.assert_array_equal(s, used.inner.scores(env.graph()))
        if heard and switched_at is None:
            switched_at = step
        env.step(int(np.argmax(np.where(env.graph().mask, s, -np.inf))))
    if observed:  # cold until the first completion is fed back, warm from then on
        assert switched_at is not None and switched_at > 0 and warm.calls > cold.calls
        assert env.speeds.speeds([str(i) for i in range(12)], 0.0) is not None
    else:  # without observed speeds nothing is ever heard: the service before feedback
        assert warm.calls == 0 and cold.calls == 119
