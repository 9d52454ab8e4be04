"""Lookahead planner: the expert stronger than any myopic rule, and the ceiling learned
policies are measured against. Too slow to serve (its cost per decision is reported).

For the ``candidates`` best nodes by true one-step reward, it simulates placing the task
there and then ``horizon - 1`` further arrivals handled by the one-step oracle, over
``samples`` sampled futures (the copies are reseeded, so it does not see the real future
arrivals), and scores each candidate by the mean discounted return.

Every candidate is rolled out on the same sampled futures (common random numbers): the
comparison between candidates then reflects the placement, not the luck of the draw,
which with 2 samples was the larger of the two.
"""

from __future__ import annotations

import copy

import numpy as np

from edge_allocator.constants import MASKED_SCORE
from edge_allocator.graph import GraphInputs
from edge_allocator.sim.env import EdgeAllocationEnv


class LookaheadAgent:
    name = "lookahead"

    def __init__(self, env: EdgeAllocationEnv, horizon: int = 6, candidates: int = 3,
                 samples: int = 2, gamma: float = 0.9, seed: int = 0):
        self.env = env
        self.horizon = horizon
        self.candidates = candidates
        self.samples = samples
        self.gamma = gamma
        self._rng = np.random.default_rng(seed)

    def scores(self, graph: GraphInputs) -> np.ndarray:
        one_step = self.env.oracle_rewards().astype(np.float64)
        order = np.argsort(-np.where(graph.mask, one_step, -np.inf))
        top = [int(i) for i in order[: self.candidates] if graph.mask[i]]
        out = np.where(graph.mask, one_step - 1e6, MASKED_SCORE)  # below every simulated candidate
        outcomes = self.env.outcomes
        self.env.outcomes = []  # not copied into every rollout
        try:
            futures = [int(s) for s in self._rng.integers(2**31, size=self.samples)]
            for a in top:
                out[a] = float(np.mean([self._rollout(a, seed) for seed in futures]))
        finally:
            self.env.outcomes = outcomes
        return out.astype(np.float32)

    def _rollout(self, action: int, seed: int) -> float:
        sim = copy.deepcopy(self.env)
        sim.np_random = np.random.default_rng(seed)
        total, discount = 0.0, 1.0
        a = action
        for _ in range(self.horizon):
            _, r, _, _, _ = sim.step(a)
            total += discount * r
            discount *= self.gamma
            a = int(np.argmax(sim.oracle_rewards()))
        return total
