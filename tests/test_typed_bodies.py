"""The typed body decoder (msgspec structs) against the dict path it short-cuts: it may
accept only what the dict path accepts, with the same columns, and it must accept
everything the dict path's fast checks accept (else it would be a slower detour)."""

from __future__ import annotations

import json
from typing import Any

import msgpack  # type: ignore[import-untyped]
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_allocator import schema
from edge_allocator.columnar import _fast, _Irregular, decode_batch, decode_state
from edge_allocator.schema import RequestError
from edge_allocator.typed_bodies import (
    TypedBatch,
    TypedNode,
    TypedState,
    TypedTask,
    decode_batch_body,
    decode_state_body,
)
from tests.conftest import node
from tests.test_columnar import ODD_MODELS, _same_columns, states

COUNTS = {"bodies": 0, "typed": 0, "fast": 0}


def _encodings(obj: Any) -> list[tuple[bytes, bool]]:
    """JSON as Python writes it (NaN and huge ints included: both paths must reject
    the same) and msgpack where it can hold the value."""
    out = [(json.dumps(obj).encode(), False)]
    try:
        out.append((msgpack.packb(obj, use_bin_type=True), True))
    except (OverflowError, TypeError):
        pass
    return out


def _dict_path(body: bytes, is_msgpack: bool, decode: Any) -> Any:
    """What the service did before the typed decoder: parse to a dict, then decide."""
    try:
        data = msgpack.unpackb(body, raw=False) if is_msgpack else orjson.loads(body)
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return decode(data)
    except RequestError:
        return None


def _fast_accepts(states_: list[Any]) -> bool:
    try:
        _fast(states_)
    except _Irregular:
        return False
    return True


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(states(), min_size=5, max_size=12), st.sampled_from(ODD_MODELS[:3]))
def test_typed_decoder_agrees_with_the_dict_path(batch: list[Any], model: Any) -> None:
    for state in batch:
        for body, is_msgpack in _encodings(state):
            COUNTS["bodies"] += 1
            typed = decode_state_body(body, is_msgpack)
            ref = _dict_path(body, is_msgpack, decode_state)
            fast = isinstance(state, dict) and _fast_accepts([state]) and ref is not None
            COUNTS["fast"] += fast
            if typed is None:
                assert not fast, f"typed decoder refused what the fast checks take: {state}"
                continue
            COUNTS["typed"] += 1
            assert ref is not None, f"typed decoder accepted what the service rejects: {state}"
            _same_columns(typed, ref)
    for body, is_msgpack in _encodings({"states": batch, "model": model}):
        typed_batch = decode_batch_body(body, is_msgpack)
        ref_batch = _dict_path(body, is_msgpack, decode_batch)
        if typed_batch is not None:
            assert ref_batch is not None
            _same_columns(typed_batch.batch, ref_batch[0])
            assert typed_batch.model == ref_batch[1]


def test_the_typed_differential_test_covered_enough() -> None:
    if COUNTS["bodies"] == 0:
        test_typed_decoder_agrees_with_the_dict_path()
    assert COUNTS["bodies"] >= 2_500, COUNTS
    assert COUNTS["typed"] >= COUNTS["fast"] > 0.3 * COUNTS["bodies"], COUNTS


@pytest.mark.parametrize(("struct", "model"), [
    (TypedNode, schema.Node), (TypedTask, schema.Task),
    (TypedState, schema.AllocateRequest), (TypedBatch, schema.BatchAllocateRequest)])
def test_structs_mirror_the_pydantic_models(struct: Any, model: Any) -> None:
    """A field added to the schema must be added here too: the typed decoder would
    otherwise drop it silently (msgspec ignores unknown keys, as pydantic does)."""
    extra = {"network", "fields"}  # not in the models: network sends a body to the dict path
    mine = {f: f not in struct.__struct_defaults__ for f in struct.__struct_fields__}
    required = {name: info.is_required() for name, info in model.model_fields.items()}
    assert {f for f in mine if f not in extra} == set(required)
    n_required = len(struct.__struct_fields__) - len(struct.__struct_defaults__)
    assert {f for f in struct.__struct_fields__[:n_required]} == {
        f for f, req in required.items() if req}


