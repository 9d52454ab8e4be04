from __future__ import annotations

import numpy as np
import pytest

from edge_allocator.graph import NUM_FEATURES
from edge_allocator.policies.heuristics import EarliestFinishPolicy, RandomPolicy
from edge_allocator.schema import AllocateRequest, parse
from edge_allocator.sim import EdgeAllocationEnv, EnvConfig, melbourne_network, synthetic_network


def _run(env, policy, seed):
    obs, _ = env.reset(seed=seed)
    rewards = []
    while True:
        g = env.graph()
        a = int(np.argmax(np.where(g.mask, policy.scores(g), -np.inf)))
        obs, r, term, trunc, info = env.step(a)
        rewards.append(r)
        if trunc:
            return rewards, list(env.outcomes)


@pytest.mark.parametrize("scenario", ["synthetic", "melbourne"])
def test_every_task_accounted_for_and_physics_hold(scenario):
    env = EdgeAllocationEnv(EnvConfig(scenario, tasks_per_episode=120))
    rewards, outcomes = _run(env, RandomPolicy(1), seed=3)
    assert len(outcomes) == 120 == len(rewards)
    for o in outcomes:
        assert o.dropped or o.completion_ms >= o.transfer_ms + o.exec_ms - 1e-6
        assert o.energy_j >= 0 and o.wait_ms >= -1e-9
        assert o.missed or o.dropped or o.completion_ms > 0


def test_same_seed_same_episode():
    a = _run(EdgeAllocationEnv(EnvConfig(tasks_per_episode=50)), EarliestFinishPolicy(), 7)
    b = _run(EdgeAllocationEnv(EnvConfig(tasks_per_episode=50)), EarliestFinishPolicy(), 7)
    c = _run(EdgeAllocationEnv(EnvConfig(tasks_per_episode=50)), EarliestFinishPolicy(), 8)
    assert a[0] == b[0]
    assert a[0] != c[0]


def test_observation_is_an_api_request():
    env = EdgeAllocationEnv(EnvConfig(tasks_per_episode=5))
    obs, _ = env.reset(seed=0)
    req = parse(AllocateRequest, env.request_json())
    assert len(req.nodes) == env.network.n
    assert obs["x"].shape == (env.pad_to, NUM_FEATURES)
    assert obs["mask"][: env.network.n].astype(bool).tolist() == env.graph().mask.tolist()
    assert env.action_masks()[: env.network.n].tolist() == env.graph().mask.tolist()


def test_infeasible_action_drops_the_task_with_a_penalty():
    env = EdgeAllocationEnv(EnvConfig(tasks_per_episode=5))
    env.reset(seed=0)
    _, r, _, _, info = env.step(env.pad_to - 1)  # a padding slot: never a node
    assert info["outcome"].dropped and r < -1.0


def test_oracle_reward_matches_the_step_reward():
    env = EdgeAllocationEnv(EnvConfig(tasks_per_episode=30))
    env.reset(seed=5)
    for _ in range(30):
        expected = env.oracle_rewards()
        a = int(np.argmax(expected))
        _, r, _, trunc, _ = env.step(a)
        assert r == pytest.approx(expected[a])
        if trunc:
            break


@pytest.mark.parametrize("n", [5, 37, 1000])
def test_synthetic_networks_of_any_size_are_connected(n):
    net = synthetic_network(n, np.random.default_rng(0))
    latency, bandwidth, _ = net.paths_from(int(net.sources[0]))
    assert net.n == n and np.isfinite(latency).all() and (bandwidth > 0).all()


def test_melbourne_is_built_from_the_real_sites():
    net = melbourne_network(np.random.default_rng(0))
    assert net.n == 127 and (net.node_type == 2).sum() == 2
    assert abs(net.source_weights.sum() - 1) < 1e-9 and len(net.sources) > 50
