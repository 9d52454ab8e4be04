"""Property-based fuzzing of every POST endpoint over real HTTP: whatever a client sends,
the answer is a 2xx or a 4xx with a message, never a 5xx, and the service stays
healthy. The number of cases tried is printed (run with -s to see it)."""

from __future__ import annotations

import math

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.cluster

ENDPOINTS = ["/v1/allocate", "/v1/allocate/batch", "/predict", "/batch-predict", "/v1/feedback",
             "/generate-mock-network", "/models/hybrid_gat/load"]
CASES = {"n": 0}

# Every strategy stays inside what JSON encoders accept (orjson: 64-bit integers), so a
# failure is always the service's, never the generator's.
numbers = st.one_of(
    st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 2, 3, -1, 0.5, 1e308, -1e-308]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=10), kids, max_size=5)),
    max_leaves=30)


def node_like():
    fields = {"cpu_util": numbers, "mem_util": numbers, "energy": numbers, "latency": numbers,
              "bandwidth": numbers, "queue_len": numbers, "node_type": st.one_of(numbers, scalars),
              "node_id": st.one_of(st.text(max_size=8), st.integers(-2**63, 2**64 - 1), st.none())}
    return st.fixed_dictionaries({}, optional=fields)


state_like = st.fixed_dictionaries({}, optional={
    "nodes": st.one_of(st.lists(node_like(), max_size=6), json_values),
    "edges": st.one_of(st.lists(st.lists(st.integers(-3, 8), max_size=3), max_size=6), json_values),
    "task": st.one_of(st.dictionaries(st.sampled_from(
        ["compute_gcycles", "memory_mb", "data_mb", "deadline_ms"]), numbers), json_values),
    "model": st.one_of(st.sampled_from(["hybrid", "dqn", "ppo", "x"]), scalars),
})
counts = st.one_of(st.integers(-3, 1200), numbers, scalars)
mock_like = st.fixed_dictionaries({}, optional={  # POST /generate-mock-network
    k: counts for k in ("num_nodes", "num_edges", "num_devices", "num_fog", "num_cloud", "seed")})
bodies = st.one_of(
    state_like.map(lambda s: orjson.dumps(s)),
    mock_like.map(orjson.dumps),
    st.fixed_dictionaries({"states": st.lists(state_like, max_size=3)}).map(orjson.dumps),
    st.fixed_dictionaries({"network_state": state_like}).map(orjson.dumps),
    st.fixed_dictionaries({"network_states": st.lists(state_like, max_size=3)}).map(orjson.dumps),
    json_values.map(orjson.dumps),
    st.binary(max_size=64),  # non-UTF-8, truncated, garbage
    st.just(b'{"nodes": [' * 500),  # deep nesting
    st.just(b'{"nodes": [{"cpu_util": NaN}]}'),
)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(ENDPOINTS), body=bodies,
       ctype=st.sampled_from(["application/json", "text/plain",
                              "application/x-www-form-urlencoded", ""]))
def _fuzz_once(base: str, path: str, body: bytes, ctype: str) -> None:
    CASES["n"] += 1
    r = httpx.post(f"{base}{path}", content=body, headers={"content-type": ctype}, timeout=30)
    assert r.status_code < 500, (path, body[:200], r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.json()["error"]


def test_fuzz_every_endpoint_never_5xx(app_url):
    _fuzz_once(app_url)
    print(f"\nfuzz: {CASES['n']} cases")
    assert CASES["n"] >= 250
    assert httpx.get(f"{app_url}/healthz").status_code == 200
    assert httpx.get(f"{app_url}/readyz").status_code == 200


def test_huge_and_hostile_inputs(app_url):
    node = {"cpu_util": 0.1, "mem_util": 0.1, "energy": 1, "latency": 1, "bandwidth": 1,
            "queue_len": 0, "node_type": 1}
    with httpx.Client(timeout=60) as c:
        r = c.post(f"{app_url}/v1/allocate", json={"nodes": [node] * 100_000})
        assert r.status_code in (413, 422)
        r = c.post(f"{app_url}/v1/allocate", json={"nodes": [node] * 2001})
        assert r.status_code == 422 and r.json()["details"][0]["loc"] == "nodes"
        r = c.post(f"{app_url}/v1/allocate", json={"nodes": [{**node, "latency": math.pi * 1e300}]})
        assert r.status_code == 200
        assert c.get(f"{app_url}/healthz").status_code == 200
