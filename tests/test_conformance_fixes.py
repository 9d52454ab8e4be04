"""What Schemathesis found against the served app (benchmarks/fuzz.py), checked without
Ray through ``FrontDoor.handle``: 405s carry ``Allow`` (RFC 9110), a negative sample
seed is a 422 (was a 500), JSON booleans are not numbers, and the OpenAPI document
declares the path parameter and the responses the service gives."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge_allocator import __version__
from edge_allocator.config import ModelSpec, ServiceConfig
from edge_allocator.policies import build_policy
from edge_allocator.runtime.export import save_artifact
from edge_allocator.service.http import FrontDoor, HttpResponse
from edge_allocator.service.inline import in_process_api
from edge_allocator.service.openapi import openapi_document

NODE = {"cpu_util": 0.5, "mem_util": 0.4, "energy": 5, "latency": 10, "bandwidth": 100,
        "queue_len": 0, "node_type": 1}


@pytest.fixture(scope="module")
def door(tmp_path_factory) -> FrontDoor:
    root: Path = tmp_path_factory.mktemp("models")
    m = build_policy("hybrid", {"hidden": 16})
    save_artifact(m, "hybrid", m.config.to_dict(), root, name="hybrid")
    return FrontDoor(in_process_api(ServiceConfig(models_dir=root, database_url=None,
                                                  cache="none",
                                                  models={"hybrid": ModelSpec()})))


def call(door: FrontDoor, method: str, path: str, body: Any = None,
         query: dict[str, str] | None = None) -> HttpResponse:
    async def read() -> bytes:
        return b"" if body is None else orjson.dumps(body)

    return asyncio.run(door.handle(method, path, {"content-type": "application/json"},
                                   query or {}, read))


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("TRACE", "/v1/allocate", "POST"), ("GET", "/v1/allocate", "POST"),
    ("DELETE", "/v1/models", "GET"), ("POST", "/readyz", "GET"),
    ("GET", "/models/hybrid/load", "POST"), ("PUT", "/models/hybrid", "GET")])
def test_405_lists_the_allowed_methods(door, method, path, allow):
    r = call(door, method, path)
    assert r.status == 405, r.body
    assert r.headers.get("allow") == allow


def test_unknown_route_is_404_without_allow(door):
    r = call(door, "TRACE", "/nope")
    assert r.status == 404 and "allow" not in r.headers


@pytest.mark.parametrize("seed", ["-1378", str(2**32)])
def test_sample_seed_out_of_range_is_422(door, seed):
    r = call(door, "GET", "/v1/sample", query={"seed": seed, "nodes": "5"})
    assert r.status == 422, r.body
    assert orjson.loads(r.body)["details"][0]["loc"] == "seed"


@pytest.mark.parametrize(("path", "body", "loc"), [
    ("/v1/feedback", {"decision_id": "e" * 32, "energy_j": False}, "energy_j"),
    ("/v1/feedback", {"decision_id": "e" * 32, "success": 0}, "success"),
    ("/generate-mock-network", {"seed": True}, "seed"),
    ("/generate-mock-network", {"num_nodes": True}, "num_nodes"),
])
def test_a_boolean_is_not_a_number(door, path, body, loc):
    r = call(door, "POST", path, body)
    assert r.status == 422, r.body
    assert loc in r.body.decode()


def test_booleans_in_a_state_are_refused(door):
    node = {"cpu_util": 0.5, "mem_util": 0.4, "energy": 5, "latency": 10,
            "bandwidth": 100, "queue_len": 2, "node_type": 1}
    r = call(door, "POST", "/v1/allocate", {"nodes": [node, {**node, "cpu_util": True}]})
    assert r.status == 422, r.body
    assert "nodes.1.cpu_util" in r.body.decode()


def test_document_declares_what_the_service_answers():
    doc = openapi_document(__version__)
    for path, method in (("/models/{name}", "get"), ("/models/{name}/load", "post")):
        params = doc["paths"][path][method]["parameters"]
        assert [p["name"] for p in params if p["in"] == "path"] == ["name"]
        # GET /models/ (an empty name) is the model list, not one model's info
        assert params[0]["schema"]["minLength"] == 1
    assert "404" in doc["paths"]["/models/{name}"]["get"]["responses"]
    for path in ("/v1/allocate", "/v1/allocate/batch", "/predict", "/batch-predict"):
        responses = doc["paths"][path]["post"]["responses"]
        assert {"413", "422"} <= set(responses)
        assert "no feasible node" in responses["422"]["description"]
    seed = next(p for p in doc["paths"]["/v1/sample"]["get"]["parameters"]
                if p["name"] == "seed")
    assert seed["schema"]["minimum"] == 0


SEGMENTS = [".", "..", "...", ".a", "a.", "..a", "n-0", "x..y", "é"]


@pytest.mark.parametrize(("template", "method", "name"), [
    ("/v1/nodes/{node_id}", "get", "node_id"), ("/v1/nodes/{node_id}", "delete", "node_id"),
    ("/models/{name}", "get", "name"), ("/models/{name}/load", "post", "name")])
def test_path_parameters_exclude_what_a_client_cannot_send(template, method, name):
    """The full fuzz run sent node_id "." (schema-valid by the old pattern): httpx, as
    every client following RFC 3986, removed the dot-segment, so the service saw
    /v1/nodes/ and answered 422. The document declares exactly the values that arrive
    as one path segment unchanged."""
    import re

    import httpx

    doc = openapi_document(__version__)
    param = next(p for p in doc["paths"][template][method]["parameters"] if p["name"] == name)
    pattern = re.compile(param["schema"]["pattern"])
    for value in SEGMENTS:
        sent = template.replace("{" + name + "}", value)
        arrives = httpx.URL("http://127.0.0.1" + sent).path
        assert bool(pattern.search(value)) == (arrives == sent), (value, arrives)


def test_a_dotted_node_id_is_served(door):
    r = call(door, "GET", "/v1/nodes/...")
    assert r.status == 200 and orjson.loads(r.body)["node_id"] == "..."


@pytest.mark.parametrize(("path", "body", "loc"), [
    ("/predict", {"network_state": {"nodes": [NODE, NODE], "edges": [[0, 5]]}},
     "network_state"),
    ("/batch-predict", {"network_states": [{"nodes": [NODE, NODE]},
                                           {"nodes": [NODE, NODE], "edges": [[0, 1], [3, 0]]}]},
     "network_states.1"),
])
def test_original_api_edges_past_the_node_count_are_422(door, path, body, loc):
    """Was an IndexError in the adjacency build: a 500 (Schemathesis, ST101)."""
    r = call(door, "POST", path, body)
    assert r.status == 422, r.body
    detail = orjson.loads(r.body)["details"][0]
    assert detail["loc"] == loc and "node index >= 2" in detail["msg"]
