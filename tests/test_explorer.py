"""The decision explorer's backend without Ray, through ``FrontDoor.handle``: the page
(/ui/), the side-by-side comparison, the replica's counters, the decision log read back,
and the manifests and plots of served versions."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from edge_allocator.config import ModelSpec, ServiceConfig
from edge_allocator.policies import build_policy
from edge_allocator.policies.heuristics import HEURISTIC_NAMES
from edge_allocator.runtime.export import save_artifact
from edge_allocator.service.http import FrontDoor, HttpResponse
from edge_allocator.service.inline import in_process_api
from edge_allocator.service.openapi import openapi_document
from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig
from edge_allocator.sim.estimate import estimate
from edge_allocator.store.records import NODE_FIELDS

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root: Path = tmp_path_factory.mktemp("models")
    for kind in ("hybrid", "dqn"):
        m = build_policy(kind, {"hidden": 16} if kind == "hybrid" else {"max_nodes": 64,
                                                                         "hidden": 16})
        save_artifact(m, kind, m.config.to_dict(), root)
    shutil.copytree(root / "hybrid" / "1", root / "hybrid" / "2")
    (root / "hybrid" / "2" / "reward.png").write_bytes(PNG)
    return root


def make_door(models: Path, **kw: Any) -> FrontDoor:
    cfg = {"models_dir": models, "database_url": None, "cache": "none",
           "models": {"hybrid": ModelSpec(ab={"1": 0.5, "2": 0.5}), "dqn": ModelSpec()}, **kw}
    return FrontDoor(in_process_api(ServiceConfig(**cfg)))


@pytest.fixture(scope="module")
def door(models) -> FrontDoor:
    return make_door(models)


def call(door: FrontDoor, method: str, path: str, body: Any = None,
         query: dict[str, str] | None = None, headers: dict[str, str] | None = None
         ) -> HttpResponse:
    async def read() -> bytes:
        return b"" if body is None else orjson.dumps(body)

    return asyncio.run(door.handle(method, path, {"content-type": "application/json",
                                                  **(headers or {})}, query or {}, read))


def ok(r: HttpResponse) -> Any:
    assert r.status == 200, r.body
    return orjson.loads(r.body)


def sample(seed: int = 3, nodes: int = 15) -> tuple[dict[str, Any], EdgeAllocationEnv]:
    env = EdgeAllocationEnv(EnvConfig("synthetic", min_nodes=nodes, max_nodes=nodes))
    env.reset(seed=seed)
    return env.request_json(), env


# --- the cost model -------------------------------------------------------------------------
def test_estimate_applies_the_simulators_transfer_and_mask():
    """Transfer time needs no hidden state, so it equals the simulator's exactly; the mask
    is the served mask, and every masked node says why."""
    body, env = sample(seed=5, nodes=30)
    nodes = np.array([[n[f] for f in NODE_FIELDS] for n in body["nodes"]])
    task = np.array(list(body["task"].values()))
    out = estimate(nodes, task, np.array(body["edges"]))
    mask = env.graph().mask
    np.testing.assert_array_equal(out.feasible, mask)
    for i in np.flatnonzero(mask):
        assert out.transfer_ms[i] == pytest.approx(env.outcome_of(int(i)).transfer_ms, rel=1e-4)
        assert out.completion_ms[i] == pytest.approx(
            out.transfer_ms[i] + out.wait_ms[i] + out.exec_ms[i])
    assert all((r is None) == bool(f) for r, f in zip(out.reasons, out.feasible))


def test_infeasible_reasons_name_the_rule():
    body, _ = sample()
    body["nodes"][0]["bandwidth"] = 0
    body["nodes"][1]["queue_len"] = 32
    body["nodes"][2]["mem_util"] = 0.99
    nodes = np.array([[n[f] for f in NODE_FIELDS] for n in body["nodes"]])
    out = estimate(nodes, np.array(list(body["task"].values())), np.array(body["edges"]))
    assert "unreachable" in out.reasons[0] and "queue full" in out.reasons[1]
    assert "memory" in out.reasons[2]
    deadline_s = body["task"]["deadline_ms"] / 1000
    assert out.cost[0] == pytest.approx(1.0 + 2.0 * deadline_s)  # the simulator's drop cost


# --- /v1/compare --------------------------------------------------------------------------
def test_compare_lists_every_served_version_and_heuristic(door):
    body, _ = sample()
    c = ok(call(door, "POST", "/v1/compare", body))
    models = [(x["policy"], x["version"]) for x in c["choices"] if x["kind"] == "model"]
    assert sorted(models) == [("dqn", "1"), ("hybrid", "1"), ("hybrid", "2")]
    assert [x["policy"] for x in c["choices"] if x["kind"] == "heuristic"] == \
        list(HEURISTIC_NAMES)
    assert len(c["nodes"]) == len(body["nodes"]) and c["node_ids"][0] == "n0"
    by_node = {n["node_id"]: n for n in c["nodes"]}
    for x in c["choices"]:  # each choice carries its node's cost, and is feasible
        assert x["cost"] == by_node[x["node_id"]]["cost"] and by_node[x["node_id"]]["feasible"]
    # greedy EFT minimises the estimated completion time, which is what is reported
    eft = next(x for x in c["choices"] if x["policy"] == "greedy_eft")
    assert eft["completion_ms"] == min(n["completion_ms"] for n in c["nodes"] if n["feasible"])


def test_a_models_choice_in_the_comparison_is_its_decision(door):
    body, _ = sample(seed=11)
    for model in ("dqn", "hybrid"):
        d = ok(call(door, "POST", "/v1/allocate", {**body, "model": model}))
        c = ok(call(door, "POST", "/v1/compare", body))
        mine = next(x for x in c["choices"] if x["policy"] == model
                    and x["version"] == d["model"]["version"])
        assert mine["node_id"] == d["node_id"]


def test_compare_rejects_what_allocate_rejects(door):
    body, _ = sample()
    body["nodes"][0]["cpu_util"] = "high"
    r = call(door, "POST", "/v1/compare", body)
    assert r.status == 422 and b"nodes.0.cpu_util" in r.body
    for n in body["nodes"]:
        n["cpu_util"], n["bandwidth"] = 0.1, 0
    r = call(door, "POST", "/v1/compare", body)
    assert r.status == 422 and b"no feasible node" in r.body


# --- /v1/stats --------------------------------------------------------------------------------
def test_stats_count_decisions_cache_and_errors(models):
    door = make_door(models, cache="local")
    body, _ = sample(seed=2)
    before = ok(call(door, "GET", "/v1/stats"))
    assert before["decisions_total"] == 0 and before["latency_p50_ms"] is None
    for _ in range(3):
        ok(call(door, "POST", "/v1/allocate", {**body, "model": "dqn"}))
    ok(call(door, "POST", "/v1/allocate/batch", {"states": [body, body], "model": "dqn"}))
    assert call(door, "GET", "/v1/sample", query={"nodes": "2"}).status == 422
    s = ok(call(door, "GET", "/v1/stats"))
    assert s["decisions_total"] == 5 and s["decisions_per_s"] > 0
    assert s["cache"] == {"hits": 2, "misses": 1, "hit_rate": pytest.approx(2 / 3)}
    assert s["batch_sizes"] == {"1": 1, "cached": 2, "2": 2}
    dqn = next(t for t in s["traffic"] if t["model"] == "dqn")
    assert (dqn["decisions"], dqn["share"], dqn["weight"]) == (5, 1.0, 1.0)
    weights = {(t["model"], t["version"]): t["weight"] for t in s["traffic"]}
    assert weights[("hybrid", "1")] == weights[("hybrid", "2")] == 0.5
    assert s["errors"] == {"422": 1} and s["latency_p99_ms"] >= s["latency_p50_ms"] > 0
    assert s["replicas"] is None  # not under Serve


# --- /v1/decisions ----------------------------------------------------------------------------
def test_decisions_come_back_with_feedback_and_by_id_prefix(models, tmp_path):
    door = make_door(models, database_url=f"sqlite:///{tmp_path / 'log.db'}",
                     spool_path=tmp_path / "spool.jsonl")
    body, _ = sample()
    ids = [ok(call(door, "POST", "/v1/allocate", body))["decision_id"] for _ in range(3)]
    ok(call(door, "POST", "/v1/feedback", {"decision_id": ids[1], "completion_ms": 120.5,
                                           "success": True}))
    got = ok(call(door, "GET", "/v1/decisions", query={"limit": "10"}))["decisions"]
    assert {d["decision_id"] for d in got} == set(ids)
    fb = {d["decision_id"]: d["feedback"] for d in got}
    assert fb[ids[0]] == [] and fb[ids[1]][0]["completion_ms"] == 120.5
    assert fb[ids[1]][0]["success"] is True
    one = ok(call(door, "GET", "/v1/decisions", query={"decision_id": ids[2][:30].upper()}))
    assert [d["decision_id"] for d in one["decisions"]] == [ids[2]]
    assert ok(call(door, "GET", "/v1/decisions", query={"limit": "1"}))["decisions"][0][
        "node_count"] == len(body["nodes"])
    for q, loc in (({"decision_id": "zz%"}, b"decision_id"), ({"limit": "0"}, b"limit"),
                   ({"limit": "x"}, b"limit")):
        r = call(door, "GET", "/v1/decisions", query=q)
        assert r.status == 422 and loc in r.body, (q, r.body)
    door.api.close()


def test_decisions_without_a_log_is_a_503(door):
    r = call(door, "GET", "/v1/decisions")
    assert r.status == 503 and b"decision log is off" in r.body


# --- /v1/manifest and /v1/artifact ----------------------------------------------------------
def test_manifest_of_a_served_version_and_its_plots(door):
    m = ok(call(door, "GET", "/v1/manifest", query={"model": "hybrid", "version": "2"}))
    assert (m["name"], m["version"], m["kind"]) == ("hybrid", "2", "hybrid")
    assert m["plots"] == ["reward.png"] and "model.onnx" in m["files"]
    r = call(door, "GET", "/v1/artifact", query={"model": "hybrid", "version": "2",
                                                  "file": "reward.png"})
    assert r.status == 200 and r.body == PNG and r.headers["content-type"] == "image/png"


@pytest.mark.parametrize(("query", "status", "loc"), [
    ({"model": "ppo", "version": "1"}, 404, b"model"),
    ({"model": "hybrid", "version": "9"}, 404, b"version"),
    ({"model": "hybrid", "version": "2", "file": "../manifest.json"}, 422, b"file"),
    ({"model": "hybrid", "version": "2", "file": "manifest.json"}, 422, b"file"),
    ({"model": "hybrid", "version": "2", "file": "none.png"}, 404, b"file"),
])
def test_artifact_files_are_served_plots_only(door, query, status, loc):
    path = "/v1/artifact" if "file" in query else "/v1/manifest"
    r = call(door, "GET", path, query=query)
    assert r.status == status and loc in r.body, r.body


# --- the page ----------------------------------------------------------------------------------
def test_the_page_is_public_and_locked_to_this_origin(models, monkeypatch):
    monkeypatch.setenv("EDGE_ALLOCATOR_TOKENS", "s3cret")
    door = make_door(models)
    r = call(door, "GET", "/ui/")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    assert b'<script src="app.js">' in r.body
    assert "default-src 'self'" in r.headers["content-security-policy"]
    redirect = call(door, "GET", "/ui")
    assert (redirect.status, redirect.headers["location"]) == (308, "ui/")
    for name, media in (("app.js", "text/javascript"), ("app.css", "text/css")):
        asset = call(door, "GET", f"/ui/{name}")
        assert asset.status == 200 and asset.headers["content-type"].startswith(media)
    assert call(door, "GET", "/ui/nope.js").status == 401  # not a page: the API's auth
    assert call(door, "GET", "/v1/stats").status == 401
    assert call(door, "GET", "/v1/stats", headers={"authorization": "Bearer s3cret"}
                ).status == 200


def test_every_explorer_route_is_documented():
    paths = openapi_document("test")["paths"]
    assert {"post"} == set(paths["/v1/compare"])
    for p in ("/v1/stats", "/v1/decisions", "/v1/manifest", "/v1/artifact"):
        assert "get" in paths[p], p
