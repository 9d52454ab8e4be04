from __future__ import annotations

import numpy as np

from edge_allocator.graph import build_graph
from edge_allocator.policies.heuristics import (
    EarliestFinishPolicy,
    LeastLoadedPolicy,
    LowestLatencyPolicy,
    RandomPolicy,
    RoundRobinPolicy,
)
from edge_allocator.schema import AllocateRequest, parse
from tests.conftest import node


def _graph(nodes):
    return build_graph(parse(AllocateRequest, {"nodes": nodes}))


def _pick(policy, g):
    return int(np.argmax(policy.scores(g)))


def test_least_loaded_picks_the_idle_node():
    g = _graph([node(cpu_util=0.9), node(cpu_util=0.1), node(cpu_util=0.5)])
    assert _pick(LeastLoadedPolicy(), g) == 1


def test_lowest_latency_picks_the_nearest_node():
    g = _graph([node(latency=50), node(latency=40), node(latency=2)])
    assert _pick(LowestLatencyPolicy(), g) == 2


def test_eft_avoids_long_queues_and_slow_links():
    g = _graph([node(queue_len=25), node(bandwidth=1), node(), node(node_type=0)])
    assert _pick(EarliestFinishPolicy(), g) == 2


def test_every_heuristic_respects_the_mask():
    g = _graph([node(bandwidth=0), node(queue_len=10_000), node(cpu_util=0.99)])
    for p in (LeastLoadedPolicy(), LowestLatencyPolicy(), EarliestFinishPolicy(),
              RandomPolicy(0), RoundRobinPolicy()):
        assert _pick(p, g) == 2


def test_round_robin_cycles_over_feasible_nodes():
    g = _graph([node(), node(bandwidth=0), node(), node()])
    rr = RoundRobinPolicy()
    assert [_pick(rr, g) for _ in range(4)] == [0, 2, 3, 0]


def test_random_is_seeded():
    g = _graph([node() for _ in range(10)])
    a, b, c = RandomPolicy(3), RandomPolicy(3), RandomPolicy(4)
    picks_a = [_pick(a, g) for _ in range(8)]
    assert picks_a == [_pick(b, g) for _ in range(8)]  # same seed, same sequence
    assert picks_a != [_pick(c, g) for _ in range(8)]  # another seed, another one
    assert len(set(picks_a)) > 1  # and it is not a constant
