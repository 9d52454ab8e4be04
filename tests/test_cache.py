"""Decision cache: canonical keys, LRU/TTL, and a Redis cache that degrades to misses.

Redis tests use db 15 of the local Redis (skipped when it does not answer), one unique
prefix per test, and clean up after themselves. Outage tests use a closed port, a socket
that accepts but never answers, and a private redis-server killed mid-run.
"""

from __future__ import annotations

import copy
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis  # a pinned dev dependency

from edge_allocator.cache import (
    CacheStats,
    DecisionCache,
    LocalCache,
    NullCache,
    RedisCache,
    make_cache,
    redact_url,
    request_key,
)
from edge_allocator.runtime.raylocal import free_port
from tests.conftest import missing

REDIS_URL = "redis://127.0.0.1:6379/15"
#: Far below the 5 s that 100 calls at a 50 ms timeout would take without a breaker.
FAST_100_CALLS_S = 1.0


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _state() -> dict[str, Any]:
    return {
        "nodes": [
            {"node_id": "gw", "cpu_util": 0.2, "mem_util": 0.3, "energy": 0.5, "latency": 2.0,
             "bandwidth": 100.0, "queue_len": 1.0, "node_type": 0},
            {"node_id": "edge", "cpu_util": 0.5, "mem_util": 0.4, "energy": 0.3, "latency": 8.0,
             "bandwidth": 50.0, "queue_len": 3.0, "node_type": 1},
            {"node_id": "cloud", "cpu_util": 0.1, "mem_util": 0.1, "energy": 0.9,
             "latency": 40.0, "bandwidth": 20.0, "queue_len": 0.0, "node_type": 2},
        ],
        "edges": [[0, 1], [1, 2]],
        "task": {"compute_gcycles": 2.0, "memory_mb": 512.0, "data_mb": 4.0,
                 "deadline_ms": 250.0},
        "model": "hybrid",
    }


def _key(payload: dict[str, Any], name: str = "hybrid", version: str = "3") -> str:
    return request_key(payload, name, version)


# --------------------------------------------------------------------------- keys


def test_key_ignores_key_order_and_whitespace() -> None:
    state = _state()
    compact = orjson.dumps(state)
    spaced = orjson.dumps(state, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    reordered = {k: state[k] for k in reversed(list(state))}
    reordered["nodes"] = [dict(reversed(list(n.items()))) for n in state["nodes"]]
    assert compact != spaced
    key = _key(state)
    assert _key(orjson.loads(compact)) == key
    assert _key(orjson.loads(spaced)) == key
    assert _key(reordered) == key
    assert len(key) == 32 and int(key, 16) >= 0


def test_key_drops_what_does_not_decide() -> None:
    state = _state()
    other = copy.deepcopy(state)
    other["model"] = "dqn"  # the model comes in as model_name, not from the body
    other["client_tag"] = "abc"
    other["nodes"][0]["rack"] = "r7"  # unknown node fields are ignored by the schema
    assert _key(other) == _key(state)
    del other["model"]
    assert _key(other) == _key(state)


def test_key_omitted_task_is_reference_task_and_edges_none_is_not_empty() -> None:
    state = _state()
    del state["task"]
    reference = {"compute_gcycles": 1.0, "memory_mb": 256.0, "data_mb": 1.0,
                 "deadline_ms": 1000.0}
    assert _key({**state, "task": reference}) == _key(state)
    assert _key({**state, "task": None}) == _key(state)
    assert _key({**state, "task": {"memory_mb": 256.0}}) == _key(state)
    no_edges = {k: v for k, v in state.items() if k != "edges"}
    assert _key({**no_edges, "edges": None}) == _key(no_edges)
    assert _key({**no_edges, "edges": []}) != _key(no_edges)  # no links vs default topology


def _change(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    state = _state()
    target: Any = state
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return state


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(_change(("nodes", 1, "cpu_util"), 0.5000001), id="cpu_util"),
        pytest.param(_change(("nodes", 1, "mem_util"), 0.41), id="mem_util"),
        pytest.param(_change(("nodes", 0, "energy"), 0.6), id="energy"),
        pytest.param(_change(("nodes", 2, "latency"), 41.0), id="latency"),
        pytest.param(_change(("nodes", 2, "bandwidth"), 0.0), id="bandwidth"),
        pytest.param(_change(("nodes", 0, "queue_len"), 2.0), id="queue_len"),
        pytest.param(_change(("nodes", 0, "node_type"), 1), id="node_type"),
        pytest.param(_change(("nodes", 0, "node_id"), "gw2"), id="node_id"),
        pytest.param(_change(("nodes",), list(reversed(_state()["nodes"]))), id="node_order"),
        pytest.param(_change(("nodes",), _state()["nodes"][:2]), id="node_removed"),
        pytest.param(_change(("edges",), [[0, 1], [1, 2], [0, 2]]), id="edge_added"),
        pytest.param(_change(("edges",), [[0, 1]]), id="edge_removed"),
        pytest.param(_change(("edges",), [[0, 1], [0, 2]]), id="edge_moved"),
        pytest.param(_change(("task", "deadline_ms"), 251.0), id="task_deadline"),
        pytest.param(_change(("task", "compute_gcycles"), 2.5), id="task_compute"),
    ],
)
def test_key_changes_with_any_state_value(changed: dict[str, Any]) -> None:
    assert _key(changed) != _key(_state())


