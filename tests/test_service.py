"""Serving logic without Ray: stages, routing, auth, parsing, legacy shapes."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from edge_allocator.columnar import decode_state
from edge_allocator.config import InferenceConfig, ModelSpec, ServiceConfig
from edge_allocator.policies import build_policy
from edge_allocator.runtime.export import save_artifact
from edge_allocator.schema import RequestError
from edge_allocator.service import AllocatorService
from edge_allocator.service.auth import TokenAuth
from edge_allocator.service.http import parse_json
from edge_allocator.service.legacy import legacy_prediction
from edge_allocator.service.openapi import openapi_document
from edge_allocator.service.routing import ModelRouter
from edge_allocator.service.stages import GraphStage, ModelKey, PolicyStage
from tests.conftest import node


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for kind, cfg in (("hybrid", {"hidden": 16}), ("dqn", {"max_nodes": 12, "hidden": 16})):
        m = build_policy(kind, cfg)
        save_artifact(m, kind, m.config.to_dict(), root)
    shutil.copytree(root / "hybrid" / "1", root / "hybrid" / "2")
    return root


def _svc(models, **kw):
    return AllocatorService(ServiceConfig(models_dir=models, database_url=None, cache="none",
                                          models={"hybrid": ModelSpec(), "dqn": ModelSpec()}, **kw))


def test_inline_service_decides_and_respects_the_mask(models, small_state):
    svc = _svc(models)
    small_state["nodes"][1]["bandwidth"] = 0
    d = svc.allocate_one(small_state)
    assert d.to_dict()["model"] == {"name": "hybrid", "version": "2", "backend": "onnx"}
    assert d.node_id != "g1" and "g1" not in d.ranking
    assert abs(sum(d.probabilities.values()) - 1) < 1e-6
    assert d.confidence == max(d.probabilities.values())


def test_backends_agree_on_decisions(models, small_state):
    a = _svc(models).allocate_one(small_state)
    b = _svc(models, inference=InferenceConfig(backend="torch")).allocate_one(small_state)
    assert a.ranking == b.ranking
    assert (a.model.backend, b.model.backend) == ("onnx", "torch")  # what actually ran


def test_batches_of_mixed_sizes_equal_single_calls(models):
    stage, graphs = PolicyStage(models), GraphStage()
    states = [
        graphs.prepare(decode_state({"nodes": [node(latency=i + k) for k in range(n)]}))
        for i, n in enumerate([3, 17, 40, 5])
    ]
    key = ModelKey("hybrid", "1")
    together = stage.run(key, [s.graph for s in states])
    for s, t in zip(states, together):
        np.testing.assert_allclose(stage.run(key, [s.graph])[0], t, rtol=1e-5, atol=1e-5)


def test_flat_model_refuses_networks_larger_than_its_input(models):
    stage, graphs = PolicyStage(models), GraphStage()
    big = graphs.prepare(decode_state({"nodes": [node() for _ in range(13)]}))
    with pytest.raises(RequestError, match="at most 12 nodes") as info:
        stage.run(ModelKey("dqn", "1"), [big.graph])
    assert info.value.status == 422


def test_a_broken_version_is_reported_not_fatal(models, tmp_path):
    shutil.copytree(models, tmp_path / "m")
    (tmp_path / "m" / "hybrid" / "2" / "weights.pt").write_bytes(b"x")
    stage = PolicyStage(tmp_path / "m")
    stage.load([ModelKey("hybrid", "2"), ModelKey("dqn", "1")])
    assert ModelKey("dqn", "1") in stage.models
    assert "weights.pt: sha256 mismatch" in stage.failures[ModelKey("hybrid", "2")]
    with pytest.raises(RequestError) as info:
        stage.get(ModelKey("hybrid", "2"))
    assert info.value.status == 503


def test_no_feasible_node_is_a_422():
    with pytest.raises(RequestError, match="no feasible node"):
        GraphStage().prepare(decode_state({"nodes": [node(bandwidth=0)]}))


def test_router_pins_splits_and_rejects(models):
    r = ModelRouter(models, {"hybrid": ModelSpec(version="1")}, "hybrid")
    assert r.pick(None) == ("hybrid", "1")
    with pytest.raises(RequestError) as info:
        r.pick("ppo")
    assert info.value.status == 404
    ab = ModelRouter(models, {"hybrid": ModelSpec(ab={"1": 1, "2": 3})}, "hybrid",
                     rng=random.Random(0))
    picks = [ab.pick("hybrid")[1] for _ in range(2000)]
    assert 0.7 < picks.count("2") / 2000 < 0.8
    with pytest.raises(ValueError, match="not found"):
        ModelRouter(models, {"hybrid": ModelSpec(version="9")}, "hybrid")


def test_parse_json_statuses():
    for body, ctype, status in [(b"x" * 11, "application/json", 413), (b"{}", "text/csv", 415),
                                (b"", "application/json", 400), (b"{bad", None, 400),
                                (b"[]", "application/json", 422)]:
        with pytest.raises(RequestError) as info:
            parse_json(body, ctype, max_bytes=10)
        assert info.value.status == status
    assert parse_json(b'{"a": 1}', "application/json; charset=utf-8", 100) == {"a": 1}


def test_token_auth(monkeypatch, tmp_path):
    assert not TokenAuth("NO_SUCH_VAR").enabled
    monkeypatch.setenv("EA_TOKENS", "alpha, beta")
    (tmp_path / "t").write_text("gamma\n")
    auth = TokenAuth("EA_TOKENS", tmp_path / "t")
    for good in ("Bearer alpha", "bearer beta", "Bearer gamma"):
        auth.check(good)
    for bad in (None, "alpha", "Bearer delta", "Basic alpha"):
        with pytest.raises(RequestError) as info:
            auth.check(bad)
        assert info.value.status == 401 and "alpha" not in info.value.message


def test_legacy_shape(models, small_state):
    for n in small_state["nodes"]:
        n.pop("node_id")
    d = _svc(models).allocate_one(small_state, "dqn")
    p = legacy_prediction(d, "dqn", 5)
    assert p.selected_node == d.node_index and p.q_values is not None and len(p.q_values) == 5
    assert set(p.node_scores) == {"0", "1", "2", "3", "4"}
    assert legacy_prediction(d, "hybrid", 5).q_values is None


def test_openapi_document_lists_every_route():
    doc = openapi_document("0")
    assert {"/v1/allocate", "/v1/allocate/batch", "/predict", "/batch-predict", "/v1/feedback"} \
        <= set(doc["paths"])
    assert "Node" in doc["components"]["schemas"]


def test_a_misspelt_setting_is_an_error_naming_it():
    from pydantic import ValidationError

    from edge_allocator.config import PolicyConfig

    with pytest.raises(ValidationError, match="cach"):
        ServiceConfig.model_validate({"cach": "none"})
    with pytest.raises(ValidationError, match="max_batch"):
        PolicyConfig.model_validate({"inference": {"max_batch": 8}})
    with pytest.raises(ValidationError, match="redis_url"):
        ServiceConfig(cache="redis")


def test_original_health_reports_what_actually_loaded(models, tmp_path):
    import asyncio

    from edge_allocator.service.inline import in_process_api
    from edge_allocator.service.legacy import LegacyApi

    shutil.copytree(models, tmp_path / "m")
    cfg = ServiceConfig(models_dir=tmp_path / "m", database_url=None, cache="none",
                        models={"hybrid": ModelSpec(), "dqn": ModelSpec()})
    healthy = asyncio.run(LegacyApi(in_process_api(cfg)).health())
    assert healthy.status == "healthy" and healthy.models_loaded == {"hybrid": True, "dqn": True}
    (tmp_path / "m" / "hybrid" / "2" / "weights.pt").write_bytes(b"tampered")
    broken = asyncio.run(LegacyApi(in_process_api(cfg)).health())
    assert broken.status == "degraded"
    assert broken.models_loaded == {"hybrid": False, "dqn": True}
