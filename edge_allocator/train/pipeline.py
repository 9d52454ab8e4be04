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
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from edge_allocator.policies import architecture, build_policy
from edge_allocator.runtime.export import save_artifact
from edge_allocator.sim.env import EnvConfig
from edge_allocator.train.agents import TorchAgent, baseline_agents, model_agents, pad_for
from edge_allocator.train.bc import BCConfig, train_bc
from edge_allocator.train.demos import Demonstrations, collect
from edge_allocator.train.evaluate import (
    AgentResult,
    EvalScenario,
    default_scenarios,
    evaluate,
    to_json,
    to_markdown,
    write_report,
)
from edge_allocator.train.finetune import RLConfig, env_config, rl_finetune, validation_reward

if TYPE_CHECKING:
    from edge_allocator.train.sweep import SweepResult


@dataclass
class TrainConfig:
    """Everything that determines a shipped model; recorded in its manifest."""

    kind: str = "hybrid"
    """'hybrid', 'ppo' or 'dqn'."""
    name: str | None = None
    """The artifact's name, ``models_dir/<name>/<version>/`` (default: ``kind``); e.g.
    'hybrid_gat' for a hybrid with GAT layers served as its own model."""
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
    """Discount over decisions (RL)."""
    validation_episodes: int = 6
    """Episodes per validation scenario used to choose cloned vs fine-tuned weights."""
    eval_episodes: int = 10
    """Held-out episodes per evaluation scenario recorded in the manifest (0 skips)."""
    threads: int = 1
    """torch threads (1 is fastest on a shared 2-core machine)."""
    expert: str = "oracle"
    """Who labels the demonstrations: 'oracle' (one-step, cheap) or 'lookahead' (the
    planner; tens of ms a decision, so use it with ``--pipeline`` on Ray)."""
    distill_from: Path | None = None
    """Knowledge distillation: an artifact folder (``models/hybrid/1``) of the same kind
    whose logits label every demonstration; it also acts in the first collection (so the
    student sees the states the teacher visits), and cloning minimises
    ``bc.distill_weight`` x KL to its softmax + the rest x CE to the expert's choice."""
    observed_speed: bool = False
    """Train, validate and evaluate on the closed-loop environment
    (``EnvConfig.observed_speed``): each node's speed learned from earlier completions
    scales its features, as the service does from /v1/feedback. Recorded in the
    manifest (``training.observed_speed``)."""
    cold_share: float = 0.0
    """With ``observed_speed``: this share of the demonstration and DAgger episodes is
    collected with no feedback (every speed 1.0: the service before any /v1/feedback
    has arrived), so the policy also learns the cold start it is served in first.
    Recorded in the manifest (``training.cold_share``)."""
    candidate: bool = False
    """Mark the artifact a candidate (``training.candidate``): shipped, served when its
    version is pinned or in shadow, never picked as the model's default version."""
    resumable: bool = False
    """Checkpoint the supervised stages every epoch under out_dir/checkpoints; a killed
    run started again with the same settings resumes where it stopped. (On Ray, Ray
    Train checkpoints every epoch regardless.)"""
    models_dir: Path = Path("models")
    out_dir: Path = Path("runs")

    def __post_init__(self) -> None:
        if not 0.0 <= self.cold_share <= 1.0:
            raise ValueError(f"TrainConfig.cold_share={self.cold_share}: a share, 0 to 1")
        if self.cold_share and not self.observed_speed:
            raise ValueError("TrainConfig.cold_share needs observed_speed (without it every "
                             "episode is already a cold start)")

    def rl_config(self) -> RLConfig:
        """The RL stage's hyperparameters: this config's steps, lr, gamma and seed, and
        :class:`RLConfig`'s defaults for the rest."""
        return RLConfig(steps=self.rl_steps, lr=self.rl_lr, gamma=self.gamma, seed=self.seed,
                        observed_speed=self.observed_speed)


@dataclass
class RayScale:
    """``train --pipeline``: where each stage runs on the Ray instance the caller
    started (local or a cluster). Demonstrations: ``workers`` Ray tasks. Behaviour
    cloning: Ray Train with ``workers`` DDP (or FSDP) workers. RL fine-tuning: a Ray Tune
    grid over ``sweep_seeds`` x ``sweep_lrs`` x ``sweep_ent_coefs`` from the cloned
    weights, the best trial kept only if it beats the cloned policy on validation."""

    workers: int = 2
    strategy: str = "ddp"
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    sweep_seeds: list[int] = field(default_factory=lambda: [0, 1])
    sweep_lrs: list[float] = field(default_factory=lambda: [3e-5, 1e-4])
    sweep_ent_coefs: list[float] | None = None
    """PPO's entropy coefficients (a third grid axis); None: RLConfig's default alone."""


