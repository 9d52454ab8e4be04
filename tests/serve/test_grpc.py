"""The gRPC API through Ray Serve's gRPC ingress on the session cluster (which runs the
shipped fast path: RAY_SERVE_THROUGHPUT_OPTIMIZED=1, RAY_SERVE_ENABLE_HA_PROXY=1):
same decisions as HTTP, errors as status codes, and how requests reach the replica."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from edge_allocator.grpc import edge_allocator_pb2 as pb
from edge_allocator.grpc import edge_allocator_pb2_grpc as pb_grpc
from edge_allocator.service.grpc_api import (
    columns_message,
    decision_dict,
    state_message,
)
from tests.conftest import missing
from tests.serve.conftest import GRPC_SERVICERS, SERVE_CONFIG, deploy

pytestmark = pytest.mark.cluster

APP = "edge-allocator-grpc"
TOKEN = "grpc-t0ken"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def _metadata(app: str = APP, token: str | None = TOKEN) -> list[tuple[str, str]]:
    md = [("application", app)]
    return md + [("authorization", f"Bearer {token}")] if token else md


@pytest.fixture(scope="module")
def grpc_app(ray_cluster, test_models, tmp_path_factory) -> dict[str, Any]:
    """The shipped composition with tokens and no decision cache (so that HTTP and gRPC
    both run the model for the same state)."""
    root = tmp_path_factory.mktemp("grpc")
    tokens = root / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    deploy(APP, "/grpc", test_models, root / "decisions.db",
           ingress={"cache": "none", "auth_token_file": str(tokens)})
    channel = grpc.insecure_channel(f"127.0.0.1:{ray_cluster['grpc_port']}")
    stub = pb_grpc.EdgeAllocatorStub(channel)
    http = f"http://127.0.0.1:{ray_cluster['port']}/grpc"
    probe = state_message(_sample(http, 8, 0))
    deadline = time.time() + 60  # HAProxy picks the new gRPC backend up within seconds
    while True:
        try:
            stub.Allocate(probe, metadata=_metadata(), timeout=10)
            break
        except grpc.RpcError as err:
            if time.time() > deadline:
                raise AssertionError(f"gRPC never answered: {err}") from err
            time.sleep(0.5)
    yield {"stub": stub, "http": http, "grpc_port": ray_cluster["grpc_port"]}
    channel.close()


def _sample(http: str, nodes: int, seed: int) -> dict[str, Any]:
    r = httpx.get(f"{http}/v1/sample", params={"nodes": nodes, "seed": seed}, headers=AUTH,
                  timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _same(grpc_decision: dict[str, Any], http_decision: dict[str, Any]) -> None:
    for key in ("node_id", "node_index", "ranking", "model", "batch_size", "cached"):
        assert grpc_decision[key] == http_decision[key], key
    assert grpc_decision["scores"] == pytest.approx(http_decision["scores"], abs=1e-6)
    assert grpc_decision["probabilities"] == pytest.approx(http_decision["probabilities"],
                                                           abs=1e-6)


def _rpc_error(call, *args, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(*args, timeout=30, **kw)
    return err.value


def test_servicers_are_serve_configs():
    """The session registers the servicer serve_config.yaml ships with."""
    cfg = yaml.safe_load(SERVE_CONFIG.read_text())["grpc_options"]
    assert cfg["grpc_servicer_functions"] == GRPC_SERVICERS


@pytest.mark.parametrize("model", ["hybrid", "dqn"])
def test_allocate_gives_the_same_decisions_as_http(grpc_app, model):
    stub, http = grpc_app["stub"], grpc_app["http"]
    with httpx.Client(timeout=30, headers=AUTH) as client:
        for seed, nodes in enumerate((5, 20, 60)):
            state = {**_sample(http, nodes, seed), "model": model}
            got = decision_dict(stub.Allocate(state_message(state), metadata=_metadata(),
                                              timeout=30))
            r = client.post(f"{http}/v1/allocate", json=state)
            assert r.status_code == 200, r.text
            _same(got, r.json())
            assert not got["cached"] and got["model"]["name"] == model
            assert got["decision_id"] != r.json()["decision_id"]


@pytest.mark.parametrize("model", ["hybrid", "dqn"])
def test_allocate_batch_gives_the_same_decisions_as_http(grpc_app, model):
    stub, http = grpc_app["stub"], grpc_app["http"]
    states = [_sample(http, n, 100 + s) for s, n in enumerate((10, 20, 20, 40))]
    r = httpx.post(f"{http}/v1/allocate/batch", json={"states": states, "model": model},
                   headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    want = r.json()["decisions"]
    as_states = stub.AllocateBatch(
        pb.BatchAllocateRequest(states=[state_message(s) for s in states], model=model),
        metadata=_metadata(), timeout=30)
    no_edges = [{k: v for k, v in s.items() if k != "edges"} for s in states]
    as_columns = stub.AllocateBatch(
        pb.BatchAllocateRequest(columns=columns_message(no_edges), model=model),
        metadata=_metadata(), timeout=30)
    assert len(as_states.decisions) == len(want) == 4
    for g, w in zip(as_states.decisions, want):
        _same(decision_dict(g), w)
    if all("edges" not in s for s in states):  # samples use the default topology
        for g, w in zip(as_columns.decisions, want):
            _same(decision_dict(g), w)
    else:
        assert len(as_columns.decisions) == 4


def test_invalid_value_is_invalid_argument_naming_the_field(grpc_app):
    stub, http = grpc_app["stub"], grpc_app["http"]
    state = _sample(http, 6, 1)
    state["nodes"][0]["cpu_util"] = 1.7
    err = _rpc_error(stub.Allocate, state_message(state), metadata=_metadata())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nodes.0.cpu_util" in err.details()
    assert dict(err.trailing_metadata())["http-status"] == "422"
    # the HTTP API says the same
    r = httpx.post(f"{http}/v1/allocate", json=state, headers=AUTH, timeout=30)
    assert r.status_code == 422 and r.json()["error"] == err.details()


def test_a_bad_state_in_a_batch_names_its_index(grpc_app):
    stub, http = grpc_app["stub"], grpc_app["http"]
    states = [_sample(http, 6, s) for s in range(3)]
    states[1]["nodes"][4]["mem_util"] = -0.5
    err = _rpc_error(stub.AllocateBatch,
                     pb.BatchAllocateRequest(states=[state_message(s) for s in states]),
                     metadata=_metadata())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("states.1.nodes.4.mem_util"), err.details()


def test_unknown_model_is_not_found(grpc_app):
    stub, http = grpc_app["stub"], grpc_app["http"]
    state = {**_sample(http, 6, 2), "model": "no-such-model"}
    err = _rpc_error(stub.Allocate, state_message(state), metadata=_metadata())
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no-such-model" in err.details()


def test_bad_or_missing_token_is_unauthenticated(grpc_app):
    stub, http = grpc_app["stub"], grpc_app["http"]
    request = state_message(_sample(http, 6, 3))
    for md in (_metadata(token="wrong"), _metadata(token=None)):
        err = _rpc_error(stub.Allocate, request, metadata=md)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert TOKEN not in err.details()


def test_the_shipped_app_answers_grpc(app_url, ray_cluster):
    """serve_config.yaml's own application (route /, no token), by its name."""
    state = httpx.get(f"{app_url}/v1/sample", params={"nodes": 12, "seed": 7}).json()
    with grpc.insecure_channel(f"127.0.0.1:{ray_cluster['grpc_port']}") as channel:
        stub = pb_grpc.EdgeAllocatorStub(channel)
        deadline = time.time() + 60
        while True:
            try:
                got = stub.Allocate(state_message(state),
                                    metadata=[("application", "edge-allocator")], timeout=10)
                break
            except grpc.RpcError as exc:
                if time.time() > deadline:
                    raise AssertionError(f"gRPC never answered for edge-allocator: {exc}\n"
                                         f"{_route_report('edge-allocator', channel)}") from exc
                time.sleep(0.5)
        err = _rpc_error(stub.Allocate, state_message(state),
                         metadata=[("application", "no-such-app")])
    assert got.node_id == state["nodes"][got.node_index]["node_id"]
    assert err.code() == grpc.StatusCode.NOT_FOUND  # Serve's: no such application


