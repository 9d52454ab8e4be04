"""The edge-network simulator: scenarios (topologies) and the gymnasium environment."""

from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig, StepOutcome
from edge_allocator.sim.scenarios import Network, melbourne_network, synthetic_network

__all__ = [
    "EdgeAllocationEnv",
    "EnvConfig",
    "StepOutcome",
    "Network",
    "melbourne_network",
    "synthetic_network",
]
