"""Behaviour cloning: fit a policy to the expert's per-node rewards (supervised).

Losses: actor policies (hybrid, PPO) minimise cross-entropy between their masked
softmax and ``softmax(expert rewards / temperature)``; the DQN regresses its Q-values
onto the expert's one-step rewards (Huber), so its scores are in reward units. With
``distill_weight`` > 0 (knowledge distillation into a smaller student, the demonstrations
carrying a teacher's logits) an actor instead minimises
``w * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - w) * CE(student,
expert's choice)`` over the feasible nodes.

One epoch loop (:func:`run_epoch`) serves both the single-process trainer here and the
Ray Train workers in :mod:`edge_allocator.train.distributed`, so every switch below
(DataLoader workers, precision, accumulation, gradient checkpointing) means the same in
both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from edge_allocator.constants import MASKED_SCORE
from edge_allocator.graph import collate
from edge_allocator.policies.normalizer import FeatureNormalizer
from edge_allocator.train.demos import Demonstrations

PRECISIONS = ("fp32", "bf16", "fp16")
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
              torch.Tensor]
"""x, adj, mask, expert rewards, expert choice, teacher logits ([B, 0] when the
demonstrations have none)."""


@dataclass
class BCConfig:
    epochs: int = 8
    """Passes over the demonstrations."""
    batch_size: int = 128
    """Decisions per gradient step."""
    lr: float = 2e-3
    """Adam learning rate (cosine-decayed to 5% over training)."""
    temperature: float = 0.1
    """Softness of the expert target, in reward units."""
    imitation_weight: float = 0.0
    """Actor target = (1 - w) * softmax(one-step rewards / temperature) + w * one-hot
    of the expert's choice. 0 imitates the one-step oracle; with the lookahead planner
    as expert, w > 0 teaches what the rewards of one step cannot show."""
    distill_weight: float = 0.0
    """Knowledge distillation (actor policies): weight of the KL divergence to the
    teacher's softmax over feasible nodes; the rest goes to cross-entropy with the
    expert's choice. 0 is plain behaviour cloning. Needs teacher logits in the
    demonstrations (:func:`edge_allocator.train.distill.label_with_teacher`)."""
    distill_temperature: float = 1.0
    """Softening of teacher and student logits in the KL term (the term is scaled by
    T^2 so its gradients keep their size)."""
    pad_to: int | None = None
    """Fixed input size for flat models; None pads each batch to its largest graph."""
    seed: int = 0
    grad_accum: int = 1
    """Mini-batches whose gradients are summed before one optimiser step."""
    precision: str = "fp32"
    """'fp32'; 'bf16' (autocast, fp32 master weights; CPU or CUDA); 'fp16' (autocast with
    a GradScaler, which keeps small fp16 gradients from flushing to zero; meant for CUDA)."""
    device: str = "cpu"
    """Where the model trains ('cpu', 'cuda', 'cuda:1', ...)."""
    num_workers: int = 0
    """DataLoader worker processes that pad and collate mini-batches while the model
    trains; 0 collates in the training process."""
    pin_memory: bool = False
    """Page-locked batches so host-to-GPU copies overlap compute (CUDA only)."""
    prefetch_factor: int = 2
    """Batches each worker prepares ahead (with ``num_workers`` > 0)."""
    persistent_workers: bool = True
    """Keep DataLoader workers alive between epochs (with ``num_workers`` > 0) instead of
    forking them again every epoch."""
    grad_checkpointing: bool = False
    """Recompute each GNN layer's activations in the backward pass instead of storing
    them: less memory on large graphs for about one extra forward pass."""
    checkpoint: Path | None = None
    """Written after every epoch (weights, optimiser, scheduler, scaler, curve); a run
    that finds one resumes from it, so a killed run loses at most one epoch."""

    def validate(self, kind: str) -> None:
        if self.grad_accum < 1:
            raise ValueError(f"BCConfig.grad_accum={self.grad_accum}; use 1 or more")
        if self.precision not in PRECISIONS:
            raise ValueError(f"BCConfig.precision={self.precision!r}; use one of {PRECISIONS}")
        if self.num_workers < 0:
            raise ValueError(f"BCConfig.num_workers={self.num_workers}; use 0 or more")
        if not 0.0 <= self.imitation_weight <= 1.0:
            raise ValueError(f"BCConfig.imitation_weight={self.imitation_weight}; use 0 to 1")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"BCConfig.distill_weight={self.distill_weight}; use 0 to 1")
        if self.distill_weight and kind == "dqn":
            raise ValueError("BCConfig.distill_weight: distillation matches a softmax; the "
                             "dqn regresses Q-values")
        if self.distill_temperature <= 0:
            raise ValueError(f"BCConfig.distill_temperature={self.distill_temperature}; "
                             "use > 0")
        if self.grad_checkpointing and kind != "hybrid":
            raise ValueError(f"BCConfig.grad_checkpointing applies to GNN layers; the {kind} "
                             "policy has none")


class DemoBatches(Dataset[Batch]):
    """Mini-batches of similar graph size (so padding stays small), collated on demand,
    which lets DataLoader workers do the padding. Item k is a whole mini-batch."""

    def __init__(self, demos: Demonstrations, batch_size: int, pad_to: int | None, seed: int):
        rng = np.random.default_rng(seed)
        by_size = sorted(rng.permutation(len(demos)), key=lambda i: demos.x[i].shape[0])
        self.chunks = [by_size[k: k + batch_size] for k in range(0, len(by_size), batch_size)]
        self.demos = demos
        self.pad_to = pad_to

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, k: int) -> Batch:
        chunk = self.chunks[k]
        b = collate([self.demos.graph(i) for i in chunk], pad_to=self.pad_to)
        r = np.zeros(b.mask.shape, np.float32)
        for j, i in enumerate(chunk):
            r[j, : self.demos.rewards[i].shape[0]] = self.demos.rewards[i]
        a = np.asarray([self.demos.actions[i] for i in chunk], np.int64)
        t = np.zeros((len(chunk), 0), np.float32)
        if self.demos.teacher:
            t = np.full(b.mask.shape, MASKED_SCORE, np.float32)
            for j, i in enumerate(chunk):
                t[j, : self.demos.teacher[i].shape[0]] = self.demos.teacher[i]
        return (torch.from_numpy(b.x), torch.from_numpy(b.adj), torch.from_numpy(b.mask),
                torch.from_numpy(r), torch.from_numpy(a), torch.from_numpy(t))


def make_loader(demos: Demonstrations, cfg: BCConfig, rank: int = 0,
                world_size: int = 1) -> tuple[DataLoader[Batch], DistributedSampler[Batch]]:
    """The sampler shuffles from (seed, epoch), so a resumed run replays the same order
    without saving RNG state, and with ``world_size`` > 1 every rank gets an equal,
    disjoint share (equal counts keep DDP's collective calls in step)."""
    data = DemoBatches(demos, cfg.batch_size, cfg.pad_to, cfg.seed)
    sampler: DistributedSampler[Batch] = DistributedSampler(
        data, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed)
    workers = cfg.num_workers
    loader = DataLoader(data, batch_size=None, sampler=sampler, num_workers=workers,
                        pin_memory=cfg.pin_memory and torch.cuda.is_available(),
                        persistent_workers=cfg.persistent_workers and workers > 0,
                        prefetch_factor=cfg.prefetch_factor if workers else None)
    return loader, sampler


def fit_normalizer(module: nn.Module, demos: Demonstrations) -> None:
    """Normalisation statistics from the feasible nodes of the demonstrations."""
    feats = np.concatenate([x[m] for x, m in zip(demos.x, demos.mask)])
    cast(FeatureNormalizer, module.normalizer).fit(feats)


def loss_fn(kind: str, temperature: float, imitation_weight: float = 0.0,
            distill_weight: float = 0.0, distill_temperature: float = 1.0
            ) -> Callable[..., torch.Tensor]:
    def actor(scores: torch.Tensor, mask: torch.Tensor, r: torch.Tensor,
              a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        target = torch.softmax((r / temperature).masked_fill(~mask, MASKED_SCORE), dim=-1)
        if imitation_weight:
            hard = F.one_hot(a, target.shape[-1]).to(target.dtype)
            target = (1 - imitation_weight) * target + imitation_weight * hard
        logp = torch.log_softmax(scores, dim=-1)
        return -(target * logp.masked_fill(~mask, 0.0)).sum(-1).mean()

    def distill(scores: torch.Tensor, mask: torch.Tensor, r: torch.Tensor,
                a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.shape[-1] != scores.shape[-1]:
            raise ValueError("BCConfig.distill_weight > 0 needs teacher logits in the "
                             "demonstrations (train.distill.label_with_teacher)")
        T = distill_temperature
        logp = torch.log_softmax(scores.masked_fill(~mask, MASKED_SCORE), dim=-1)
        ce = F.nll_loss(logp, a)
        logp_t = torch.log_softmax((scores / T).masked_fill(~mask, MASKED_SCORE), dim=-1)
        logq_t = torch.log_softmax((t / T).masked_fill(~mask, MASKED_SCORE), dim=-1)
        kl = (logq_t.exp() * (logq_t - logp_t)).masked_fill(~mask, 0.0).sum(-1).mean()
        return distill_weight * T * T * kl + (1 - distill_weight) * ce

    def q_regression(scores: torch.Tensor, mask: torch.Tensor, r: torch.Tensor,
                     a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(scores[mask], r[mask])

    if kind == "dqn":
        return q_regression
    return distill if distill_weight else actor


@dataclass
class Trainer:
    """Optimiser, schedule and gradient scaler of one run, and how a step is taken."""

    module: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    loss_of: Callable[..., torch.Tensor]
    cfg: BCConfig
    device: torch.device

    @classmethod
    def create(cls, module: nn.Module, kind: str, cfg: BCConfig, batches_per_epoch: int,
               device: torch.device | None = None) -> Trainer:
        device = device or torch.device(cfg.device)
        opt = torch.optim.Adam(module.parameters(), lr=cfg.lr)
        steps = cfg.epochs * -(-batches_per_epoch // cfg.grad_accum)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=cfg.lr * 0.05)
        scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        loss_of = loss_fn(kind, cfg.temperature, cfg.imitation_weight, cfg.distill_weight,
                          cfg.distill_temperature)
        return cls(module, opt, sched, scaler, loss_of, cfg, device)

    def run_epoch(self, batches: Iterable[Batch]) -> float:
        """One pass; returns the mean loss per decision."""
        cfg = self.cfg
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        total, count, k = 0.0, 0, 0
        self.opt.zero_grad()
        for k, batch in enumerate(batches, start=1):
            x, adj, mask, r, a, t = (v.to(self.device, non_blocking=True) for v in batch)
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                scores = self.module(x, adj, mask)
            loss = self.loss_of(scores.float(), mask, r, a, t)
            self.scaler.scale(loss / cfg.grad_accum).backward()  # type: ignore[no-untyped-call]
            if k % cfg.grad_accum == 0:
                self._step()
            total += float(loss.detach()) * x.shape[0]
            count += x.shape[0]
        if k % cfg.grad_accum:
            self._step()  # the epoch's last, partial accumulation
        return total / max(count, 1)

    def _step(self) -> None:
        self.scaler.unscale_(self.opt)  # clip true gradients, not scaled ones
        nn.utils.clip_grad_norm_(self.module.parameters(), 1.0)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self.opt.zero_grad()

    def state(self, epoch: int, curve: list[float]) -> dict[str, Any]:
        """Plain (unwrapped) weights, so a checkpoint from N DDP workers loads into one
        process and the other way round. Under FSDP every rank must call this (it
        gathers the shards)."""
        return {"epoch": epoch, "curve": curve, "model": unwrap(self.module).state_dict(),
                "opt": self._optim_state(), "sched": self.sched.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load(self, state: dict[str, Any]) -> tuple[int, list[float]]:
        unwrap(self.module).load_state_dict(state["model"])
        if _is_fsdp(self.module):
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            state = {**state, "opt": FSDP.optim_state_dict_to_load(
                self.module, self.opt, state["opt"])}
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.scaler.load_state_dict(state["scaler"])
        return int(state["epoch"]), list(state["curve"])

    def _optim_state(self) -> dict[str, Any]:
        if _is_fsdp(self.module):
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            return FSDP.optim_state_dict(self.module, self.opt)
        return self.opt.state_dict()


def _is_fsdp(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FullyShardedDataParallel

    return isinstance(module, FullyShardedDataParallel)


def unwrap(module: nn.Module) -> nn.Module:
    """The policy inside a DistributedDataParallel wrapper (FSDP's full state dict is
    already keyed like the plain module)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def set_gradient_checkpointing(module: nn.Module, enabled: bool) -> None:
    if hasattr(module, "gradient_checkpointing"):
        module.gradient_checkpointing = enabled  # type: ignore[assignment]


def train_bc(module: nn.Module, kind: str, demos: Demonstrations, cfg: BCConfig,
             progress: bool = True) -> list[float]:
    """Train in place; returns the mean loss per epoch (the training curve)."""
    cfg.validate(kind)
    torch.manual_seed(cfg.seed)
    fit_normalizer(module, demos)
    loader, sampler = make_loader(demos, cfg)
    device = torch.device(cfg.device)
    module.to(device)
    set_gradient_checkpointing(module, cfg.grad_checkpointing)
    trainer = Trainer.create(module, kind, cfg, len(loader), device)
    curve: list[float] = []
    start = 0
    if cfg.checkpoint is not None and Path(cfg.checkpoint).is_file():
        start, curve = trainer.load(torch.load(cfg.checkpoint, map_location=device,
                                               weights_only=True))
    module.train()
    for epoch in tqdm(range(start, cfg.epochs), desc=f"bc {kind}", disable=not progress):
        sampler.set_epoch(epoch)
        curve.append(trainer.run_epoch(loader))
        if cfg.checkpoint is not None:
            _save(cfg.checkpoint, trainer.state(epoch + 1, curve))
    set_gradient_checkpointing(module, False)
    module.to("cpu").eval()
    return curve


def _save(path: Path, state: dict[str, Any]) -> None:
    """Atomic (write then rename): a kill mid-write leaves the previous checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
