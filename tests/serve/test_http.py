"""HTTP round trips against the application on a real Ray cluster."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from tests.conftest import node

pytestmark = pytest.mark.cluster


def _sample(client: httpx.Client, url: str, nodes: int = 20, seed: int = 0) -> dict:
    r = client.get(f"{url}/v1/sample", params={"nodes": nodes, "seed": seed})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("model", ["hybrid", "dqn", "ppo"])
def test_allocate_every_model(app_url, client, model):
    state = _sample(client, app_url)
    r = client.post(f"{app_url}/v1/allocate", json={**state, "model": model})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["model"]["name"] == model and d["model"]["backend"] == "onnx"
    assert d["node_id"] == state["nodes"][d["node_index"]]["node_id"]
    assert d["ranking"][0] == d["node_id"] and 0 < d["confidence"] <= 1
    assert d["scores"][d["node_id"]] == max(d["scores"].values())
    assert len(d["decision_id"]) == 32 and d["latency_ms"] > 0 and d["batch_size"] >= 1


def test_infeasible_nodes_are_never_chosen(app_url, client, small_state):
    small_state["nodes"][3]["bandwidth"] = 0  # the obvious best node is unreachable
    d = client.post(f"{app_url}/v1/allocate", json=small_state).json()
    assert d["node_id"] != "n3" and "n3" not in d["scores"] and "n3" not in d["ranking"]


def test_batch_endpoint_is_one_vectorised_call(app_url, client):
    states = [_sample(client, app_url, nodes=n, seed=s) for s, n in enumerate([10, 20, 40, 120])]
    r = client.post(f"{app_url}/v1/allocate/batch", json={"states": states})
    assert r.status_code == 200, r.text
    out = r.json()["decisions"]
    assert len(out) == 4 and all(d["batch_size"] == 4 for d in out)
    singles = [client.post(f"{app_url}/v1/allocate", json=s).json() for s in states]
    assert [d["node_id"] for d in out] == [d["node_id"] for d in singles]


def test_models_sample_health_ready_openapi(app_url, client):
    models = client.get(f"{app_url}/v1/models").json()
    assert {m["name"] for m in models["models"]} == {"hybrid", "dqn", "ppo", "hybrid_gat"}
    assert not any(m["torch_loaded"] for m in models["models"])  # ONNX replicas: no torch
    assert client.get(f"{app_url}/healthz").json() == {"status": "ok"}
    ready = client.get(f"{app_url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    doc = client.get(f"{app_url}/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/v1/allocate" in doc["paths"]
    assert "AllocateRequest" in doc["components"]["schemas"]
    mel = client.get(f"{app_url}/v1/sample", params={"scenario": "melbourne"}).json()
    assert len(mel["nodes"]) == 127


def test_feedback_round_trip(app_url, app_db, client, small_state):
    import sqlite3

    d = client.post(f"{app_url}/v1/allocate", json={**small_state, "task": {"data_mb": 7.0}})
    did = d.json()["decision_id"]
    r = client.post(f"{app_url}/v1/feedback", json={"decision_id": did, "completion_ms": 420.5,
                                                     "success": False, "energy_j": 3.25})
    assert r.status_code == 200, r.text
    with sqlite3.connect(app_db) as db:  # stored before the answer: no waiting
        rows = db.execute("SELECT completion_ms, success, energy_j FROM feedback "
                          "WHERE decision_id = ?", (did,)).fetchall()
    assert rows == [(420.5, 0, 3.25)]
    r = client.post(f"{app_url}/v1/feedback", json={"decision_id": "f" * 32, "completion_ms": 1.0})
    assert r.status_code == 404 and "unknown" in r.json()["error"]


def test_a_state_is_logged_with_the_same_hash_alone_or_in_a_batch(app_url, app_db, client,
                                                                  small_state):
    import sqlite3
    import time

    state = {**small_state, "extra_field_ignored": 1}
    one = client.post(f"{app_url}/v1/allocate", json=state).json()["decision_id"]
    many = client.post(f"{app_url}/v1/allocate/batch",
                       json={"states": [state, {**state, "task": {"compute_gcycles": 9.0}}]})
    ids = [one] + [d["decision_id"] for d in many.json()["decisions"]]
    deadline, rows = time.time() + 30, {}
    while time.time() < deadline and len(rows) < 3:  # the log writes off the request path
        with sqlite3.connect(app_db) as db:
            rows = dict(db.execute(
                "SELECT decision_id, request_hash FROM predictions WHERE decision_id IN (?,?,?)",
                ids).fetchall())
            for raw in db.execute("SELECT request_hashes FROM decision_runs WHERE run_id = ?",
                                  (ids[1][:28],)).fetchall():  # the batch: one run (store.runs)
                rows.update(zip(ids[1:], (raw[0][k:k + 16].hex() for k in (0, 16))))
        time.sleep(0.2)
    assert len(rows) == 3
    assert rows[ids[0]] == rows[ids[1]] != rows[ids[2]]


def test_original_api_clients_work_unchanged(app_url, client, small_state):
    legacy_nodes = [{k: v for k, v in n.items() if k != "node_id"} for n in small_state["nodes"]]
    net = {"nodes": legacy_nodes, "edges": small_state["edges"]}
    for model_type in ("dqn", "ppo", "hybrid"):
        r = client.post(f"{app_url}/predict", json={"network_state": net, "model_type": model_type})
        assert r.status_code == 200, r.text
        p = r.json()
        assert 0 <= p["selected_node"] < 5 and 0 <= p["confidence"] <= 1
        assert set(p["node_scores"]) == {"0", "1", "2", "3", "4"}
        assert p["processing_time_ms"] > 0
        if model_type == "dqn":
            assert len(p["q_values"]) == 5 and all(isinstance(q, float) for q in p["q_values"])
        else:
            assert p["q_values"] is None
    default = client.post(f"{app_url}/predict", json={"network_state": net}).json()
    assert default["model_version"]
    b = client.post(f"{app_url}/batch-predict",
                    json={"network_states": [net, net], "model_type": "hybrid"}).json()
    assert len(b["predictions"]) == 2 and b["total_processing_time_ms"] > 0
    h = client.get(f"{app_url}/health").json()
    loaded = {m["name"] for m in client.get(f"{app_url}/v1/models").json()["models"]}
    assert h["status"] == "healthy"  # hybrid_attention: the alias of hybrid_gat
    assert h["models_loaded"] == dict.fromkeys([*loaded, "hybrid_attention"], True)
    assert h["uptime_seconds"] >= 0 and h["version"]
    assert set(client.get(f"{app_url}/models").json()) == {"hybrid", "dqn", "ppo", "hybrid_gat"}
    assert client.get(f"{app_url}/models/dqn").json()["type"] == "dqn"
    assert client.get(f"{app_url}/models/nope").status_code == 404


@pytest.mark.parametrize("body,loc", [
    ({"nodes": [node(cpu_util=2.0)]}, "nodes.0.cpu_util"),
    ({"nodes": [node(), node()], "edges": [[0, 9]]}, "edges.0"),
    ({"nodes": [node(node_id="a"), node(node_id="a")]}, "nodes.1.node_id"),
    ({"nodes": []}, "nodes"),
])
def test_invalid_input_is_422_naming_the_field(app_url, client, body, loc):
    r = client.post(f"{app_url}/v1/allocate", json=body)
    assert r.status_code == 422
    assert r.json()["details"][0]["loc"] == loc


def test_client_errors_never_500(app_url, client):
    post = lambda path, content, ctype="application/json": client.post(  # noqa: E731
        f"{app_url}{path}", content=content, headers={"content-type": ctype})
    assert post("/v1/allocate", b"{not json").status_code == 400
    assert post("/v1/allocate", b"[1, 2]").status_code == 422
    assert post("/v1/allocate", b"\xff\xfe\x00").status_code == 400
    assert post("/v1/allocate", b'{"nodes": []}', "text/plain").status_code == 415
    assert post("/v1/allocate", b'{"nodes": NaN}').status_code == 400
    big = b'{"nodes": [' + b" " * (9 * 1024 * 1024) + b"]}"
    assert post("/v1/allocate", big).status_code == 413
    r = client.post(f"{app_url}/v1/allocate", json={"nodes": [node()], "model": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["error"]
    too_big = {"nodes": [node() for _ in range(200)], "model": "dqn"}
    r = client.post(f"{app_url}/v1/allocate", json=too_big)
    assert r.status_code == 422 and "at most 128" in r.json()["error"]
    full = {"nodes": [node(bandwidth=0), node(queue_len=1000)]}
    r = client.post(f"{app_url}/v1/allocate", json=full)
    assert r.status_code == 422 and "no feasible node" in r.json()["error"]
    assert client.get(f"{app_url}/v1/nothing").status_code == 404
    assert client.get(f"{app_url}/v1/allocate").status_code == 405


def test_large_responses_are_not_gzipped_by_default(app_url, client):
    """The shipped config leaves gzip_responses off (tests/test_compression.py covers it
    switched on): a client that accepts gzip gets identity, through Serve as in process."""
    state = _sample(client, app_url, nodes=300)
    raw = orjson.dumps(state)
    r = httpx.post(f"{app_url}/v1/allocate", content=raw,
                   headers={"content-type": "application/json", "accept-encoding": "gzip"})
    assert r.status_code == 200 and len(r.json()["scores"]) > 100
    assert "content-encoding" not in r.headers


def test_repeated_state_is_served_from_cache(app_url, client):
    state = _sample(client, app_url, seed=99)
    first = client.post(f"{app_url}/v1/allocate", json=state).json()
    second = client.post(f"{app_url}/v1/allocate", json=state).json()
    assert first["cached"] is False and second["cached"] is True
    assert second["batch_size"] == 0 and second["decision_id"] != first["decision_id"]
    assert second["node_id"] == first["node_id"]


def test_batches_form_under_concurrent_load(app_url):
    async def fire() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as c:
            states = [(await c.get(f"{app_url}/v1/sample", params={"seed": 1000 + i})).json()
                      for i in range(4)]
            reqs = [c.post(f"{app_url}/v1/allocate", json={**states[i % 4],
                                                             "task": {"compute_gcycles": 1 + i}})
                    for i in range(96)]
            return [r.json()["batch_size"] for r in await asyncio.gather(*reqs)]

    sizes = asyncio.run(fire())
    assert max(sizes) > 1, sizes


def test_every_composition_decides_identically(app_url, separate_url, hop_url, client):
    """Shipped (everything in the ingress), every stage separate, and the policy hop."""
    for seed in range(3):
        state = {**_sample(client, app_url, seed=500 + seed), "model": "hybrid"}
        a = client.post(f"{app_url}/v1/allocate", json=state).json()
        for other in (separate_url, hop_url):
            b = client.post(f"{other}/v1/allocate", json=state).json()
            assert (a["node_id"], a["ranking"]) == (b["node_id"], b["ranking"])
            assert a["scores"] == pytest.approx(b["scores"], rel=1e-6)
        batch = client.post(f"{separate_url}/v1/allocate/batch", json={"states": [state]}).json()
        assert batch["decisions"][0]["node_id"] == a["node_id"]


def test_separate_stages_round_trip(separate_url, client, small_state):
    for model in ("hybrid", "dqn"):
        d = client.post(f"{separate_url}/v1/allocate", json={**small_state, "model": model})
        assert d.status_code == 200 and d.json()["model"]["name"] == model
    r = client.post(f"{separate_url}/v1/allocate", json={"nodes": [{"cpu_util": 5}]})
    assert r.status_code == 422 and r.json()["details"][0]["loc"] == "nodes.0.cpu_util"
    full = {"nodes": [{**small_state["nodes"][0], "bandwidth": 0}]}
    assert client.post(f"{separate_url}/v1/allocate", json=full).status_code == 422
