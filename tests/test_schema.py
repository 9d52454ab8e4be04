from __future__ import annotations

import math

import pytest

from edge_allocator.schema import AllocateRequest, RequestError, parse
from tests.conftest import node


def _err(data: dict) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse(AllocateRequest, data)
    return info.value


def test_valid_state_parses_with_defaults(small_state):
    req = parse(AllocateRequest, small_state)
    assert req.node_ids() == ["g0", "g1", "n2", "n3", "c4"]
    assert parse(AllocateRequest, {"nodes": [node()]}).node_ids() == ["0"]
    assert parse(AllocateRequest, {"nodes": [node()]}).task is None


def test_unknown_fields_are_ignored():
    req = parse(AllocateRequest, {"nodes": [node(colour="red")], "extra": 1})
    assert len(req.nodes) == 1


@pytest.mark.parametrize("field,value", [
    ("cpu_util", 1.5), ("cpu_util", -0.1), ("mem_util", 2), ("energy", -1), ("latency", -5),
    ("bandwidth", -1), ("queue_len", -1), ("node_type", 3), ("cpu_util", math.nan),
    ("latency", math.inf), ("cpu_util", "high"),
])
def test_out_of_range_values_name_the_field(field, value):
    err = _err({"nodes": [node(), node(**{field: value})]})
    assert err.status == 422
    assert err.details[0]["loc"] == f"nodes.1.{field}"


def test_missing_field_is_named():
    bad = node()
    del bad["bandwidth"]
    assert _err({"nodes": [bad]}).details[0]["loc"] == "nodes.0.bandwidth"


def test_empty_nodes_rejected():
    assert _err({"nodes": []}).details[0]["loc"] == "nodes"


def test_duplicate_node_ids_rejected():
    err = _err({"nodes": [node(node_id="a"), node(node_id="a")]})
    assert err.details[0]["loc"] == "nodes.1.node_id"
    assert "duplicate" in err.message


def test_edges_to_missing_nodes_rejected():
    err = _err({"nodes": [node(), node()], "edges": [[0, 1], [1, 7]]})
    assert err.details[0]["loc"] == "edges.1"


def test_negative_edge_index_rejected():
    assert _err({"nodes": [node(), node()], "edges": [[0, -1]]}).details[0]["loc"] == "edges.0.1"


def test_task_limits():
    err = _err({"nodes": [node()], "task": {"compute_gcycles": 0}})
    assert err.details[0]["loc"] == "task.compute_gcycles"


def test_request_error_survives_pickling():
    import pickle

    e = RequestError(422, "x: bad", [{"loc": "x", "msg": "bad"}])
    back = pickle.loads(pickle.dumps(e))
    assert (back.status, back.message, back.details) == (
        422, "x: bad", [{"loc": "x", "msg": "bad"}]
    )
