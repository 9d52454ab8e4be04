"""The closed loop over HTTP, black box (issue 12 §5), on the application as
serve_config.yaml composes it: feedback that one of two identical nodes took 5x longer
than predicted moves later decisions to the other, /v1/nodes shows the estimate, and
after a reset decisions come back. Plus declared capacities and the per-node reasons."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import node
from tests.test_speeds import five_times_slower, two_twins

pytestmark = pytest.mark.cluster


def _decide(client: httpx.Client, url: str, state: dict) -> dict:
    r = client.post(f"{url}/v1/allocate", json=state)
    assert r.status_code == 200, r.text
    return r.json()


def test_feedback_moves_decisions_to_the_faster_twin_until_reset(app_url, client):
    prefix = f"{uuid.uuid4().hex[:8]}-"  # node ids of this test only
    state = two_twins(prefix)
    first = _decide(client, app_url, state)["node_id"]
    assert first in (f"{prefix}a", f"{prefix}b")
    other = f"{prefix}b" if first == f"{prefix}a" else f"{prefix}a"
    assert client.get(f"{app_url}/v1/nodes/{first}").json()["count"] == 0
    for _ in range(8):  # applied once 3x slower (node_speeds.apply_beyond): 5 reports
        d = _decide(client, app_url, state)
        if d["node_id"] != first:
            break
        r = client.post(f"{app_url}/v1/feedback", json={
            "decision_id": d["decision_id"],
            "completion_ms": five_times_slower(state, d["node_index"])})
        assert r.status_code == 200, r.text
    later = [_decide(client, app_url, state)["node_id"] for _ in range(3)]
    assert later == [other] * 3
    slow = client.get(f"{app_url}/v1/nodes/{first}").json()
    assert slow["observed_speed"] < 0.6 and slow["count"] >= 1 and slow["applied"]
    assert client.get(f"{app_url}/v1/nodes/{other}").json()["observed_speed"] == 1.0
    r = client.delete(f"{app_url}/v1/nodes/{first}")
    assert r.status_code == 200 and r.json() == {"node_id": first, "reset": True}
    assert _decide(client, app_url, state)["node_id"] == first
    assert client.get(f"{app_url}/v1/nodes/{first}").json()["count"] == 0


def test_declared_capacities_and_reasons_over_http(app_url, client):
    gw = node(node_id="gw", node_type=0, mem_util=0.9)
    r = client.post(f"{app_url}/v1/allocate", json={"nodes": [gw]})
    assert r.status_code == 422
    assert r.json()["details"][1] == {
        "loc": "nodes.0", "msg": "gw: memory short (need 256 MB, free 102.4 MB of 1024)"}
    d = _decide(client, app_url, {"nodes": [{**gw, "memory_mb": 8192.0},
                                            node(node_id="q", queue_len=32)]})
    assert d["node_id"] == "gw" and d["infeasible"] == {"q": "queue full (32 of 32)"}
    r = client.post(f"{app_url}/v1/allocate/batch", json={"states": [
        {"nodes": [node(node_id="q", queue_len=32, queue_capacity=64)]}]})
    assert r.status_code == 200 and r.json()["decisions"][0]["infeasible"] == {}
