"""States from the simulator, on request: GET /v1/sample (a /v1/allocate body) and the
original API's POST /generate-mock-network (a /predict network state)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_allocator.responses import MockNetwork, MockNetworkState, MockNode
from edge_allocator.schema import (
    NODE_FIELDS,
    SIM_MAX_NODES,
    SIM_MIN_NODES,
    MockNetworkRequest,
    RequestError,
    parse,
)

if TYPE_CHECKING:
    from edge_allocator.sim.scenarios import Network

SCENARIOS = ("synthetic", "melbourne")
MIN_NODES, MAX_NODES = SIM_MIN_NODES, SIM_MAX_NODES
#: Nodes of a generated network when the request names no size (the original's default).
MOCK_DEFAULT_NODES = 10


def sample_state(query: Mapping[str, str]) -> dict[str, Any]:
    """``scenario`` (synthetic | melbourne), ``nodes`` (5..1000), ``seed``."""
    from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig  # only this route needs it

    scenario = query.get("scenario", "synthetic")
    if scenario not in SCENARIOS:
        raise RequestError(422, "scenario: use 'synthetic' or 'melbourne'",
                           [{"loc": "scenario", "msg": "unknown scenario"}])
    try:
        nodes = int(query.get("nodes", "20"))
        seed = int(query.get("seed", "0"))
    except ValueError:
        raise RequestError(422, "nodes and seed must be integers") from None
    if not 0 <= seed < 2**32:  # numpy refuses a negative seed (was a 500)
        raise RequestError(422, "seed: must be between 0 and 2**32 - 1",
                           [{"loc": "seed", "msg": "out of range"}])
    if not MIN_NODES <= nodes <= MAX_NODES:
        raise RequestError(422, f"nodes: must be between {MIN_NODES} and {MAX_NODES}",
                           [{"loc": "nodes", "msg": "out of range"}])
    env = EdgeAllocationEnv(EnvConfig(scenario, min_nodes=nodes, max_nodes=nodes))
    env.reset(seed=seed)
    return env.request_json()


def mock_network(data: dict[str, Any]) -> MockNetwork:
    """POST /generate-mock-network: the first decision of a simulated synthetic episode
    (as /v1/sample makes it), as the original API's network state: nodes by index, and
    the topology's links, at most ``num_edges`` of them (a spanning tree first)."""
    from edge_allocator.sim.env import EdgeAllocationEnv
    from edge_allocator.sim.scenarios import synthetic_network

    req = parse(MockNetworkRequest, data)
    tiers = req.tiers()
    n = sum(tiers) if tiers else (req.num_nodes or MOCK_DEFAULT_NODES)
    seed = req.seed if req.seed is not None else secrets.randbits(32)
    network = synthetic_network(n, np.random.default_rng(seed), tiers)
    env = EdgeAllocationEnv(network=network)
    env.reset(seed=seed)
    values = env.node_fields().tolist()
    nodes = [MockNode(**{f: int(v) if f == "node_type" else v for f, v in zip(NODE_FIELDS, row)})
             for row in values]
    edges = spanning_first(network)[: req.num_edges]
    return MockNetwork(MockNetworkState(nodes, edges), n, len(edges), time.time())


def spanning_first(network: Network) -> list[tuple[int, int]]:
    """The network's links, those of a minimum-latency spanning tree (forest) first, so
    that any prefix with at least N - 1 links keeps every node connected."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    links = [(int(a), int(b)) for a, b in network.links.tolist()]
    if not links:
        return []
    n = network.n
    graph = coo_matrix((network.link_latency_ms, (network.links[:, 0], network.links[:, 1])),
                       shape=(n, n)).tocsr()
    tree = minimum_spanning_tree(graph).tocoo()
    in_tree = {(min(a, b), max(a, b)) for a, b in zip(tree.row.tolist(), tree.col.tolist())}
    first = [e for e in links if (min(e), max(e)) in in_tree]
    return first + [e for e in links if (min(e), max(e)) not in in_tree]
