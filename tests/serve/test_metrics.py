"""Custom metrics reach Prometheus through Ray's metrics agent, and every metric the
dashboard and alert rules query exists in that output."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.cluster

APP_METRICS = (
    "ray_edge_allocator_decisions_total",
    "ray_edge_allocator_decision_latency_ms_bucket",
    "ray_edge_allocator_cache_lookups_total",
    "ray_edge_allocator_batch_size_bucket",
    "ray_edge_allocator_model_latency_ms_bucket",
)


def _scrape(port: int, wanted: tuple[str, ...], timeout_s: float = 60) -> str:
    deadline = time.time() + timeout_s
    text = ""
    while time.time() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            text = ""
        if all(w in text for w in wanted):
            return text
        time.sleep(2)
    return text


def test_custom_metrics_are_exported(app_url, ray_cluster, client, small_state):
    for i in range(5):
        client.post(
            f"{app_url}/v1/allocate", json={**small_state, "task": {"compute_gcycles": 1 + i}}
        )
    client.post(f"{app_url}/v1/allocate", json=small_state)
    client.post(f"{app_url}/v1/allocate", json=small_state)  # the same state again: a hit
    client.post(f"{app_url}/v1/allocate", json={"nodes": []})  # an error
    text = _scrape(ray_cluster["metrics_port"], APP_METRICS + ('result="hit"',))
    missing = [m for m in APP_METRICS if m not in text]
    assert not missing, f"not exported: {missing}"
    decisions = [
        ln for ln in text.splitlines() if ln.startswith("ray_edge_allocator_decisions_total{")
    ]
    assert any('model="hybrid"' in ln and 'node_type="' in ln for ln in decisions), decisions
    assert any('result="hit"' in ln for ln in text.splitlines()
               if ln.startswith("ray_edge_allocator_cache_lookups_total{"))


def test_dashboard_and_alerts_query_only_existing_metrics(
    app_url, ray_cluster, client, small_state
):
    from k8s.monitoring.metrics import queried_metrics

    queried = queried_metrics()
    assert queried
    d = client.post(f"{app_url}/v1/allocate", json=small_state).json()
    r = client.post(f"{app_url}/v1/feedback",  # feedback series exist once feedback arrives
                    json={"decision_id": d["decision_id"], "completion_ms": 300.0, "success": True})
    assert r.status_code == 200, r.text
    text = _scrape(ray_cluster["metrics_port"], APP_METRICS + (
        "ray_edge_allocator_feedback_total", "ray_edge_allocator_feedback_completion_ms_bucket"))
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
             if line and not line.startswith("#")}
    missing = sorted(q for q in queried if q not in names)
    assert not missing, f"dashboard/alerts query metrics the app does not export: {missing}"
