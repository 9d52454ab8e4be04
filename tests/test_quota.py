"""Per-token request quotas without Ray: the token bucket on a fake clock, 429 with
Retry-After through ``FrontDoor.handle`` and the gRPC mapping, buckets keyed by a
fingerprint (a token value never reaches a metric tag), and token rotation by
``reconfigure``: the new token works on the next request, the old one gets 401."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from pydantic import ValidationError

from edge_allocator.config import ModelSpec, QuotaConfig, ServiceConfig
from edge_allocator.policies import build_policy
from edge_allocator.runtime.export import save_artifact
from edge_allocator.service.auth import fingerprint
from edge_allocator.service.grpc_api import grpc_status
from edge_allocator.service.http import FrontDoor, HttpResponse
from edge_allocator.service.inline import in_process_api
from edge_allocator.service.observe import NullObserver
from edge_allocator.service.openapi import openapi_document
from edge_allocator.service.quota import QuotaExceeded, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_bucket_allows_the_burst_then_refills_at_the_rate():
    clock = Clock()
    b = TokenBuckets(QuotaConfig(rate_per_s=2.0, burst=3), clock)
    for _ in range(3):
        b.take("a")
    with pytest.raises(QuotaExceeded) as err:
        b.take("a")
    assert err.value.status == 429 and err.value.retry_after_s == 1
    b.take("b")  # another token has its own bucket
    clock.t += 0.5  # one request refilled at 2/s
    b.take("a")
    with pytest.raises(QuotaExceeded):
        b.take("a")
    clock.t += 10.0  # refills to the burst, not beyond
    for _ in range(3):
        b.take("a")
    with pytest.raises(QuotaExceeded):
        b.take("a")


def test_retry_after_is_the_wait_for_one_request():
    clock = Clock()
    b = TokenBuckets(QuotaConfig(rate_per_s=0.25, burst=1), clock)
    b.take("a")
    with pytest.raises(QuotaExceeded) as err:
        b.take("a")
    assert err.value.retry_after_s == 4  # 1 request at 0.25/s


def test_off_by_default_and_config_checked():
    b = TokenBuckets(QuotaConfig())
    assert not b.enabled
    for _ in range(10_000):
        b.take("a")
    with pytest.raises(ValidationError):
        QuotaConfig(rate_per_s=0)
    with pytest.raises(ValidationError):
        QuotaConfig(rate_per_s=1, burst=0)
    assert ServiceConfig.model_validate({"quota": {"rate_per_s": 5, "burst": 10}}).quota.burst == 10


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root: Path = tmp_path_factory.mktemp("models")
    m = build_policy("hybrid", {"hidden": 16})
    save_artifact(m, "hybrid", m.config.to_dict(), root, name="hybrid")
    return root


class Recorder(NullObserver):
    """An Observer that keeps every error tag it is given."""

    def __init__(self) -> None:
        self.errors: list[tuple[int, str]] = []

    def error(self, status: int, route: str) -> None:
        self.errors.append((status, route))


def _cfg(models: Path, token_file: Path, **quota: Any) -> ServiceConfig:
    return ServiceConfig(models_dir=models, database_url=None, cache="none",
                         models={"hybrid": ModelSpec()}, auth_token_env="EA_TEST_NO_TOKENS",
                         auth_token_file=token_file, quota=QuotaConfig(**quota))


def call(door: FrontDoor, path: str, token: str) -> HttpResponse:
    async def read() -> bytes:
        return b""

    return asyncio.run(door.handle("GET", path, {"authorization": f"Bearer {token}"}, {},
                                   read))


def test_http_429_with_retry_after_per_token(models, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("alpha-secret\nbeta-secret\n")
    api = in_process_api(_cfg(models, tokens, rate_per_s=0.5, burst=2))
    rec = Recorder()
    api.observer = rec
    door = FrontDoor(api)
    assert [call(door, "/healthz", "alpha-secret").status for _ in range(2)] == [200, 200]
    over = call(door, "/healthz", "alpha-secret")
    assert over.status == 429, over.body
    assert over.headers["retry-after"] == "2"  # one request at 0.5/s
    assert orjson.loads(over.body)["status"] == 429
    assert call(door, "/healthz", "beta-secret").status == 200  # its own bucket
    assert call(door, "/healthz", "wrong").status == 401  # not metered: no bucket
    assert set(api.quota._buckets) == {fingerprint(b"alpha-secret"), fingerprint(b"beta-secret")}
    # metric tags: a status and a route template, never the token
    assert (429, "/healthz") in rec.errors
    assert not any("secret" in route for _, route in rec.errors)
    assert grpc_status(429) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_open_service_has_no_quota(models, tmp_path):
    empty = tmp_path / "none"
    empty.write_text("")
    door = FrontDoor(in_process_api(_cfg(models, empty, rate_per_s=0.01, burst=1)))
    assert {call(door, "/healthz", "x").status for _ in range(5)} == {200}


def test_rotation_by_reconfigure(models, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text("old-secret\n")
    new.write_text("old-secret\nnew-secret\n")
    api = in_process_api(_cfg(models, old))
    door = FrontDoor(api)
    assert call(door, "/healthz", "new-secret").status == 401
    api.reconfigure(_cfg(models, new))  # both during the overlap
    assert call(door, "/healthz", "new-secret").status == 200
    assert call(door, "/healthz", "old-secret").status == 200
    new.write_text("new-secret\n")
    api.reconfigure(_cfg(models, new, rate_per_s=100.0, burst=5))  # old one retired
    assert call(door, "/healthz", "old-secret").status == 401
    assert call(door, "/healthz", "new-secret").status == 200
    assert api.quota.enabled


def test_document_declares_429_with_retry_after():
    doc = openapi_document("test")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            r = op["responses"].get("429")
            assert r is not None, f"{method} {path}: 429 not documented"
            assert r["headers"]["Retry-After"]["required"] is True
