"""The columnar decoder against the pydantic models: same verdicts, same first field
paths, same values, over generated valid and invalid states (differential test)."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_allocator.columnar import _fast, _Irregular, decode_batch, decode_state, from_models
from edge_allocator.schema import AllocateRequest, BatchAllocateRequest, RequestError, parse
from tests.conftest import node

#: Odd values a client may send in a number field: valid, out of range, wrong type, and
#: the ones pydantic's lax mode accepts although they are not plain numbers.
ODD_NUMBERS = [0, 1, 0.5, 1.0, -1, -0.0, 1.5, 2, 3, 1e6, 1e6 + 1, 1e308, 2**63, 10**400,
               math.nan, math.inf, -math.inf, True, False, None, "0.5", " 1", "x", "", [],
               {}, [0.5]]
ODD_IDS = [None, "a", "b", "", "x" * 128, "x" * 129, 5, 1.5, True, ["a"], "n0"]
ODD_EDGES = [None, [], [[0, 1]], [[1, 0], [0, 1]], [[0, 0]], [[0, 99]], [[-1, 0]], [[0, 1, 2]],
             [[0]], [["0", 1]], [[1.0, 0]], [[True, 0]], [(0, 1)], "x", [[0, 2**70]], {}]
ODD_TASKS = [None, {}, {"compute_gcycles": 0}, {"compute_gcycles": 1e6},
             {"compute_gcycles": 1e6 + 1}, {"memory_mb": 0}, {"memory_mb": -1},
             {"data_mb": "1"}, {"deadline_ms": 1e9}, {"deadline_ms": math.inf},
             {"memory_mb": 10**7}, {"unknown": 1}, "x", [1]]
ODD_MODELS = [None, "hybrid", "", "m" * 64, "m" * 65, 5, ["hybrid"]]
FIELDS = ["cpu_util", "mem_util", "energy", "latency", "bandwidth", "queue_len", "node_type"]
#: The optional node fields (issue 12) and valid values of each.
LIMITS = {"capacity_gcps": [0.5, 6.0, 40, 1e6], "memory_mb": [512.0, 8192, 1e9],
          "queue_capacity": [1, 8, 64, 10**6], "observed_speed": [0.2, 1, 2.5, 100.0]}


def _declare(draw: st.DrawFn, nodes: list[dict[str, Any]]) -> None:
    for nd in nodes:
        for f, values in LIMITS.items():
            if draw(st.integers(0, 2)) == 0:
                nd[f] = draw(st.sampled_from([*values, None]))


@st.composite
def states(draw: st.DrawFn) -> Any:
    n = draw(st.integers(1, 6))
    nodes = [node(node_type=draw(st.sampled_from([0, 1, 2])),
                  cpu_util=draw(st.floats(0, 1)), mem_util=draw(st.floats(0, 1)),
                  latency=draw(st.integers(0, 100)), queue_len=draw(st.integers(0, 40)),
                  bandwidth=draw(st.sampled_from([0, 1, 100.0, 1e4])))
             for _ in range(n)]
    if draw(st.booleans()):
        for i, nd in enumerate(nodes):
            nd["node_id"] = f"n{i}"
    if draw(st.integers(0, 2)) == 0:  # valid optional fields on some nodes
        _declare(draw, nodes)
    state: dict[str, Any] = {"nodes": nodes}
    for _ in range(draw(st.integers(0, 2))):  # mutations: most states stay valid
        kind = draw(st.sampled_from(["field", "field", "missing", "id", "edges", "task",
                                     "model", "nodes", "extra", "limit"]))
        i = draw(st.integers(0, n - 1))
        if kind == "field":
            nodes[i][draw(st.sampled_from(FIELDS))] = draw(st.sampled_from(ODD_NUMBERS))
        elif kind == "missing":
            nodes[i].pop(draw(st.sampled_from(FIELDS)), None)  # twice on one node: no KeyError
        elif kind == "id":
            nodes[i]["node_id"] = draw(st.sampled_from(ODD_IDS))
        elif kind == "limit":
            nodes[i][draw(st.sampled_from(list(LIMITS)))] = draw(st.sampled_from(
                [*ODD_NUMBERS, 32, 32.0, 0.0, 1e6 + 1, 1e9 + 1, 100.5]))
        elif kind == "edges":
            state["edges"] = draw(st.sampled_from(ODD_EDGES))
        elif kind == "task":
            state["task"] = draw(st.sampled_from(ODD_TASKS))
        elif kind == "model":
            state["model"] = draw(st.sampled_from(ODD_MODELS))
        elif kind == "nodes":
            state["nodes"] = draw(st.sampled_from([[], "x", [1], [None], nodes * 400]))
        else:
            nodes[i]["extra"] = 1
            state["extra"] = {"a": 1}
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([None, [], "x", 1]))
    return copy.deepcopy(state)


def _verdict(fn: Any, data: Any) -> tuple[bool, str]:
    try:
        fn(data)
    except RequestError as err:
        return False, err.details[0]["loc"] if err.details else ""
    return True, ""


def _same_columns(a: Any, b: Any) -> None:
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    assert [x or None for x in a.node_ids] == [x or None for x in b.node_ids]
    assert len(a.edges) == len(b.edges)
    for ea, eb in zip(a.edges, b.edges):
        assert (ea is None) == (eb is None)
        if ea is not None:
            np.testing.assert_array_equal(ea.reshape(-1, 2), eb.reshape(-1, 2))
    np.testing.assert_array_equal(a.tasks, b.tasks)
    assert a.models == b.models
    assert (a.declared is None) == (b.declared is None)
    if a.declared is not None:
        np.testing.assert_array_equal(a.declared, b.declared)  # NaN (omitted) equals NaN


COUNTS = {"states": 0, "fast": 0, "valid": 0}


@settings(max_examples=600, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(states(), min_size=17, max_size=30), st.sampled_from(ODD_MODELS[:3]))
def test_fast_path_agrees_with_pydantic(batch: list[Any], model: Any) -> None:
    for state in batch:
        COUNTS["states"] += 1
        want = _verdict(lambda d: parse(AllocateRequest, d), state)
        assert _verdict(decode_state, state) == want, state
        COUNTS["valid"] += want[0]
        try:
            fast = _fast([state])
        except _Irregular:
            continue
        COUNTS["fast"] += 1
        assert want[0], f"fast path accepted what pydantic rejects ({want[1]}): {state}"
        _same_columns(fast, from_models([parse(AllocateRequest, state)]))
    body = {"states": batch, "model": model}
    assert _verdict(decode_batch, body) == _verdict(
        lambda d: parse(BatchAllocateRequest, d), body)


def test_the_differential_test_covered_enough() -> None:
    """≥ 10,000 states, most through the fast path, both verdicts well represented (the
    property runs here too when this test runs alone)."""
    if COUNTS["states"] == 0:
        test_fast_path_agrees_with_pydantic()
    assert COUNTS["states"] >= 10_000, COUNTS
    assert COUNTS["fast"] > 0.3 * COUNTS["states"], COUNTS
    assert 0.2 < COUNTS["valid"] / COUNTS["states"] < 0.9, COUNTS


def test_a_bad_state_rejects_the_batch_with_its_index():
    good = {"nodes": [node()]}
    with pytest.raises(RequestError) as info:
        decode_batch({"states": [good, good, {"nodes": [node(cpu_util=2)]}]})
    assert info.value.details[0]["loc"] == "states.2.nodes.0.cpu_util"


def test_keys_ignore_how_a_state_was_sent():
    a = decode_state({"nodes": [node(latency=1)], "model": "x", "other": 1})
    b = decode_state({"nodes": [node(latency=1.0)]})
    c = decode_state({"nodes": [node(latency=1)], "edges": []})
    batch, _ = decode_batch({"states": [{"nodes": [node(latency=1)]}]})
    assert a.key(0, "hybrid", "1") == b.key(0, "hybrid", "1") == batch.key(0, "hybrid", "1")
    assert a.key(0, "hybrid", "1") != c.key(0, "hybrid", "1")  # default topology vs none
    assert a.key(0, "hybrid", "1") != a.key(0, "hybrid", "2")


# --- the columnar wire shape and msgpack ------------------------------------------------------


def _columnar_body(states: list[dict[str, Any]], packed: bool = False) -> dict[str, Any]:
    from edge_allocator.wire import columnar_request

    return columnar_request(states, packed)


def _sim_states(n: int) -> list[dict[str, Any]]:
    from edge_allocator.sim import EdgeAllocationEnv, EnvConfig

    env = EdgeAllocationEnv(EnvConfig(min_nodes=5, max_nodes=30, tasks_per_episode=n + 1))
    env.reset(seed=3)
    out = []
    for _ in range(n):
        out.append(env.request_json())
        env.step(int(env.graph().mask.argmax()))
    return out


@pytest.mark.parametrize("packed", [False, True])
def test_columnar_shape_decodes_to_the_same_batch(packed):
    from edge_allocator.wire import columnar_batch

    states = _sim_states(12)
    rows, _ = decode_batch({"states": states})
    cols, model = columnar_batch(_columnar_body(states, packed))
    assert model is None
    np.testing.assert_array_equal(cols.offsets, rows.offsets)
    np.testing.assert_allclose(cols.values, rows.values, rtol=1e-6 if packed else 0)
    assert cols.node_ids == rows.node_ids
    for a, b in zip(cols.edges, rows.edges):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(cols.tasks, rows.tasks, rtol=1e-6 if packed else 0)


@pytest.mark.parametrize(("mutate", "loc"), [
    (lambda b: b["nodes"]["cpu_util"].__setitem__(7, 1.5), "states.{s}.nodes.{j}.cpu_util"),
    (lambda b: b["nodes"]["node_type"].__setitem__(7, 3), "states.{s}.nodes.{j}.node_type"),
    (lambda b: b["nodes"]["queue_len"].__setitem__(7, -1), "states.{s}.nodes.{j}.queue_len"),
    (lambda b: b["nodes"]["node_id"].__setitem__(7, b["nodes"]["node_id"][6]),
     "states.{s}.nodes.{j}.node_id"),
    (lambda b: b["nodes"].pop("latency"), "nodes.latency"),
    (lambda b: b["nodes"]["energy"].pop(), "nodes.energy"),
    (lambda b: b.__setitem__("edges", [99] + b["edges"][1:]), "states.0.edges.0"),
])
def test_columnar_errors_name_the_state_and_node(mutate, loc):
    from edge_allocator.wire import columnar_batch

    states = _sim_states(3)
    body = _columnar_body(states)
    mutate(body)
    with pytest.raises(RequestError) as info:
        columnar_batch(body)
    n0 = len(states[0]["nodes"])
    s, j = (0, 7) if n0 > 7 else (1, 7 - n0)
    assert info.value.status == 422
    assert info.value.details[0]["loc"] == loc.format(s=s, j=j)


def test_columnar_edges_are_judged_per_state_and_keyed_per_topology():
    """The columnar shape's edges are checked in one pass: a bad edge is still named by
    its own state and position, each state is judged against its own node count, and
    states sharing a topology share its array and cache key."""
    from edge_allocator.columnar import edge_list_key
    from edge_allocator.wire import columnar_batch

    def body(edges_per_state: list[list[list[int]]], sizes: list[int]) -> dict[str, Any]:
        states = [{"nodes": [node(node_id=f"n{k}") for k in range(n)], "edges": e}
                  for n, e in zip(sizes, edges_per_state)]
        return _columnar_body(states)

    ring = [[0, 1], [1, 2], [2, 0]]
    batch, _ = columnar_batch(body([ring, [[0, 1]], ring], [3, 3, 3]))
    assert batch.edges[0] is batch.edges[2] and batch.edges[1].tolist() == [[0, 1]]
    assert batch.edge_keys == [edge_list_key(3, batch.edges[0]),
                               edge_list_key(3, batch.edges[1]), batch.edge_keys[0]]
    with pytest.raises(RequestError) as info:  # valid for 3 nodes, not for state 1's 2
        columnar_batch(body([ring, [[0, 1], [1, 0], [0, 2]], ring], [3, 2, 3]))
    assert info.value.details[0]["loc"] == "states.1.edges.2"
    assert "outside 0..1" in info.value.details[0]["msg"]


def test_batch_keys_equal_each_states_key():
    """``keys`` slices the batch's bytes once; it must give ``key(i)`` of every state
    (the cache and the log's request hash depend on it): ids, edges, tasks and sizes vary."""
    states = [{"nodes": [node(latency=k), node(node_type=2)], "edges": [[0, 1]]}
              for k in range(3)]
    states += [{"nodes": [node()] * 3, "task": {"memory_mb": 5}},
               {"nodes": [dict(node(), node_id="a"), dict(node(), node_id="b")]}]
    batch, _ = decode_batch({"states": states})
    assert batch.keys("hybrid", "2") == [batch.key(i, "hybrid", "2") for i in range(5)]
    assert len(set(batch.keys("hybrid", "2"))) == 5
