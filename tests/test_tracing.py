"""Spans across ingress -> graph -> inference -> assembly carry the decision id and form
one trace, including across a (simulated) process boundary via the carrier."""

from __future__ import annotations

import orjson
import pytest

from edge_allocator import tracing
from edge_allocator.columnar import decode_batch, decode_state
from edge_allocator.policies import build_policy
from edge_allocator.runtime.export import save_artifact
from edge_allocator.service.stages import (
    AssembleMeta,
    GraphStage,
    ModelKey,
    PolicyStage,
    ResponseStage,
    ScoredBatch,
    ScoredOne,
)


@pytest.fixture(scope="module")
def exporter():
    exp = tracing.configure("memory")
    if exp is None:
        pytest.skip("a tracer provider was already installed in this process")
    return exp


def test_one_trace_through_every_stage(exporter, small_state, tmp_path):
    m = build_policy("hybrid", {"hidden": 8})
    save_artifact(m, "hybrid", m.config.to_dict(), tmp_path)
    req = decode_state(small_state)
    graphs, policy, assembler = GraphStage(), PolicyStage(tmp_path), ResponseStage()
    exporter.clear()
    with tracing.span("ingress.allocate", decision_id="ab" * 16):
        tc = orjson.loads(orjson.dumps(tracing.carrier()))  # as it crosses processes
        state = graphs.prepare(req, tc)
        scores = policy.run(ModelKey("hybrid", "1"), [state.graph], tc)
        meta = AssembleMeta(ModelKey("hybrid", "1"), 1, 0.0, ("ab" * 16,), tc)
        resp = assembler.assemble(state, ScoredOne(scores[0], 1, "onnx", "here"), meta)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"ingress.allocate", "graph.prepare", "policy.infer", "response.assemble"}
    root = spans["ingress.allocate"]
    for name in ("graph.prepare", "policy.infer", "response.assemble"):
        assert spans[name].context.trace_id == root.context.trace_id
        assert spans[name].parent.span_id == root.context.span_id
    assert spans["response.assemble"].attributes["decision_id"] == resp.decision_id == "ab" * 16
    assert spans["policy.infer"].attributes["batch_size"] == 1


def test_a_batch_is_one_span_per_stage_carrying_every_decision_id(exporter, small_state,
                                                                  tmp_path):
    m = build_policy("hybrid", {"hidden": 8})
    save_artifact(m, "hybrid", m.config.to_dict(), tmp_path)
    batch, _ = decode_batch({"states": [small_state] * 3})
    graphs, policy, assembler = GraphStage(), PolicyStage(tmp_path), ResponseStage()
    ids = ("a" * 32, "b" * 32, "c" * 32)
    exporter.clear()
    with tracing.span("ingress.allocate_batch", states=3):
        tc = tracing.carrier()
        buckets = graphs.prepare_batch(batch, tc)
        scores = policy.run_batches(ModelKey("hybrid", "1"), [b.graphs for b in buckets], tc)
        meta = AssembleMeta(ModelKey("hybrid", "1"), 3, 0.0, ids, tc)
        out = assembler.assemble_batch(batch, buckets, ScoredBatch(scores, "onnx", "here"),
                                       meta).decisions()
    names = [s.name for s in exporter.get_finished_spans()]
    assert sorted(names) == ["graph.prepare_many", "ingress.allocate_batch", "policy.infer",
                             "response.assemble_many"]  # not one span per state
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert tuple(spans["response.assemble_many"].attributes["decision_ids"]) == ids
    assert [r.decision_id for r in out] == list(ids)
    assert spans["graph.prepare_many"].attributes["states"] == 3


def test_unknown_exporter_is_refused():
    with pytest.raises(ValueError, match="use one of"):
        tracing.configure("jaeger")
