"""Behaviour cloning on Ray Train: the epoch loop of :mod:`bc` in ``num_workers``
TorchTrainer workers, each on a disjoint share of the demonstrations, gradients averaged
by DistributedDataParallel (or sharded by FSDP on GPUs).

Why Ray Train and not torchrun: the same Ray cluster that serves the models trains them,
a laptop runs it on ``ray.init(address="local")`` and a cluster unchanged, and Ray Train
restarts failed workers from the last reported checkpoint. The caller owns the Ray
instance (it starts or connects to it); nothing here calls ``ray.init``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from edge_allocator.policies import architecture, build_policy
from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig
from edge_allocator.train.agents import AgentFactory, TorchAgent
from edge_allocator.train.bc import (
    BCConfig,
    Trainer,
    fit_normalizer,
    make_loader,
    set_gradient_checkpointing,
)
from edge_allocator.train.demos import Demonstrations, collect
from edge_allocator.train.evaluate import (
    EVAL_SEED_BASE,
    AgentResult,
    EpisodeMetrics,
    EvalScenario,
    run_episode,
    summarise,
)

STRATEGIES = ("ddp", "fsdp")
STATE_FILE = "state.pt"


@dataclass
class DistributedConfig:
    num_workers: int = 2
    """Training processes (one per GPU with ``use_gpu``)."""
    strategy: str = "ddp"
    """'ddp' (replicated weights, averaged gradients; CPU or GPU) or 'fsdp' (sharded
    weights and optimiser state; GPUs only, as Ray Train's prepare_model requires)."""
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    storage_path: Path = Path("runs/ray-train")
    """Where Ray Train keeps checkpoints; must be shared storage on a multi-node cluster."""
    name: str = "bc"
    """Run name: a new TorchTrainer with the same (storage_path, name) resumes from the
    run's last checkpoint instead of starting over."""
    max_failures: int = 1
    """Worker failures Ray Train recovers from (restarting from the last checkpoint)."""

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"DistributedConfig.strategy={self.strategy!r}; "
                             f"use one of {STRATEGIES}")
        if self.strategy == "fsdp" and not self.use_gpu:
            raise ValueError("DistributedConfig.strategy='fsdp' needs use_gpu=True (Ray Train "
                             "wraps FSDP on GPUs only); use 'ddp' on CPUs")
        if self.num_workers < 1:
            raise ValueError(f"DistributedConfig.num_workers={self.num_workers}; use 1 or more")


class LearnerSpec(NamedTuple):
    """A policy as plain data, to rebuild in a Ray task (see :func:`collect_on_ray`)."""

    kind: str
    architecture: dict[str, object]
    """What :func:`edge_allocator.policies.build_policy` takes."""
    state: dict[str, torch.Tensor]
    """CPU weights."""

    @classmethod
    def of(cls, kind: str, module: nn.Module) -> LearnerSpec:
        return cls(kind, architecture(module),
                   {k: v.detach().cpu() for k, v in module.state_dict().items()})


class RayEvaluation(NamedTuple):
    """What :func:`evaluate_on_ray` returns."""

    results: list[AgentResult]
    """As :func:`edge_allocator.train.evaluate.evaluate` returns them."""
    cpu_s_per_decision: dict[tuple[str, str], float]
    """(scenario, agent) -> mean CPU seconds per decision, measured inside the tasks."""


def collect_on_ray(config: EnvConfig, episodes: int, seed: int, *, expert: str = "oracle",
                   parts: int = 2, learner: LearnerSpec | None = None,
                   pad_to: int | None = None, cpus_per_part: float = 1.0,
                   expert_share: float = 0.5) -> Demonstrations:
    """:func:`demos.collect` split into ``parts`` Ray tasks of consecutive episodes (the
    lookahead expert costs tens of ms a decision). ``learner``: the policy that acts in
    a DAgger round. Deterministic for a given ``parts``; the episodes' seeds are the same
    as a serial ``collect`` with the same ``seed``."""
    import ray

    @ray.remote(num_cpus=cpus_per_part)
    def part(first: int, count: int) -> Demonstrations:
        torch.set_num_threads(1)
        agent = None
        if learner is not None:
            kind, arch, state = learner
            module = build_policy(kind, arch)
            module.load_state_dict(state)
            agent = TorchAgent(kind, module, pad_to)
        return collect(config, count, seed + first, learner=agent, expert=expert,
                       expert_share=expert_share, progress=False)

    refs = [part.remote(lo, hi - lo) for lo, hi in _split(episodes, parts)]
    out = Demonstrations()
    for d in _progress(refs, f"demonstrations ({expert}, {len(refs)} Ray tasks)"):
        out.extend(d)
    return out


def _progress(refs: list[Any], desc: str) -> list[Demonstrations]:
    """Results in submission order (deterministic), with a bar that moves as parts end."""
    import ray
    from tqdm import tqdm

    pending = list(refs)
    with tqdm(total=len(refs), desc=desc) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
    return ray.get(refs)