def _haproxy_configs() -> list[Path]:
    """The session's HAProxy config files, one per node (``<dir>/<node id>/``)."""
    loc = os.environ.get("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC")
    return sorted(Path(loc).parent.glob(f"*/{Path(loc).name}")) if loc else []


def _haproxy_stats() -> list[dict[str, str]]:
    """HAProxy's stats page as rows (``pxname``, ``svname``, ``status``, ``stot``...)."""
    lines = httpx.get(f"http://127.0.0.1:{os.environ['RAY_SERVE_HAPROXY_STATS_PORT']}"
                      "/stats;csv", timeout=10).text.lstrip("# ").splitlines()
    return [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]


def _find_section(cfg: str, header: str) -> str | None:
    """One section of an HAProxy config: its header line to the next unindented line."""
    found = re.search(rf"^{re.escape(header)}\n((?:[ \t].*\n|\n)*)", cfg, re.M)
    return found.group(1) if found else None


def _section(cfg: str, header: str) -> str:
    found = _find_section(cfg, header)
    assert found is not None, f"no {header!r} in:\n{cfg}"
    return found


def _route_report(app: str, channel: grpc.Channel) -> str:
    """Where a gRPC call for ``app`` goes, for a failure message: Serve's status of the
    app, the apps the fallback proxy lists, HAProxy's gRPC routing lines, the app's
    backend and its servers' health as HAProxy's stats say. (A CI run once got NOT_FOUND
    for 60 s from a RUNNING app that HTTP reached; this tells which hop answered.)"""
    from ray import serve
    from ray.serve.generated import serve_pb2, serve_pb2_grpc

    lines = [f"serve.status: {serve.status().applications.get(app)}"]
    try:
        listed = serve_pb2_grpc.RayServeAPIServiceStub(channel).ListApplications(
            serve_pb2.ListApplicationsRequest(), timeout=10)
        lines.append(f"ListApplications: {list(listed.application_names)}")
    except grpc.RpcError as exc:
        lines.append(f"ListApplications failed: {exc}")
    for cfg_path in _haproxy_configs():
        cfg = cfg_path.read_text()
        lines.append(f"{cfg_path}: grpc routing lines:")
        lines += [ln for ln in cfg.splitlines() if "req.hdr(application)" in ln
                  or "default_backend" in ln]
        lines.append(_find_section(cfg, f"backend grpc-{app}") or f"no backend grpc-{app}")
    if "RAY_SERVE_HAPROXY_STATS_PORT" in os.environ:
        try:
            rows = _haproxy_stats()
            lines.append(f"HAProxy proxies: {sorted({r.get('pxname') for r in rows})}")
            lines += [f"stats {r['pxname']}/{r['svname']}: {r.get('status')} "
                      f"check={r.get('check_status')} stot={r.get('stot')}"
                      for r in rows if r.get("pxname", "").startswith("grpc")]
        except httpx.HTTPError as exc:
            lines.append(f"HAProxy stats failed: {exc}")
    return "\n".join(lines)