def test_key_changes_with_model_name_and_version() -> None:
    state = _state()
    keys = {_key(state, "hybrid", "3"), _key(state, "hybrid", "4"), _key(state, "ppo", "3")}
    assert len(keys) == 3


@pytest.mark.parametrize("bad", [[], {"nodes": "x"}, {"nodes": [1, 2]}, {"nodes": [{}], "task": 3}])
def test_key_rejects_payload_without_node_objects(bad: Any) -> None:
    with pytest.raises(ValueError, match="request_key"):
        request_key(bad, "hybrid", "3")


# --------------------------------------------------------------------------- local


def test_local_lru_evicts_least_recently_used() -> None:
    cache = LocalCache(max_entries=3, ttl_s=60.0)
    for k in "abc":
        cache.set(k, {"v": k})
    assert cache.get("a") == {"v": "a"}  # a is now the most recent; b the least
    cache.set("d", {"v": "d"})
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [{"v": "a"}, {"v": "c"}, {"v": "d"}]
    cache.set("c", {"v": "c2"})  # overwrite refreshes recency: a is now the oldest
    cache.set("e", {"v": "e"})
    assert cache.get("a") is None
    assert cache.get("c") == {"v": "c2"}
    assert len(cache) == 3


def test_local_ttl_expiry_with_injected_clock() -> None:
    clock = FakeClock()
    cache = LocalCache(max_entries=10, ttl_s=5.0, clock=clock)
    cache.set("k", {"node_id": "edge"})
    clock.now += 4.99
    assert cache.get("k") == {"node_id": "edge"}
    clock.now += 0.01
    assert cache.get("k") is None
    assert len(cache) == 0  # the expired entry is dropped, not kept around
    cache.set("k", {"node_id": "cloud"})
    clock.now += 3.0
    cache.set("k", {"node_id": "cloud"})  # a new set restarts the TTL
    clock.now += 3.0
    assert cache.get("k") == {"node_id": "cloud"}
    assert cache.stats() == CacheStats(hits=2, misses=1, errors=0)


def test_local_returns_a_copy_the_caller_may_edit() -> None:
    cache = LocalCache(max_entries=10, ttl_s=60.0)
    value = {"node_id": "edge", "scores": {"edge": 0.9}}
    cache.set("k", value)
    value["scores"]["edge"] = 0.0
    got = cache.get("k")
    assert got == {"node_id": "edge", "scores": {"edge": 0.9}}
    got["cached"] = True
    assert cache.get("k") == {"node_id": "edge", "scores": {"edge": 0.9}}


def test_local_clear_and_bad_arguments() -> None:
    cache = LocalCache(max_entries=10, ttl_s=1.0)
    cache.set("a", {})
    cache.set("b", {})
    assert cache.clear() == 2
    assert cache.get("a") is None
    with pytest.raises(TypeError):
        cache.set("c", {"x": object()})
    for bad in ({"max_entries": 0, "ttl_s": 1.0}, {"max_entries": 2.5, "ttl_s": 1.0},
                {"max_entries": 5, "ttl_s": 0.0}, {"max_entries": 5, "ttl_s": float("nan")}):
        with pytest.raises(ValueError, match="LocalCache"):
            LocalCache(**bad)


def test_local_is_thread_safe() -> None:
    cache = LocalCache(max_entries=64, ttl_s=60.0)
    n_threads, n_ops = 8, 2000
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(n_ops):
                key = f"k{(i // 3 * 5 + t) % 96}"  # set, then read twice; 96 > 64 evicts
                if i % 3 == 0:
                    cache.set(key, {"t": t, "i": i})
                else:
                    value = cache.get(key)
                    assert value is None or set(value) == {"t", "i"}
                if i % 500 == 0:
                    cache.clear()
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch often, so unlocked read-modify-writes interleave
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert errors == []
    stats = cache.stats()
    gets_per_thread = sum(1 for i in range(n_ops) if i % 3 != 0)
    assert stats.hits + stats.misses == n_threads * gets_per_thread
    assert stats.hits > 0
    assert len(cache) <= 64


