"""The heuristics an operator would use without us: the bar learned policies must clear.

Each sees exactly what the models see (the feature matrix of one decision and the
feasibility mask) and returns one score per node; higher is better. None of them is
tuned to the simulator's hidden state (real capacities, exact backlog).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from edge_allocator.constants import MASKED_SCORE
from edge_allocator.graph import FEATURE_NAMES, GraphInputs

_COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


class Heuristic(Protocol):
    name: str

    def scores(self, graph: GraphInputs) -> np.ndarray: ...


def _masked(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, values, MASKED_SCORE).astype(np.float32)


class RandomPolicy:
    """Uniform over feasible nodes (seeded, so evaluations repeat)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self._rng = np.random.default_rng(seed)

    def scores(self, graph: GraphInputs) -> np.ndarray:
        return _masked(self._rng.random(int(graph.mask.shape[0])), graph.mask)


class RoundRobinPolicy:
    """The next feasible node after the last one chosen, by index."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def scores(self, graph: GraphInputs) -> np.ndarray:
        n = graph.mask.shape[0]
        order = (np.arange(n) - self._next) % n  # 0 for the node whose turn it is
        s = _masked(-order.astype(np.float32), graph.mask)
        self._next = (int(np.argmax(s)) + 1) % n
        return s


class LeastLoadedPolicy:
    """Lowest CPU utilisation, ties broken by shorter queue."""

    name = "least_loaded"

    def scores(self, graph: GraphInputs) -> np.ndarray:
        x = graph.x
        return _masked(-(x[:, _COL["cpu_util"]] + 1e-3 * x[:, _COL["queue_len"]]), graph.mask)


class LowestLatencyPolicy:
    """Nearest node in network latency."""

    name = "lowest_latency"

    def scores(self, graph: GraphInputs) -> np.ndarray:
        return _masked(-graph.x[:, _COL["latency"]], graph.mask)


class EarliestFinishPolicy:
    """Greedy earliest finish time: transfer + expected wait + execution, all estimated
    from the observation with nominal per-type capacity (the classic HEFT-style rule)."""

    name = "greedy_eft"

    def scores(self, graph: GraphInputs) -> np.ndarray:
        x = graph.x
        eta = x[:, _COL["est_transfer_ms"]] + x[:, _COL["est_wait_ms"]] + x[:, _COL["est_exec_ms"]]
        return _masked(-eta, graph.mask)


def all_heuristics(seed: int = 0) -> list[Heuristic]:
    return [
        RandomPolicy(seed),
        RoundRobinPolicy(),
        LeastLoadedPolicy(),
        LowestLatencyPolicy(),
        EarliestFinishPolicy(),
    ]


HEURISTIC_NAMES = tuple(h.name for h in all_heuristics())


class Rule(NamedTuple):
    """A heuristic in words, and its score as weights over a node's own features
    (score = sum of weight x feature; empty for the rules no feature decides). A test
    holds each heuristic's ``scores`` to these weights, so the explanation of a
    heuristic (``edge_allocator.explain.rules``) cannot drift from what it does."""

    text: str
    weights: dict[str, float]


RULES: dict[str, Rule] = {
    "random": Rule("a uniform random draw among the feasible nodes: no feature decides", {}),
    "round_robin": Rule("the next feasible node by index after the last one chosen (a "
                        "fresh rotation starts at node 0): no feature decides", {}),
    "least_loaded": Rule("lowest cpu_util, ties broken by the shorter queue: "
                         "score = -(cpu_util + 0.001 x queue_len)",
                         {"cpu_util": -1.0, "queue_len": -1e-3}),
    "lowest_latency": Rule("lowest latency from the task's source: score = -latency",
                           {"latency": -1.0}),
    "greedy_eft": Rule("earliest estimated finish: score = -(est_transfer_ms + "
                       "est_wait_ms + est_exec_ms)",
                       {"est_transfer_ms": -1.0, "est_wait_ms": -1.0, "est_exec_ms": -1.0}),
}
