"""The original AI Edge Allocator's clients against the served app: every request shape
they send (its API test client, its all-models test, its mock-network test, its
dashboards' calls), with the response shapes checked field by field; GET /, /docs and
a CORS preflight through the real HTTP path."""

from __future__ import annotations

from typing import Any

import pytest

from tests.serve.conftest import deploy

pytestmark = pytest.mark.cluster

#: The original API's model-type enum.
MODEL_TYPES = ("dqn", "ppo", "hybrid", "hybrid_gat", "hybrid_attention")
NODE_KEYS = {"cpu_util": float, "mem_util": float, "energy": float, "latency": float,
             "bandwidth": float, "queue_len": float, "node_type": int}
ORIGIN = "http://localhost:3000"


def shape(obj: Any, fields: dict[str, Any], where: str) -> None:
    """``obj`` has exactly ``fields`` (name -> type, tuple of types, or a nested dict),
    in that order."""
    assert isinstance(obj, dict), f"{where}: not an object: {obj!r}"
    assert list(obj) == list(fields), f"{where}: keys {list(obj)} != {list(fields)}"
    for name, tp in fields.items():
        if isinstance(tp, dict):
            shape(obj[name], tp, f"{where}.{name}")
        else:
            ok = isinstance(obj[name], tp) and not (tp in (int, float) and obj[name] is True)
            assert ok, f"{where}.{name}: {obj[name]!r} is not {tp}"


PREDICTION = {"selected_node": int, "confidence": float, "q_values": (list, type(None)),
              "node_scores": dict, "processing_time_ms": float, "model_version": str,
              "decision_id": str}


def check_prediction(p: dict[str, Any], n: int, model_type: str, where: str) -> None:
    shape(p, PREDICTION, where)
    assert 0 <= p["selected_node"] < n and 0 <= p["confidence"] <= 1
    assert set(p["node_scores"]) == {str(i) for i in range(n)}
    assert all(isinstance(v, float) for v in p["node_scores"].values())
    if model_type == "dqn":
        assert len(p["q_values"]) == n and all(isinstance(q, float) for q in p["q_values"])
    else:
        assert p["q_values"] is None, where


def test_original_clients_request_shapes(app_url, client):
    url = app_url
    # the web app's Inference page: a mock network, then /predict with its network_state
    r = client.post(f"{url}/generate-mock-network", json={"num_nodes": 10, "num_edges": 15})
    assert r.status_code == 200, r.text
    mock = r.json()
    shape(mock, {"network_state": {"nodes": list, "edges": list}, "num_nodes": int,
                 "num_edges": int, "generated_at": float}, "mock")
    net = mock["network_state"]
    assert mock["num_nodes"] == len(net["nodes"]) == 10
    assert mock["num_edges"] == len(net["edges"]) <= 15
    for i, n in enumerate(net["nodes"]):
        shape(n, NODE_KEYS, f"mock.nodes.{i}")
    assert all(len(e) == 2 and all(isinstance(v, int) for v in e) for e in net["edges"])
    # the mock-network test script: node counts per tier
    tiers = client.post(f"{url}/generate-mock-network",
                        json={"num_devices": 10, "num_fog": 3, "num_cloud": 2}).json()
    types = [n["node_type"] for n in tiers["network_state"]["nodes"]]
    assert (types.count(0), types.count(1), types.count(2)) == (10, 3, 2)
    # the all-models test: every model type of the original enum
    for model_type in MODEL_TYPES:
        r = client.post(f"{url}/predict", json={"network_state": net, "model_type": model_type})
        assert r.status_code == 200, f"{model_type}: {r.text}"
        check_prediction(r.json(), 10, model_type, f"predict[{model_type}]")
    # the API test client
    r = client.post(f"{url}/batch-predict",
                    json={"network_states": [net, tiers["network_state"]],
                          "model_type": "hybrid_gat"})
    assert r.status_code == 200, r.text
    batch = r.json()
    shape(batch, {"predictions": list, "total_processing_time_ms": float}, "batch")
    check_prediction(batch["predictions"][0], 10, "hybrid_gat", "batch.0")
    check_prediction(batch["predictions"][1], 15, "hybrid_gat", "batch.1")
    health = client.get(f"{url}/health").json()
    shape(health, {"status": str, "version": str, "models_loaded": dict,
                   "uptime_seconds": float}, "health")
    assert health["status"] == "healthy"
    assert health["models_loaded"] == {t: True for t in
                                       ("hybrid", "dqn", "ppo", *MODEL_TYPES[3:])}
    models = client.get(f"{url}/models").json()
    assert set(models) == {"hybrid", "dqn", "ppo", "hybrid_gat"}
    for name, m in models.items():
        shape(m, {"name": str, "versions": list, "type": str, "backend": str,
                  "max_nodes": (int, type(None))}, f"models.{name}")
    for model_type in MODEL_TYPES:
        info = client.get(f"{url}/models/{model_type}").json()
        shape(info, {"name": str, "versions": list, "type": str, "default": bool},
              f"models/{model_type}")
        served = "hybrid_gat" if model_type == "hybrid_attention" else model_type
        assert info["name"] == served and info["type"] == ("hybrid" if "hybrid" in served
                                                           else served)
        r = client.post(f"{url}/models/{model_type}/load")
        assert r.status_code == 200, r.text
        shape(r.json(), {"status": str, "message": str}, f"load[{model_type}]")
        assert r.json()["status"] == "success" and f"'{model_type}'" in r.json()["message"]
    assert client.post(f"{url}/models/nope/load").status_code == 404
    assert client.get(f"{url}/models/nope").status_code == 404


