"""Train one policy end to end: demonstrations -> behaviour cloning -> RL fine-tuning ->
validation -> versioned artifact with its evaluation in the manifest.

Why this order: PPO from scratch on a flat 1,920-input MLP does not learn in a CPU-sized
budget, and even the GNN learns faster from an expert. Behaviour cloning from the
one-step oracle gives every model a strong start; RL (SB3 DQN / sb3-contrib MaskablePPO)
then optimises the true discounted episode reward. The fine-tuned weights are kept only
if they score better than the cloned ones on validation seeds, and both scores are
recorded.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_allocator.policies import build_policy
from edge_allocator.policies.heuristics import all_heuristics
from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig
from edge_allocator.train.agents import OracleAgent, TorchAgent
from edge_allocator.train.bc import BCConfig, train_bc
from edge_allocator.train.demos import Demonstrations, collect
from edge_allocator.train.evaluate import (
    AgentResult,
    EvalScenario,
    default_scenarios,
    evaluate,
    to_json,
    to_markdown,
)
from edge_allocator.runtime.export import save_artifact

VALIDATION_SEED_BASE = 500_000
FLAT_PAD = 128


@dataclass
class TrainConfig:
    """Everything that determines a shipped model; recorded in its manifest."""

    kind: str = "hybrid"
    """'hybrid', 'ppo' or 'dqn'."""
    seed: int = 0
    """Seeds demonstrations, weights and RL."""
    architecture: dict[str, Any] = field(default_factory=dict)
    """Overrides of HybridConfig / MLPConfig fields."""
    demo_episodes: int = 120
    """Episodes of expert-labelled decisions (200 decisions each)."""
    dagger_episodes: int = 40
    """Extra episodes where the cloned learner acts half the time (DAgger round)."""
    bc: BCConfig = field(default_factory=BCConfig)
    rl_steps: int = 8192
    """RL fine-tuning steps (0 skips RL)."""
    rl_lr: float = 1e-4
    """RL learning rate: small, so fine-tuning refines rather than forgets."""
    gamma: float = 0.9
    """Discount over decisions."""
    validation_episodes: int = 6
    """Episodes per validation scenario used to choose cloned vs fine-tuned weights."""
    eval_episodes: int = 10
    """Held-out episodes per evaluation scenario recorded in the manifest (0 skips)."""
    threads: int = 1
    """torch threads (1 is fastest on a shared 2-core machine)."""
    expert: str = "oracle"
    """Who labels the demonstrations: 'oracle' (one-step, cheap) or 'lookahead' (the
    planner; tens of ms a decision, so use it with ``--pipeline`` on Ray)."""
    resumable: bool = False
    """Checkpoint the supervised stages every epoch under out_dir/checkpoints; a killed
    run started again with the same settings resumes where it stopped. (On Ray, Ray
    Train checkpoints every epoch regardless.)"""
    models_dir: Path = Path("models")
    out_dir: Path = Path("runs")


@dataclass
class RayScale:
    """``train --pipeline``: where each stage runs on the Ray instance the caller
    started (local or a cluster). Demonstrations: ``workers`` Ray tasks. Behaviour
    cloning: Ray Train with ``workers`` DDP (or FSDP) workers. RL fine-tuning: a Ray Tune
    grid over ``sweep_seeds`` x ``sweep_lrs`` from the cloned weights, the best trial
    kept only if it beats the cloned policy on validation."""

    workers: int = 2
    strategy: str = "ddp"
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    sweep_seeds: list[int] = field(default_factory=lambda: [0, 1])
    sweep_lrs: list[float] = field(default_factory=lambda: [3e-5, 1e-4])


def env_config(kind: str) -> EnvConfig:
    """Training distribution: synthetic 10-50 nodes mixed with Melbourne."""
    return EnvConfig("mixed", pad_to=FLAT_PAD, include_adjacency=(kind == "hybrid"))


def _pad(kind: str) -> int | None:
    return None if kind == "hybrid" else FLAT_PAD


def _run_name(cfg: TrainConfig, stage: str) -> str:
    """Stable per (settings, stage): a rerun of the same command resumes its Ray Train
    checkpoints, while changed settings never resume someone else's."""
    digest = hashlib.sha256(json.dumps(asdict(cfg), default=str, sort_keys=True).encode())
    return f"{cfg.kind}-seed{cfg.seed}-{stage}-{digest.hexdigest()[:8]}"


