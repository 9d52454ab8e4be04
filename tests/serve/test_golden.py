"""Golden responses: a fixed set of requests against every composition, compared with
responses recorded before a refactor, apart from ids and timings.

Record anew (only when a change of behaviour is intended, and say so in the commit):
``EDGE_ALLOCATOR_UPDATE_GOLDEN=1 pytest tests/serve/test_golden.py``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import node

pytestmark = pytest.mark.cluster

GOLDEN = Path(__file__).parent / "golden" / "responses.json"
#: Keys whose values change from call to call (ids, clocks, the Ray node that ran it).
VOLATILE = {"decision_id", "latency_ms", "processing_time_ms", "total_processing_time_ms",
            "uptime_seconds", "inference_node", "batch_size"}


def _requests(client: httpx.Client, url: str) -> list[tuple[str, str, Any]]:
    """(method, path, body) in a fixed order; states come from the simulator's seeds."""
    def sample(n: int, seed: int, scenario: str = "synthetic") -> dict[str, Any]:
        r = client.get(f"{url}/v1/sample", params={"nodes": n, "seed": seed,
                                                   "scenario": scenario})
        assert r.status_code == 200, r.text
        return r.json()

    states = [sample(n, s) for s, n in enumerate([5, 12, 20, 40, 120])]
    small = {"nodes": [node(node_id="g0", node_type=0, cpu_util=0.5, latency=0.0,
                            bandwidth=10000),
                       node(node_id="n1", node_type=1, cpu_util=0.05, latency=2.0),
                       node(node_id="n2", node_type=1, queue_len=40),
                       node(node_id="c3", node_type=2, latency=60.0)],
             "task": {"compute_gcycles": 2.0, "memory_mb": 256, "data_mb": 1.0,
                      "deadline_ms": 2000}}
    legacy = {"nodes": [{k: v for k, v in n.items() if k != "node_id"} for n in small["nodes"]]}
    reqs: list[tuple[str, str, Any]] = [("GET", "/v1/sample?nodes=8&seed=3", None)]
    for model in ("hybrid", "dqn", "ppo"):
        reqs += [("POST", "/v1/allocate", {**s, "model": model}) for s in states[:3]]
        reqs.append(("POST", "/predict", {"network_state": legacy, "model_type": model}))
        reqs.append(("POST", "/batch-predict", {"network_states": [legacy, legacy],
                                                "model_type": model}))
    reqs += [
        ("POST", "/v1/allocate", small),
        ("POST", "/v1/allocate", {**small, "edges": [[0, 1], [1, 2], [2, 3]]}),
        ("POST", "/v1/allocate", states[4]),
        ("POST", "/v1/allocate", sample(30, 1, "melbourne")),
        ("POST", "/v1/allocate/batch", {"states": states}),
        ("POST", "/v1/allocate/batch", {"states": states[:2], "model": "dqn"}),
        ("POST", "/v1/allocate", {"nodes": [node(bandwidth=0)]}),
        ("POST", "/v1/allocate", {"nodes": [node(cpu_util=2)]}),
        ("POST", "/v1/allocate", {"nodes": [node(), node()], "edges": [[0, 5]]}),
        ("POST", "/v1/allocate", {**small, "model": "nope"}),
        ("POST", "/v1/allocate/batch", {"states": [small, {"nodes": [node(queue_len=-1)]}]}),
        ("POST", "/predict", {"network_state": {"nodes": []}}),
        ("POST", "/v1/feedback", {"decision_id": "f" * 32}),
        ("GET", "/health", None),
        ("GET", "/models", None),
        ("GET", "/models/dqn", None),
        ("GET", "/models/nope", None),
        ("GET", "/healthz", None),
        ("DELETE", "/v1/allocate", None),
    ]
    return reqs


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _forget_speeds(client: httpx.Client, url: str, reqs: list[tuple[str, str, Any]]) -> None:
    """Node speeds other tests' feedback taught this app (the fuzzers send feedback on
    sampled states) would move these decisions: every node id asked about, and every
    index id, starts at speed 1.0 (issue 12 §2), as when the responses were recorded."""
    def states(body: Any) -> list[Any]:
        if not isinstance(body, dict):
            return []
        return [body, body.get("network_state"), *body.get("states", []),
                *body.get("network_states", [])]
    ids = {str(k) for k in range(200)} | {
        n["node_id"] for _, _, body in reqs for s in states(body) if isinstance(s, dict)
        for n in s.get("nodes", []) if "node_id" in n}
    for nid in sorted(ids):
        assert client.delete(f"{url}/v1/nodes/{nid}").status_code == 200


def _run(client: httpx.Client, url: str) -> list[dict[str, Any]]:
    out = []
    reqs = _requests(client, url)
    _forget_speeds(client, url, reqs)
    for method, path, body in reqs:
        r = client.request(method, f"{url}{path}", json=body)
        out.append({"request": f"{method} {path}", "status": r.status_code,
                    "body": _strip(r.json())})
    return out


def _same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6), \
            f"{where}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("target", ["app_url", "separate_url", "hop_url"])
def test_responses_match_the_recorded_ones(target, request, client):
    url = request.getfixturevalue(target)
    got = _run(client, url)
    if os.environ.get("EDGE_ALLOCATOR_UPDATE_GOLDEN") == "1" and target == "app_url":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(orjson.dumps(got, option=orjson.OPT_INDENT_2))
    want = orjson.loads(GOLDEN.read_bytes())
    assert [g["request"] for g in got] == [w["request"] for w in want]
    for g, w in zip(got, want):
        _same(g, w, g["request"])