def test_service_information_and_docs(app_url, client):
    info = client.get(f"{app_url}/").json()
    shape(info, {"service": str, "version": str, "status": str, "docs": str, "health": str}, "/")
    assert (info["status"], info["docs"], info["health"]) == ("running", "/docs", "/health")
    page = client.get(f"{app_url}{info['docs']}")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert page.headers["content-type"].startswith("text/html")
    bundle = client.get(f"{app_url}/docs/swagger-ui-bundle.js", headers={"accept-encoding": "gzip"})
    assert bundle.status_code == 200 and bundle.headers["content-encoding"] == "gzip"
    assert len(bundle.content) > 1_000_000 and b"SwaggerUIBundle" in bundle.content
    assert client.get(f"{app_url}/openapi.json").status_code == 200  # what the page loads


@pytest.fixture(scope="module")
def cors_url(ray_cluster, test_models, tmp_path_factory) -> str:
    """The shipped composition with CORS allowing one origin."""
    db = tmp_path_factory.mktemp("db-cors") / "decisions.db"
    deploy("edge-allocator-cors", "/cors", test_models, db,
           ingress={"cors": {"allow_origins": [ORIGIN]}})
    yield f"http://127.0.0.1:{ray_cluster['port']}/cors"
    from ray import serve

    serve.delete("edge-allocator-cors")


def test_cors_preflight_through_serve(cors_url, app_url, client):
    preflight = {"origin": ORIGIN, "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type,authorization"}
    r = client.options(f"{cors_url}/predict", headers=preflight)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    assert {"content-type", "authorization"} <= {
        h.strip() for h in r.headers["access-control-allow-headers"].lower().split(",")}
    evil = client.options(f"{cors_url}/predict", headers={**preflight,
                                                         "origin": "http://evil.example"})
    assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers
    # the request the browser sends after the preflight
    mock = client.post(f"{cors_url}/generate-mock-network", json={"num_nodes": 8},
                       headers={"origin": ORIGIN}).json()
    r = client.post(f"{cors_url}/predict", json={"network_state": mock["network_state"]},
                    headers={"origin": ORIGIN})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert "retry-after" in r.headers["access-control-expose-headers"].lower()
    # the shipped app has CORS off: no preflight answer, no header
    off = client.options(f"{app_url}/predict", headers=preflight)
    assert off.status_code == 405 and "access-control-allow-origin" not in off.headers
    plain = client.get(f"{app_url}/health", headers={"origin": ORIGIN})
    assert "access-control-allow-origin" not in plain.headers
