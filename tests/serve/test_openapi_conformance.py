"""Real responses of every endpoint, v1 and the original API, validate against the
served /openapi.json: the published document cannot drift from what is returned."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.conftest import node

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def openapi(app_url) -> dict[str, Any]:
    r = httpx.get(f"{app_url}/openapi.json", timeout=30)
    assert r.status_code == 200
    return r.json()


def _validate(doc: dict[str, Any], template: str, method: str, response: httpx.Response) -> None:
    responses = doc["paths"][template][method.lower()]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method} {template}: {status} is not documented"
    schema = responses[status]["content"]["application/json"]["schema"]
    # the document's "#/components/schemas/X" references resolve inside this wrapper
    wrapper = {"$schema": "https://json-schema.org/draft/2020-12/schema",
               "$ref": "#/$defs/target", "$defs": {"target": schema},
               "components": doc["components"]}
    errors = sorted(Draft202012Validator(wrapper).iter_errors(
        response.json()), key=lambda e: list(e.absolute_path))
    assert not errors, (f"{method} {template} {status}: "
                        + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]))


def test_every_endpoint_returns_what_the_document_says(app_url, client, openapi):
    state = client.get(f"{app_url}/v1/sample", params={"nodes": 12, "seed": 1}).json()
    legacy = {"nodes": [{k: v for k, v in n.items() if k != "node_id"} for n in state["nodes"]]}
    calls: list[tuple[str, str, str, Any]] = [
        ("GET", "/v1/sample", "/v1/sample?nodes=12&seed=1", None),
        ("GET", "/v1/sample", "/v1/sample?nodes=2", None),
        ("POST", "/v1/allocate", "/v1/allocate", state),
        ("POST", "/v1/allocate", "/v1/allocate", state),  # a cache hit
        ("POST", "/v1/allocate", "/v1/allocate", {**state, "model": "dqn"}),
        ("POST", "/v1/allocate", "/v1/allocate", {"nodes": [node(cpu_util=3)]}),
        ("POST", "/v1/allocate", "/v1/allocate", {**state, "model": "nope"}),
        ("POST", "/v1/allocate/batch", "/v1/allocate/batch", {"states": [state, state]}),
        ("POST", "/v1/feedback", "/v1/feedback", {"decision_id": "e" * 32}),
        ("POST", "/predict", "/predict", {"network_state": legacy, "model_type": "dqn"}),
        ("POST", "/predict", "/predict", {"network_state": legacy}),
        ("POST", "/batch-predict", "/batch-predict", {"network_states": [legacy, legacy]}),
        ("GET", "/v1/models", "/v1/models", None),
        ("GET", "/v1/batch-config", "/v1/batch-config", None),
        ("GET", "/v1/network", "/v1/network", None),  # live network off: enabled false
        ("POST", "/v1/allocate", "/v1/allocate", {"network": "live"}),  # off: a 422
        ("POST", "/v1/compare", "/v1/compare", state),  # the decision explorer's routes
        ("POST", "/v1/compare", "/v1/compare", {"nodes": [node(cpu_util=3)]}),
        ("POST", "/v1/explain", "/v1/explain", state),
        ("POST", "/v1/explain", "/v1/explain", {**state, "model": "greedy_eft"}),  # a rule
        ("POST", "/v1/explain", "/v1/explain", {**state, "node_id": "nope"}),  # a 422
        ("GET", "/v1/stats", "/v1/stats", None),
        ("GET", "/v1/decisions", "/v1/decisions?limit=5", None),
        ("GET", "/v1/decisions", "/v1/decisions?decision_id=zz", None),
        ("GET", "/v1/manifest", "/v1/manifest?model=hybrid&version=1", None),
        ("GET", "/v1/manifest", "/v1/manifest?model=nope&version=1", None),
        ("GET", "/v1/artifact", "/v1/artifact?model=hybrid&version=1&file=none.png", None),
        ("GET", "/healthz", "/healthz", None),
        ("GET", "/readyz", "/readyz", None),
        ("GET", "/health", "/health", None),
        ("GET", "/models", "/models", None),
        ("GET", "/models/{name}", "/models/hybrid", None),
        ("GET", "/models/{name}", "/models/nope", None),
        ("GET", "/models/{name}", "/models/hybrid_attention", None),
        ("POST", "/models/{name}/load", "/models/hybrid_gat/load", None),
        ("POST", "/models/{name}/load", "/models/nope/load", None),
        ("POST", "/generate-mock-network", "/generate-mock-network",
         {"num_nodes": 10, "num_edges": 15}),
        ("POST", "/generate-mock-network", "/generate-mock-network",
         {"num_devices": 10, "num_fog": 3, "num_cloud": 2}),
        ("POST", "/generate-mock-network", "/generate-mock-network", {"num_nodes": 2}),
        ("GET", "/", "/", None),
        ("GET", "/v1/nodes/{node_id}", "/v1/nodes/openapi-n0", None),
        ("DELETE", "/v1/nodes/{node_id}", "/v1/nodes/openapi-n0", None),
        ("GET", "/v1/nodes/{node_id}", "/v1/nodes/" + "x" * 129, None),  # a 422
    ]
    for method, template, path, body in calls:
        r = client.request(method, f"{app_url}{path}", json=body)
        _validate(openapi, template, method, r)
    d = client.post(f"{app_url}/v1/allocate", json=state).json()
    r = client.post(f"{app_url}/v1/feedback",
                    json={"decision_id": d["decision_id"], "completion_ms": 12.0})
    _validate(openapi, "/v1/feedback", "POST", r)
    assert set(openapi["paths"]) == {template for _, template, _, _ in calls}, \
        "a documented path is not exercised here, or an exercised one is not documented"


def test_the_document_rejects_a_response_that_lacks_a_field(openapi):
    """The check above can fail: a decision without ``probabilities`` is invalid."""
    decision = openapi["components"]["schemas"]["Decision"]
    assert "probabilities" in decision["required"] and "inference_node" in decision["properties"]
    fake = httpx.Response(200, json={"decision_id": "x", "node_id": "a", "node_index": 0})
    # a decision or a live decision (anyOf): jsonschema says it matches neither
    with pytest.raises(AssertionError, match="required property|not valid under any"):
        _validate(openapi, "/v1/allocate", "POST", fake)
