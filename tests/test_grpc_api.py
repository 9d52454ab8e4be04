"""The gRPC API without Ray: committed stubs match the .proto, proto <-> JSON conversion,
status codes, and the same decisions as the v1 API, in process and over a real
(loopback) grpc.aio server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from edge_allocator.config import ModelSpec, ServiceConfig
from edge_allocator.grpc import GENERATED, ROOT, generate
from edge_allocator.grpc import edge_allocator_pb2 as pb
from edge_allocator.grpc import edge_allocator_pb2_grpc as pb_grpc
from edge_allocator.policies import build_policy
from edge_allocator.runtime.export import save_artifact
from edge_allocator.schema import ServiceUnavailable
from edge_allocator.service.api import AllocatorApi
from edge_allocator.service.grpc_api import (
    GrpcFrontDoor,
    batch_dict,
    columns_message,
    decision_dict,
    decision_message,
    grpc_status,
    state_dict,
    state_message,
)
from edge_allocator.service.inline import in_process_api
from tests.conftest import node


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    """The stubs are generated from edge_allocator.proto by the pinned grpcio-tools;
    regenerate (python -m edge_allocator.grpc) after changing the .proto."""
    generate(tmp_path)
    stale = [rel for rel in GENERATED
             if (tmp_path / rel).read_bytes() != (ROOT / rel).read_bytes()]
    assert not stale, f"stale gRPC stubs {stale}: run `python -m edge_allocator.grpc`"


def test_the_grpc_api_imports_no_ray() -> None:
    code = ("import sys, edge_allocator.service.grpc_api, "
            "edge_allocator.grpc.edge_allocator_pb2_grpc;"
            "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'));"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- conversion -------------------------------------------------------------------------------


def test_state_dict_is_the_json_the_http_api_takes(small_state) -> None:
    small_state["model"] = "dqn"
    assert state_dict(state_message(small_state)) == small_state


def test_unset_fields_are_absent_not_zero() -> None:
    """A node without cpu_util is an error (as in JSON), not an idle node; a field set
    to 0 is present."""
    req = pb.AllocateRequest(nodes=[pb.Node(mem_util=0.0, node_type=0)])
    assert state_dict(req) == {"nodes": [{"mem_util": 0.0, "node_type": 0}]}


def test_edges_unset_vs_empty() -> None:
    """No EdgeList: the default topology; an empty one: no links (JSON: no "edges" key
    vs "edges": [])."""
    req = pb.AllocateRequest(nodes=[pb.Node(**node())])
    assert "edges" not in state_dict(req)
    req.edges.SetInParent()
    assert state_dict(req)["edges"] == []


def test_columns_are_the_same_states() -> None:
    """NodeColumns become the columnar batch shape, which decodes to the same arrays as
    the states sent one message each."""
    import numpy as np

    from edge_allocator.columnar import decode_batch
    from edge_allocator.wire import columnar_batch

    states = [{"nodes": [node(latency=i + k) for k in range(n)]} for i, n in enumerate((3, 1, 4))]
    got, _ = columnar_batch(batch_dict(pb.BatchAllocateRequest(columns=columns_message(states))))
    want, _ = decode_batch({"states": states})
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got.offsets, want.offsets)
    np.testing.assert_array_equal(got.tasks, want.tasks)
    cols = columns_message(states)
    cols.tasks.extend([pb.Task(deadline_ms=5), pb.Task(), pb.Task(memory_mb=1)])
    body = batch_dict(pb.BatchAllocateRequest(columns=cols, model="dqn"))
    assert body["model"] == "dqn"
    tasks = [{"deadline_ms": 5}, None, {"memory_mb": 1}]
    got, _ = columnar_batch(body)
    want, _ = decode_batch({"states": [{**s, "task": t} for s, t in zip(states, tasks)]})
    np.testing.assert_array_equal(got.tasks, want.tasks)


def test_status_codes() -> None:
    assert grpc_status(422) == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_status(400) == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_status(413) == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_status(401) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_status(404) == grpc.StatusCode.NOT_FOUND
    assert grpc_status(503) == grpc.StatusCode.UNAVAILABLE
    assert grpc_status(500) == grpc.StatusCode.INTERNAL


# --- through GrpcFrontDoor ----------------------------------------------------------------------


class FakeContext:
    """What Ray Serve's RayServegRPCContext offers a deployment method."""

    def __init__(self, metadata: list[tuple[str, str]] | None = None) -> None:
        self.metadata = metadata or []
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: dict[str, str] = {}

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, trailing_metadata: list[tuple[str, str]]) -> None:
        self.trailers = dict(trailing_metadata)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for kind, cfg in (("hybrid", {"hidden": 16}), ("dqn", {"max_nodes": 12, "hidden": 16})):
        m = build_policy(kind, cfg)
        save_artifact(m, kind, m.config.to_dict(), root)
    return root


