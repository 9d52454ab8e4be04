"""A real Prometheus scrapes the application's metrics endpoint (Ray's metrics agent) while
load runs; then every PromQL expression of the Grafana dashboard and of the alert rules
runs against it. Each must return series: one that returns nothing fails the test,
which names it."""

from __future__ import annotations

import copy
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import prometheus_tool
from tests.serve.conftest import app_options, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.exclusive]

#: This test's own application; the alert rules are generated for it from serve_config.yaml
#: exactly as k8s/monitoring/alerts.yaml is for the shipped one.
APP = "monitored"
PREFIX = "/monitored"
#: What Grafana substitutes for $__rate_interval here (at least 4 scrape intervals).
RATE_INTERVAL = "1m"
#: Every 5 s, and as long to answer: Ray's metrics endpoint renders every series in
#: Python, and on a loaded two-core machine a 1-s scrape (timeout 1 s) timed out for
#: the test's whole three minutes (no series at all).
SCRAPE_INTERVAL_S = 5
#: How long to wait for every expression to return series (Ray's agent exports every few
#: seconds; histograms appear once observed, rates once two scrapes saw the series).
DEADLINE_S = 180


@pytest.fixture
def prometheus_binary() -> str:
    """Looked up before the cluster starts: without it the test skips (fails under CI)."""
    return prometheus_tool("prometheus")


@pytest.fixture
def prometheus(prometheus_binary, ray_cluster, tmp_path: Path):
    """Prometheus on its own port and temp dir, scraping the cluster's metrics endpoint
    every SCRAPE_INTERVAL_S; stopped by PID."""
    binary = prometheus_binary
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                   "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
                   "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
        "scrape_configs": [{"job_name": "ray", "static_configs": [
            {"targets": [f"127.0.0.1:{ray_cluster['metrics_port']}"]}]}],
    }))
    log_path = tmp_path / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail(f"prometheus not ready after 60 s: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def monitored_url(ray_cluster, test_models, tmp_path: Path):
    """The shipped composition, autoscaling as in serve_config.yaml, with ppo's artifact
    tampered so that part of the load is answered 503 (the error panels and the 5xx and
    shedding alerts then have series to show)."""
    from ray import serve

    from deployments.app import build_app

    models = tmp_path / "models"
    shutil.copytree(test_models, models)
    onnx = models / "ppo" / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"tampered")
    args, options = app_options(models, tmp_path / "decisions.db", autoscaling=True)
    serve.run(build_app(args, options), name=APP, route_prefix=PREFIX, blocking=False)
    deadline = time.time() + 120
    while serve.status().applications.get(APP) is None or \
            serve.status().applications[APP].status != "RUNNING":
        assert time.time() < deadline, f"{APP} not RUNNING: {serve.status()}"
        time.sleep(0.5)
    yield f"http://127.0.0.1:{ray_cluster['port']}{PREFIX}"
    serve.delete(APP)


def _state(i: int) -> dict[str, Any]:
    nodes = [{"cpu_util": (i % 9) / 10, "mem_util": 0.2, "energy": 5, "latency": 3 + k,
              "bandwidth": 100, "queue_len": k % 3, "node_type": k % 3} for k in range(8)]
    return {"nodes": nodes, "task": {"compute_gcycles": 1 + i / 1000}}


def _load(url: str, stop: threading.Event, seen: dict[int, int]) -> None:
    """Every kind of request the dashboard shows: decisions (fresh and cached, single and
    batch), feedback, a model that is refused (503) and invalid input (422)."""
    with httpx.Client(timeout=30) as c:
        i = 0
        while not stop.is_set():
            rs = [c.post(f"{url}/v1/allocate", json=_state(i)),
                  c.post(f"{url}/v1/allocate", json=_state(i)),  # a cache hit
                  c.post(f"{url}/v1/allocate/batch", json={"states": [_state(i + 1),
                                                                      _state(i + 2)]}),
                  c.post(f"{url}/v1/allocate", json={**_state(i), "model": "ppo"}),
                  c.post(f"{url}/v1/allocate", json={"nodes": []})]
            if rs[0].status_code == 200:
                rs.append(c.post(f"{url}/v1/feedback", json={
                    "decision_id": rs[0].json()["decision_id"], "success": i % 4 != 0,
                    "completion_ms": 50.0 + (i * 37) % 900}))
            for r in rs:
                seen[r.status_code] = seen.get(r.status_code, 0) + 1
            i += 3
            time.sleep(0.05)


