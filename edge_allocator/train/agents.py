"""Agents: anything that scores the nodes of one decision, so heuristics, learned models
and the planner all run through the same evaluation loop."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from edge_allocator.graph import GraphInputs, collate
from edge_allocator.sim.env import EdgeAllocationEnv


class Agent(Protocol):
    name: str

    def scores(self, graph: GraphInputs) -> np.ndarray:
        """[N] scores; the highest feasible one is the decision."""
        ...


class TorchAgent:
    """A policy module evaluated one decision at a time (eager, no grad)."""

    def __init__(self, name: str, module: nn.Module, pad_to: int | None = None):
        self.name = name
        self.module = module.eval()
        self.pad_to = pad_to

    @torch.inference_mode()
    def scores(self, graph: GraphInputs) -> np.ndarray:
        b = collate([graph], pad_to=self.pad_to)
        out = self.module(torch.from_numpy(b.x), torch.from_numpy(b.adj), torch.from_numpy(b.mask))
        return out[0, : graph.x.shape[0]].numpy()


class OracleAgent:
    """Greedy on the true one-step reward (hidden capacities and backlog): an upper
    reference for myopic policies, and the base of the lookahead planner."""

    name = "oracle_greedy"

    def __init__(self, env: EdgeAllocationEnv):
        self.env = env

    def scores(self, graph: GraphInputs) -> np.ndarray:
        return self.env.oracle_rewards().astype(np.float32)
