"""A real, tiny Ray Tune sweep: two DQN fine-tuning trials from the shipped DQN weights.

The shipped model is the start because that is what the sweep is for (refining cloned
weights); it costs no more than random weights. 600 RL steps, not fewer: the pipeline's
DQN only starts learning after 500 steps, and the test checks that RL moved the weights.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from edge_allocator.constants import PROJECT_ROOT
from edge_allocator.policies import build_policy
from edge_allocator.runtime.artifacts import load_artifact
from edge_allocator.runtime.torch_backend import load_module
from edge_allocator.train.finetune import RLConfig, validation_reward
from edge_allocator.train.pipeline import TrainConfig
from edge_allocator.train.sweep import (  # imports no Ray
    ROW_KEYS,
    SweepConfig,
    SweepResult,
    SweepRow,
    run_sweep,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_local(ray_cluster):
    """The session's Ray cluster (tests/serve/conftest.py): Tune runs its trials there.
    Its own ``ray.init`` here would leave a test worker (pytest-xdist) that runs this
    file before its serve tests unable to start Serve's HAProxy."""
    yield


def test_tiny_dqn_sweep(ray_local, tmp_path) -> None:
    art = load_artifact(PROJECT_ROOT / "models", "dqn")
    architecture = art.manifest["architecture"]
    start_state = load_module(art).state_dict()
    cfg = SweepConfig(kind="dqn", seeds=[0, 1], rl_lrs=[1e-4], rl_steps=600,
                      validation_episodes=1, cpus_per_trial=0.5, storage_path=tmp_path / "tune")

    res = run_sweep(start_state, architecture, cfg)

    assert len(res.rows) == 2
    assert sorted(r.seed for r in res.rows) == [0, 1]
    for r in res.rows:
        assert r.rl_lr == 1e-4
        for reward in (r.start_reward, r.validation_reward):
            assert math.isfinite(reward) and reward < 0  # rewards are negative costs
        assert r.gain == pytest.approx(r.validation_reward - r.start_reward)
        assert r.rl_seconds > 0
    # the start score is the shipped weights' own on the validation seeds, evaluated here
    # from the artifact (not from run_sweep's copy), and the best trial's score is its
    # returned weights' own: gain is a paired difference of two real evaluations
    shipped = validation_reward(load_module(art).eval(), "dqn", cfg.validation_episodes)
    assert [r.start_reward for r in res.rows] == pytest.approx([shipped, shipped])
    assert res.best.validation_reward == max(r.validation_reward for r in res.rows)
    best = build_policy("dqn", architecture)
    best.load_state_dict(res.best_state)
    assert validation_reward(best.eval(), "dqn", cfg.validation_episodes) == pytest.approx(
        res.best.validation_reward)

    fresh = build_policy("dqn", architecture)
    fresh.load_state_dict(res.best_state)  # strict
    assert any(not torch.equal(v, start_state[k]) for k, v in res.best_state.items())

    md = res.to_markdown().splitlines()
    assert md[0].startswith("| rl_lr | ent_coef | seed |") and md[1].startswith("|---")
    assert sum(line.startswith("| 1e-04 | 0.001 |") for line in md) == 2
    assert any("mean ± std" in line for line in md)
    js = res.to_json()
    assert js["best"] == res.best._asdict()
    assert list(js["rows"][0]) == list(ROW_KEYS)  # the manifest's keys, in order

    out = res.plot(tmp_path / "sweep.png")
    assert out.is_file() and out.stat().st_size > 0


def test_failed_trial_raises_naming_it(ray_local, tmp_path) -> None:
    """A trial that errors must stop the sweep with its own error, not yield a table."""
    start_state = build_policy("dqn", {}).state_dict()
    cfg = SweepConfig(kind="dqn", seeds=[3], rl_lrs=[1e-4], rl_steps=10, validation_episodes=1,
                      storage_path=tmp_path / "tune", name="broken")
    msg = r"(?s)seed=3, rl_lr=0.0001, ent_coef=0.001\): RuntimeError: .*size mismatch"
    with pytest.raises(RuntimeError, match=msg):
        # weights of width 256 into width 64; the start reward is given, so the mismatch
        # first surfaces inside the trial (run_sweep would otherwise validate the start)
        run_sweep(start_state, {"hidden": 64}, cfg, start_reward=-500.0)