def _rl_finetune(module: nn.Module, cfg: TrainConfig,
                 progress: bool = True) -> tuple[nn.Module, float]:
    """``progress=False`` silences SB3's progress bar (Tune trials log to files, where a
    redrawn bar is only noise)."""
    from edge_allocator.train.sb3_adapter import make_dqn, make_ppo, trained_module

    env = EdgeAllocationEnv(env_config(cfg.kind))
    start = time.perf_counter()
    if cfg.kind == "dqn":
        model = make_dqn(
            module, env, learning_rate=cfg.rl_lr, buffer_size=20_000, learning_starts=500,
            gamma=cfg.gamma, exploration_initial_eps=0.1, exploration_final_eps=0.02,
            exploration_fraction=0.5, target_update_interval=1000, batch_size=64, seed=cfg.seed,
        )
    else:
        model = make_ppo(
            module, env, learning_rate=cfg.rl_lr, n_steps=1024, batch_size=128, n_epochs=4,
            gamma=cfg.gamma, ent_coef=0.001, clip_range=0.1, seed=cfg.seed,
        )
    model.learn(cfg.rl_steps, progress_bar=progress)
    return trained_module(model).eval(), time.perf_counter() - start


def _validate(module: nn.Module, kind: str, episodes: int) -> float:
    """Mean episode reward over validation seeds of synthetic and Melbourne."""
    scen = [s for s in default_scenarios() if s.name in ("synthetic-10to50", "melbourne")]
    res = evaluate({"m": lambda e, n: TorchAgent("m", module, _pad(kind))}, scen,
                   episodes=episodes, seed_base=VALIDATION_SEED_BASE, progress=False)
    return float(np.mean([r.metrics["episode_reward"].mean for r in res]))


def model_agents(modules: dict[str, tuple[nn.Module, str]]) -> dict[str, Any]:
    """Evaluation factories for learned modules; flat ones sit out networks too large."""
    def factory(name: str, module: nn.Module, pad: int | None) -> Any:
        return lambda env, n: None if pad and n > pad else TorchAgent(name, module, pad)

    return {name: factory(name, m, _pad(kind)) for name, (m, kind) in modules.items()}


def baseline_agents() -> dict[str, Any]:
    def factory(index: int) -> Any:
        return lambda env, n: all_heuristics()[index]  # fresh state (round-robin, rng) per run

    agents: dict[str, Any] = {h.name: factory(i) for i, h in enumerate(all_heuristics())}
    agents["oracle_greedy"] = lambda env, n: OracleAgent(env)
    return agents


