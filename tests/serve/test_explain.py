"""POST /v1/explain over real HTTP, on the shipped composition with tokens: auth, errors
and limits as /v1/allocate's, completeness, node_id and compare_to, and the attributions
computed on the Explainer deployment (the decision replicas stay torch-free)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.serve.conftest import deploy

pytestmark = pytest.mark.cluster

APP, PREFIX = "edge-allocator-explain", "/explain"
TOKEN = "expl-t0ken"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MAX_BODY = 200_000


@pytest.fixture(scope="module")
def url(ray_cluster, test_models, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("explain")
    tokens = root / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    deploy(APP, PREFIX, test_models, root / "decisions.db",
           ingress={"auth_token_file": str(tokens), "max_body_bytes": MAX_BODY})
    return f"http://127.0.0.1:{ray_cluster['port']}{PREFIX}"


@pytest.fixture(scope="module")
def http(url) -> httpx.Client:
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def state(http) -> dict[str, Any]:
    r = http.get("/v1/sample", params={"nodes": 20, "seed": 4})
    assert r.status_code == 200, r.text
    return r.json()


def total(attributions: dict[str, dict[str, float]]) -> float:
    return sum(v for feats in attributions.values() for v in feats.values())


def test_needs_the_token(url, state):
    assert httpx.post(f"{url}/v1/explain", json=state).status_code == 401
    r = httpx.post(f"{url}/v1/explain", json=state, headers={"authorization": "Bearer bad"})
    assert r.status_code == 401


@pytest.mark.parametrize("model", ["hybrid", "dqn", "greedy_eft"])
def test_explains_the_decision_and_sums_to_the_score_gap(http, state, model):
    r = http.post("/v1/explain", json={**state, "model": model})
    assert r.status_code == 200, r.text
    out = r.json()
    d, e = out["decision"], out["explanation"]
    assert e["node_id"] == d["node_id"] and out["comparison"] is None
    assert e["score"] == pytest.approx(d["scores"][d["node_id"]], abs=1e-4)
    assert set(e["attributions"]) == {n["node_id"] for n in state["nodes"]}
    gap = e["score"] - e["baseline_score"]
    assert abs(total(e["attributions"]) - gap) <= 0.01 * abs(gap)


def test_node_id_and_compare_to(http, state):
    ranking = http.post("/v1/allocate", json=state).json()["ranking"]
    second, third = ranking[1], ranking[2]
    r = http.post("/v1/explain", json={**state, "node_id": second, "compare_to": third})
    assert r.status_code == 200, r.text
    e, c = r.json()["explanation"], r.json()["comparison"]
    assert (e["node_id"], c["node_id"]) == (second, third)
    assert c["gap"] == pytest.approx(e["score"] - c["score"]) and c["gap"] >= 0
    explained = c["gap"] - c["baseline_gap"]
    assert abs(total(c["attributions"]) - explained) <= 0.01 * abs(explained)
    top = c["top"][0]
    assert c["attributions"][top["node_id"]][top["feature"]] == pytest.approx(top["value"])


@pytest.mark.parametrize(("change", "status", "loc"), [
    ({"node_id": "nope"}, 422, "node_id"),
    ({"compare_to": 7}, 422, "compare_to"),
    ({"model": "nope"}, 404, "model"),
    ({"task": {"deadline_ms": -1}}, 422, "task.deadline_ms"),
])
def test_errors_name_the_field(http, state, change, status, loc):
    r = http.post("/v1/explain", json={**state, **change})
    assert r.status_code == status and r.json()["details"][0]["loc"] == loc, r.text


def test_limits_are_allocates(http, state):
    big = {**state, "padding": "x" * MAX_BODY}
    assert http.post("/v1/explain", json=big).status_code == 413
    assert http.post("/v1/explain", content=b"{", headers={
        "content-type": "application/json"}).status_code == 400
    assert http.get("/v1/explain").status_code == 405


def test_decision_replicas_stay_torch_free(http, state):
    assert http.post("/v1/explain", json={**state, "model": "ppo"}).status_code == 200
    models = http.get("/v1/models").json()["models"]
    assert models and not any(m["torch_loaded"] for m in models)
