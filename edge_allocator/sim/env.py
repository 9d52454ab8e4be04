"""The task-placement environment (gymnasium): one decision per arriving task.

Dynamics, units and reward (the contract every policy and heuristic is scored on):

* Time is continuous, in ms. Tasks arrive as a Poisson process whose rate switches
  between a base level and bursts (a two-state Markov chain, checked at each arrival).
  The base rate loads the gateway and fog tier to ``load`` of its nominal capacity.
* A task has compute demand ``c`` (giga-cycles), memory ``m`` (MB), input data ``d`` (MB)
  and a relative deadline (ms); it enters the network at a source node.
* Placing it on node i: transfer_ms = path latency + d * 8 / bottleneck bandwidth; it
  starts when its data has arrived and node i's FIFO queue is free; it runs at the
  node's real free speed ``capacity * (1 - cpu_util)``. completion_ms = finish - arrival.
* energy_j = c * (busy power / capacity) on the node + d * TRANSFER_J_PER_MB per hop.
* reward = -(completion_ms / 1000 + ENERGY_WEIGHT * energy_j + MISS_PENALTY * missed),
  i.e. seconds, plus 0.02 per joule, plus 1 per missed deadline. A task sent to an
  infeasible node is dropped: reward -(MISS_PENALTY + 2 * deadline_s).
* Background load (``cpu_util``) and memory of each node follow mean-reverting random
  walks; queued tasks hold their memory until they finish.

The observation for each decision is exactly what the API receives: the 7 node fields
seen from the task's source, the edges, and the task.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from edge_allocator.capacity import SPEED, nominal_limits
from edge_allocator.graph import (
    FEATURE_INDEX,
    NODE_TYPE_COLUMN,
    NUM_FEATURES,
    GraphInputs,
    TopologyCache,
    feasible_mask,
    features,
)
from edge_allocator.profiles import MEAN_TASK_GCYCLES, PROFILES, TRANSFER_J_PER_MB
from edge_allocator.schema import NODE_FIELDS, TASK_FIELDS
from edge_allocator.sim.scenarios import (
    MELBOURNE_NODES,
    Network,
    melbourne_network,
    synthetic_network,
)
from edge_allocator.speeds import LocalSpeeds, applied_speeds, observed_ratio

ENERGY_WEIGHT = 0.02  # reward per joule
MISS_PENALTY = 1.0  # reward per missed deadline
DROP_DEADLINE_FACTOR = 2.0  # dropped task costs MISS_PENALTY + this x deadline in s


@dataclass
class EnvConfig:
    """Settings of one environment; every field has a default that trains well."""

    scenario: str = "synthetic"
    """'synthetic', 'melbourne', or 'mixed' (each episode synthetic or, with probability
    ``melbourne_share``, Melbourne)."""
    melbourne_share: float = 0.3
    """Share of Melbourne episodes in the 'mixed' scenario."""
    min_nodes: int = 10
    """Smallest synthetic network (drawn uniformly per episode)."""
    max_nodes: int = 50
    """Largest synthetic network."""
    pad_to: int | None = None
    """Observation size for fixed-size learners (SB3); None = max_nodes (or the
    Melbourne node count)."""
    tasks_per_episode: int = 200
    """Decisions per episode."""
    load: float = 0.6
    """Base arrival rate as a share of the gateway+fog tier's nominal capacity."""
    burst_factor: float = 3.0
    """Arrival rate multiplier during a burst."""
    burst_start_p: float = 0.02
    """Chance per arrival that a burst starts."""
    burst_end_p: float = 0.1
    """Chance per arrival that a burst ends."""
    offline_share: float = 0.03
    """Share of non-source nodes offline (bandwidth 0) for an episode."""
    include_adjacency: bool = True
    """Put the [pad, pad] adjacency in observations (flat MLP learners don't need it)."""
    observed_speed: bool = False
    """Scale each node's capacity in the features by its speed learned from earlier
    completions (``learned_speeds``), as the service does with /v1/feedback. Off: the
    features of v1 (nominal capacity), what the shipped policies were trained on."""
    speed_apply_beyond: float = 1.0
    """With ``observed_speed``: apply a learned speed only beyond this factor of 1.0, as
    the service's ``node_speeds.apply_beyond`` does (``speeds.applied_speeds``); 1.0
    applies every estimate (what hybrid v3 was trained on)."""


_NUMERIC = ("completion_ms", "transfer_ms", "wait_ms", "exec_ms", "energy_j")


class StepOutcome(NamedTuple):
    """What happened to one task; all zeros except ``dropped`` when it was dropped."""

    completion_ms: float
    transfer_ms: float
    wait_ms: float
    exec_ms: float
    energy_j: float
    missed: bool
    dropped: bool
    reward: float