def _queries() -> list[tuple[str, str, str | None]]:
    """(where, PromQL, label or None) for every dashboard expression (variables filled in
    as Grafana would) and every alert's signals (operands without their thresholds), the
    rules generated for this test's application."""
    from k8s.generate import load_serve_config
    from k8s.monitoring.metrics import Query, alert_signals, grafana_promql, named_expressions
    from k8s.monitoring.rules import prometheus_rule

    cfg = copy.deepcopy(load_serve_config())
    cfg["applications"][0]["name"] = APP
    rules = [r for g in prometheus_rule("test", cfg)["spec"]["groups"] for r in g["rules"]]
    alerts = [Query(f"alert {r['alert']}" + (f"/{r['labels']['deployment']}"
                                              if "deployment" in r["labels"] else ""), r["expr"])
              for r in rules]
    out: list[tuple[str, str, str | None]] = []
    for q in alerts:
        signals = alert_signals(q.expr)
        out += [(q.where + (f" (operand {i + 1})" if len(signals) > 1 else ""), s, None)
                for i, s in enumerate(signals)]
    variables = {"application": APP, "__rate_interval": RATE_INTERVAL}
    for q in named_expressions():
        if q.where.startswith("alert"):
            continue  # the committed rules are those of the shipped app: generated above
        expr, label = grafana_promql(q.expr, variables)
        out.append((q.where, expr, label))
    return out


def _returns_series(prom: str, expr: str, label: str | None) -> str | None:
    """None when ``expr`` returns series (with ``label`` = APP if given), else why not."""
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    if body.get("status") != "success":
        return f"query failed: {body.get('error', r.text)}"
    result = body["data"]["result"]
    if not result:
        return "no series"
    if label is not None and not any(s["metric"].get(label) == APP for s in result):
        return f"no series with {label}={APP!r}"
    return None


def test_every_dashboard_and_alert_expression_returns_series(prometheus, monitored_url):
    queries = _queries()
    assert len(queries) > 25
    stop, seen = threading.Event(), {}
    loader = threading.Thread(target=_load, args=(monitored_url, stop, seen), daemon=True)
    loader.start()
    failing: dict[str, str] = {}
    try:
        deadline = time.time() + DEADLINE_S
        while time.time() < deadline:
            time.sleep(5)
            failing = {}
            for where, expr, label in queries:
                why = _returns_series(prometheus, expr, label)
                if why is not None:
                    failing[where] = f"{why}: {expr}"
            if not failing and time.time() > deadline - DEADLINE_S + 30:
                break  # every expression has series, and rates have 30 s of data
    finally:
        stop.set()
        loader.join(timeout=60)
    assert seen.get(200, 0) > 50 and seen.get(503, 0) > 10 and seen.get(422, 0) > 10, seen
    if failing:  # say whether Prometheus could scrape at all
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()
        health = [(t.get("scrapeUrl"), t.get("health"), t.get("lastError"),
                   t.get("lastScrapeDuration"))
                  for t in targets.get("data", {}).get("activeTargets", [])]
        raise AssertionError("expressions that return no series:\n" + "\n".join(
            f"- {where}: {why}" for where, why in failing.items())
            + f"\nscrape targets (url, health, last error, last duration s): {health}")
    up = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"}).json()
    assert [s["value"][1] for s in up["data"]["result"]] == ["1"]  # the one target, scraped
