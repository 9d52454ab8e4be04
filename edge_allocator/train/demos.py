"""Expert demonstrations: decisions labelled with the expert's per-node rewards.

Why label every node and not only the expert's choice: the soft target (a softmax of
the true one-step rewards) tells the learner how much worse each alternative is, and
the DQN regresses its Q-values onto the same numbers.

States come from a mix of behaviours (the expert, the greedy-EFT heuristic, random, and
in later DAgger rounds the learner itself) so the learner sees the states its own
mistakes lead to, not only the expert's tidy ones. Every state is labelled by the expert.

Two experts: the one-step oracle (true rewards of every node, cheap) and the lookahead
planner (rolls the simulator forward; about 37 ms a decision, so :func:`collect` runs
on Ray tasks in :mod:`edge_allocator.train.distributed` for large sets). Either way each
decision keeps the one-step rewards of every node (the soft target, and the DQN's
regression target) and the expert's own choice (the hard target).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from edge_allocator.graph import GraphInputs
from edge_allocator.policies.heuristics import EarliestFinishPolicy, RandomPolicy
from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig
from edge_allocator.train.agents import Agent

EXPERTS = ("oracle", "lookahead")


@dataclass
class Demonstrations:
    """Decisions grouped by episode; one adjacency per episode (topology is static)."""

    x: list[np.ndarray] = field(default_factory=list)  # [N, F] each
    mask: list[np.ndarray] = field(default_factory=list)  # [N] bool
    rewards: list[np.ndarray] = field(default_factory=list)  # [N] one-step reward per node
    actions: list[int] = field(default_factory=list)  # the expert's choice
    adj_id: list[int] = field(default_factory=list)
    adjs: list[np.ndarray] = field(default_factory=list)
    teacher: list[np.ndarray] = field(default_factory=list)
    """[N] logits of a teacher policy per decision (knowledge distillation); empty
    unless :func:`edge_allocator.train.distill.label_with_teacher` filled it."""

    def __len__(self) -> int:
        return len(self.x)

    def extend(self, other: Demonstrations) -> None:
        if len(self) and len(other) and bool(self.teacher) != bool(other.teacher):
            raise ValueError("Demonstrations.extend: only one side has teacher scores")
        base = len(self.adjs)
        self.x += other.x
        self.mask += other.mask
        self.rewards += other.rewards
        self.actions += other.actions
        self.adj_id += [i + base for i in other.adj_id]
        self.adjs += other.adjs
        self.teacher += other.teacher

    def graph(self, i: int) -> GraphInputs:
        return GraphInputs(self.x[i], self.adjs[self.adj_id[i]], self.mask[i])


def collect(
    config: EnvConfig,
    episodes: int,
    seed: int,
    learner: Agent | None = None,
    expert_share: float = 0.5,
    progress: bool = True,
    expert: str = "oracle",
) -> Demonstrations:
    """Run ``episodes`` episodes and label every decision with the expert.

    The acting behaviour per step: the expert with probability ``expert_share``; else
    the learner if given, otherwise greedy-EFT or random (half each).
    """
    if expert not in EXPERTS:
        raise ValueError(f"collect: expert={expert!r}; use one of {EXPERTS}")
    env = EdgeAllocationEnv(config)
    rng = np.random.default_rng(seed)
    planner: Agent | None = None
    if expert == "lookahead":
        from edge_allocator.train.planner import LookaheadAgent

        planner = LookaheadAgent(env, seed=seed)
    eft, rand = EarliestFinishPolicy(), RandomPolicy(seed)
    demos = Demonstrations()
    for ep in tqdm(range(episodes), desc="demonstrations", disable=not progress):
        env.reset(seed=seed + ep)
        adj_id = len(demos.adjs)
        demos.adjs.append(env.graph().adj)
        while True:
            g = env.graph()
            rewards = env.oracle_rewards().astype(np.float32)
            expert_scores = rewards if planner is None else planner.scores(g)
            choice = int(np.argmax(np.where(g.mask, expert_scores, -np.inf)))
            demos.x.append(g.x)
            demos.mask.append(g.mask)
            demos.rewards.append(rewards)
            demos.actions.append(choice)
            demos.adj_id.append(adj_id)
            u = rng.random()
            if u < expert_share:
                action = choice
            else:
                actor = learner if learner is not None else (
                    eft if u < expert_share + (1 - expert_share) / 2 else rand)
                action = int(np.argmax(np.where(g.mask, actor.scores(g), -np.inf)))
            _, _, _, truncated, _ = env.step(action)
            if truncated:
                break
    return demos


def sizes(demos: Demonstrations) -> Sequence[int]:
    return [x.shape[0] for x in demos.x]
