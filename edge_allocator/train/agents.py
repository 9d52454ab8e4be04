"""Agents: anything that scores the nodes of one decision, so heuristics, learned models
and the planner all run through the same evaluation loop; and the factories that build
them for evaluation (:func:`baseline_agents`, :func:`model_agents`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch import nn

from edge_allocator.graph import GraphInputs, collate
from edge_allocator.policies.heuristics import all_heuristics
from edge_allocator.sim.env import EdgeAllocationEnv

#: Input size (nodes) of the flat models the pipeline trains; Melbourne's 127 fit.
FLAT_PAD = 128


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
        out: torch.Tensor = self.module(torch.from_numpy(b.x), torch.from_numpy(b.adj),
                                        torch.from_numpy(b.mask))
        return out[0, : graph.x.shape[0]].numpy()


class OracleAgent:
    """Greedy on the true one-step reward (hidden capacities and backlog): an upper
    reference for myopic policies, and the base of the lookahead planner."""

    name = "oracle_greedy"

    def __init__(self, env: EdgeAllocationEnv):
        self.env = env

    def scores(self, graph: GraphInputs) -> np.ndarray:
        return self.env.oracle_rewards().astype(np.float32)


class GatedAgent:
    """One policy before any feedback, another once the state carries learned speeds: what
    the service does with ``models.<name>.feedback_version``. A policy trained on learned
    speeds reads a cold state (every speed 1.0) worse than one trained on nominal
    capacities, and the cold one misreads learned speeds (README, "closed loop"), so
    each answers the states it was trained for."""

    def __init__(self, name: str, cold: Agent, warm: Agent, env: EdgeAllocationEnv):
        self.name = name
        self.cold, self.warm, self.env = cold, warm, env

    def scores(self, graph: GraphInputs) -> np.ndarray:
        agent = self.warm if self.env.feedback_heard() else self.cold
        return agent.scores(graph)


#: Builds an agent for one scenario: gets (the scenario's env, its largest network size)
#: and returns None where the agent cannot run (a flat model on a larger network).
AgentFactory = Callable[[EdgeAllocationEnv, int], "Agent | None"]


def pad_for(kind: str) -> int | None:
    """The fixed input size of a ``kind`` model: None for the hybrid GNN (any N)."""
    return None if kind == "hybrid" else FLAT_PAD


def model_agents(modules: dict[str, tuple[nn.Module, str]]) -> dict[str, AgentFactory]:
    """Evaluation factories for learned modules (name -> (module, kind)); flat ones sit
    out networks too large for their input."""
    def factory(name: str, module: nn.Module, pad: int | None) -> AgentFactory:
        return lambda env, n: None if pad and n > pad else TorchAgent(name, module, pad)

    return {name: factory(name, m, pad_for(kind)) for name, (m, kind) in modules.items()}


def gated_agents(name: str, cold: nn.Module, warm: nn.Module) -> dict[str, AgentFactory]:
    """An evaluation factory for ``GatedAgent`` over two hybrid modules."""
    return {name: lambda env, n: GatedAgent(name, TorchAgent(f"{name} cold", cold),
                                            TorchAgent(f"{name} warm", warm), env)}


def baseline_agents() -> dict[str, AgentFactory]:
    """Evaluation factories for every heuristic and the one-step oracle."""
    def factory(index: int) -> AgentFactory:
        return lambda env, n: all_heuristics()[index]  # fresh state (round-robin, rng) per run

    agents = {h.name: factory(i) for i, h in enumerate(all_heuristics())}
    agents["oracle_greedy"] = lambda env, n: OracleAgent(env)
    return agents
