"""Knowledge distillation: the loss, the teacher's labels, and the whole pipeline with
``--distill-from`` on a tiny budget."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from edge_allocator.policies import build_policy
from edge_allocator.runtime.artifacts import load_artifact
from edge_allocator.runtime.export import save_artifact
from edge_allocator.sim.env import EnvConfig
from edge_allocator.train.bc import BCConfig, loss_fn, train_bc
from edge_allocator.train.demos import collect
from edge_allocator.train.distill import agreement, label_with_teacher


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    torch.manual_seed(1)
    root = tmp_path_factory.mktemp("models")
    teacher = build_policy("hybrid", {"hidden": 16})
    return save_artifact(teacher, "hybrid", teacher.config.to_dict(), root), teacher


@pytest.fixture(scope="module")
def demos():
    return collect(EnvConfig(tasks_per_episode=40), episodes=3, seed=0, progress=False)


def test_kl_term_is_zero_when_the_student_equals_the_teacher():
    torch.manual_seed(0)
    scores = torch.randn(4, 6)
    mask = torch.rand(4, 6) < 0.7
    mask[:, 0] = True
    a = torch.zeros(4, dtype=torch.long)
    only_kl = loss_fn("hybrid", 0.1, distill_weight=1.0, distill_temperature=2.0)
    assert float(only_kl(scores, mask, scores, a, scores)) == pytest.approx(0.0, abs=1e-6)
    assert float(only_kl(scores, mask, scores, a, -scores)) > 0.0
    with pytest.raises(ValueError, match="teacher logits"):
        only_kl(scores, mask, scores, a, torch.zeros(4, 0))


def test_student_learns_the_teachers_choices(demos, teacher_dir):
    _, teacher = teacher_dir
    label_with_teacher(demos, teacher)
    assert len(demos.teacher) == len(demos)
    assert all(t.shape == x.shape[:1] for t, x in zip(demos.teacher, demos.x))
    torch.manual_seed(0)
    student = build_policy("hybrid", {"hidden": 8})
    before = agreement(demos, student)
    curve = train_bc(student, "hybrid", demos,
                     BCConfig(epochs=6, batch_size=32, distill_weight=1.0), progress=False)
    assert curve[-1] < curve[0]
    assert agreement(demos, student) > before


def test_bad_distillation_settings_are_refused(demos):
    with pytest.raises(ValueError, match="distill_weight=1.5"):
        train_bc(build_policy("hybrid", {"hidden": 8}), "hybrid", demos,
                 BCConfig(distill_weight=1.5), progress=False)
    with pytest.raises(ValueError, match="regresses Q-values"):
        train_bc(build_policy("dqn", {"hidden": 8}), "dqn", demos,
                 BCConfig(distill_weight=0.5), progress=False)


@pytest.mark.slow
def test_train_distill_from_cli_writes_a_verified_student(tmp_path, teacher_dir):
    """``edge-allocator train --distill-from <artifact> --hidden 8``: every stage runs and
    the manifest records the teacher (with its checksums) and the student's width."""
    path, _ = teacher_dir
    out = subprocess.run(
        [sys.executable, "-m", "edge_allocator.cli", "train", "--model", "hybrid",
         "--distill-from", str(path), "--hidden", "8", "--layers", "1",
         "--demo-episodes", "2", "--dagger-episodes", "1", "--bc-epochs", "1",
         "--rl-steps", "0", "--eval-episodes", "0",
         "--models-dir", str(tmp_path / "models"), "--out-dir", str(tmp_path / "runs")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    art = load_artifact(tmp_path / "models", "hybrid")
    assert art.manifest["architecture"]["hidden"] == 8
    assert art.manifest["architecture"]["layers"] == 1
    t = art.manifest["training"]
    d = t["distillation"]
    assert d["teacher"] == "hybrid v1" and d["teacher_files"]["model.onnx"]
    assert 0.0 <= d["agreement_on_demonstrations"] <= 1.0
    assert t["config"]["bc"]["distill_weight"] == 0.7
