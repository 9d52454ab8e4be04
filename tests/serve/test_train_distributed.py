"""Behaviour cloning on Ray Train: two DDP workers on the test session's Ray instance."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from edge_allocator.policies import build_policy
from edge_allocator.sim.env import EnvConfig
from edge_allocator.train.bc import BCConfig, fit_normalizer
from edge_allocator.train.demos import collect
from edge_allocator.train.distributed import DistributedConfig, train_bc_distributed

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def demos():
    return collect(EnvConfig(tasks_per_episode=40), episodes=3, seed=0, progress=False)


def _policy() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_policy("hybrid", {"hidden": 16})


def test_two_ddp_workers_learn_and_a_rerun_resumes(ray_cluster, demos, tmp_path):
    cfg = BCConfig(epochs=2, batch_size=32)
    dist = DistributedConfig(num_workers=2, cpus_per_worker=0.25, storage_path=tmp_path,
                             name="bc-test")
    m = _policy()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    curve = train_bc_distributed(m, "hybrid", demos, cfg, dist)
    assert len(curve) == 2 and curve[1] < curve[0]
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())
    reference = _policy()
    fit_normalizer(reference, demos)  # workers must keep the driver's statistics
    for k, v in reference.normalizer.state_dict().items():
        torch.testing.assert_close(m.normalizer.state_dict()[k], v)

    # the same run name again with more epochs: starts from epoch 2's checkpoint
    more = _policy()
    curve2 = train_bc_distributed(more, "hybrid", demos, dataclasses.replace(cfg, epochs=3), dist)
    assert len(curve2) == 3 and curve2[:2] == pytest.approx(curve)


def test_fsdp_without_gpus_is_refused_before_any_work(demos, tmp_path):
    with pytest.raises(ValueError, match="fsdp.*use_gpu"):
        train_bc_distributed(_policy(), "hybrid", demos, BCConfig(epochs=1),
                             DistributedConfig(strategy="fsdp", storage_path=tmp_path))


def test_demonstrations_on_ray_equal_the_serial_ones(ray_cluster):
    """Split over Ray tasks, the same episodes (seeds) give the same decisions; with the
    expert acting every step nothing else is random."""
    from edge_allocator.train.distributed import collect_on_ray

    cfg = EnvConfig(tasks_per_episode=15)
    serial = collect(cfg, 3, seed=7, expert_share=1.0, progress=False)
    spread = collect_on_ray(cfg, 3, seed=7, parts=2, expert_share=1.0, cpus_per_part=0.25)
    assert len(spread) == len(serial) == 45
    assert spread.actions == serial.actions
    for a, b in zip(spread.x, serial.x):
        assert (a == b).all()


def test_evaluation_on_ray_equals_the_serial_one(ray_cluster):
    from edge_allocator.policies.heuristics import EarliestFinishPolicy
    from edge_allocator.train.distributed import evaluate_on_ray
    from edge_allocator.train.evaluate import EvalScenario, evaluate

    sc = [EvalScenario("small", EnvConfig(tasks_per_episode=20))]
    agents = {"eft": lambda env, n: EarliestFinishPolicy()}
    serial = evaluate(agents, sc, episodes=3, progress=False)
    spread, cost = evaluate_on_ray(agents, sc, episodes=3, parts=2, cpus_per_part=0.25)
    assert spread[0].episode_rewards == pytest.approx(serial[0].episode_rewards)
    assert spread[0].metrics["episode_reward"] == pytest.approx(serial[0].metrics["episode_reward"])
    assert cost[("small", "eft")] > 0