class Finetuned(NamedTuple):
    """The RL stage's outcome."""

    module: nn.Module
    """The fine-tuned copy (the cloned module is left as it was)."""
    reward: float
    """Its validation reward."""
    seconds: float
    """Wall time of RL (the best trial's, on Ray)."""
    sweep: SweepResult | None
    """The Ray Tune sweep's results; None when RL ran in this process."""


def _run_name(cfg: TrainConfig, stage: str) -> str:
    """Stable per (settings, stage): a rerun of the same command resumes its Ray Train
    checkpoints, while changed settings never resume someone else's."""
    digest = hashlib.sha256(json.dumps(asdict(cfg), default=str, sort_keys=True).encode())
    return f"{cfg.kind}-seed{cfg.seed}-{stage}-{digest.hexdigest()[:8]}"


def train(cfg: TrainConfig, scenarios: list[EvalScenario] | None = None,
          scale: RayScale | None = None) -> Path:
    """Run the whole pipeline for ``cfg.kind``; returns the artifact folder. With
    ``scale`` every stage runs on Ray (the caller has started or joined it)."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    env_cfg = env_config(cfg.kind, cfg.observed_speed)
    teacher = _teacher(cfg)
    module = build_policy(cfg.kind, cfg.architecture)
    bc_cfg = dataclasses.replace(cfg.bc, pad_to=pad_for(cfg.kind), seed=cfg.seed)
    ckpt = cfg.out_dir / "checkpoints" / f"{cfg.kind}-seed{cfg.seed}" if cfg.resumable else None
    stages = _Stages(cfg, scale)
    demos = stages.collect_mixed(env_cfg, cfg.demo_episodes, cfg.seed * 10_000,
                                 teacher.module if teacher else None)
    if teacher:
        teacher.label(demos)
    curve = stages.clone(module, demos, dataclasses.replace(
        bc_cfg, checkpoint=ckpt / "bc.pt" if ckpt else None), "bc")
    if cfg.dagger_episodes:
        more = stages.collect_mixed(env_cfg, cfg.dagger_episodes, cfg.seed * 10_000 + 5_000,
                                    module)
        if teacher:
            teacher.label(more)
        demos.extend(more)
        curve += stages.clone(module, demos, dataclasses.replace(
            bc_cfg, checkpoint=ckpt / "dagger.pt" if ckpt else None), "dagger")
    bc_score = validation_reward(module, cfg.kind, cfg.validation_episodes,
                                 cfg.observed_speed)
    chosen, rl_score, rl_seconds, sweep = "bc", None, 0.0, None
    if cfg.rl_steps:
        tuned, rl_score, rl_seconds, sweep = stages.finetune(module, bc_score)
        if rl_score > bc_score:
            module, chosen = tuned, "bc+rl"
            if sweep is not None:
                chosen += (f" (seed {sweep.best.seed}, lr {sweep.best.rl_lr:g}, "
                           f"ent_coef {sweep.best.ent_coef:g})")
    rl_text = "not run" if rl_score is None else f"{rl_score:.1f}"
    print(f"{cfg.kind}: validation reward bc={bc_score:.1f} bc+rl={rl_text} -> keep {chosen}")
    evaluation: list[AgentResult] = []
    if cfg.eval_episodes:
        agents = {**baseline_agents(), **model_agents({cfg.kind: (module, cfg.kind)})}
        evaluation = evaluate(agents, scenarios or default_scenarios(
            observed_speed=cfg.observed_speed), cfg.eval_episodes)
        print(to_markdown(evaluation))
    arch = architecture(module)
    training = {
        "pipeline": f"demonstrations({cfg.expert}) -> behaviour cloning -> DAgger -> RL "
                    f"fine-tune" + (" (Ray tasks, Ray Train, Ray Tune)" if scale else "")
                    + (" (distilled from a teacher)" if teacher else ""),
        "candidate": cfg.candidate,
        "observed_speed": cfg.observed_speed,
        "cold_share": cfg.cold_share,
        "features": ("closed loop: each node's capacity scaled by its speed learned from "
                     "earlier completions (edge_allocator.speeds), as /v1/feedback does"
                     if cfg.observed_speed else "nominal capacities (speed 1.0)"),
        "distillation": teacher.record(module, demos) if teacher else None,
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
    path = save_artifact(module, cfg.kind, arch, cfg.models_dir, name=cfg.name,
                         training=training,
                         evaluation=to_json(evaluation))
    run_dir = _plot_curve(curve, cfg, path)
    if sweep is not None:
        sweep.plot(run_dir / "rl_sweep.png")
        (run_dir / "rl_sweep.md").write_text(sweep.to_markdown())
        print(sweep.to_markdown())
    if evaluation:
        write_report(evaluation, run_dir)
    print(f"wrote {path} (plots and tables in {run_dir})")
    return path


class _Teacher(NamedTuple):
    """A distillation teacher: its module, and what the manifest records about it."""

    module: nn.Module
    artifact: Any

    def label(self, demos: Demonstrations) -> None:
        from edge_allocator.train.distill import label_with_teacher

        label_with_teacher(demos, self.module, pad_to=pad_for(self.artifact.kind))

    def record(self, student: nn.Module, demos: Demonstrations) -> dict[str, Any]:
        from edge_allocator.train.distill import agreement

        art = self.artifact
        return {"teacher": f"{art.name} v{art.version}", "teacher_path": str(art.path),
                "teacher_files": art.manifest["files"],
                "teacher_architecture": art.manifest["architecture"],
                "agreement_on_demonstrations": agreement(demos, student,
                                                         pad_to=pad_for(art.kind))}


def _teacher(cfg: TrainConfig) -> _Teacher | None:
    """The distillation teacher of ``cfg``, or None; refuses inconsistent settings."""
    if cfg.distill_from is None:
        if cfg.bc.distill_weight:
            raise ValueError("TrainConfig: bc.distill_weight > 0 needs distill_from (a "
                             "teacher artifact)")
        return None
    from edge_allocator.train.distill import load_teacher

    module, art = load_teacher(Path(cfg.distill_from))
    if art.kind != cfg.kind:
        raise ValueError(f"TrainConfig.distill_from: {art.path} is a {art.kind} model; the "
                         f"student is {cfg.kind}")
    if not cfg.bc.distill_weight:
        raise ValueError("TrainConfig.distill_from needs bc.distill_weight > 0 (the weight "
                         "of the KL term)")
    return _Teacher(module, art)


class _Stages:
    """The three stages that change place with ``scale``: in this process, or on Ray."""

    def __init__(self, cfg: TrainConfig, scale: RayScale | None) -> None:
        self.cfg, self.scale = cfg, scale

    def collect_mixed(self, env_cfg: EnvConfig, episodes: int, seed: int,
                      learner: nn.Module | None) -> Demonstrations:
        """``episodes`` episodes, ``cfg.cold_share`` of them (rounded) on the same
        environment without feedback; those take seeds from ``seed + 2_500`` (a
        collection's own seeds stay below that), so they are other networks."""
        cold = round(episodes * self.cfg.cold_share)
        demos = self.collect(env_cfg, episodes - cold, seed, learner)
        if cold:
            demos.extend(self.collect(dataclasses.replace(env_cfg, observed_speed=False),
                                      cold, seed + 2_500, learner))
        return demos

    def collect(self, env_cfg: EnvConfig, episodes: int, seed: int,
                learner: nn.Module | None) -> Demonstrations:
        kind, pad = self.cfg.kind, pad_for(self.cfg.kind)
        if self.scale is None:
            agent = TorchAgent(kind, learner, pad) if learner is not None else None
            return collect(env_cfg, episodes, seed=seed, learner=agent, expert=self.cfg.expert)
        from edge_allocator.train.distributed import LearnerSpec, collect_on_ray

        spec = LearnerSpec.of(kind, learner) if learner is not None else None
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

    def finetune(self, module: nn.Module, start_reward: float) -> Finetuned:
        """RL from the cloned weights. One run here; on Ray a Tune grid whose best trial
        is returned."""
        cfg = self.cfg
        if self.scale is None:
            tuned, seconds = rl_finetune(copy.deepcopy(module), cfg.kind, cfg.rl_config())
            reward = validation_reward(tuned, cfg.kind, cfg.validation_episodes,
                                       cfg.observed_speed)
            return Finetuned(tuned, reward, seconds, None)
        from edge_allocator.train.sweep import SweepConfig, run_sweep

        sweep = run_sweep(module.state_dict(), architecture(module),
                          SweepConfig(kind=cfg.kind, seeds=self.scale.sweep_seeds,
                                      rl_lrs=self.scale.sweep_lrs,
                                      ent_coefs=(self.scale.sweep_ent_coefs
                                                 or [RLConfig().ppo_ent_coef]),
                                      rl_steps=cfg.rl_steps,
                                      validation_episodes=cfg.validation_episodes,
                                      observed_speed=cfg.observed_speed,
                                      cpus_per_trial=self.scale.cpus_per_worker,
                                      storage_path=cfg.out_dir / "tune",
                                      name=_run_name(cfg, "rl-sweep")),
                          start_reward=start_reward)
        tuned = copy.deepcopy(module)
        tuned.load_state_dict(sweep.best_state)
        return Finetuned(tuned, sweep.best.validation_reward, sweep.best.rl_seconds, sweep)


def _plot_curve(curve: list[float], cfg: TrainConfig, artifact: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = cfg.out_dir / f"{cfg.name or cfg.kind}-v{artifact.name}"
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