def test_result_tables_from_typed_rows() -> None:
    """per_lr, to_json and to_markdown from rows alone (no Ray): the JSON keeps the
    manifest's row keys; one seed has no spread (nan in Python, null in JSON)."""
    rows = [SweepRow(0, 1e-4, 0.0, -100.0, -90.0, 10.0, 0.01, 1.0),
            SweepRow(1, 1e-4, 0.0, -100.0, -94.0, 6.0, 0.01, 1.0),
            SweepRow(0, 3e-4, 0.0, -100.0, -120.0, -20.0, 0.02, 1.0)]
    res = SweepResult("dqn", rows, rows[0], {}, "/nowhere")
    per_lr = res.per_lr()
    assert per_lr[1e-4].mean == pytest.approx(-92.0) and per_lr[1e-4].n == 2
    assert per_lr[1e-4].std == pytest.approx(2 ** 0.5 * 2)
    assert math.isnan(per_lr[3e-4].std)
    js = res.to_json()
    assert js["rows"][1] == dict(zip(ROW_KEYS, rows[1]))
    assert js["best"]["seed"] == 0 and js["per_lr"]["0.0003"]["std"] is None
    assert res.to_markdown().splitlines()[2].startswith(
        "| 1e-04 | 0 | 0 | -100.0 | -90.0 | +10.0 | 1.00% |")
    assert js["per_setting"][1] == {"rl_lr": 3e-4, "ent_coef": 0.0, "mean": -120.0,
                                    "std": None, "n": 1}


def test_rl_defaults_are_the_pipelines() -> None:
    """RLConfig's defaults are what the pipeline's RL stage used when they were written
    inline; TrainConfig passes its own steps, lr, gamma and seed."""
    assert TrainConfig().rl_config() == RLConfig()
    cfg = TrainConfig(seed=3, rl_steps=64, rl_lr=3e-5, gamma=0.5).rl_config()
    assert (cfg.steps, cfg.lr, cfg.gamma, cfg.seed) == (64, 3e-5, 0.5, 3)
    assert (RLConfig().dqn_buffer_size, RLConfig().dqn_learning_starts,
            RLConfig().ppo_n_steps, RLConfig().ppo_clip_range) == (20_000, 500, 1024, 0.1)


@pytest.fixture(scope="module")
def hybrid_v3():
    """Hybrid v3 (closed-loop features): the start the PPO sweep of issue 12 §3 refines."""
    art = load_artifact(PROJECT_ROOT / "models", "hybrid", "3")
    assert art.manifest["training"]["observed_speed"]
    return art


