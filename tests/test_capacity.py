"""Declared node capacities (issue 12 §1): feasibility, features, and the reasons every
response and the "no feasible node" 422 give for masked nodes, on every input path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_allocator.columnar import decode_batch, decode_state
from edge_allocator.config import ModelSpec, ServiceConfig
from edge_allocator.graph import FEATURE_INDEX
from edge_allocator.graph_batch import node_features
from edge_allocator.policies import build_policy
from edge_allocator.runtime.export import save_artifact
from edge_allocator.schema import RequestError
from edge_allocator.service import AllocatorService
from edge_allocator.service.openapi import openapi_document
from edge_allocator.service.stages import GraphStage
from edge_allocator.wire import columnar_batch, columnar_request
from tests.conftest import node


@pytest.fixture(scope="module")
def svc(tmp_path_factory) -> AllocatorService:
    root = tmp_path_factory.mktemp("models")
    m = build_policy("hybrid", {"hidden": 16})
    save_artifact(m, "hybrid", m.config.to_dict(), root)
    return AllocatorService(ServiceConfig(models_dir=root, database_url=None, cache="none",
                                          models={"hybrid": ModelSpec()}))


def _mask(state: dict[str, Any]) -> list[bool]:
    return node_features(decode_state(state))[1].tolist()


def test_declared_memory_decides_feasibility():
    """The issue's new user: a gateway at 90 % memory; a 256 MB task does not fit the
    nominal 1,024 MB, but does fit 8 GB declared."""
    gw = node(node_type=0, mem_util=0.9)
    assert _mask({"nodes": [gw]}) == [False]
    assert _mask({"nodes": [{**gw, "memory_mb": 8192.0}]}) == [True]
    assert _mask({"nodes": [{**gw, "memory_mb": 8192.0}], "task": {"memory_mb": 900}}) \
        == [False]


def test_declared_queue_capacity_decides_feasibility():
    full = node(queue_len=32)
    assert _mask({"nodes": [full]}) == [False]  # the default: 32
    assert _mask({"nodes": [{**full, "queue_capacity": 33}]}) == [True]
    assert _mask({"nodes": [node(queue_len=4, queue_capacity=4)]}) == [False]


def test_declared_capacity_and_speed_scale_the_estimates():
    base = node(node_type=1, cpu_util=0.0, queue_len=2)
    x0 = node_features(decode_state({"nodes": [base]}))[0][0]
    x1 = node_features(decode_state({"nodes": [{**base, "capacity_gcps": 12.0}]}))[0][0]
    x2 = node_features(decode_state({"nodes": [{**base, "observed_speed": 0.25}]}))[0][0]
    nominal = node_features(decode_state({"nodes": [{**base, "capacity_gcps": 6.0}]}))[0][0]
    np.testing.assert_array_equal(x0, nominal)  # 6 gcps: the edge type's default
    for f in ("est_exec_ms", "est_wait_ms"):
        k = FEATURE_INDEX[f]
        assert x1[k] == pytest.approx(x0[k] / 2, rel=1e-5)
        assert x2[k] == pytest.approx(x0[k] * 4, rel=1e-5)


def test_declared_values_enter_the_cache_key():
    a = decode_state({"nodes": [node()]})
    b = decode_state({"nodes": [node(queue_capacity=64)]})
    batch, _ = decode_batch({"states": [{"nodes": [node(memory_mb=10.0)]}, {"nodes": [node()]}]})
    assert a.key(0, "h", "1") != b.key(0, "h", "1")
    assert batch.key(1, "h", "1") == a.key(0, "h", "1")  # a neighbour's fields do not leak


def test_every_response_names_each_masked_node_and_why(svc):
    state = {"nodes": [node(node_id="ok"), node(node_id="far", bandwidth=0),
                       node(node_id="busy", queue_len=32),
                       node(node_id="small", node_type=0, mem_util=0.9),
                       node(node_id="big", queue_len=32, queue_capacity=40)],
             "task": {"memory_mb": 512}}
    want = {"far": "unreachable (bandwidth 0)", "busy": "queue full (32 of 32)",
            "small": "memory short (need 512 MB, free 102.4 MB of 1024)"}
    one = svc.allocate_one(state)
    assert one.infeasible == want
    assert set(one.ranking) == {"ok", "big"}
    rows = svc.allocate_many({"states": [state, {"nodes": [node()]}]})
    cols = svc.allocate_many(columnar_request([state, {"nodes": [node()]}]))
    assert [d.infeasible for d in rows] == [d.infeasible for d in cols] == [want, {}]


def test_no_feasible_node_lists_the_reason_of_each_node(svc):
    state = {"nodes": [node(node_id="gw", node_type=0, mem_util=0.9),
                       node(node_id="q", queue_len=5, queue_capacity=5)]}
    with pytest.raises(RequestError) as info:
        GraphStage().prepare(decode_state(state))  # the single-request path
    err = info.value
    assert err.status == 422 and err.message.startswith("nodes: no feasible node (gw: memory")
    assert err.details[1:] == [
        {"loc": "nodes.0", "msg": "gw: memory short (need 256 MB, free 102.4 MB of 1024)"},
        {"loc": "nodes.1", "msg": "q: queue full (5 of 5)"}]
    with pytest.raises(RequestError) as info:
        svc.allocate_many({"states": [{"nodes": [node()]}, state]})
    assert info.value.details[2] == {"loc": "states.1.nodes.1", "msg": "q: queue full (5 of 5)"}


@pytest.mark.parametrize(("field", "value"), [
    ("capacity_gcps", 0), ("memory_mb", -1.0), ("queue_capacity", 3.5),
    ("queue_capacity", True), ("observed_speed", 101.0), ("capacity_gcps", "6")])
def test_bad_declared_values_are_a_422_naming_the_field(field, value):
    state = {"nodes": [node(), {**node(), field: value}]}
    with pytest.raises(RequestError) as info:
        decode_state(state)
    assert info.value.details[0]["loc"] == f"nodes.1.{field}"
    if value is True:
        return  # the columnar shape reads arrays as numbers (True is 1), in every field
    body = columnar_request([{"nodes": [node(), node()]}])
    body["nodes"][field] = [1, value]
    with pytest.raises(RequestError) as info:
        columnar_batch(body)
    assert info.value.status == 422 and field in info.value.details[0]["loc"]


def test_columnar_shape_carries_the_declared_fields():
    states = [{"nodes": [node(capacity_gcps=3.0, queue_capacity=8),
                         node(capacity_gcps=9.0, queue_capacity=64)]}]
    rows, _ = decode_batch({"states": states})
    for packed in (False, True):
        cols, _ = columnar_batch(columnar_request(states, packed))
        np.testing.assert_array_equal(cols.limits, rows.limits)


def test_defaults_are_documented_with_their_values():
    node_schema = openapi_document("test")["components"]["schemas"]["Node"]["properties"]
    assert "gateway (0): 1.5, edge (1): 6, cloud (2): 40" in str(node_schema["capacity_gcps"])
    assert "gateway (0): 1024, edge (1): 8192, cloud (2): 65536" in str(
        node_schema["memory_mb"])
    assert "32" in str(node_schema["queue_capacity"])


@pytest.mark.parametrize("field", ["capacity_gcps", "observed_speed", "memory_mb"])
def test_tiny_declared_values_keep_the_scores_finite(svc, field):
    """1e-300 is valid (> 0) but 0 in float32: estimates must not become 0 / 0 = NaN
    (Schemathesis found the NaN confidence and an IndexError on /batch-predict)."""
    d = svc.allocate_one({"nodes": [node(node_id="t", queue_len=0, **{field: 1e-300}),
                                    node(node_id="ok")], "task": {"memory_mb": 0}})
    assert all(np.isfinite(v) for v in d.scores.values()) and np.isfinite(d.confidence)
