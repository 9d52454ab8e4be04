"""Training on cold starts too (``TrainConfig.cold_share``, issue 12 §3: never worse than
v1 before any feedback has arrived): a share of the closed-loop pipeline's episodes is
collected with no feedback, on other seeds, and the rest as before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_allocator.sim.env import EnvConfig
from edge_allocator.train.demos import collect
from edge_allocator.train.pipeline import TrainConfig, _Stages

CLOSED = EnvConfig(tasks_per_episode=60, observed_speed=True)


def _equal_x(xs, ys) -> bool:
    return len(xs) == len(ys) and all(np.array_equal(x, y) for x, y in zip(xs, ys))


def test_cold_share_collects_that_share_without_feedback() -> None:
    stages = _Stages(TrainConfig(observed_speed=True, cold_share=0.5), None)
    mixed = stages.collect_mixed(CLOSED, 2, 7, None)
    closed = collect(CLOSED, 1, seed=7, progress=False)
    cold = collect(dataclasses.replace(CLOSED, observed_speed=False), 1, seed=7 + 2_500,
                   progress=False)
    feedback_on_cold_seed = collect(CLOSED, 1, seed=7 + 2_500, progress=False)
    assert len(mixed) == len(closed) + len(cold) == 120
    first, second = mixed.x[:60], mixed.x[60:]
    assert _equal_x(first, closed.x) and _equal_x(second, cold.x)
    # the cold half really has no feedback: with it, the same seed's features differ
    assert not _equal_x(second, feedback_on_cold_seed.x)
    assert mixed.adj_id[60] == 1 and len(mixed.adjs) == 2


def test_no_cold_share_is_the_closed_loop_alone() -> None:
    stages = _Stages(TrainConfig(observed_speed=True), None)
    mixed, closed = stages.collect_mixed(CLOSED, 1, 3, None), collect(CLOSED, 1, seed=3,
                                                                       progress=False)
    assert _equal_x(mixed.x, closed.x) and mixed.actions == closed.actions


@pytest.mark.parametrize("kwargs, message", [
    ({"observed_speed": True, "cold_share": 1.5}, "cold_share=1.5: a share"),
    ({"observed_speed": True, "cold_share": -0.1}, "cold_share=-0.1: a share"),
    ({"cold_share": 0.3}, "cold_share needs observed_speed"),
])
def test_bad_cold_shares_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)
