"""The generated alert rules under Prometheus's own tools: ``promtool check rules``, and
``promtool test rules`` with, for every alert, synthetic series it must fire on (with its
labels and rendered annotations) and healthy ones it must stay silent on. No cluster."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s.generate import load_serve_config
from k8s.monitoring.metrics import ALERTS_PATH
from k8s.monitoring.rules import SERVER_ERROR_RATIO, SHED_RATIO
from k8s.sizing import app_demands
from tests.conftest import prometheus_tool

APP = load_serve_config()["applications"][0]["name"]
#: Synthetic series: one sample a minute for 40 minutes; alerts are evaluated at 30m,
#: past every rule's 5m rate window plus its ``for`` (at most 15m).
SAMPLES = 40
EVAL_TIME = "30m"

Series = tuple[str, str]  # (selector, promtool values such as "0+600x40")


def _s(metric: str, app: str = APP, **labels: str) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in {"application": app,
                                                              **labels}.items()) + "}"


def _counter(per_min: float) -> str:
    return f"0+{per_min:g}x{SAMPLES}"


def _gauge(value: float) -> str:
    return f"{value:g}x{SAMPLES}"


@dataclass
class Case:
    """An alert's synthetic bad series, the labels and $value it then fires with, and one
    or more healthy scenarios in which it must stay silent."""

    bad: list[Series]
    value: str
    """``$value`` as the annotations render it (humanize: 4 significant digits)."""
    healthy: list[list[Series]]
    labels: dict[str, str] = field(default_factory=dict)
    """Labels the expression keeps from the series (the rule's own labels are added)."""


REQUESTS = _s("ray_serve_num_http_requests_total", route="/v1/allocate", method="POST",
              status_code="200"), _counter(6000)  # 100 requests/s


def _server_errors(rule: dict[str, Any]) -> Case:
    err = "ray_serve_num_http_error_requests_total"
    below = SERVER_ERROR_RATIO / 2 * 6000  # half the threshold, per minute
    return Case(
        bad=[REQUESTS, (_s(err, route="/v1/allocate", error_code="500"), _counter(600))],
        value="10%",
        healthy=[[REQUESTS, (_s(err, route="/v1/allocate", error_code="422"), _counter(600)),
                  (_s(err, route="/v1/allocate", error_code="503"), _counter(below))]])


def _shedding(rule: dict[str, Any]) -> Case:
    err = "ray_edge_allocator_request_errors_total"
    below = SHED_RATIO / 2 * 6000
    return Case(
        bad=[REQUESTS, (_s(err, route="/v1/allocate", status="503"), _counter(600))],
        value="10%",
        healthy=[[REQUESTS, (_s(err, route="/v1/allocate", status="422"), _counter(600)),
                  (_s(err, route="/v1/allocate", status="503"), _counter(below))]])


def _latency_histogram(per_min: float, bucket_le: str) -> list[Series]:
    """Every observation in the bucket ``bucket_le`` (and those above it)."""
    h = "ray_edge_allocator_decision_latency_ms"
    les = ["10", "100", "200", "+Inf"]
    out = [(_s(f"{h}_bucket", model="hybrid", route="/v1/allocate", le=le),
            _counter(per_min if les.index(le) >= les.index(bucket_le) else 0)) for le in les]
    return out + [(_s(f"{h}_count", model="hybrid", route="/v1/allocate"), _counter(per_min))]


def _latency(rule: dict[str, Any]) -> Case:
    # all in (100, 200] ms: p99 = 100 + 0.99 * 100 = 199
    return Case(bad=_latency_histogram(600, "200"), value="199",
                healthy=[_latency_histogram(600, "10"),  # busy and fast
                         _latency_histogram(30, "200")])  # slow, but 0.5 decisions/s


def _not_running(rule: dict[str, Any]) -> Case:
    status = "ray_serve_application_status"
    return Case(bad=[(_s(status), _gauge(5))], value="5", labels={"application": APP},  # DEPLOYING
                healthy=[[(_s(status), _gauge(6))]])


def _absent(rule: dict[str, Any]) -> Case:
    status = "ray_serve_application_status"
    return Case(bad=[(_s(status, app="some-other-app"), _gauge(6))], value="1",
                labels={"application": APP}, healthy=[[(_s(status), _gauge(6))]])


def _deployment_unhealthy(rule: dict[str, Any]) -> Case:
    status = "ray_serve_deployment_status"
    return Case(bad=[(_s(status, deployment="Ingress"), _gauge(2)),  # UNHEALTHY
                     (_s(status, deployment="PolicyInference"), _gauge(6))],
                value="2", labels={"application": APP, "deployment": "Ingress"},
                healthy=[[(_s(status, deployment="Ingress"), _gauge(6)),
                          (_s(status, deployment="PolicyInference"), _gauge(4))]])  # UPSCALING


def _replicas(dep: str, healthy: int, unhealthy: int = 0) -> list[Series]:
    g = "ray_serve_deployment_replica_healthy"
    return [(_s(g, deployment=dep, replica=f"{dep}#{i}"), _gauge(1 if i < healthy else 0))
            for i in range(healthy + unhealthy)]


#: Replica range of each deployment, from serve_config.yaml (the one source of sizing).
SIZING = {d.deployment: d for d in app_demands(load_serve_config())}


def _at_max(rule: dict[str, Any]) -> Case:
    dep = rule["labels"]["deployment"]
    high = SIZING[dep].max_replicas
    return Case(bad=_replicas(dep, high), value=str(high),
                labels={"application": APP, "deployment": dep},
                healthy=[_replicas(dep, high - 1, unhealthy=1)])


def _below_min(rule: dict[str, Any]) -> Case:
    dep = rule["labels"]["deployment"]
    low = SIZING[dep].min_replicas
    return Case(bad=_replicas(dep, low - 1, unhealthy=1), value=str(low - 1),
                labels={"application": APP, "deployment": dep},
                healthy=[_replicas(dep, low)])


CASES = {
    "EdgeAllocatorHighServerErrorRate": _server_errors,
    "EdgeAllocatorShedding": _shedding,
    "EdgeAllocatorHighDecisionLatency": _latency,
    "EdgeAllocatorNotRunning": _not_running,
    "EdgeAllocatorMetricsAbsent": _absent,
    "EdgeAllocatorDeploymentUnhealthy": _deployment_unhealthy,
    "EdgeAllocatorReplicasAtMax": _at_max,
    "EdgeAllocatorReplicasBelowMin": _below_min,
}


def _rules() -> list[dict[str, Any]]:
    manifest = yaml.safe_load(ALERTS_PATH.read_text())
    return [r for g in manifest["spec"]["groups"] for r in g["rules"]]


def _rule_id(rule: dict[str, Any]) -> str:
    return "/".join([rule["alert"], *([rule["labels"]["deployment"]]
                                      if "deployment" in rule["labels"] else [])])


def _render(template: str, value: str, labels: dict[str, str]) -> str:
    out = template
    for t in ("{{ $value | humanizePercentage }}", "{{ $value | humanize }}", "{{ $value }}"):
        out = out.replace(t, value)
    for k, v in labels.items():
        out = out.replace(f"{{{{ $labels.{k} }}}}", v)
    assert "{{" not in out, f"a template this test does not render: {template!r}"
    return out


@pytest.fixture(scope="module")
def promtool() -> str:
    return prometheus_tool("promtool")


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    """The PrometheusRule's groups as a plain Prometheus rule file."""
    manifest = yaml.safe_load(ALERTS_PATH.read_text())
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}, sort_keys=False))
    return path


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


