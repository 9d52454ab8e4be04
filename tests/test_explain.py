"""POST /v1/explain without Ray: completeness for every model and heuristic, the
comparison, the errors, and that the ingress's import path stays torch-free."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import orjson
import pytest

from edge_allocator.config import ServiceConfig
from edge_allocator.explain import HEURISTICS
from edge_allocator.graph import FEATURE_NAMES
from edge_allocator.policies.heuristics import HEURISTIC_NAMES, RULES, all_heuristics
from edge_allocator.service.http import FrontDoor
from edge_allocator.service.inline import in_process_api
from edge_allocator.service.sample import sample_state

MODELS = ("hybrid", "hybrid_gat", "dqn", "ppo")
#: The contract: attributions sum to score - baseline_score within 1 %.
COMPLETENESS = 0.01


@pytest.fixture(scope="module")
def door():
    api = in_process_api(ServiceConfig(database_url=None, cache="local"))
    yield FrontDoor(api)
    api.close()


@pytest.fixture(scope="module")
def state():
    return sample_state({"nodes": "16", "seed": "3"})


@pytest.fixture(scope="module")
def feasible(state):
    """Ids of the state's feasible nodes, in order."""
    from edge_allocator.columnar import decode_state
    from edge_allocator.service.stages import GraphStage

    p = GraphStage().prepare(decode_state(state))
    return [nid for nid, ok in zip(p.node_ids, p.graph.mask) if ok]


def post(door, body):
    async def read():
        return orjson.dumps(body)

    out = asyncio.run(door.handle("POST", "/v1/explain", {"content-type": "application/json"},
                                  {}, read))
    return out.status, orjson.loads(out.body)


def total(attributions):
    return sum(v for feats in attributions.values() for v in feats.values())


def assert_complete(part, score_gap):
    got = total(part["attributions"])
    assert abs(got - score_gap) <= COMPLETENESS * abs(score_gap) + 1e-6, (got, score_gap)
    assert got - score_gap == pytest.approx(part["completeness_error"], abs=1e-6)


@pytest.mark.parametrize("model", MODELS + HEURISTICS)
def test_attributions_sum_to_the_score_gap(door, state, feasible, model):
    one, other = feasible[:2]
    status, out = post(door, {**state, "model": model, "node_id": one, "compare_to": other})
    assert status == 200, out
    d, e, c = out["decision"], out["explanation"], out["comparison"]
    assert e["node_id"] == one
    assert e["score"] == pytest.approx(d["scores"][e["node_id"]], abs=1e-4)  # same model
    ids = [n["node_id"] for n in state["nodes"]]
    assert list(e["attributions"]) == ids  # every node...
    assert all(list(f) == list(FEATURE_NAMES) for f in e["attributions"].values())  # ...feature
    assert_complete(e, e["score"] - e["baseline_score"])
    assert c["node_id"] == other and c["gap"] == pytest.approx(e["score"] - c["score"])
    assert c["score"] == pytest.approx(d["scores"][other], abs=1e-4)
    assert_complete(c, c["gap"] - c["baseline_gap"])
    if model in MODELS:
        assert e["method"] == "integrated_gradients" and e["rule"] is None
        assert e["score"] != pytest.approx(e["baseline_score"], abs=1e-3)  # not trivially 0
    else:
        assert d["model"] == {"name": model, "version": "heuristic", "backend": "numpy"}
        assert e["rule"]["name"] == model and set(e["rule"]["compared"]) <= set(ids)


def test_a_gnn_score_depends_on_the_neighbours_features(door, state):
    _, out = post(door, {**state, "model": "hybrid"})
    e = out["explanation"]
    assert e["node_id"] == out["decision"]["node_id"]  # default: the chosen node
    others = [v for nid, f in e["attributions"].items() if nid != e["node_id"]
              for v in f.values()]
    assert max(map(abs, others)) > 1e-3


def test_a_heuristic_reads_only_the_scored_nodes_own_features(door, state):
    _, out = post(door, {**state, "model": "greedy_eft"})
    e = out["explanation"]
    assert e["node_id"] == out["decision"]["node_id"] == out["decision"]["ranking"][0]
    assert e["method"] == "linear_rule" and e["baseline_score"] == 0.0
    for nid, feats in e["attributions"].items():
        for f, v in feats.items():
            if nid != e["node_id"] or f not in RULES["greedy_eft"].weights:
                assert v == 0.0
    chosen = e["rule"]["compared"][e["node_id"]]
    assert chosen["score"] == max(n["score"] for n in e["rule"]["compared"].values())
    assert chosen["score"] == pytest.approx(
        -(chosen["est_transfer_ms"] + chosen["est_wait_ms"] + chosen["est_exec_ms"]), rel=1e-5)


def test_the_rules_are_what_the_heuristics_compute(state):
    """RULES' weights (what explanations report) equal each heuristic's scores."""
    from edge_allocator.columnar import decode_state
    from edge_allocator.explain.rules import weight_vector
    from edge_allocator.service.stages import GraphStage

    g = GraphStage().prepare(decode_state(state)).graph
    x = g.x.copy()  # every feature varied, so that each weight matters
    x *= np.random.default_rng(0).uniform(0.5, 1.5, x.shape).astype(np.float32)
    x[:, FEATURE_NAMES.index("queue_len")] = np.arange(len(x)) % 7
    g = g._replace(x=x)
    assert set(RULES) == set(HEURISTIC_NAMES) == set(HEURISTICS)
    for h in all_heuristics():
        if RULES[h.name].weights:
            expect = g.x.astype(np.float64) @ weight_vector(h.name)
            np.testing.assert_allclose(h.scores(g)[g.mask], expect[g.mask], rtol=1e-5)


def test_explain_another_node_and_the_explanation_is_not_cached(door, state, feasible):
    a_id, b_id = feasible[-2:]
    _, a = post(door, {**state, "node_id": a_id})
    _, b = post(door, {**state, "node_id": b_id})
    assert b["decision"]["cached"]  # the decision is cached as /v1/allocate's...
    assert (a["explanation"]["node_id"], b["explanation"]["node_id"]) == (a_id, b_id)  # not this
    assert a["decision"]["node_id"] == b["decision"]["node_id"]


@pytest.mark.parametrize(("change", "status", "loc"), [
    ({"node_id": "nope"}, 422, "node_id"),
    ({"compare_to": "nope"}, 422, "compare_to"),
    ({"node_id": 3}, 422, "node_id"),
    ({"model": "nope"}, 404, "model"),
    ({"network": "live"}, 422, "network"),
    ({"nodes": [{"cpu_util": 2.0}]}, 422, "nodes.0.cpu_util"),
])
def test_bad_requests_name_the_field(door, state, change, status, loc):
    got, out = post(door, {**state, **change})
    assert got == status and out["details"][0]["loc"] == loc, out


def test_compare_to_must_be_another_node(door, state, feasible):
    got, out = post(door, {**state, "node_id": feasible[0], "compare_to": feasible[0]})
    assert got == 422 and out["details"][0] == {"loc": "compare_to", "msg": "same node"}


def test_an_infeasible_node_has_no_score_to_explain(door, state):
    s = {**state, "nodes": [dict(n) for n in state["nodes"]]}
    s["nodes"][5]["bandwidth"] = 0  # unreachable: masked
    got, out = post(door, {**s, "compare_to": s["nodes"][5]["node_id"]})
    assert got == 422 and out["details"][0] == {"loc": "compare_to", "msg": "infeasible node"}


def test_the_ingress_never_imports_torch_for_explain():
    code = ("import sys; import edge_allocator.service.http, deployments.explainer, "
            "deployments.app; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