def train_bc_distributed(module: nn.Module, kind: str, demos: Demonstrations, cfg: BCConfig,
                         dist: DistributedConfig) -> list[float]:
    """Train ``module`` in place on Ray Train; returns the per-epoch loss curve (mean
    over workers). ``cfg.batch_size`` is the global batch (each worker takes its share).
    ``cfg.checkpoint`` is ignored: Ray Train checkpoints every epoch under
    ``dist.storage_path / dist.name``."""
    cfg.validate(kind)
    dist.validate()
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    torch.manual_seed(cfg.seed)
    fit_normalizer(module, demos)  # once, on all the data; workers start from these weights
    loop_config = {
        "kind": kind,
        "architecture": architecture(module),
        "initial_state": {k: v.cpu() for k, v in module.state_dict().items()},
        "demos": ray.put(demos),  # once in the object store, not copied per worker
        "bc": dataclasses.replace(cfg, checkpoint=None),
        "strategy": dist.strategy,
    }
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=dist.num_workers, use_gpu=dist.use_gpu,
                                     resources_per_worker={"CPU": dist.cpus_per_worker}),
        run_config=RunConfig(name=dist.name, storage_path=str(Path(dist.storage_path).resolve()),
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=dist.max_failures)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {dist.name!r} reported no checkpoint: {result.error}")
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
    module.load_state_dict(state["model"])
    module.eval()
    return list(state["curve"])


def _train_loop(config: dict[str, Any]) -> None:
    """Runs in every worker. Rank r trains on its share; every epoch all ranks report
    the mean loss and rank 0 the checkpoint."""
    import ray
    import ray.train
    import ray.train.torch

    torch.set_num_threads(1)  # one core per worker; more threads fight over a shared machine
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # batch_size is the global batch: each of the N workers takes 1/N of it and DDP
    # averages their gradients, so a step sees as many decisions, and an epoch has as
    # many steps, as in one process (the learning rate and schedule carry over)
    cfg: BCConfig = dataclasses.replace(config["bc"],
                                        batch_size=max(1, config["bc"].batch_size // world))
    demos = ray.get(config["demos"])  # an ObjectRef: put once by the driver
    module = build_policy(config["kind"], config["architecture"])
    module.load_state_dict(config["initial_state"])
    set_gradient_checkpointing(module, cfg.grad_checkpointing)
    # the value head has no part in the supervised loss (it is RL's), so DDP must not
    # wait for its gradients
    kwargs = {"find_unused_parameters": True} if config["strategy"] == "ddp" else {}
    model = ray.train.torch.prepare_model(module, parallel_strategy=config["strategy"],
                                          parallel_strategy_kwargs=kwargs)
    loader, sampler = make_loader(demos, cfg, rank=rank, world_size=world)
    trainer = Trainer.create(model, config["kind"], cfg, len(loader),
                             ray.train.torch.get_device())
    start = 0
    curve: list[float] = []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # a restarted worker, or a rerun of the same run name
        with checkpoint.as_directory() as d:
            start, curve = trainer.load(torch.load(Path(d) / STATE_FILE, map_location="cpu",
                                                   weights_only=True))
    model.train()
    for epoch in range(start, cfg.epochs):
        sampler.set_epoch(epoch)
        loss = torch.tensor([trainer.run_epoch(loader)])
        if world > 1:
            torch.distributed.all_reduce(loss)
        curve.append(float(loss) / world)
        state = trainer.state(epoch + 1, curve)  # every rank: FSDP gathers shards here
        metrics = {"epoch": epoch + 1, "loss": curve[-1]}
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                torch.save(state, Path(d) / STATE_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics)


def evaluate_on_ray(agents: dict[str, AgentFactory], scenarios: Sequence[EvalScenario],
                    episodes: int, parts: int = 2, seed_base: int | None = None,
                    cpus_per_part: float = 1.0) -> RayEvaluation:
    """:func:`evaluate.evaluate` with each (scenario, agent)'s episodes split over
    ``parts`` Ray tasks: the same seeds, so the same numbers, in less wall time for slow
    agents such as the lookahead planner. Also returns the mean CPU seconds per decision
    of each (scenario, agent), measured inside the tasks."""
    import ray

    base = EVAL_SEED_BASE if seed_base is None else seed_base

    @ray.remote(num_cpus=cpus_per_part)
    def run(sc: EvalScenario, factory: AgentFactory,
            seeds: list[int]) -> tuple[list[EpisodeMetrics], float, int]:
        import time

        torch.set_num_threads(1)
        env = EdgeAllocationEnv(sc.config)
        agent = factory(env, max(sc.config.max_nodes, env.pad_to))
        if agent is None:
            return [], 0.0, 0
        t0 = time.process_time()
        rows = [run_episode(env, agent, s) for s in seeds]
        return rows, time.process_time() - t0, len(seeds) * sc.config.tasks_per_episode

    jobs: list[tuple[EvalScenario, str, list[Any]]] = []
    for sc in scenarios:
        for name, factory in agents.items():
            refs = [run.remote(sc, factory, list(range(base + lo, base + hi)))
                    for lo, hi in _split(episodes, parts)]
            jobs.append((sc, name, refs))
    results: list[AgentResult] = []
    cost: dict[tuple[str, str], float] = {}
    from tqdm import tqdm

    for sc, name, refs in tqdm(jobs, desc="evaluate on Ray"):
        parts_out = ray.get(refs)
        rows = [r for part_rows, _, _ in parts_out for r in part_rows]
        if not rows:
            continue
        cpu = sum(p[1] for p in parts_out)
        decisions = sum(p[2] for p in parts_out)
        cost[(sc.name, name)] = cpu / decisions
        results.append(summarise(sc.name, name, rows))
    return RayEvaluation(results, cost)


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of consecutive items, as equal as possible, none empty."""
    bounds = [round(k * n / parts) for k in range(parts + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