@pytest.fixture
def api(models, tmp_path) -> AllocatorApi:
    tokens = tmp_path / "tokens"
    tokens.write_text("t0k3n\n")
    cfg = ServiceConfig(models_dir=models, database_url=None, cache="none",
                        models={"hybrid": ModelSpec(), "dqn": ModelSpec()},
                        auth_token_file=tokens, max_body_bytes=64 * 1024)
    return in_process_api(cfg)


AUTH = [("authorization", "Bearer t0k3n")]


def _states(n: int, nodes: int = 6) -> list[dict[str, Any]]:
    return [{"nodes": [node(node_id=f"s{i}n{k}", latency=1 + i + k, cpu_util=(i * k % 9) / 10,
                            node_type=k % 3) for k in range(nodes)],
             "task": {"compute_gcycles": 1 + i / 10}} for i in range(n)]


@pytest.mark.parametrize("model", ["hybrid", "dqn"])
def test_same_decisions_as_the_v1_api(api, model) -> None:
    door = GrpcFrontDoor(lambda: api)
    states = [{**s, "model": model} for s in _states(4)]
    for state in states:
        ctx = FakeContext(AUTH)
        got = asyncio.run(door.allocate(state_message(state), ctx))
        want = asyncio.run(api.allocate(state))
        assert ctx.code is None
        assert (got.node_id, list(got.ranking)) == (want.node_id, want.ranking)
        assert got.model.name == model and got.batch_size == 1
        assert dict(got.scores) == pytest.approx(want.scores, abs=1e-6)
    ctx = FakeContext(AUTH)
    batch = asyncio.run(door.allocate_batch(
        pb.BatchAllocateRequest(states=[state_message(s) for s in states]), ctx))
    cols = asyncio.run(door.allocate_batch(
        pb.BatchAllocateRequest(columns=columns_message(states), model=model), ctx))
    want_batch = asyncio.run(api.allocate_batch({"states": states})).decisions
    assert ctx.code is None
    for got_b in (batch, cols):
        assert [d.node_index for d in got_b.decisions] == [d.node_index for d in want_batch]
        for g, w in zip(got_b.decisions, want_batch):
            assert (g.node_id, list(g.ranking)) == (w.node_id, w.ranking)
            assert dict(g.probabilities) == pytest.approx(w.probabilities, abs=1e-6)
    assert [d.node_id for d in batch.decisions] == [d.node_id for d in want_batch]


def test_decision_message_carries_every_field(api) -> None:
    d = asyncio.run(api.allocate(_states(1)[0]))
    msg = decision_message(d)
    assert msg.decision_id == d.decision_id and msg.node_index == d.node_index
    assert msg.confidence == d.confidence and msg.latency_ms == d.latency_ms
    assert dict(msg.probabilities) == d.probabilities and msg.cached == d.cached
    assert (msg.model.name, msg.model.version, msg.model.backend) == (
        d.model.name, d.model.version, d.model.backend)
    assert msg.HasField("inference_node") == (d.inference_node is not None)
    assert decision_dict(msg) == d.to_dict()


def _call(api: AllocatorApi, request: Any, metadata=AUTH) -> FakeContext:
    ctx = FakeContext(metadata)
    door = GrpcFrontDoor(lambda: api)
    rpc = door.allocate_batch if isinstance(request, pb.BatchAllocateRequest) else door.allocate
    reply = asyncio.run(rpc(request, ctx))
    assert reply.ByteSize() == 0 or ctx.code is None
    return ctx


