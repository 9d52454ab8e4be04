"""The rest of the original API without Ray: GET /, POST /generate-mock-network, model
aliases, POST /models/{type}/load, GET /docs (vendored Swagger UI) and CORS, all through
``FrontDoor.handle`` over an in-process API."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from edge_allocator.config import CorsConfig, ModelSpec, RoutingConfig, ServiceConfig
from edge_allocator.policies import build_policy
from edge_allocator.runtime.export import save_artifact
from edge_allocator.service.cors import CorsFront, cors_front
from edge_allocator.service.docs import ASSETS, SWAGGER_UI_VERSION, asset
from edge_allocator.service.http import FrontDoor, HttpResponse
from edge_allocator.service.inline import in_process_api
from edge_allocator.service.sample import spanning_first
from edge_allocator.sim.scenarios import synthetic_network

MODELS = {"hybrid": ModelSpec(), "dqn": ModelSpec(), "hybrid_gat": ModelSpec()}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for kind, name, arch in (("hybrid", "hybrid", {"hidden": 16}),
                             ("dqn", "dqn", {"max_nodes": 32, "hidden": 16}),
                             ("hybrid", "hybrid_gat", {"hidden": 16, "conv": "gat"})):
        m = build_policy(kind, arch)
        save_artifact(m, kind, m.config.to_dict(), root, name=name)
    return root


@pytest.fixture(scope="module")
def mock_door(models) -> FrontDoor:
    return _door(models)


def _door(models: Path, **kw: Any) -> FrontDoor:
    return FrontDoor(in_process_api(ServiceConfig(models_dir=models, database_url=None,
                                                  cache="none", models=MODELS, **kw)))


def call(door: FrontDoor, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> HttpResponse:
    async def read() -> bytes:
        return b"" if body is None else orjson.dumps(body)

    hdrs = {"content-type": "application/json", **(headers or {})}
    return asyncio.run(door.handle(method, path, hdrs, {}, read))


def js(r: HttpResponse) -> Any:
    return orjson.loads(r.body)


# --- GET / ------------------------------------------------------------------------------


def test_root_describes_the_service(models):
    r = call(_door(models), "GET", "/")
    assert r.status == 200, r.body
    info = js(r)
    assert list(info) == ["service", "version", "status", "docs", "health"]
    assert info["service"] == "Edge Allocator" and info["status"] == "running"
    assert (info["docs"], info["health"]) == ("/docs", "/health") and info["version"]


# --- POST /generate-mock-network --------------------------------------------------------


def test_mock_network_by_node_count_posts_to_predict(models):
    door = _door(models)
    r = call(door, "POST", "/generate-mock-network", {"num_nodes": 10, "num_edges": 15})
    assert r.status == 200, r.body
    out = js(r)
    assert list(out) == ["network_state", "num_nodes", "num_edges", "generated_at"]
    net = out["network_state"]
    assert out["num_nodes"] == len(net["nodes"]) == 10
    assert out["num_edges"] == len(net["edges"]) <= 15
    assert {n["node_type"] for n in net["nodes"]} == {0, 1, 2}  # the simulator's tiers
    for n in net["nodes"]:
        assert set(n) == {"cpu_util", "mem_util", "energy", "latency", "bandwidth",
                          "queue_len", "node_type"}
        assert 0 <= n["cpu_util"] <= 1 and n["bandwidth"] >= 0 and n["energy"] > 0
    for model_type in ("hybrid", "dqn", "hybrid_gat", "hybrid_attention"):
        p = call(door, "POST", "/predict", {"network_state": net, "model_type": model_type})
        assert p.status == 200, p.body
        assert 0 <= js(p)["selected_node"] < 10


def test_mock_network_by_tier_counts(models):
    door = _door(models)
    body = {"num_devices": 10, "num_fog": 3, "num_cloud": 2}
    out = js(call(door, "POST", "/generate-mock-network", body))
    types = [n["node_type"] for n in out["network_state"]["nodes"]]
    assert (types.count(0), types.count(1), types.count(2)) == (10, 3, 2)
    assert out["num_nodes"] == 15
    edges = np.array(out["network_state"]["edges"])
    assert edges.max() < 15 and out["num_edges"] == len(edges)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(15, 15))
    assert connected_components(graph, directed=False)[0] == 1  # every link kept: connected


def test_mock_network_is_reproducible_with_a_seed_and_new_without(models):
    door = _door(models)
    a, b = (js(call(door, "POST", "/generate-mock-network", {"num_nodes": 20, "seed": 7}))
            for _ in range(2))
    assert a["network_state"] == b["network_state"]
    c, d = (js(call(door, "POST", "/generate-mock-network", {"num_nodes": 20}))
            for _ in range(2))
    assert c["network_state"] != d["network_state"]


def test_num_edges_caps_the_links_and_keeps_the_network_connected(models):
    out = js(call(_door(models), "POST", "/generate-mock-network",
                  {"num_nodes": 40, "num_edges": 39, "seed": 2}))
    edges = np.array(out["network_state"]["edges"])
    assert out["num_edges"] == len(edges) == 39  # the topology has more: capped
    graph = coo_matrix((np.ones(39), (edges[:, 0], edges[:, 1])), shape=(40, 40))
    assert connected_components(graph, directed=False)[0] == 1  # a spanning tree


def test_num_edges_caps_links_spanning_tree_first():
    net = synthetic_network(40, np.random.default_rng(3))
    links = spanning_first(net)
    assert sorted(map(tuple, net.links.tolist())) == sorted(links)  # same links, reordered
    tree = np.array(links[: net.n - 1])
    graph = coo_matrix((np.ones(len(tree)), (tree[:, 0], tree[:, 1])), shape=(net.n, net.n))
    assert connected_components(graph, directed=False)[0] == 1


@pytest.mark.parametrize("body,loc", [
    ({"num_nodes": 4}, "num_nodes"),
    ({"num_nodes": 1001}, "num_nodes"),
    ({"num_nodes": "ten"}, "num_nodes"),
    ({"num_edges": -1}, "num_edges"),
    ({"num_devices": 10, "num_cloud": 2}, "num_fog"),
    ({"num_devices": 0, "num_fog": 1, "num_cloud": 1}, "num_devices"),
    ({"num_devices": 900, "num_fog": 100, "num_cloud": 1}, "num_devices"),
    ({"num_devices": 5, "num_fog": 2, "num_cloud": 1, "num_nodes": 10}, "num_nodes"),
    ({"num_nodes": 10, "seed": -1}, "seed"),
])
def test_bad_mock_network_requests_are_422_naming_the_field(models, body, loc):
    r = call(_door(models), "POST", "/generate-mock-network", body)
    assert r.status == 422, r.body
    assert js(r)["details"][0]["loc"] == loc and js(r)["error"].startswith(loc)


counts = st.one_of(st.integers(-1, 6), st.integers(-3, 1100), st.floats(allow_nan=False),
                  st.none(), st.booleans(), st.text(max_size=4),
                  st.lists(st.integers(-2**63, 2**63 - 1), max_size=2))  # JSON-encodable


MOCK_FIELDS = ("num_nodes", "num_edges", "num_devices", "num_fog", "num_cloud", "seed")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(
    st.fixed_dictionaries({}, optional={k: counts for k in MOCK_FIELDS}),
    st.fixed_dictionaries({k: st.integers(-1, 5) for k in MOCK_FIELDS[2:5]},  # every tier
                          optional={"num_edges": counts, "num_nodes": counts})))
def test_mock_network_never_500(mock_door, body):
    r = call(mock_door, "POST", "/generate-mock-network", body)
    assert r.status in (200, 422), (body, r.status, r.body[:300])
    out = js(r)
    if r.status == 422:
        assert out["details"][0]["loc"] in MOCK_FIELDS, out  # names the field at fault
    else:
        assert out["num_nodes"] == len(out["network_state"]["nodes"])
        if isinstance(body.get("num_edges"), int) and not isinstance(body["num_edges"], bool):
            assert out["num_edges"] <= body["num_edges"]


# --- model types: hybrid_gat, hybrid_attention ------------------------------------------


def test_hybrid_attention_is_answered_by_the_gat_model(models):
    door = _door(models)
    net = js(call(door, "POST", "/generate-mock-network", {"num_nodes": 12, "seed": 1}))
    state = {"nodes": net["network_state"]["nodes"], "edges": net["network_state"]["edges"]}
    for name in ("hybrid_gat", "hybrid_attention"):
        d = js(call(door, "POST", "/v1/allocate", {**state, "model": name}))
        assert d["model"]["name"] == "hybrid_gat", d
    assert js(call(door, "GET", "/models/hybrid_attention"))["name"] == "hybrid_gat"
    health = js(call(door, "GET", "/health"))
    assert health["models_loaded"] == {"hybrid": True, "dqn": True, "hybrid_gat": True,
                                       "hybrid_attention": True}
    r = call(door, "POST", "/predict", {"network_state": state, "model_type": "nope"})
    assert r.status == 404 and "hybrid_attention" in js(r)["error"]


def test_an_alias_of_a_model_not_served_is_a_404(models):
    door = FrontDoor(in_process_api(ServiceConfig(
        models_dir=models, database_url=None, cache="none", models={"hybrid": ModelSpec()})))
    r = call(door, "POST", "/models/hybrid_attention/load")
    assert r.status == 404 and "alias of 'hybrid_gat'" in js(r)["error"]
    assert js(call(door, "GET", "/health"))["models_loaded"] == {"hybrid": True}


def test_an_alias_may_not_shadow_a_model():
    with pytest.raises(ValidationError, match="aliases"):
        RoutingConfig(models={"hybrid": ModelSpec()}, aliases={"hybrid": "dqn"})


# --- POST /models/{model_type}/load -----------------------------------------------------


def test_load_confirms_a_model_and_rejects_unknown_types(models):
    door = _door(models)
    for name, served in (("dqn", "dqn"), ("hybrid_gat", "hybrid_gat"),
                         ("hybrid_attention", "hybrid_gat")):
        r = call(door, "POST", f"/models/{name}/load")
        assert r.status == 200, r.body
        out = js(r)
        assert list(out) == ["status", "message"] and out["status"] == "success"
        assert f"'{name}'" in out["message"] and served in out["message"]
    r = call(door, "POST", "/models/nope/load")
    assert r.status == 404 and js(r)["details"][0]["loc"] == "model_type"
    assert call(door, "GET", "/models/dqn/load").status == 405


def test_load_loads_a_model_the_policy_does_not_hold_yet(models):
    door = _door(models)
    stage = door.api.chain.policy.stage  # type: ignore[attr-defined]
    key = next(k for k in stage.models if k.name == "hybrid_gat")
    del stage.models[key]  # as if preloading had not reached it
    assert call(door, "POST", "/models/hybrid_gat/load").status == 200
    assert key in stage.models


def test_load_refuses_a_tampered_model_with_503(models, tmp_path):
    shutil.copytree(models, tmp_path / "m")
    (tmp_path / "m" / "hybrid_gat" / "1" / "weights.pt").write_bytes(b"tampered")
    r = call(_door(tmp_path / "m"), "POST", "/models/hybrid_gat/load")
    assert r.status == 503 and "sha256 mismatch" in js(r)["error"]


def test_load_needs_the_token_when_tokens_are_set(models, monkeypatch):
    monkeypatch.setenv("EA_TEST_TOKENS", "s3cret")
    door = _door(models, auth_token_env="EA_TEST_TOKENS")
    assert call(door, "POST", "/models/dqn/load").status == 401
    ok = call(door, "POST", "/models/dqn/load", headers={"authorization": "Bearer s3cret"})
    assert ok.status == 200


# --- GET /docs --------------------------------------------------------------------------


def test_docs_page_uses_only_vendored_assets(models):
    door = _door(models)
    r = call(door, "GET", "/docs")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    page = r.body.decode()
    assert "SwaggerUIBundle" in page and 'url: "openapi.json"' in page
    assert "validatorUrl: null" in page  # the badge would call validator.swagger.io
    assert not re.search(r"(https?:)?//[a-z]", page), "the page must not load anything remote"
    refs = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    assert refs == {"docs/swagger-ui-bundle.js", "docs/swagger-ui.css", "docs/favicon-32x32.png"}
    for ref in refs:
        a = call(door, "GET", f"/{ref}")
        assert a.status == 200 and a.body == asset(ref.removeprefix("docs/"))
        assert a.headers["content-type"] == ASSETS[ref.removeprefix("docs/")]
    assert call(door, "GET", "/docs/nope.js").status == 404
    assert call(door, "GET", "/docs/").headers["location"] == "../docs"


def test_docs_assets_are_the_pinned_release_with_its_licence(models):
    source = asset("SOURCE").decode()
    assert f"npm pack swagger-ui-dist@{SWAGGER_UI_VERSION}" in source
    recorded = dict(reversed(line.split()) for line in source.splitlines()
                    if re.fullmatch(r"\s+[0-9a-f]{64}\s+\S+", line))
    assert set(recorded) == set(ASSETS)  # every served file is recorded, and only those
    for name, digest in recorded.items():
        assert hashlib.sha256(asset(name)).hexdigest() == digest, f"{name} was modified"
    assert b"Apache License" in asset("LICENSE") and b"SmartBear" in asset("NOTICE")
    r = call(_door(models), "GET", "/docs/swagger-ui-bundle.js",
             headers={"accept-encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(r.body) == asset("swagger-ui-bundle.js")


def test_docs_are_public_while_the_api_needs_a_token(models, monkeypatch):
    monkeypatch.setenv("EA_TEST_TOKENS", "s3cret")
    door = _door(models, auth_token_env="EA_TEST_TOKENS")
    assert call(door, "GET", "/docs").status == 200
    assert call(door, "GET", "/docs/swagger-ui.css").status == 200
    assert call(door, "GET", "/openapi.json").status == 401
    assert call(door, "GET", "/").status == 401


# --- CORS -------------------------------------------------------------------------------


def _asgi(door: FrontDoor, cfg: CorsConfig) -> CorsFront:
    front = cors_front(cfg, door.handle)
    assert front is not None
    return front


def test_cors_is_off_by_default():
    assert cors_front(ServiceConfig().cors, lambda *a: None) is None  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="allow_credentials"):
        CorsConfig(allow_origins=["*"], allow_credentials=True)


def test_cors_preflight_and_simple_requests(models):
    door = _door(models)
    front = _asgi(door, CorsConfig(allow_origins=["http://localhost:3000"]))

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=front),
                                     base_url="http://edge") as c:
            pre = {"origin": "http://localhost:3000", "access-control-request-method": "POST",
                   "access-control-request-headers": "content-type"}
            return [
                await c.options("/predict", headers=pre),
                await c.options("/predict", headers={**pre, "origin": "http://evil.example"}),
                await c.get("/health", headers={"origin": "http://localhost:3000"}),
                await c.get("/models/nope", headers={"origin": "http://localhost:3000"}),
                await c.get("/health"),
            ]

    ok, evil, simple, error, plain = asyncio.run(run())
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "content-type" in ok.headers["access-control-allow-headers"]
    assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers
    assert simple.status_code == 200 and simple.json()["status"] == "healthy"
    assert simple.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert error.status_code == 404  # errors carry the headers too, so browsers can read them
    assert error.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


def test_cors_respond_collects_what_the_ingress_returns(models):
    front = _asgi(_door(models), CorsConfig(allow_origins=["*"]))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/prefix/health", "root_path": "/prefix",
             "query_string": b"", "headers": [(b"origin", b"http://a.example")],
             "http_version": "1.1", "scheme": "http", "server": ("edge", 80)}
    status, body, headers = asyncio.run(front.respond(scope, receive))
    assert status == 200 and orjson.loads(body)["status"] == "healthy"
    assert headers["access-control-allow-origin"] == "*"
