"""The lookahead planner: the expert and the ceiling. It must plan on copies (never
touch the real episode) and beat the one-step oracle it is built on."""

from __future__ import annotations

import numpy as np
import pytest

from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig
from edge_allocator.train.agents import OracleAgent
from edge_allocator.train.demos import collect
from edge_allocator.train.evaluate import run_episode
from edge_allocator.train.planner import LookaheadAgent

CFG = EnvConfig("synthetic", min_nodes=10, max_nodes=20, tasks_per_episode=60)


def test_planning_leaves_the_real_episode_untouched():
    env, twin = EdgeAllocationEnv(CFG), EdgeAllocationEnv(CFG)
    env.reset(seed=3)
    twin.reset(seed=3)
    planner = LookaheadAgent(env)
    for _ in range(10):
        g = env.graph()
        s = planner.scores(g)
        a = int(np.argmax(np.where(g.mask, s, -np.inf)))
        _, r, _, _, _ = env.step(a)
        _, r_twin, _, _, _ = twin.step(a)
        assert r == r_twin  # same state before the step, same outcome
    assert len(env.outcomes) == len(twin.outcomes) == 10


def test_only_the_top_candidates_are_rolled_out():
    env = EdgeAllocationEnv(CFG)
    env.reset(seed=5)
    g = env.graph()
    s = LookaheadAgent(env, candidates=3).scores(g)
    one_step = env.oracle_rewards()
    top = set(np.argsort(-np.where(g.mask, one_step, -np.inf))[:3].tolist())
    simulated = {i for i in range(len(s)) if s[i] > -1e5}
    assert simulated == top


def test_planner_beats_the_one_step_oracle_on_fixed_seeds():
    env = EdgeAllocationEnv(CFG)
    seeds = range(100, 104)
    oracle = sum(run_episode(env, OracleAgent(env), s)["episode_reward"] for s in seeds)
    planner = sum(run_episode(env, LookaheadAgent(env, horizon=10), s)["episode_reward"]
                  for s in seeds)
    assert planner > oracle


def test_demonstrations_from_the_planner_record_its_choices():
    d = collect(EnvConfig(tasks_per_episode=10), 1, seed=0, expert="lookahead",
                expert_share=1.0, progress=False)
    assert len(d.actions) == 10 and all(d.mask[i][a] for i, a in enumerate(d.actions))
    with pytest.raises(ValueError, match="expert='sage'"):
        collect(EnvConfig(tasks_per_episode=10), 1, seed=0, expert="sage", progress=False)
