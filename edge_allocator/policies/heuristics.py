"""The heuristics an operator would use without us: the bar learned policies must clear.

Each sees exactly what the models see (the feature matrix of one decision and the
feasibility mask) and returns one score per node; higher is better. None of them is
tuned to the simulator's hidden state (real capacities, exact backlog).
"""

from __future__ import annotations

from typing import Protocol

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
