"""Fuzzing the batch endpoint's every body format at the front door (in-process, the
service's own HTTP handling, no cluster): columnar bodies in JSON and in msgpack with
packed arrays, row bodies in msgpack, and raw bytes. Whatever arrives, the answer is a
200 or a 4xx whose details name a field, never a 500."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edge_allocator.config import ModelSpec, ServiceConfig
from edge_allocator.policies import build_policy
from edge_allocator.runtime.export import save_artifact
from edge_allocator.service.http import FrontDoor
from edge_allocator.service.inline import in_process_api

FIELDS = ["cpu_util", "mem_util", "energy", "latency", "bandwidth", "queue_len", "node_type"]
numbers = st.one_of(st.integers(-3, 5), st.floats(-1, 3, allow_nan=False),
                    st.sampled_from([0, 1, 2, 0.5, 1e6, 1e308, -0.0]))
odd = st.one_of(st.none(), st.booleans(), st.text(max_size=4), numbers,
                st.lists(numbers, max_size=3), st.binary(max_size=9))  # bytes: msgpack only


@pytest.fixture(scope="module")
def door(tmp_path_factory) -> FrontDoor:
    root = tmp_path_factory.mktemp("models")
    m = build_policy("hybrid", {"hidden": 8})
    save_artifact(m, "hybrid", m.config.to_dict(), root)
    return FrontDoor(in_process_api(ServiceConfig(
        models_dir=root, models={"hybrid": ModelSpec()}, database_url=None, cache="none")))


@st.composite
def columnar(draw: st.DrawFn) -> dict[str, Any]:
    counts = draw(st.lists(st.integers(0, 4), min_size=0, max_size=4)) \
        if draw(st.integers(0, 4)) == 0 else draw(st.lists(st.integers(1, 4), min_size=1,
                                                             max_size=4))
    total = sum(counts) + draw(st.sampled_from([0, 0, 0, 1, -1]))  # sometimes inconsistent
    nodes: dict[str, Any] = {}
    for f in FIELDS:
        if draw(st.integers(0, 15)) == 0:
            continue  # a missing field
        kind = draw(st.integers(0, 9))
        if kind < 6:
            nodes[f] = draw(st.lists(numbers, min_size=max(total, 0), max_size=max(total, 0)))
        elif kind < 8:  # packed bytes of any length (msgpack only)
            nodes[f] = draw(st.binary(min_size=max(0, 4 * total - 2),
                                      max_size=4 * max(total, 0) + 2))
        else:
            nodes[f] = draw(odd)
    for f in ("capacity_gcps", "memory_mb", "queue_capacity", "observed_speed"):
        if draw(st.integers(0, 3)) == 0:  # optional fields (issue 12): mostly absent
            nodes[f] = draw(st.one_of(
                st.lists(numbers, min_size=max(total, 0), max_size=max(total, 0)), odd))
    if draw(st.booleans()):
        nodes["node_id"] = draw(st.lists(st.sampled_from(["a", "b", "c", "", 1]),
                                         min_size=max(total, 0), max_size=max(total, 0)))
    body: dict[str, Any] = {"node_counts": counts if draw(st.integers(0, 8)) else draw(odd),
                            "nodes": nodes if draw(st.integers(0, 8)) else draw(odd)}
    if draw(st.booleans()):
        body["edge_counts"] = draw(st.lists(st.integers(-1, 3), max_size=len(counts) + 1))
        body["edges"] = draw(st.lists(st.integers(-1, 5), max_size=12))
    if draw(st.booleans()):
        body["tasks"] = {"memory_mb": draw(st.lists(numbers, max_size=len(counts) + 1))}
    if draw(st.booleans()):
        body["model"] = draw(st.one_of(st.just("hybrid"), st.just("nope"), odd))
    return body


def _packed(body: dict[str, Any]) -> dict[str, Any]:
    """Numeric lists as little-endian bytes where they pack (as a client would send)."""
    out = dict(body)
    nodes = dict(out["nodes"]) if isinstance(out.get("nodes"), dict) else out.get("nodes")
    if isinstance(nodes, dict):
        for f, v in nodes.items():
            if isinstance(v, list) and all(isinstance(x, (int, float)) for x in v):
                try:
                    nodes[f] = struct.pack(f"<{len(v)}{'i' if f == 'node_type' else 'f'}", *v)
                except (struct.error, OverflowError):
                    pass
        out["nodes"] = nodes
    return out


def _check(door: FrontDoor, body: bytes, ctype: str) -> None:
    async def read() -> bytes:
        return body

    r = asyncio.run(door.handle("POST", "/v1/allocate/batch",
                                {"content-type": ctype, "accept": "application/json"}, {}, read))
    assert r.status == 200 or 400 <= r.status < 500, (r.status, r.body[:300])
    if r.status >= 400:
        err = orjson.loads(r.body)
        assert err["error"] and err["status"] == r.status


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(columnar(), st.sampled_from(["json", "msgpack", "msgpack-packed"]))
def test_columnar_bodies_never_fail_the_service(door, body, fmt):
    if fmt == "json":
        try:
            raw = orjson.dumps(body)
        except TypeError:  # bytes have no JSON form: not a request a client can send
            assume(False)
        _check(door, raw, "application/json")
    else:
        _check(door, msgpack.packb(_packed(body) if fmt == "msgpack-packed" else body),
               "application/msgpack")


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64))
def test_raw_bytes_are_a_4xx(door, raw):
    for ctype in ("application/msgpack", "application/json"):
        _check(door, raw, ctype)


def test_a_good_columnar_body_decides(door):
    body = {"node_counts": [2], "nodes": {f: [0.1, 0.2] if f != "node_type" else [1, 2]
                                          for f in FIELDS}}
    body["nodes"]["bandwidth"] = [100, 100]

    async def read() -> bytes:
        return msgpack.packb(_packed(body))

    r = asyncio.run(door.handle("POST", "/v1/allocate/batch",
                                {"content-type": "application/msgpack",
                                 "accept": "application/msgpack"}, {}, read))
    assert r.status == 200 and msgpack.unpackb(r.body)["decisions"][0]["node_id"] in ("0", "1")