def test_grpc_goes_through_haproxy_straight_to_the_replicas(grpc_app):
    """With the fast path on, HAProxy listens on the gRPC port too and forwards each
    call, by its `application` metadata, to the ingress replicas' own gRPC servers
    (direct ingress); the Serve proxy actor is only a backup server (and answers
    ListApplications)."""
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":  # set by the ray_cluster fixture
        missing("HAProxy (Serve's fast path)", "the session runs without it")
    configs = _haproxy_configs()
    assert len(configs) == 1, configs
    cfg = configs[0].read_text()
    frontend = _section(cfg, "frontend grpc_frontend")
    assert f":{grpc_app['grpc_port']} proto h2" in frontend
    assert f"req.hdr(application) -m str {APP}" in frontend
    backend = _section(cfg, f"backend grpc-{APP}")
    servers = re.findall(r"^\s*server (\S+) [\d.]+:(\d+) proto h2(.*)$", backend, re.M)
    replicas = [(name, int(port)) for name, port, opts in servers if " backup" not in opts]
    backups = [name for name, _, opts in servers if " backup" in opts]
    assert replicas and all(name.startswith(f"SERVE_REPLICA_{APP}-Ingress-")
                            for name, _ in replicas), backend
    # the replicas' direct-ingress gRPC ports (RAY_SERVE_DIRECT_INGRESS_MIN/MAX_GRPC_PORT)
    lo, hi = (int(os.environ[f"RAY_SERVE_DIRECT_INGRESS_{end}_GRPC_PORT"])
              for end in ("MIN", "MAX"))  # this worker's range (tests/conftest.py)
    assert all(lo <= port <= hi for _, port in replicas), backend
    assert backups and all(name.startswith("SERVE_PROXY_ACTOR") for name in backups)

    # and calls go to the replica, not to the proxy actor: HAProxy's own counters (which
    # start from 0 whenever a deployment elsewhere reloads HAProxy: call right before)
    request = state_message(_sample(grpc_app["http"], 6, 4))
    for _ in range(5):
        grpc_app["stub"].Allocate(request, metadata=_metadata(), timeout=30)
    rows = _haproxy_stats()
    sessions = {r["svname"]: int(r["stot"] or 0) for r in rows
                if r.get("pxname") == f"grpc-{APP}"}
    assert sum(sessions[name] for name, _ in replicas) >= 5, sessions
    assert all(sessions[name] == 0 for name in backups), sessions
