"""Prometheus alert rules (a prometheus-operator ``PrometheusRule``) built from the Serve
config, so replica thresholds follow serve_config.yaml like the RayService does."""

from __future__ import annotations

from typing import Any

from k8s.sizing import app_demands

#: Share of HTTP requests answered 5xx (Serve proxy's count) that pages someone.
SERVER_ERROR_RATIO = 0.01
#: Share of requests the app sheds with 503 (overload, lost replica) worth a warning.
SHED_RATIO = 0.01
#: p99 of the app's decision latency (request parsed -> decision ready), ms.
P99_DECISION_LATENCY_MS = 100
#: Decisions per second below which the latency quantile is too noisy to alert on.
MIN_DECISIONS_PER_S = 1
#: Serve's numeric statuses (ray_serve_application_status / ray_serve_deployment_status).
APP_RUNNING = 6
DEPLOYMENT_UNHEALTHY = 2
#: prometheus-operator's default ruleSelector in kube-prometheus-stack matches this label.
SELECTOR_LABELS = {"release": "prometheus"}


def _rule(alert: str, expr: str, for_: str, severity: str, summary: str,
          description: str, **labels: str) -> dict[str, Any]:
    return {"alert": alert, "expr": expr, "for": for_,
            "labels": {"severity": severity, **labels},
            "annotations": {"summary": summary, "description": description}}


def uncalled_deployments(app: dict[str, Any]) -> set[str]:
    """Deployments an application of a Serve config binds but never calls, so they run
    no replicas: PolicyInference while the ingress runs the policy itself
    (``args.inline_inference``; deployments/app.py)."""
    return {"PolicyInference"} if (app.get("args") or {}).get("inline_inference") else set()


def app_rules(app: str, serve_config: dict[str, Any]) -> list[dict[str, Any]]:
    """Alert rules of one Serve application."""
    sel = f'application="{app}"'
    requests = f"sum(rate(ray_serve_num_http_requests_total{{{sel}}}[5m]))"
    rules = [
        _rule("EdgeAllocatorHighServerErrorRate",
              f"sum(rate(ray_serve_num_http_error_requests_total{{{sel},error_code=~\"5..\"}}[5m]))"
              f"\n  / {requests} > {SERVER_ERROR_RATIO}",
              "5m", "critical", f"{app}: more than {SERVER_ERROR_RATIO:.0%} of requests fail 5xx",
              "{{ $value | humanizePercentage }} of HTTP requests were answered 5xx over 5m "
              "(Serve proxy count). Check replica logs and ray_edge_allocator_request_errors_total "
              "by route and status."),
        _rule("EdgeAllocatorShedding",
              f"sum(rate(ray_edge_allocator_request_errors_total{{{sel},status=\"503\"}}[5m]))"
              f"\n  / {requests} > {SHED_RATIO}",
              "10m", "warning", f"{app}: shedding load (503)",
              "{{ $value | humanizePercentage }} of requests were answered 503 (overloaded or "
              "replica lost). Replicas may be at max_replicas or the cluster out of CPUs."),
        _rule("EdgeAllocatorHighDecisionLatency",
              "histogram_quantile(0.99, sum by (le) (rate("
              f"ray_edge_allocator_decision_latency_ms_bucket{{{sel}}}[5m])))"
              f" > {P99_DECISION_LATENCY_MS}"
              "\nand sum(rate(ray_edge_allocator_decision_latency_ms_count"
              f"{{{sel}}}[5m])) > {MIN_DECISIONS_PER_S}",
              "10m", "warning", f"{app}: p99 decision latency above {P99_DECISION_LATENCY_MS} ms",
              "p99 decision latency is {{ $value | humanize }} ms over 5m."),
        _rule("EdgeAllocatorNotRunning",
              f"max by (application) (ray_serve_application_status{{{sel}}}) != {APP_RUNNING}",
              "5m", "critical", f"{app}: Serve application not RUNNING",
              "Serve reports status {{ $value }} (1 DEPLOY_FAILED, 2 UNHEALTHY, 5 DEPLOYING, "
              "6 RUNNING). kubectl describe rayservice; the Ray dashboard's Serve page says why."),
        _rule("EdgeAllocatorMetricsAbsent",
              f"absent(ray_serve_application_status{{{sel}}})",
              "10m", "critical", f"{app}: no Serve metrics",
              "No ray_serve_application_status series for 10m: the application is not deployed "
              "or the PodMonitor does not scrape the Ray head (port 'metrics', 8080)."),
        _rule("EdgeAllocatorDeploymentUnhealthy",
              f"max by (application, deployment) (ray_serve_deployment_status{{{sel}}})"
              f" <= {DEPLOYMENT_UNHEALTHY}",
              "5m", "critical", f"{app}: deployment {{{{ $labels.deployment }}}} unhealthy",
              "Serve reports status {{ $value }} (1 DEPLOY_FAILED, 2 UNHEALTHY) for deployment "
              "{{ $labels.deployment }}: replicas fail their health checks or cannot start."),
    ]
    apps = [a for a in serve_config["applications"] if a["name"] == app]
    idle = {name for a in apps for name in uncalled_deployments(a)}
    for d in app_demands({"applications": apps}):
        if d.deployment in idle:
            continue  # no replicas by design: a replica alert on it could never fire
        healthy = ("sum by (application, deployment) (ray_serve_deployment_replica_healthy"
                   f"{{{sel},deployment=\"{d.deployment}\"}})")
        if d.max_replicas > d.min_replicas:
            rules.append(_rule(
                "EdgeAllocatorReplicasAtMax", f"{healthy} >= {d.max_replicas}", "15m", "warning",
                f"{app}: {d.deployment} at max_replicas ({d.max_replicas})",
                f"{d.deployment} has run {{{{ $value }}}} healthy replicas, its max_replicas in "
                "serve_config.yaml, for 15m: autoscaling has no room left. Raise max_replicas "
                "and regenerate with python -m k8s.generate.",
                deployment=d.deployment))
        if d.min_replicas > 0:
            rules.append(_rule(
                "EdgeAllocatorReplicasBelowMin", f"{healthy} < {d.min_replicas}", "10m",
                "critical", f"{app}: {d.deployment} below min_replicas ({d.min_replicas})",
                f"{d.deployment} has {{{{ $value }}}} healthy replicas, fewer than its "
                f"min_replicas {d.min_replicas}, for 10m (pods pending, or replicas crash).",
                deployment=d.deployment))
    return rules


def prometheus_rule(name: str, serve_config: dict[str, Any]) -> dict[str, Any]:
    """The ``PrometheusRule`` manifest for every application of ``serve_config``."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name,
                     "labels": {"app.kubernetes.io/part-of": name, **SELECTOR_LABELS}},
        "spec": {"groups": [{"name": f"{app['name']}.rules", "rules": app_rules(app["name"],
                                                                               serve_config)}
                            for app in serve_config["applications"]]},
    }
