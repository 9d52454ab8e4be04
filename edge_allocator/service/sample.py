"""GET /v1/sample: a realistic state from the simulator, ready to POST to /v1/allocate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_allocator.schema import RequestError

SCENARIOS = ("synthetic", "melbourne")
MIN_NODES, MAX_NODES = 5, 1000


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
    if not MIN_NODES <= nodes <= MAX_NODES:
        raise RequestError(422, f"nodes: must be between {MIN_NODES} and {MAX_NODES}",
                           [{"loc": "nodes", "msg": "out of range"}])
    env = EdgeAllocationEnv(EnvConfig(scenario, min_nodes=nodes, max_nodes=nodes))
    env.reset(seed=seed)
    return env.request_json()
