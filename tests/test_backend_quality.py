"""benchmarks.backend_quality at a tiny budget: it pairs each lossy backend with onnx on
the same seeds, and its disagreement count has teeth (onnx against itself never differs;
a backend that inverts the scores differs wherever more than one node is feasible)."""

from __future__ import annotations

import json

import numpy as np

from benchmarks import backend_quality as bq
from edge_allocator.constants import MODELS_DIR
from edge_allocator.graph import NUM_FEATURES, GraphInputs
from edge_allocator.runtime.artifacts import load_artifact
from edge_allocator.runtime.backends import make_backend


def test_tiny_run_writes_paired_rows(tmp_path):
    bq.main(["--episodes", "2", "--tasks", "5", "--out", str(tmp_path)])
    out = json.loads((tmp_path / "backend_quality.json").read_text())
    rows = out["rows"]
    assert {(r["scenario"], r["backend"]) for r in rows} == {
        (s, b) for s in ("synthetic-10to50", "synthetic-100", "synthetic-500", "melbourne")
        for b in bq.LOSSY}
    for r in rows:
        assert r["episodes"] == 2 and r["decisions"] == 2 * 5
        assert np.isfinite(r["paired_diff"]) and np.isfinite(r["backend_reward"])
        assert 0 <= r["choices_differ_pct"] <= 100
    assert "| synthetic-500 | onnx-int8 | 2 |" in (tmp_path / "backend_quality.md").read_text()


def test_disagreements_are_counted_against_the_reference():
    art = load_artifact(MODELS_DIR, "hybrid")
    onnx = make_backend(art, "onnx")
    rng = np.random.default_rng(0)
    graph = GraphInputs(rng.normal(size=(6, NUM_FEATURES)).astype(np.float32),
                        np.eye(6, dtype=np.float32), np.ones(6, dtype=bool))

    class Inverted:
        name = "inverted"

        def run(self, x, adj, mask):
            return -onnx.run(x, adj, mask)

    same = bq.BackendAgent("onnx", onnx, None, reference=onnx)
    inverted = bq.BackendAgent("inverted", Inverted(), None, reference=onnx)
    for agent in (same, inverted):
        agent.scores(graph)
    assert (same.decisions, same.disagreements) == (1, 0)
    assert (inverted.decisions, inverted.disagreements) == (1, 1)