def train(cfg: TrainConfig, scenarios: list[EvalScenario] | None = None,
          scale: RayScale | None = None) -> Path:
    """Run the whole pipeline for ``cfg.kind``; returns the artifact folder. With
    ``scale`` every stage runs on Ray (the caller has started or joined it)."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    env_cfg = env_config(cfg.kind)
    module = build_policy(cfg.kind, cfg.architecture)
    bc_cfg = dataclasses.replace(cfg.bc, pad_to=_pad(cfg.kind), seed=cfg.seed)
    ckpt = cfg.out_dir / "checkpoints" / f"{cfg.kind}-seed{cfg.seed}" if cfg.resumable else None
    stages = _Stages(cfg, scale)
    demos = stages.collect(env_cfg, cfg.demo_episodes, cfg.seed * 10_000, None)
    curve = stages.clone(module, demos, dataclasses.replace(
        bc_cfg, checkpoint=ckpt / "bc.pt" if ckpt else None), "bc")
    if cfg.dagger_episodes:
        more = stages.collect(env_cfg, cfg.dagger_episodes, cfg.seed * 10_000 + 5_000, module)
        demos.extend(more)
        curve += stages.clone(module, demos, dataclasses.replace(
            bc_cfg, checkpoint=ckpt / "dagger.pt" if ckpt else None), "dagger")
    bc_score = _validate(module, cfg.kind, cfg.validation_episodes)
    chosen, rl_score, rl_seconds, sweep = "bc", None, 0.0, None
    if cfg.rl_steps:
        tuned, rl_score, rl_seconds, sweep = stages.finetune(module, bc_score)
        if rl_score > bc_score:
            module, chosen = tuned, "bc+rl"
            if sweep is not None:
                chosen += f" (seed {sweep.best['seed']}, lr {sweep.best['rl_lr']:g})"
    rl_text = "not run" if rl_score is None else f"{rl_score:.1f}"
    print(f"{cfg.kind}: validation reward bc={bc_score:.1f} bc+rl={rl_text} -> keep {chosen}")
    evaluation: list[AgentResult] = []
    if cfg.eval_episodes:
        agents = {**baseline_agents(), **model_agents({cfg.kind: (module, cfg.kind)})}
        evaluation = evaluate(agents, scenarios or default_scenarios(), cfg.eval_episodes)
        print(to_markdown(evaluation))
    arch = {**module.config.to_dict()}  # type: ignore[attr-defined]
    training = {
        "pipeline": f"demonstrations({cfg.expert}) -> behaviour cloning -> DAgger -> RL "
                    f"fine-tune" + (" (Ray tasks, Ray Train, Ray Tune)" if scale else ""),
        "ray": asdict(scale) if scale else None,
        "rl_sweep": sweep.to_json() if sweep else None,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "environment": {k: v for k, v in asdict(env_cfg).items()},
        "decisions": len(demos),
        "bc_loss_curve": curve,
        "validation_reward": {"bc": bc_score, "bc+rl": rl_score, "kept": chosen},
        "rl_seconds": rl_seconds,
        "wall_seconds": time.perf_counter() - t0,
    }
    path = save_artifact(module, cfg.kind, arch, cfg.models_dir, training=training,
                         evaluation=to_json(evaluation))
    run_dir = _plot_curve(curve, cfg, path)
    if sweep is not None:
        sweep.plot(run_dir / "rl_sweep.png")
        (run_dir / "rl_sweep.md").write_text(sweep.to_markdown())
        print(sweep.to_markdown())
    if evaluation:
        from edge_allocator.train.evaluate import write_report

        write_report(evaluation, run_dir)
    print(f"wrote {path} (plots and tables in {run_dir})")
    return path


class _Stages:
    """The three stages that change place with ``scale``: in this process, or on Ray."""

    def __init__(self, cfg: TrainConfig, scale: RayScale | None):
        self.cfg, self.scale = cfg, scale

    def collect(self, env_cfg: EnvConfig, episodes: int, seed: int,
                learner: nn.Module | None) -> Demonstrations:
        kind, pad = self.cfg.kind, _pad(self.cfg.kind)
        if self.scale is None:
            agent = TorchAgent(kind, learner, pad) if learner is not None else None
            return collect(env_cfg, episodes, seed=seed, learner=agent, expert=self.cfg.expert)
        from edge_allocator.train.distributed import collect_on_ray

        spec = None
        if learner is not None:
            spec = (kind, learner.config.to_dict(),  # type: ignore[attr-defined]
                    {k: v.detach().cpu() for k, v in learner.state_dict().items()})
        return collect_on_ray(env_cfg, episodes, seed, expert=self.cfg.expert,
                              parts=self.scale.workers, learner=spec, pad_to=pad,
                              cpus_per_part=self.scale.cpus_per_worker)

    def clone(self, module: nn.Module, demos: Demonstrations, bc_cfg: BCConfig,
              stage: str) -> list[float]:
        if self.scale is None:
            return train_bc(module, self.cfg.kind, demos, bc_cfg)
        from edge_allocator.train.distributed import DistributedConfig, train_bc_distributed

        dist = DistributedConfig(
            num_workers=self.scale.workers, strategy=self.scale.strategy,
            use_gpu=self.scale.use_gpu, cpus_per_worker=self.scale.cpus_per_worker,
            storage_path=self.cfg.out_dir / "ray-train", name=_run_name(self.cfg, stage))
        return train_bc_distributed(module, self.cfg.kind, demos, bc_cfg, dist)

    def finetune(self, module: nn.Module, start_reward: float
                 ) -> tuple[nn.Module, float, float, Any]:
        """RL from the cloned weights: (fine-tuned copy, its validation reward, RL
        seconds, the sweep's results or None). One run here; on Ray a Tune grid whose
        best trial is returned."""
        cfg = self.cfg
        if self.scale is None:
            tuned, seconds = _rl_finetune(copy.deepcopy(module), cfg)
            return tuned, _validate(tuned, cfg.kind, cfg.validation_episodes), seconds, None
        from edge_allocator.train.sweep import SweepConfig, run_sweep

        sweep = run_sweep(module.state_dict(), module.config.to_dict(),  # type: ignore[attr-defined]
                          SweepConfig(kind=cfg.kind, seeds=self.scale.sweep_seeds,
                                      rl_lrs=self.scale.sweep_lrs, rl_steps=cfg.rl_steps,
                                      validation_episodes=cfg.validation_episodes,
                                      cpus_per_trial=self.scale.cpus_per_worker,
                                      storage_path=cfg.out_dir / "tune",
                                      name=_run_name(cfg, "rl-sweep")),
                          start_reward=start_reward)
        tuned = copy.deepcopy(module)
        tuned.load_state_dict(sweep.best_state)
        return tuned, sweep.best["validation_reward"], sweep.best["rl_seconds"], sweep


def _plot_curve(curve: list[float], cfg: TrainConfig, artifact: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = cfg.out_dir / f"{cfg.kind}-v{artifact.name}"
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, len(curve) + 1), curve, marker="o")
    ax.set_xlabel("behaviour-cloning epoch (DAgger round continues the count)")
    ax.set_ylabel("loss")
    ax.set_title(f"{cfg.kind} training curve")
    fig.tight_layout()
    fig.savefig(out / "training_curve.png", dpi=110)
    plt.close(fig)
    (out / "curve.json").write_text(json.dumps(curve))
    return out
