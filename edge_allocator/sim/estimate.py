"""What placing a task on each node would cost, by the simulator's completion-time model,
from what a request shows.

The simulator scores a placement with the node's real capacity and exact backlog, which a
request does not carry. This applies the same formulas (``sim.env``: transfer, wait, run,
energy, reward) to the request's fields with the nominal per-type capacity, exactly as
the derived features do (``graph.features``): the cost an operator can compute from the
same state the policies saw. Used by the decision explorer's side-by-side comparison.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import shortest_path

from edge_allocator.constants import QUEUE_CAPACITY
from edge_allocator.graph import FEATURE_INDEX, feasible_mask, features
from edge_allocator.profiles import NOMINAL_J_PER_GCYCLE, NOMINAL_MEMORY_MB, TRANSFER_J_PER_MB
from edge_allocator.sim.env import DROP_DEADLINE_FACTOR, ENERGY_WEIGHT, MISS_PENALTY

#: What the explorer says about the model, next to the numbers.
COST_MODEL = ("simulator completion-time model on the request's fields with nominal per-type "
              "capacity: completion = transfer + queue wait + run; cost = completion_s + "
              f"{ENERGY_WEIGHT} x energy_J + {MISS_PENALTY} per missed deadline; an infeasible "
              f"node drops the task: {MISS_PENALTY} + {DROP_DEADLINE_FACTOR} x deadline_s")


class Outcomes(NamedTuple):
    """[N] arrays: one entry per node of the state."""

    completion_ms: np.ndarray
    transfer_ms: np.ndarray
    wait_ms: np.ndarray
    exec_ms: np.ndarray
    energy_j: np.ndarray
    missed: np.ndarray  # bool
    feasible: np.ndarray  # bool
    cost: np.ndarray  # the reward's negative: lower is better
    reasons: list[str | None]  # why a node is infeasible, in words (None: feasible)


def hops_from_source(n: int, edges: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """[N] hop count from the task's source (the node at the lowest latency: 0 for the
    source itself in the simulator's states); unreachable nodes count as one hop."""
    if n == 0:
        return np.zeros(0)
    source = int(np.argmin(latency))
    hops = np.ones(n)
    if len(edges):
        graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
        found = np.asarray(shortest_path(graph.tocsr(), directed=False, unweighted=True,
                                         indices=source), dtype=np.float64).reshape(n)
        hops = np.where(np.isfinite(found), found, 1.0)
    hops[source] = 0.0
    return hops


def infeasible_reasons(nodes: np.ndarray, task: np.ndarray) -> list[str | None]:
    """Why each node is masked, the mask's own three rules (``graph.feasible_mask``)."""
    out: list[str | None] = []
    for cpu_mem_row in nodes.tolist():
        mem, bandwidth, queue, ntype = (cpu_mem_row[1], cpu_mem_row[4], cpu_mem_row[5],
                                        int(cpu_mem_row[6]))
        need = float(task[1]) / float(NOMINAL_MEMORY_MB[ntype])
        why = []
        if bandwidth <= 0:
            why.append("unreachable (bandwidth 0)")
        if queue >= QUEUE_CAPACITY:
            why.append(f"queue full ({queue:g} of {QUEUE_CAPACITY})")
        if mem + need > 1.0:
            why.append(f"memory: the task needs {need:.0%} of it, {1 - mem:.0%} is free")
        out.append("; ".join(why) or None)
    return out


def estimate(nodes: np.ndarray, task: np.ndarray, edges: np.ndarray) -> Outcomes:
    """``nodes`` [N, 7] in NODE_FIELDS order, ``task`` [4] in TASK_FIELDS order, ``edges``
    [E, 2] (the state's, or the default topology)."""
    nodes32, task32 = nodes.astype(np.float32), task.astype(np.float32)
    x = features(nodes32, task32).astype(np.float64)
    transfer = x[:, FEATURE_INDEX["est_transfer_ms"]].copy()
    latency = nodes[:, FEATURE_INDEX["latency"]]
    # the simulator's source node (latency 0 from itself) already holds the task's data
    transfer[(latency == 0) & (np.arange(len(nodes)) == np.argmin(latency))] = 0.0
    wait = x[:, FEATURE_INDEX["est_wait_ms"]]
    exe = x[:, FEATURE_INDEX["est_exec_ms"]]
    completion = transfer + wait + exe
    compute, _, data_mb, deadline = (float(v) for v in task)
    ntype = nodes[:, FEATURE_INDEX["node_type"]].astype(np.int64)
    hops = hops_from_source(len(nodes), edges, latency)
    energy = compute * NOMINAL_J_PER_GCYCLE[ntype].astype(np.float64) \
        + data_mb * TRANSFER_J_PER_MB * hops
    missed = completion > deadline
    feasible = feasible_mask(nodes32, task32)
    cost = completion / 1000.0 + ENERGY_WEIGHT * energy + MISS_PENALTY * missed
    cost = np.where(feasible, cost, MISS_PENALTY + DROP_DEADLINE_FACTOR * deadline / 1000.0)
    return Outcomes(completion, transfer, wait, exe, energy, missed, feasible, cost,
                    infeasible_reasons(nodes, task))
