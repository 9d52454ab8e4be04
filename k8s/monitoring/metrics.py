"""Which Prometheus metrics the dashboard and alert rules query, and which ones the code
declares, so tests can check that every query names a metric that really exists.

Ray's metrics agent (Ray 2.60, OpenTelemetry exporter) prefixes every metric with ``ray_``
and exposes a Counter ``x`` as ``ray_x_total``, a Histogram ``x`` as ``ray_x_bucket``,
``ray_x_sum`` and ``ray_x_count``, and a Gauge ``x`` as ``ray_x``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml

MONITORING_DIR = Path(__file__).resolve().parent
ALERTS_PATH = MONITORING_DIR / "alerts.yaml"
DASHBOARD_PATH = MONITORING_DIR / "grafana-dashboard.json"

_METRIC = re.compile(r"(?<![A-Za-z0-9_:])ray_[a-z0-9_]+")
_QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
#: Values substituted for the f-string fields of metric names in Ray Serve's source.
_NAME_FIELDS = {"protocol_name": ("http", "grpc")}


class Query(NamedTuple):
    """One PromQL expression and where it comes from, for messages that name it."""

    where: str
    """``alert <name>[/<deployment>]``, ``panel '<title>' <refId>`` or ``variable <name>``."""
    expr: str


def _dashboard_queries(node: Any, where: str = "dashboard") -> Iterator[Query]:
    """PromQL of every panel target and every templating query in a Grafana dashboard."""
    if isinstance(node, dict):
        if node.get("type") == "datasource":
            return  # a data-source variable: its "query" is a plugin type, not PromQL
        if "title" in node and "targets" in node:
            where = f"panel {node['title']!r}"
        elif "name" in node and "type" in node:
            where = f"variable {node['name']}"
        for key, value in node.items():
            if key in ("expr", "query", "definition") and isinstance(value, str):
                ref = f" target {node['refId']}" if where.startswith("panel") else f" {key}"
                yield Query(where + ref, value)
            else:
                yield from _dashboard_queries(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_queries(item, where)


def named_expressions(alerts_path: Path = ALERTS_PATH,
                      dashboard_path: Path = DASHBOARD_PATH) -> list[Query]:
    """Every PromQL expression of the alert rules and the dashboard, in file order, each
    with where it comes from."""
    rules = yaml.safe_load(Path(alerts_path).read_text())
    out = [Query("alert " + "/".join([rule["alert"], *([rule["labels"]["deployment"]]
                                                      if "deployment" in rule.get("labels", {})
                                                      else [])]), str(rule["expr"]))
           for group in rules["spec"]["groups"] for rule in group["rules"]]
    out += _dashboard_queries(json.loads(Path(dashboard_path).read_text()))
    return out


def expressions(alerts_path: Path = ALERTS_PATH,
                dashboard_path: Path = DASHBOARD_PATH) -> list[str]:
    """Every PromQL expression of the alert rules and the dashboard, in file order."""
    return [q.expr for q in named_expressions(alerts_path, dashboard_path)]


_THRESHOLD = re.compile(r"\s*(?:>=|<=|!=|==|>|<)\s*[-+]?[0-9.]+(?:e[-+]?[0-9]+)?\s*$")
_AND = re.compile(r"\s+and\s+")
_ABSENT = re.compile(r"absent\((.*)\)", re.S)


def alert_signals(expr: str) -> list[str]:
    """What an alert expression measures: each operand of a top-level ``and`` with its
    threshold comparison removed, and the selector inside ``absent(...)``. On a healthy
    system the alert itself returns nothing, but each of these must return series: one
    that does not is a rule that can never fire."""
    out = []
    for part in _AND.split(expr.strip()):
        part = _THRESHOLD.sub("", part.strip())
        m = _ABSENT.fullmatch(part)
        out.append(m.group(1) if m else part)
    return out


_LABEL_VALUES = re.compile(r"label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)", re.S)


def grafana_promql(expr: str, variables: dict[str, str]) -> tuple[str, str | None]:
    """A dashboard query as Prometheus runs it once Grafana has filled in the variables
    (``$name``, ``${name}``, ``$__rate_interval``): (PromQL, label) where ``label`` is
    the label a ``label_values(metric, label)`` variable lists, else None."""
    out = expr
    for name in sorted(variables, key=len, reverse=True):
        out = out.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    m = _LABEL_VALUES.fullmatch(out.strip())
    return (m.group(1), m.group(2)) if m else (out, None)


def metric_names(expr: str) -> set[str]:
    """Identifiers ``ray_...`` in one PromQL expression (a loose parse: quoted label values
    are skipped, so ``{route="ray_x"}`` names no metric)."""
    return set(_METRIC.findall(_QUOTED.sub('""', expr)))


def queried_metrics(alerts_path: Path = ALERTS_PATH,
                    dashboard_path: Path = DASHBOARD_PATH) -> set[str]:
    """Every metric name (as Prometheus exposes it, e.g. ``ray_edge_allocator_decisions_total``)
    used by the alert rules and the Grafana dashboard."""
    return set().union(*(metric_names(e) for e in expressions(alerts_path, dashboard_path)))


def exposed_names(name: str, kind: str) -> list[str]:
    """The series names Ray's agent exposes for a metric declared as ``kind(name)``."""
    base = f"ray_{name}"
    if kind == "Counter":
        return [base if base.endswith("_total") else f"{base}_total"]
    if kind == "Histogram":
        return [f"{base}_bucket", f"{base}_sum", f"{base}_count"]
    if kind == "Gauge":
        return [base]
    raise ValueError(f"exposed_names: unknown metric kind {kind!r}; use Counter, Histogram "
                     f"or Gauge")


def _declared_name(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        names = [""]
        for part in node.values:
            if isinstance(part, ast.Constant):
                names = [n + str(part.value) for n in names]
            elif isinstance(part.value, ast.Name) and part.value.id in _NAME_FIELDS:
                names = [n + v for n in names for v in _NAME_FIELDS[part.value.id]]
            else:
                return []
        return names
    return []


def declared_metrics(paths: Iterable[Path]) -> dict[str, str]:
    """Exposed series name -> kind for every ``Counter``/``Gauge``/``Histogram(name, ...)``
    call with a literal name in the given Python files."""
    out: dict[str, str] = {}
    for path in paths:
        text = Path(path).read_text()
        if not any(f"{k}(" in text for k in ("Counter", "Gauge", "Histogram")):
            continue
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            kind = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if kind not in ("Counter", "Gauge", "Histogram"):
                continue
            arg = node.args[0] if node.args else next(
                (k.value for k in node.keywords if k.arg == "name"), None)
            for name in _declared_name(arg) if arg is not None else []:
                for series in exposed_names(name, kind):
                    out[series] = kind
    return out