def test_promtool_check_rules(promtool: str, rule_file: Path) -> None:
    out = _promtool(promtool, "check", "rules", str(rule_file))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in out.stdout, out.stdout


def test_promtool_check_rules_rejects_a_broken_expression(promtool: str, tmp_path: Path) -> None:
    """The check has teeth: one unbalanced parenthesis fails it, naming the rule's error."""
    manifest = yaml.safe_load(ALERTS_PATH.read_text())
    manifest["spec"]["groups"][0]["rules"][0]["expr"] += ")"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}))
    out = _promtool(promtool, "check", "rules", str(path))
    assert out.returncode != 0 and "parse error" in out.stdout + out.stderr


@pytest.mark.parametrize("rule", _rules(), ids=_rule_id)
def test_alert_fires_on_bad_series_and_not_on_healthy(promtool: str, rule_file: Path,
                                                      rule: dict[str, Any]) -> None:
    assert rule["alert"] in CASES, f"{_rule_id(rule)} has no promtool unit test in CASES"
    case = CASES[rule["alert"]](rule)
    labels = {**rule["labels"], **case.labels}
    expected = {"exp_labels": labels,
                "exp_annotations": {k: _render(v, case.value, labels)
                                    for k, v in rule["annotations"].items()}}

    def group(series: list[Series], alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [{"eval_time": EVAL_TIME, "alertname": rule["alert"],
                                     "exp_alerts": alerts}]}

    tests = [group(case.bad, [expected])] + [group(h, []) for h in case.healthy]
    path = rule_file.parent / "alerts_test.yaml"
    path.write_text(yaml.safe_dump({"rule_files": [rule_file.name], "evaluation_interval": "1m",
                                    "tests": tests}, sort_keys=False))
    out = _promtool(promtool, "test", "rules", str(path))
    assert out.returncode == 0, f"{_rule_id(rule)}:\n{out.stdout}{out.stderr}"
    assert "SUCCESS" in out.stdout
