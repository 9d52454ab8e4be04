"""The Grafana dashboard (JSON model, schemaVersion 39) of Edge Allocator's metrics.

Every query filters on the ``$application`` variable (the Serve application name, a label
Ray Serve adds to every custom metric) and aggregates away per-replica series.
"""

from __future__ import annotations

from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
APP = 'application="$application"'
RATE = "[$__rate_interval]"


def _q(expr: str, legend: str) -> dict[str, Any]:
    return {"expr": expr, "legendFormat": legend}


def _quantiles(metric: str, by: str, qs: tuple[float, ...] = (0.5, 0.99),
               extra: str = "") -> list[dict[str, Any]]:
    sel = f"{APP}{extra}"
    keys = ", ".join(["le", *[k.strip() for k in by.split(",") if k.strip()]])
    legend = " ".join(f"{{{{{k.strip()}}}}}" for k in by.split(",") if k.strip())
    return [_q(f"histogram_quantile({q}, sum by ({keys}) (rate({metric}_bucket{{{sel}}}{RATE})))",
               f"p{round(q * 100)} {legend}".strip()) for q in qs]


def _panel(title: str, description: str, targets: list[dict[str, Any]], unit: str,
           kind: str = "timeseries", stack: bool = False, **options: Any) -> dict[str, Any]:
    custom: dict[str, Any] = {"fillOpacity": 10, "showPoints": "never"}
    if stack:
        custom.update(stacking={"mode": "normal", "group": "A"}, fillOpacity=40)
    panel: dict[str, Any] = {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom if kind == "timeseries"
                                     else {}}, "overrides": []},
        "options": options or {"legend": {"displayMode": "table", "placement": "bottom",
                                          "calcs": ["mean", "max"]},
                               "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, **t}
                    for i, t in enumerate(targets)],
    }
    return panel


def panels() -> list[dict[str, Any]]:
    """Panels in reading order, two per row."""
    decisions = f"ray_edge_allocator_decisions_total{{{APP}}}"
    cache = f"ray_edge_allocator_cache_lookups_total{{{APP}}}"
    batch = "ray_edge_allocator_batch_size"
    return [
        _panel("Decisions/s by model, version, backend",
               "Decisions made (one per state; batch requests count each state).",
               [_q(f"sum by (model, version, backend) (rate({decisions}{RATE}))",
                   "{{model}} v{{version}} ({{backend}})")], "ops"),
        _panel("Decision latency p50 / p99",
               "From request parsed to decision ready, per model (app histogram).",
               _quantiles("ray_edge_allocator_decision_latency_ms", "model"), "ms"),
        _panel("Model latency p50 / p99 per call",
               "Backend run time of one model call (a whole batch).",
               _quantiles("ray_edge_allocator_model_latency_ms", "model, backend"), "ms"),
        _panel("HTTP requests/s and end-to-end p99",
               "Serve proxy: requests by status code, and p99 latency per route.",
               [_q(f"sum by (status_code) (rate(ray_serve_num_http_requests_total{{{APP}}}{RATE}))",
                   "{{status_code}}"),
                *_quantiles("ray_serve_http_request_latency_ms", "route", (0.99,))], "short"),
        _panel("Cache hit ratio", "Decision cache hits / lookups.",
               [_q(f'sum(rate(ray_edge_allocator_cache_lookups_total{{{APP},result="hit"}}{RATE}))'
                   f"\n/ sum(rate({cache}{RATE}))", "hit ratio")], "percentunit"),
        _panel("Batch size distribution", "States per model call (app histogram).",
               [{"expr": f"sum by (le) (increase({batch}_bucket{{{APP}}}{RATE}))",
                 "legendFormat": "{{le}}", "format": "heatmap"}], "short", kind="heatmap",
               calculate=False, yAxis={"unit": "short"}, cellGap=1,
               color={"mode": "scheme", "scheme": "Oranges"}),
        _panel("Mean batch size", "States per model call, mean over the interval, per model.",
               [_q(f"sum by (model) (rate({batch}_sum{{{APP}}}{RATE}))\n"
                   f"/ sum by (model) (rate({batch}_count{{{APP}}}{RATE}))", "{{model}}")],
               "short"),
        _panel("Chosen node type", "Decisions/s by the type of the chosen node.",
               [_q(f"sum by (node_type) (rate({decisions}{RATE}))", "{{node_type}}")],
               "ops", stack=True),
        _panel("Feedback outcomes", "Feedback reports/s by success.",
               [_q(f"sum by (success) (rate(ray_edge_allocator_feedback_total{{{APP}}}{RATE}))",
                   "success={{success}}")], "ops", stack=True),
        _panel("Feedback completion time p50 / p90",
               "Realised task completion time reported as feedback.",
               _quantiles("ray_edge_allocator_feedback_completion_ms", "", (0.5, 0.9)), "ms"),
        _panel("Replicas per deployment", "Healthy replicas and the autoscaler's target.",
               [_q("sum by (deployment) "
                   f"(ray_serve_deployment_replica_healthy{{{APP}}})", "{{deployment}} healthy"),
                _q("max by (deployment) "
                   f"(ray_serve_autoscaling_target_replicas{{{APP}}})", "{{deployment}} target")],
               "short"),
        _panel("HTTP errors/s",
               "Serve proxy error responses by code and route, and the app's own count.",
               [_q("sum by (error_code, route) (rate("
                   f"ray_serve_num_http_error_requests_total{{{APP}}}{RATE}))",
                   "serve {{error_code}} {{route}}"),
                _q("sum by (status, route) (rate("
                   f"ray_edge_allocator_request_errors_total{{{APP}}}{RATE}))",
                   "app {{status}} {{route}}")], "short"),
        _panel("Model memory per inference replica", "Peak resident memory (bytes).",
               [_q(f"max by (replica) (ray_edge_allocator_model_memory_bytes{{{APP}}})",
                   "{{replica}}")], "bytes"),
    ]


def dashboard(uid: str = "edge-allocator", app: str = "edge-allocator") -> dict[str, Any]:
    """The whole dashboard JSON model."""
    laid_out = []
    for i, p in enumerate(panels()):
        laid_out.append({"id": i + 1, "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2),
                                                  "y": 8 * (i // 2)}, **p})
    return {
        "uid": uid, "title": "Edge Allocator", "tags": ["edge-allocator", "ray-serve"],
        "description": "Generated by python -m k8s.generate (k8s/monitoring/dashboard.py).",
        "editable": True, "graphTooltip": 1, "refresh": "30s", "schemaVersion": 39,
        "version": 1, "timezone": "", "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []}, "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0},
            {"name": "application", "label": "Serve application", "type": "query",
             "datasource": DATASOURCE,
             "query": {"query": "label_values(ray_serve_application_status, application)",
                       "refId": "application"},
             "definition": "label_values(ray_serve_application_status, application)",
             "current": {"text": app, "value": app}, "refresh": 2, "hide": 0,
             "includeAll": False, "multi": False, "sort": 1},
        ]},
        "panels": laid_out,
    }