@dataclass
class _Task:
    source: int
    vector: np.ndarray  # TASK_FIELDS order


@dataclass
class _NodeState:
    free_at_ms: np.ndarray
    bg_cpu: np.ndarray
    bg_cpu_mean: np.ndarray
    bg_mem: np.ndarray
    finishes: list[deque[tuple[float, float]]] = field(default_factory=list)


class EdgeAllocationEnv(gym.Env):
    """Gymnasium env; ``action_masks()`` serves sb3-contrib's MaskablePPO."""

    metadata = {"render_modes": []}

    def __init__(self, config: EnvConfig | None = None, network: Network | None = None):
        self.config = config or EnvConfig()
        self._fixed_network = network
        if network is not None:
            pad = network.n
        elif self.config.scenario in ("melbourne", "mixed"):
            pad = max(MELBOURNE_NODES, self.config.max_nodes)
        else:
            pad = self.config.max_nodes
        self.pad_to = self.config.pad_to or pad
        p = self.pad_to
        spaces: dict[str, gym.spaces.Space[Any]] = {
            "x": gym.spaces.Box(-np.inf, np.inf, (p, NUM_FEATURES), np.float32),
            "mask": gym.spaces.Box(0.0, 1.0, (p,), np.float32),
        }
        if self.config.include_adjacency:
            spaces["adj"] = gym.spaces.Box(0.0, 1.0, (p, p), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Discrete(p)
        self._topology = TopologyCache(max_entries=64)
        self.network: Network | None = None
        self.outcomes: list[StepOutcome] = []
        self._graph: GraphInputs | None = None

    # --- episode lifecycle -------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        cfg = self.config
        scenario = cfg.scenario
        if scenario == "mixed":
            scenario = "melbourne" if rng.random() < cfg.melbourne_share else "synthetic"
        if self._fixed_network is not None:
            self.network = self._fixed_network
        elif scenario == "melbourne":
            self.network = melbourne_network(rng)
        elif scenario == "synthetic":
            self.network = synthetic_network(
                int(rng.integers(cfg.min_nodes, cfg.max_nodes + 1)), rng)
        else:
            raise ValueError(f"EnvConfig.scenario={cfg.scenario!r}: "
                             "use 'synthetic', 'melbourne' or 'mixed'")
        net = self.network
        if net.n > self.pad_to:
            raise ValueError(f"network of {net.n} nodes exceeds pad_to={self.pad_to}")
        n = net.n
        self._edges = net.links
        self._paths: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        offline = rng.random(n) < cfg.offline_share
        offline[net.sources] = False
        offline[net.node_type == 2] = False  # keep the clouds up: always somewhere to go
        self._offline = offline
        mean = rng.uniform(0.05, 0.6, n)
        self._nodes = _NodeState(
            free_at_ms=np.zeros(n),
            bg_cpu=mean.copy(),
            bg_cpu_mean=mean,
            bg_mem=rng.uniform(0.1, 0.6, n),
            finishes=[deque() for _ in range(n)],
        )
        tier = np.isin(net.node_type, (0, 1))
        nominal = np.array([PROFILES[t].capacity_gcps for t in net.node_type])
        self._base_rate_per_ms = cfg.load * nominal[tier].sum() / MEAN_TASK_GCYCLES / 1000.0
        self._burst = False
        self._now_ms = 0.0
        self._count = 0
        self.outcomes = []
        self._task = self._sample_task()
        self._graph = None
        # per-node speeds learned from completions, through the service's estimator;
        # each completion is "fed back" when it finishes, not when it is placed
        self.speeds = LocalSpeeds()
        self._feedback: list[tuple[float, int, float]] = []  # (finish_ms, node, ratio)
        return self._observation(), {}

    def step(self, action: int
             ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        outcome = self._place(int(action))
        self.outcomes.append(outcome)
        self._count += 1
        truncated = self._count >= self.config.tasks_per_episode
        self._advance()
        self._task = self._sample_task()
        self._graph = None  # a new decision
        return self._observation(), outcome.reward, False, truncated, {"outcome": outcome}

    # --- what a policy sees --------------------------------------------------------------
    def node_fields(self) -> np.ndarray:
        """[N, 7] node fields (``NODE_FIELDS`` order) seen from the current task's source."""
        net, st = self.network, self._nodes
        assert net is not None
        latency, bandwidth, _ = self._path(self._task.source)
        queue = np.array([len(q) for q in st.finishes], dtype=np.float32)
        held = np.array([sum(m for _, m in q) for q in st.finishes])
        mem_cap = np.array([PROFILES[t].memory_mb for t in net.node_type])
        mem_util = np.clip(st.bg_mem + held / mem_cap, 0.0, 1.0)
        energy = net.busy_power_w / net.capacity_gcps
        bw = np.where(self._offline, 0.0, bandwidth)
        lat = np.where(np.isfinite(latency), latency, 0.0)
        cols = [st.bg_cpu, mem_util, energy, lat, bw, queue, net.node_type]
        return np.stack(cols, axis=1).astype(np.float32)

    def task_vector(self) -> np.ndarray:
        vector: np.ndarray = self._task.vector.copy()
        return vector

    def graph(self) -> GraphInputs:
        """The current decision as unpadded model inputs (built once per decision: the
        agent, the oracle, the placement and the observation all read it)."""
        if self._graph is not None:
            return self._graph
        self._graph = self._build_graph()
        return self._graph

    def learned_speeds(self) -> np.ndarray:
        """[N] each node's speed learned so far (1.0 before any of its tasks finished),
        by ``edge_allocator.speeds`` from completions fed back as they finish."""
        assert self.network is not None
        ids = [str(i) for i in range(self.network.n)]
        speed = self.speeds.speeds(ids, self._now_ms / 1000.0)
        return np.ones(self.network.n) if speed is None else speed

    def feedback_heard(self) -> bool:
        """Whether the features of this decision carry any learned speed: with
        ``observed_speed`` on and some node heard from. The service's counterpart is a
        state none of whose node ids has an estimate (``NodeSpeeds.speeds`` is None), what
        ``models.<name>.feedback_version`` routes on (``train.agents.GatedAgent``)."""
        if not self.config.observed_speed:
            return False
        assert self.network is not None
        ids = [str(i) for i in range(self.network.n)]
        return self.speeds.speeds(ids, self._now_ms / 1000.0) is not None

    def _build_graph(self) -> GraphInputs:
        assert self.network is not None
        nodes, task = self.node_fields(), self._task.vector
        adj = self._topology.get(self.network.n, self._edges)
        limits = nominal_limits(nodes[:, NODE_TYPE_COLUMN])
        if self.config.observed_speed:
            limits[:, SPEED] = applied_speeds(self.learned_speeds(),
                                              self.config.speed_apply_beyond)
        return GraphInputs(features(nodes, task, limits), adj,
                           feasible_mask(nodes, task, limits))

    def action_masks(self) -> np.ndarray:
        mask = np.zeros(self.pad_to, dtype=bool)
        m = self.graph().mask
        mask[: m.shape[0]] = m
        return mask

    def request_json(self) -> dict[str, Any]:
        """The current decision as a /v1/allocate request body."""
        nodes = self.node_fields()
        return {
            "nodes": [
                {"node_id": f"n{i}", **{f: (int(v) if f in ("node_type",) else float(v))
                                        for f, v in zip(NODE_FIELDS, row)}}
                for i, row in enumerate(nodes)
            ],
            "edges": self._edges.tolist(),
            "task": dict(zip(TASK_FIELDS, map(float, self._task.vector))),
        }

    # --- internals -------------------------------------------------------------------------
    def _observation(self) -> dict[str, np.ndarray]:
        g = self.graph()
        n, p = g.x.shape[0], self.pad_to
        x = np.zeros((p, NUM_FEATURES), np.float32)
        mask = np.zeros(p, np.float32)
        x[:n], mask[:n] = g.x, g.mask
        obs = {"x": x, "mask": mask}
        if self.config.include_adjacency:
            adj = np.zeros((p, p), np.float32)
            adj[:n, :n] = g.adj
            obs["adj"] = adj
        return obs

    def _path(self, src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if src not in self._paths:
            assert self.network is not None
            self._paths[src] = self.network.paths_from(src)
        return self._paths[src]

    def _sample_task(self) -> _Task:
        rng = self.np_random
        net = self.network
        assert net is not None
        src = int(rng.choice(net.sources, p=net.source_weights))
        compute = float(np.clip(rng.lognormal(np.log(MEAN_TASK_GCYCLES) - 0.18, 0.6), 0.05, 20))
        memory = float(rng.uniform(64, 1536))
        data = float(np.clip(rng.lognormal(np.log(1.5), 0.8), 0.01, 50))
        deadline = float(rng.uniform(300, 3000))
        return _Task(src, np.array([compute, memory, data, deadline], dtype=np.float32))

    def oracle_rewards(self) -> np.ndarray:
        """[N] reward of placing the current task on each node, without placing it.

        Uses the hidden state (real capacity, exact backlog): the one-step oracle the
        lookahead expert is built on, never an input to a served policy.
        """
        return self._outcomes_all()["reward"]

    def outcome_of(self, i: int) -> StepOutcome:
        """What placing the current task on node ``i`` would cost, without placing it."""
        o = self._outcomes_all()
        if i < 0 or i >= o["reward"].shape[0] or o["dropped"][i]:
            deadline = float(self._task.vector[3])
            reward = -(MISS_PENALTY + DROP_DEADLINE_FACTOR * deadline / 1000.0)
            return StepOutcome(0.0, 0.0, 0.0, 0.0, 0.0, True, True, reward)
        completion, transfer, wait, exec_ms, energy = (float(o[k][i]) for k in _NUMERIC)
        return StepOutcome(completion, transfer, wait, exec_ms, energy, bool(o["missed"][i]),
                           False, float(o["reward"][i]))

    def _outcomes_all(self) -> dict[str, np.ndarray]:
        net, st, task = self.network, self._nodes, self._task
        assert net is not None
        compute, _, data, deadline = (float(v) for v in task.vector)
        latency, bandwidth, hops = self._path(task.source)
        with np.errstate(divide="ignore", invalid="ignore"):
            transfer = latency + data * 8.0 * 1000.0 / bandwidth
        transfer[task.source] = 0.0
        ready = self._now_ms + transfer
        start = np.maximum(ready, st.free_at_ms)
        speed = net.capacity_gcps * np.maximum(1.0 - st.bg_cpu, 0.05)
        exec_ms = compute / speed * 1000.0
        completion = start + exec_ms - self._now_ms
        energy = compute * net.busy_power_w / net.capacity_gcps
        energy = energy + data * TRANSFER_J_PER_MB * hops
        missed = completion > deadline
        reward = -(completion / 1000.0 + ENERGY_WEIGHT * energy + MISS_PENALTY * missed)
        dropped = ~self.graph().mask
        reward = np.where(dropped, -(MISS_PENALTY + DROP_DEADLINE_FACTOR * deadline / 1000.0),
                          reward)
        return {
            "completion_ms": completion, "transfer_ms": transfer, "wait_ms": start - ready,
            "exec_ms": exec_ms, "energy_j": energy, "missed": missed, "dropped": dropped,
            "reward": reward,
        }

    def _place(self, i: int) -> StepOutcome:
        outcome = self.outcome_of(i)
        if not outcome.dropped:
            finish = self._now_ms + outcome.completion_ms
            self._nodes.free_at_ms[i] = finish
            self._nodes.finishes[i].append((finish, float(self._task.vector[1])))
            self._expect_feedback(i, finish, outcome.completion_ms)
        return outcome

    def _expect_feedback(self, i: int, finish_ms: float, completion_ms: float) -> None:
        """What the service's feedback path computes: realised completion against the
        features' prediction at speed 1 (the decision log's expected_ms, transfer_ms)."""
        nodes, task = self.node_fields()[i:i + 1], self._task.vector
        x = features(nodes, task, nominal_limits(nodes[:, NODE_TYPE_COLUMN]))[0]
        ratio = observed_ratio(completion_ms, float(x[FEATURE_INDEX["est_transfer_ms"]]),
                               float(x[FEATURE_INDEX["est_wait_ms"]]
                                     + x[FEATURE_INDEX["est_exec_ms"]]))
        if ratio is not None:
            heapq.heappush(self._feedback, (finish_ms, i, ratio))

    def _deliver_feedback(self) -> None:
        while self._feedback and self._feedback[0][0] <= self._now_ms:
            finish_ms, i, ratio = heapq.heappop(self._feedback)
            self.speeds.observe(str(i), ratio, finish_ms / 1000.0)

    def _advance(self) -> None:
        cfg, st, rng = self.config, self._nodes, self.np_random
        if self._burst and rng.random() < cfg.burst_end_p:
            self._burst = False
        elif not self._burst and rng.random() < cfg.burst_start_p:
            self._burst = True
        rate = self._base_rate_per_ms * (cfg.burst_factor if self._burst else 1.0)
        self._now_ms += float(rng.exponential(1.0 / rate))
        self._deliver_feedback()
        for q in st.finishes:
            while q and q[0][0] <= self._now_ms:
                q.popleft()
        n = st.bg_cpu.shape[0]
        st.bg_cpu = np.clip(
            st.bg_cpu + 0.05 * (st.bg_cpu_mean - st.bg_cpu) + rng.normal(0, 0.02, n), 0.0, 0.95
        )
        st.bg_mem = np.clip(st.bg_mem + rng.normal(0, 0.01, n), 0.05, 0.9)