def test_entropy_axis_and_curve_reach_the_trials(ray_local, hybrid_v3, tmp_path) -> None:
    """Two hybrid trials that differ only in PPO's entropy coefficient (same seed, same lr,
    deterministic on one thread) end with different weights: the coefficient reached
    MaskablePPO. Each trial's learning curve comes back from what it reported to Tune, at
    the steps asked for, and the start is validated on the closed-loop env."""
    architecture = hybrid_v3.manifest["architecture"]
    start_state = load_module(hybrid_v3).state_dict()
    cfg = SweepConfig(kind="hybrid", seeds=[0], rl_lrs=[3e-4], ent_coefs=[0.0, 0.5],
                      rl_steps=256, ppo_n_steps=128, curve_every=128, validation_episodes=1,
                      observed_speed=True, cpus_per_trial=1.0, storage_path=tmp_path / "tune")

    res = run_sweep(start_state, architecture, cfg)

    assert sorted(r.ent_coef for r in res.rows) == [0.0, 0.5]
    shifts = {r.ent_coef: r.weight_shift for r in res.rows}
    assert all(s > 0 for s in shifts.values())
    assert shifts[0.0] != pytest.approx(shifts[0.5], rel=1e-6)
    closed = validation_reward(load_module(hybrid_v3).eval(), "hybrid", 1, observed_speed=True)
    nominal = validation_reward(load_module(hybrid_v3).eval(), "hybrid", 1)
    assert closed != pytest.approx(nominal)  # the flag matters on these seeds
    assert [r.start_reward for r in res.rows] == pytest.approx([closed, closed])
    assert len(res.curves) == 2
    for c in res.curves:
        row = next(r for r in res.rows if r.ent_coef == c.ent_coef)
        assert [p.env_steps for p in c.points] == [0, 128, 256]
        assert c.points[0].validation_reward == pytest.approx(row.start_reward)
        assert c.points[-1].validation_reward == pytest.approx(row.validation_reward)
        assert math.isfinite(c.points[1].validation_reward)
    js = res.curves_json()
    assert js[0]["env_steps"] == [0, 128, 256] and {j["ent_coef"] for j in js} == {0.0, 0.5}
    assert res.plot_curves(tmp_path / "curve.png").stat().st_size > 0
    assert "| 3e-04 | 0.5 | 0 |" in res.to_markdown()


def test_curve_callback_points_at_right_steps(hybrid_v3) -> None:
    """Points are taken when a rollout starts (weights updated on every step before) once
    ``every`` more steps have passed: 128-step rollouts over 640 steps start at 0, 128,
    ..., 512, so every 256 steps gives 256 and 512, every 300 gives 384 only. The end of
    training is the caller's to validate, not a point. One run, two callbacks."""
    from stable_baselines3.common.callbacks import CallbackList

    from edge_allocator.train.finetune import curve_callback, rl_finetune

    torch.set_num_threads(1)
    seen: list = []
    cb256 = curve_callback("hybrid", 256, 1, observed_speed=True, on_point=seen.append)
    cb300 = curve_callback("hybrid", 300, 1, observed_speed=True)
    cfg = RLConfig(steps=640, lr=3e-4, ppo_n_steps=128, ppo_batch_size=64,
                   observed_speed=True)
    rl_finetune(load_module(hybrid_v3), "hybrid", cfg, progress=False,
                callback=CallbackList([cb256, cb300]))
    assert [p.env_steps for p in cb256.points] == [256, 512]  # type: ignore[attr-defined]
    assert [p.env_steps for p in cb300.points] == [384]  # type: ignore[attr-defined]
    assert seen == cb256.points  # type: ignore[attr-defined]
    assert all(math.isfinite(p.validation_reward) and p.validation_reward < 0 for p in seen)
    with pytest.raises(ValueError, match="every=0"):
        curve_callback("hybrid", 0, 1)


def test_value_warmup_trains_only_the_value_head(hybrid_v3) -> None:
    """With every step a warm-up step, PPO moves the value head and nothing else (the
    policy is the cloned one); without warm-up the rest moves too."""
    from edge_allocator.train.finetune import rl_finetune

    torch.set_num_threads(1)
    start = load_module(hybrid_v3).state_dict()
    cfg = RLConfig(steps=128, lr=1e-3, ppo_n_steps=128, ppo_batch_size=64,
                   observed_speed=True, ppo_value_warmup_steps=128)
    for warm in (128, 0):
        module = rl_finetune(load_module(hybrid_v3), "hybrid",
                             dataclasses.replace(cfg, ppo_value_warmup_steps=warm),
                             progress=False).module
        moved = {k for k, v in module.state_dict().items() if not torch.equal(v, start[k])}
        assert moved and any(k.startswith("value_head") for k in moved)
        others = {k for k in moved if not k.startswith("value_head")}
        assert (not others) if warm else others, (warm, sorted(moved))
        assert all(p.requires_grad for p in module.parameters())  # unfrozen afterwards