def test_bodies_for_the_dict_path_are_left_to_it():
    live = orjson.dumps({"network": "live", "states": [{"nodes": [node()]}]})
    assert decode_batch_body(live, False) is None
    assert decode_state_body(orjson.dumps({"network": "live", "nodes": [node()]}), False) is None
    columnar = orjson.dumps({"states": [{"nodes": [node()]}], "node_counts": [1]})
    assert decode_batch_body(columnar, False) is None
    assert decode_batch_body(b"{", False) is None
    deep = b'{"nodes": [' * 500  # msgspec raises RecursionError: the dict path words a 400
    assert decode_state_body(deep, False) is None and decode_batch_body(deep, False) is None
    assert decode_batch_body(orjson.dumps({"states": [{"nodes": [node(cpu_util=2)]}]}),
                             False) is None


def test_fields_and_model_come_through():
    body = orjson.dumps({"states": [{"nodes": [node(), node(node_type=2)], "edges": [[0, 1]],
                                     "task": {"memory_mb": 10}, "model": "dqn"}],
                         "model": "hybrid", "fields": "node_id"})
    got = decode_batch_body(body, False)
    assert got is not None and got.model == "hybrid" and got.fields == "node_id"
    assert got.batch.models == ["dqn"] and got.batch.tasks[0, 1] == 10.0
    assert got.batch.edges[0] is not None and got.batch.edges[0].tolist() == [[0, 1]]


def test_plain_nodes_skip_the_optional_fields_and_others_do_not():
    """Today's nodes decode as PlainNode (no optional fields to scan); a node with a
    capacity, or with a key pydantic ignores, is decoded again with TypedNode, and the
    columns are the dict path's either way."""
    plain = {"states": [{"nodes": [node(node_id="a"), node(node_id="b", node_type=2)]}]}
    declared = {"states": [{"nodes": [node(), node(capacity_gcps=7.5, queue_capacity=4)]}]}
    unknown = {"states": [{"nodes": [node(), node(colour="red")]}]}
    for body, is_msgpack in (_encodings(plain) + _encodings(declared)
                             + _encodings(unknown)):
        got = decode_batch_body(body, is_msgpack)
        ref = _dict_path(body, is_msgpack, decode_batch)
        assert got is not None and ref is not None
        _same_columns(got.batch, ref[0])
    got = decode_batch_body(orjson.dumps(declared), False)
    assert got is not None and got.batch.declared is not None
    assert got.batch.declared[1, 0] == 7.5 and got.batch.declared[1, 2] == 4
    assert decode_batch_body(orjson.dumps(unknown), False).batch.declared is None


def test_an_edge_list_is_checked_against_each_states_own_node_count():
    """Edge lists are decoded and checked once per distinct list as sent, so the same
    bytes must still be judged against each state's own size."""
    edges = [[0, 4], [1, 2]]
    five = {"nodes": [node() for _ in range(5)], "edges": edges}
    three = {"nodes": [node() for _ in range(3)], "edges": edges}
    for body, is_msgpack in _encodings({"states": [five, five]}):
        got = decode_batch_body(body, is_msgpack)
        assert got is not None
        assert [e.tolist() for e in got.batch.edges] == [edges, edges]
        from edge_allocator.columnar import edge_list_key
        assert got.batch.edge_keys == [edge_list_key(5, got.batch.edges[0])] * 2
    for body, is_msgpack in _encodings({"states": [five, three]}):
        assert decode_batch_body(body, is_msgpack) is None  # the dict path words the 422
        with pytest.raises(RequestError, match=r"states\.1: edges\.0"):
            decode_batch(msgpack.unpackb(body) if is_msgpack else orjson.loads(body))
    nulls = {"states": [{"nodes": [node(), node()], "edges": None}]}
    got = decode_batch_body(orjson.dumps(nulls), False)
    assert got is not None and got.batch.edges == [None] and got.batch.edge_keys == [None]
