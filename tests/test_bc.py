"""Behaviour cloning: resumable checkpoints, gradient accumulation and bf16 autocast."""

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


@pytest.mark.parametrize("options", [{"grad_accum": 2}, {"bf16": True}])
def test_training_options_still_learn(demos, options):
    m = build_policy("hybrid", {"hidden": 16})
    curve = train_bc(m, "hybrid", demos, BCConfig(epochs=4, batch_size=32, **options),
                     progress=False)
    assert curve[-1] < curve[0]


def test_bad_accumulation_is_refused(demos):
    with pytest.raises(ValueError, match="grad_accum=0"):
        train_bc(build_policy("hybrid", {"hidden": 8}), "hybrid", demos,
                 BCConfig(grad_accum=0), progress=False)