def test_invalid_field_names_its_path(api) -> None:
    state = _states(1)[0]
    state["nodes"][0]["cpu_util"] = 1.5
    ctx = _call(api, state_message(state))
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT
    assert ctx.details.startswith("nodes.0.cpu_util")
    assert ctx.trailers["http-status"] == "422"
    assert json.loads(ctx.trailers["error-details"])[0]["loc"] == "nodes.0.cpu_util"
    missing = _call(api, pb.AllocateRequest(nodes=[pb.Node(mem_util=0.1)]))
    assert missing.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "nodes.0.cpu_util" in missing.details and "required" in missing.details.lower()


def test_a_bad_state_in_a_batch_names_its_index(api) -> None:
    states = _states(3)
    states[1]["nodes"][2]["node_type"] = 7
    ctx = _call(api, pb.BatchAllocateRequest(states=[state_message(s) for s in states]))
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT
    assert ctx.details.startswith("states.1.nodes.2.node_type"), ctx.details
    cols = columns_message(states)
    del cols.cpu_util[-1]
    bad = _call(api, pb.BatchAllocateRequest(columns=cols))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad.details.startswith("columns.cpu_util")
    both = _call(api, pb.BatchAllocateRequest(states=[state_message(states[0])],
                                              columns=columns_message(states)))
    assert both.code == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_model_is_not_found(api) -> None:
    ctx = _call(api, state_message({**_states(1)[0], "model": "nope"}))
    assert ctx.code == grpc.StatusCode.NOT_FOUND and "nope" in ctx.details


def test_bad_or_missing_token_is_unauthenticated(api) -> None:
    for md in ([], [("authorization", "Bearer wrong")], [("authorization", "t0k3n")]):
        ctx = _call(api, state_message(_states(1)[0]), md)
        assert ctx.code == grpc.StatusCode.UNAUTHENTICATED and "t0k3n" not in ctx.details


def test_too_large_is_invalid_argument(api) -> None:
    ctx = _call(api, state_message(_states(1, nodes=2000)[0]))
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT and ctx.trailers["http-status"] == "413"


def test_overload_is_unavailable_with_retry_after(api, monkeypatch) -> None:
    async def overloaded(data: dict[str, Any]) -> Any:
        raise ServiceUnavailable("overloaded: queue full; retry later", retry_after_s=2)

    monkeypatch.setattr(api, "allocate", overloaded)
    ctx = _call(api, state_message(_states(1)[0]))
    assert ctx.code == grpc.StatusCode.UNAVAILABLE and ctx.trailers["retry-after"] == "2"


def test_unexpected_error_is_internal_without_internals(api, monkeypatch) -> None:
    async def broken(data: dict[str, Any]) -> Any:
        raise KeyError("secret internals")

    monkeypatch.setattr(api, "allocate", broken)
    ctx = _call(api, state_message(_states(1)[0]))
    assert ctx.code == grpc.StatusCode.INTERNAL and "secret" not in ctx.details


# --- over the wire (grpc.aio on loopback, no Ray) ----------------------------------------------


class Servicer(pb_grpc.EdgeAllocatorServicer):
    def __init__(self, door: GrpcFrontDoor) -> None:
        self.door = door

    async def Allocate(self, request, context):  # noqa: N802 - the RPC's name
        return await self.door.allocate(request, context)

    async def AllocateBatch(self, request, context):  # noqa: N802
        return await self.door.allocate_batch(request, context)


def test_status_and_trailers_over_a_real_grpc_server(api) -> None:
    async def main() -> None:
        server = grpc.aio.server()
        pb_grpc.add_EdgeAllocatorServicer_to_server(Servicer(GrpcFrontDoor(lambda: api)), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.EdgeAllocatorStub(channel)
                ok = await stub.Allocate(state_message(_states(1)[0]), metadata=AUTH, timeout=30)
                assert ok.node_id and ok.model.name == "hybrid"
                bad = _states(1)[0]
                bad["nodes"][3]["bandwidth"] = -1
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Allocate(state_message(bad), metadata=AUTH, timeout=30)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert err.value.details().startswith("nodes.3.bandwidth")
                assert dict(err.value.trailing_metadata())["http-status"] == "422"
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.AllocateBatch(pb.BatchAllocateRequest(
                        states=[state_message(s) for s in _states(2)]), timeout=30)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await server.stop(None)

    asyncio.run(main())
