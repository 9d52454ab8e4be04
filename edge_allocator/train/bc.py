"""Behaviour cloning: fit a policy to the expert's per-node rewards (supervised).

Losses: actor policies (hybrid, PPO) minimise cross-entropy between their masked
softmax and ``softmax(expert rewards / temperature)``; the DQN regresses its Q-values
onto the expert's one-step rewards (Huber), so its scores are in reward units.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from edge_allocator.graph import collate
from edge_allocator.train.demos import Demonstrations


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
    pad_to: int | None = None
    """Fixed input size for flat models; None pads each batch to its largest graph."""
    seed: int = 0
    grad_accum: int = 1
    """Mini-batches whose gradients are summed before one optimiser step."""
    bf16: bool = False
    """bf16 autocast for the forward pass on CPU (fp32 master weights)."""
    checkpoint: Path | None = None
    """Written after every epoch (weights, optimiser, scheduler, RNG, curve); a run that
    finds one resumes from it, so a killed run loses at most one epoch."""


def fit_normalizer(module: nn.Module, demos: Demonstrations) -> None:
    """Normalisation statistics from the feasible nodes of the demonstrations."""
    feats = np.concatenate([x[m] for x, m in zip(demos.x, demos.mask)])
    module.normalizer.fit(feats)  # type: ignore[union-attr]


def _batches(demos: Demonstrations, cfg: BCConfig, rng: np.random.Generator):
    """Mini-batches of similar graph size, so padding stays small."""
    idx = rng.permutation(len(demos))
    by_size = sorted(idx, key=lambda i: demos.x[i].shape[0])
    chunks = [by_size[k: k + cfg.batch_size] for k in range(0, len(by_size), cfg.batch_size)]
    rng.shuffle(chunks)
    for chunk in chunks:
        b = collate([demos.graph(i) for i in chunk], pad_to=cfg.pad_to)
        r = np.zeros(b.mask.shape, np.float32)
        for j, i in enumerate(chunk):
            r[j, : demos.rewards[i].shape[0]] = demos.rewards[i]
        yield (torch.from_numpy(b.x), torch.from_numpy(b.adj), torch.from_numpy(b.mask),
               torch.from_numpy(r))


def loss_fn(kind: str, temperature: float) -> Callable[..., torch.Tensor]:
    def actor(scores: torch.Tensor, mask: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        target = torch.softmax((r / temperature).masked_fill(~mask, -1e9), dim=-1)
        logp = torch.log_softmax(scores, dim=-1)
        return -(target * logp.masked_fill(~mask, 0.0)).sum(-1).mean()

    def q_regression(scores: torch.Tensor, mask: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(scores[mask], r[mask])

    return q_regression if kind == "dqn" else actor


def train_bc(module: nn.Module, kind: str, demos: Demonstrations, cfg: BCConfig,
             progress: bool = True) -> list[float]:
    """Train in place; returns the mean loss per epoch (the training curve)."""
    if cfg.grad_accum < 1:
        raise ValueError(f"BCConfig.grad_accum={cfg.grad_accum}; use 1 or more")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    fit_normalizer(module, demos)
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr)
    steps = cfg.epochs * -(-len(demos) // (cfg.batch_size * cfg.grad_accum))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=cfg.lr * 0.05)
    loss_of = loss_fn(kind, cfg.temperature)
    curve: list[float] = []
    start = 0
    if cfg.checkpoint is not None and Path(cfg.checkpoint).is_file():
        start, curve = _resume(cfg.checkpoint, module, opt, sched, rng)
    module.train()
    for epoch in tqdm(range(start, cfg.epochs), desc=f"bc {kind}", disable=not progress):
        total, count = 0.0, 0
        opt.zero_grad()
        for k, (x, adj, mask, r) in enumerate(_batches(demos, cfg, rng), start=1):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                scores = module(x, adj, mask)
            loss = loss_of(scores.float(), mask, r)
            (loss / cfg.grad_accum).backward()
            if k % cfg.grad_accum == 0:
                _step(module, opt, sched)
            total += float(loss.detach()) * x.shape[0]
            count += x.shape[0]
        if k % cfg.grad_accum:
            _step(module, opt, sched)  # the epoch's last, partial accumulation
        curve.append(total / count)
        if cfg.checkpoint is not None:
            _save(cfg.checkpoint, epoch + 1, curve, module, opt, sched, rng)
    module.eval()
    return curve


def _step(module: nn.Module, opt: torch.optim.Optimizer, sched: Any) -> None:
    nn.utils.clip_grad_norm_(module.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad()


def _save(path: Path, epoch: int, curve: list[float], module: nn.Module,
          opt: torch.optim.Optimizer, sched: Any, rng: np.random.Generator) -> None:
    """Atomic (write then rename): a kill mid-write leaves the previous checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"epoch": epoch, "curve": curve, "model": module.state_dict(),
                "opt": opt.state_dict(), "sched": sched.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "np_rng": json.dumps(rng.bit_generator.state)}, tmp)
    tmp.replace(path)


def _resume(path: Path, module: nn.Module, opt: torch.optim.Optimizer, sched: Any,
            rng: np.random.Generator) -> tuple[int, list[float]]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    torch.set_rng_state(state["torch_rng"])
    rng.bit_generator.state = json.loads(state["np_rng"])
    return int(state["epoch"]), list(state["curve"])
