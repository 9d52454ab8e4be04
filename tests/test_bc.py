"""Behaviour cloning: resumable checkpoints and every training switch (DataLoader workers,
precision, gradient accumulation, gradient checkpointing)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from edge_allocator.policies import build_policy
from edge_allocator.sim.env import EnvConfig
from edge_allocator.train import bc
from edge_allocator.train.bc import BCConfig, train_bc
from edge_allocator.train.demos import collect


@pytest.fixture(scope="module")
def demos():
    return collect(EnvConfig(tasks_per_episode=40), episodes=3, seed=0, progress=False)


def _weights(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _policy():
    torch.manual_seed(0)  # the same initial weights every time, as the pipeline does
    return build_policy("hybrid", {"hidden": 16})


def test_killed_run_resumes_to_the_same_weights(demos, tmp_path, monkeypatch):
    cfg = BCConfig(epochs=3, batch_size=32)
    straight = _policy()
    train_bc(straight, "hybrid", demos, cfg, progress=False)

    ckpt = tmp_path / "bc.ckpt"
    real_save = bc._save

    def save_then_die(*args, **kw):
        real_save(*args, **kw)
        raise KeyboardInterrupt("killed after the first checkpoint")

    monkeypatch.setattr(bc, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_bc(_policy(), "hybrid", demos, dataclasses.replace(cfg, checkpoint=ckpt),
                 progress=False)
    monkeypatch.setattr(bc, "_save", real_save)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    resumed = build_policy("hybrid", {"hidden": 16})  # other initial weights: all restored
    curve = train_bc(resumed, "hybrid", demos, dataclasses.replace(cfg, checkpoint=ckpt),
                     progress=False)
    assert len(curve) == 3
    for k, v in _weights(straight).items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options", [
    {"grad_accum": 2}, {"precision": "bf16"}, {"precision": "fp16"},
    {"num_workers": 2, "prefetch_factor": 4}, {"grad_checkpointing": True}])
def test_training_options_still_learn(demos, options):
    m = build_policy("hybrid", {"hidden": 16})
    curve = train_bc(m, "hybrid", demos, BCConfig(epochs=4, batch_size=32, **options),
                     progress=False)
    assert curve[-1] < curve[0]


@pytest.mark.parametrize("options,kind,message", [
    ({"grad_accum": 0}, "hybrid", "grad_accum=0"),
    ({"precision": "fp8"}, "hybrid", "precision='fp8'"),
    ({"grad_checkpointing": True}, "dqn", "has none"),
])
def test_bad_options_are_refused(demos, options, kind, message):
    with pytest.raises(ValueError, match=message):
        train_bc(build_policy(kind, {"hidden": 8}), kind, demos, BCConfig(**options),
                 progress=False)


def test_loader_workers_and_checkpointing_change_nothing_but_cost(demos):
    """Same seed: workers only move the collation, checkpointing only recomputes, so the
    weights match the plain run (up to float reassociation)."""
    cfg = BCConfig(epochs=2, batch_size=32)
    plain, other = _policy(), _policy()
    train_bc(plain, "hybrid", demos, cfg, progress=False)
    train_bc(other, "hybrid", demos,
             dataclasses.replace(cfg, num_workers=2, grad_checkpointing=True), progress=False)
    assert not other.gradient_checkpointing  # switched off after training
    for k, v in _weights(plain).items():
        torch.testing.assert_close(other.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_gradient_checkpointing_matches_plain_gradients():
    torch.manual_seed(0)
    m = build_policy("hybrid", {"hidden": 16, "conv": "gat"})
    x, adj = torch.randn(2, 30, m.config.num_features), torch.rand(2, 30, 30)
    mask = torch.ones(2, 30, dtype=torch.bool)
    grads = []
    for on in (False, True):
        m.zero_grad()
        m.gradient_checkpointing = on
        m(x, adj, mask).sum().backward()
        grads.append([p.grad.clone() for n, p in m.named_parameters() if "convs" in n])
    assert grads[0] and all(g.abs().sum() > 0 for g in grads[0])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
