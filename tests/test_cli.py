"""The command-line entry points, run as a user runs them (subprocess, tiny budgets)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edge_allocator.runtime.artifacts import load_artifact
from edge_allocator.runtime.torch_backend import load_module
from edge_allocator.train.finetune import validation_reward

pytestmark = pytest.mark.slow


def cli(*args: str, cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "edge_allocator.cli", *args], cwd=cwd,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.parametrize("model", ["hybrid", "dqn"])
def test_train_smoke_writes_a_verified_artifact(tmp_path, model):
    """Every stage of the pipeline runs: demonstrations, cloning, DAgger, SB3 RL
    fine-tuning (MaskablePPO for hybrid, DQN for dqn), validation, export, manifest."""
    extra = (["--resumable", "--precision", "bf16", "--grad-checkpointing", "--loader-workers", "1"]
             if model == "hybrid" else ["--grad-accum", "2"])
    cli("train", "--model", model, "--demo-episodes", "2", "--dagger-episodes", "1", *extra,
        "--bc-epochs", "1", "--rl-steps", "128", "--eval-episodes", "0",
        "--models-dir", str(tmp_path / "models"), "--out-dir", str(tmp_path / "runs"), cwd=tmp_path)
    art = load_artifact(tmp_path / "models", model)
    t = art.manifest["training"]
    assert t["validation_reward"]["kept"] in ("bc", "bc+rl") and t["decisions"] > 0
    assert t["validation_reward"]["bc+rl"] is not None  # the RL stage really ran
    assert (tmp_path / "runs" / f"{model}-v1" / "training_curve.png").stat().st_size > 0
    if model == "hybrid":  # resumable: every supervised stage left its checkpoint
        assert (tmp_path / "runs" / "checkpoints" / "hybrid-seed0" / "dagger.pt").is_file()


def test_train_a_named_gat_hybrid(tmp_path):
    """``--conv gat --name hybrid_gat``: how models/hybrid_gat/1 was made (distilled from
    hybrid v1), at a tiny budget: its own artifact name, GAT layers, the teacher recorded."""
    cli("train", "--model", "hybrid", "--conv", "gat", "--hidden", "16", "--name", "hybrid_gat",
        "--distill-from", str(Path(__file__).parents[1] / "models" / "hybrid" / "1"),
        "--demo-episodes", "2", "--dagger-episodes", "0", "--bc-epochs", "1",
        "--rl-steps", "0", "--eval-episodes", "0",
        "--models-dir", str(tmp_path / "models"), "--out-dir", str(tmp_path / "runs"), cwd=tmp_path)
    art = load_artifact(tmp_path / "models", "hybrid_gat")
    assert (art.manifest["name"], art.version, art.kind) == ("hybrid_gat", "1", "hybrid")
    assert art.manifest["architecture"]["conv"] == "gat"
    assert art.manifest["training"]["distillation"]["teacher"] == "hybrid v1"
    assert not (tmp_path / "models" / "hybrid").exists()
    assert (tmp_path / "runs" / "hybrid_gat-v1" / "training_curve.png").is_file()


def _checkpointed_module(ray_train: Path, stage: str, architecture: dict) -> torch.nn.Module:
    """The weights of a Ray Train run's last checkpoint (runs are named <kind>-seed<s>-
    <stage>-<digest>)."""
    from edge_allocator.policies import build_policy
    from edge_allocator.train.distributed import STATE_FILE

    (run,) = [p for p in ray_train.iterdir() if p.name.split("-")[2] == stage]
    state_file = max(run.glob(f"checkpoint_*/{STATE_FILE}"))  # the last one
    module = build_policy("hybrid", architecture)
    module.load_state_dict(torch.load(state_file, map_location="cpu", weights_only=True)["model"])
    return module.eval()


def test_train_pipeline_runs_every_stage_on_ray(tmp_path):
    """``train --pipeline``: demonstrations as Ray tasks, behaviour cloning on Ray Train
    (2 DDP workers), RL as a Ray Tune grid; its own private Ray, stopped afterwards.

    No DAgger round: it is the same two Ray stages again (tasks that label with the
    cloned module, then Ray Train), ~25 s of CI each run; the serial trainers test it."""
    out = cli("train", "--pipeline", "--model", "hybrid", "--demo-episodes", "2",
              "--dagger-episodes", "0", "--bc-epochs", "2", "--rl-steps", "128",
              "--sweep-seeds", "0", "--sweep-lrs", "1e-4", "3e-4", "--sweep-ent-coefs", "0.01",
              "--eval-episodes", "0", "--validation-episodes", "2",
              "--models-dir", str(tmp_path / "models"), "--out-dir", str(tmp_path / "runs"),
              cwd=tmp_path)
    t = load_artifact(tmp_path / "models", "hybrid").manifest["training"]
    assert t["ray"]["workers"] == 2 and "Ray Train" in t["pipeline"]
    assert len(t["bc_loss_curve"]) == 2  # 2 epochs of cloning
    rows = t["rl_sweep"]["rows"]
    assert sorted(r["rl_lr"] for r in rows) == [1e-4, 3e-4]
    assert [r["ent_coef"] for r in rows] == [0.01, 0.01]  # --sweep-ent-coefs reached them
    best = max(r["validation_reward"] for r in rows)
    assert t["validation_reward"]["bc+rl"] == best
    kept_rl = t["validation_reward"]["kept"].startswith("bc+rl")
    assert kept_rl == (best > t["validation_reward"]["bc"])
    run = tmp_path / "runs"
    # the rewards are real evaluations, redone here: the cloned weights (the cloning
    # stage's last Ray Train checkpoint, where RL started) score the start reward of
    # every trial, and the shipped weights score what the manifest says was kept
    episodes = t["config"]["validation_episodes"]
    assert episodes == 2  # --validation-episodes reached the config
    art = load_artifact(tmp_path / "models", "hybrid")
    cloned = _checkpointed_module(run / "ray-train", "bc", art.manifest["architecture"])
    bc = validation_reward(cloned, "hybrid", episodes)
    assert [r["start_reward"] for r in rows] == pytest.approx([bc, bc])
    assert t["validation_reward"]["bc"] == pytest.approx(bc)
    kept = t["validation_reward"]["bc+rl" if kept_rl else "bc"]
    shipped = load_module(art).eval()
    assert validation_reward(shipped, "hybrid", episodes) == pytest.approx(kept)
    assert {p.name.split("-")[2] for p in (run / "ray-train").iterdir()} == {"bc"}
    for name in ("training_curve.png", "rl_sweep.png", "rl_sweep.md"):
        assert (run / "hybrid-v1" / name).stat().st_size > 0
    assert "| rl_lr | ent_coef | seed |" in out


def test_evaluate_writes_table_json_and_plot(tmp_path):
    out = cli("evaluate", "--models", "hybrid", "--episodes", "2", "--tasks", "20",
              "--scenarios", "synthetic-10to50", "--out-dir", str(tmp_path / "res"), cwd=tmp_path)
    assert "greedy_eft" in out and "hybrid-v" in out
    rows = json.loads((tmp_path / "res" / "evaluation.json").read_text())
    agents = {r["agent"] for r in rows}
    assert {"random", "round_robin", "least_loaded", "lowest_latency", "greedy_eft",
            "oracle_greedy"} <= agents
    assert all(r["metrics"]["episode_reward"]["ci95"] >= 0 for r in rows)
    assert (tmp_path / "res" / "evaluation.png").stat().st_size > 0


def test_sample_then_predict(tmp_path):
    sample = cli("sample", "--nodes", "15", "--seed", "3", cwd=tmp_path)
    (tmp_path / "state.json").write_text(sample)
    d = json.loads(cli("predict", str(tmp_path / "state.json"), "--model", "ppo", cwd=tmp_path))
    assert d["model"]["name"] == "ppo" and d["node_id"] in d["ranking"]


def test_report_summarises_outcomes_per_model_version(tmp_path):
    """Each model version's row carries its own counts, success rate, completion times,
    confidence and cache rate, computed by hand from what was logged."""
    from edge_allocator.store import DecisionLog, DecisionRecord, new_decision_id, utc_now

    # (model, version, confidence, cached, feedback (completion_ms, success) or None)
    sent = [("hybrid", "1", 0.9, False, (100.0, True)), ("hybrid", "1", 0.8, False, (200.0, True)),
            ("hybrid", "1", 0.7, True, (600.0, False)), ("hybrid", "1", 0.6, False, None),
            ("hybrid", "2", 0.5, False, (300.0, True)), ("hybrid", "2", 0.3, False, (500.0, False)),
            ("dqn", "1", 0.2, False, None)]
    url = f"sqlite:///{tmp_path / 'd.db'}"
    with DecisionLog(url, spool_path=tmp_path / "spool.jsonl") as log:
        ids = []
        for name, version, confidence, cached, _ in sent:
            did = new_decision_id()
            ids.append(did)
            log.record(DecisionRecord(
                decision_id=did, created_at=utc_now(), model_name=name, model_version=version,
                backend="onnx", node_id="a", node_index=0, confidence=confidence, cached=cached,
                scores={"a": 1.0}, latency_ms=2.0, request_hash="ab" * 16))
        log.flush()
        for did, (*_, fb) in zip(ids, sent, strict=True):
            if fb is not None:
                log.record_feedback(did, fb[0], fb[1])
    out = cli("report", "--db", url, cwd=tmp_path)
    rows = {tuple(cells[:2]): cells[2:] for line in out.splitlines()
            if (cells := [c.strip() for c in line.strip().strip("|").split("|")])[0]
            in ("hybrid", "dqn")}
    # decisions, feedback, success, mean completion, p90 completion (linear interpolation:
    # [100, 200, 600] -> 200 + 0.8 * 400), mean confidence, cache hits
    assert rows == {
        ("dqn", "1"): ["1", "0", "–", "–", "–", "0.200", "0.0%"],
        ("hybrid", "1"): ["4", "3", "66.7%", "300.0", "520.0", "0.750", "25.0%"],
        ("hybrid", "2"): ["2", "2", "50.0%", "400.0", "480.0", "0.400", "0.0%"],
    }, out


def test_train_and_evaluate_with_observed_speeds(tmp_path):
    """``--observed-speed`` (issue 12 §3, how models/hybrid/3 was made), at a tiny budget:
    the closed-loop environment trains, validates and evaluates, and the manifest says
    the features carried learned speeds."""
    cli("train", "--model", "hybrid", "--hidden", "16", "--observed-speed", "--candidate",
        "--demo-episodes", "2", "--dagger-episodes", "1", "--bc-epochs", "1",
        "--rl-steps", "0", "--eval-episodes", "0",
        "--models-dir", str(tmp_path / "models"), "--out-dir", str(tmp_path / "runs"), cwd=tmp_path)
    t = load_artifact(tmp_path / "models", "hybrid").manifest["training"]
    assert t["observed_speed"] is True and t["environment"]["observed_speed"] is True
    assert t["config"]["observed_speed"] is True and t["decisions"] > 0
    assert t["candidate"] is True  # the only version: still served (nothing else to pick)
    out = cli("evaluate", "--models", "hybrid", "--episodes", "2", "--tasks", "20",
              "--scenarios", "melbourne", "--observed-speed", "--models-dir",
              str(tmp_path / "models"), "--out-dir", str(tmp_path / "eval"), cwd=tmp_path)
    assert "hybrid-v1" in out and (tmp_path / "eval" / "evaluation.json").is_file()