# --------------------------------------------------------------------------- factory, tiers


def test_make_cache_kinds_and_bad_kind() -> None:
    assert isinstance(make_cache("none"), NullCache)
    assert isinstance(make_cache("none", ttl_s=3.0), NullCache)
    local = make_cache("LOCAL", max_entries=7, ttl_s=2.0)
    assert isinstance(local, LocalCache) and local.max_entries == 7 and local.ttl_s == 2.0
    remote = make_cache("redis", url="redis://127.0.0.1:1/0", prefix="t:")
    assert isinstance(remote, RedisCache)
    remote.close()
    for cache in (make_cache("none"), local, remote):
        assert isinstance(cache, DecisionCache)
    with pytest.raises(ValueError, match=r"'memcached'.*\['none', 'local', 'redis'\]"):
        make_cache("memcached")
    with pytest.raises(ValueError, match="url"):
        make_cache("redis")


def test_null_cache_always_misses() -> None:
    cache = make_cache("none")
    cache.set("k", {"a": 1})
    assert cache.get("k") is None
    assert cache.stats() == CacheStats(hits=0, misses=1, errors=0)


# --------------------------------------------------------------------------- redis helpers


@pytest.fixture(scope="module")
def redis_client() -> Iterator[Any]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        missing("Redis", f"nothing answers at {REDIS_URL}: {exc}")
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: Any) -> Iterator[str]:
    """A fresh prefix per test; every key under it is deleted afterwards."""
    value = f"test-cache-{uuid.uuid4().hex}:"
    yield value
    keys = list(redis_client.scan_iter(match=value + "*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def redis_cache(prefix: str) -> Iterator[RedisCache]:
    # These tests check what is stored, not timing: under CI's full load (2 cores, both
    # running tests) one GET once took > 0.5 s and the round trip read a miss.
    cache = RedisCache(REDIS_URL, ttl_s=30.0, prefix=prefix, socket_timeout_s=5.0)
    yield cache
    cache.close()


class RedisServer:
    """A private redis-server this test starts and kills by its own process id."""

    def __init__(self, workdir: Path, password: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            missing("redis-server", "it is not installed")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--requirepass", self.password],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(port=self.port, password=self.password, socket_timeout=0.2,
                            socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                probe.ping()
                break
            except (redis.RedisError, OSError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    missing("redis-server", "a private one did not come up")
                time.sleep(0.05)
        probe.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, password="p@ss/w0rd-" + uuid.uuid4().hex[:8])
    server.start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- redis


def test_redis_round_trip_stores_orjson_under_prefix(
    redis_cache: RedisCache, redis_client: Any, prefix: str
) -> None:
    key = _key(_state())
    value = {"node_id": "edge", "node_index": 1, "scores": {"gw": 0.1, "edge": 0.8}}
    assert redis_cache.get(key) is None
    redis_cache.set(key, value)
    assert redis_cache.get(key) == value
    assert redis_cache.stats() == CacheStats(hits=1, misses=1, errors=0)
    raw = redis_client.get(prefix + key)
    assert orjson.loads(raw) == value  # plain JSON bytes, not a pickle
    assert [k.decode() for k in redis_client.scan_iter(match=prefix + "*")] == [prefix + key]


def test_redis_sets_ttl(redis_cache: RedisCache, redis_client: Any, prefix: str) -> None:
    redis_cache.set("k", {"a": 1})
    ttl = redis_client.ttl(prefix + "k")
    assert 28 <= ttl <= 30
    short = RedisCache(REDIS_URL, ttl_s=1.5, prefix=prefix + "short:", socket_timeout_s=0.5)
    short.set("k", {"a": 1})
    assert 1000 < redis_client.pttl(prefix + "short:k") <= 1500  # sub-second TTLs kept
    short.close()


def test_redis_clear_deletes_only_its_prefix(redis_client: Any, prefix: str) -> None:
    globby = prefix + "m[1]*:"  # glob characters in a prefix are matched literally
    cache = RedisCache(REDIS_URL, ttl_s=30.0, prefix=globby, socket_timeout_s=0.5)
    neighbour = prefix + "m1x:k"
    redis_client.set(neighbour, b"keep", ex=30)
    for i in range(1200):  # more than one SCAN page and DEL batch
        cache.set(f"k{i}", {"i": i})
    assert cache.clear() == 1200
    assert cache.get("k1") is None
    assert redis_client.get(neighbour) == b"keep"
    cache.close()
    with pytest.raises(ValueError, match="prefix"):
        RedisCache(REDIS_URL, ttl_s=1.0, prefix="")


def test_redis_foreign_value_is_a_miss_not_an_outage(
    redis_cache: RedisCache, redis_client: Any, prefix: str
) -> None:
    redis_client.set(prefix + "bad", b"\x80not json", ex=30)
    redis_client.set(prefix + "list", b"[1,2]", ex=30)
    assert redis_cache.get("bad") is None
    assert redis_cache.get("list") is None
    assert redis_cache.stats().errors == 2
    assert not redis_cache.breaker_open
    redis_cache.set("ok", {"a": 1})
    assert redis_cache.get("ok") == {"a": 1}


def test_redis_down_never_raises_and_stays_fast(caplog: pytest.LogCaptureFixture) -> None:
    secret = "hunter2-secret"
    cache = RedisCache(f"redis://:{secret}@127.0.0.1:1/0", ttl_s=5.0, socket_timeout_s=0.05)
    with caplog.at_level(logging.DEBUG, logger="edge_allocator.cache"):
        assert cache.get("k") is None
        cache.set("k", {"a": 1})
        assert cache.breaker_open
        t0 = time.perf_counter()
        for _ in range(100):
            assert cache.get("k") is None
        elapsed = time.perf_counter() - t0
        assert cache.clear() == 0
    assert elapsed < FAST_100_CALLS_S
    stats = cache.stats()
    assert stats.hits == 0 and stats.misses == 0 and stats.errors >= 102
    assert "127.0.0.1:1" in caplog.text  # the outage is logged ...
    assert secret not in caplog.text  # ... without the password
    assert secret not in repr(cache)
    cache.close()


def test_slow_redis_costs_one_timeout_per_backoff() -> None:
    """A socket that accepts and never answers: each try waits the full timeout, so the
    breaker alone keeps 100 calls fast. Attempts are counted as queued connections."""
    clock = FakeClock()
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        port = blackhole.getsockname()[1]
        cache = RedisCache(f"redis://127.0.0.1:{port}/0", ttl_s=5.0, socket_timeout_s=0.05,
                           backoff_s=1.0, clock=clock)
        t0 = time.perf_counter()
        for _ in range(100):
            assert cache.get("k") is None
            cache.set("k", {"a": 1})
        elapsed = time.perf_counter() - t0
        clock.now += 1.01  # back-off over: exactly one call probes again
        for _ in range(10):
            assert cache.get("k") is None
        blackhole.setblocking(False)
        attempts = 0
        while True:
            try:
                conn, _ = blackhole.accept()
            except BlockingIOError:
                break
            conn.close()
            attempts += 1
        cache.close()
    assert elapsed < FAST_100_CALLS_S
    assert attempts == 2
    assert cache.stats().errors == 210


def test_redis_dies_mid_run_then_recovers(private_redis: RedisServer) -> None:
    clock = FakeClock()
    url = f"redis://:{private_redis.password.replace('@', '%40').replace('/', '%2F')}" \
          f"@127.0.0.1:{private_redis.port}/0"
    cache = RedisCache(url, ttl_s=30.0, prefix="mid-run:", socket_timeout_s=0.2, clock=clock)
    cache.set("k", {"node_id": "edge"})
    assert cache.get("k") == {"node_id": "edge"}  # the password in the URL works

    private_redis.stop()
    t0 = time.perf_counter()
    for _ in range(100):
        assert cache.get("k") is None
        cache.set("k", {"node_id": "edge"})
    assert time.perf_counter() - t0 < FAST_100_CALLS_S
    assert cache.breaker_open
    assert cache.stats().errors == 200

    private_redis.start()  # same port, empty (no persistence)
    assert cache.get("k") is None  # breaker still open: not even tried
    clock.now += 1.01
    cache.set("k", {"node_id": "cloud"})  # the probe succeeds and closes the breaker
    assert not cache.breaker_open
    assert cache.get("k") == {"node_id": "cloud"}
    assert cache.stats().hits == 2
    cache.close()


def test_redis_wrong_password_is_an_error_not_an_exception(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(f"redis://:wrong-pw-123@127.0.0.1:{private_redis.port}/0", ttl_s=5.0)
    with caplog.at_level(logging.WARNING, logger="edge_allocator.cache"):
        cache.set("k", {"a": 1})
        assert cache.get("k") is None
    assert cache.stats().errors == 2
    assert "wrong-pw-123" not in caplog.text
    cache.close()


def test_redact_url_hides_passwords() -> None:
    assert redact_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("redis://u:p%40w@h/1") == "redis://u:***@h/1"
    assert "sec" not in redact_url("unix:///tmp/r.sock?db=0&password=sec")
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
