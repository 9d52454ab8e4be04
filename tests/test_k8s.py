"""Kubernetes manifests: generated from serve_config.yaml without drift, valid against the
KubeRay v1.7.0 CRD and Ray Serve's own config schema, and monitoring that queries only
metrics the code declares. Offline and fast: no cluster, no Ray."""

from __future__ import annotations

import copy
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s import generate
from k8s.crd import validation_errors
from k8s.monitoring.metrics import (
    ALERTS_PATH,
    DASHBOARD_PATH,
    alert_signals,
    declared_metrics,
    expressions,
    grafana_promql,
    metric_names,
    named_expressions,
    queried_metrics,
)
from k8s.monitoring.rules import app_rules, uncalled_deployments
from k8s.sizing import PodShape, ReplicaDemand, pods_needed

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
VARIANTS = {v.name: v for v in generate.VARIANTS}


def _manifest(variant: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / f"rayservice-{variant}.yaml").read_text())


def _serve(manifest: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(manifest["spec"]["serveConfigV2"])


def _deployment(serve: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for app in serve["applications"] for d in app["deployments"]
                if d["name"] == name)


def _groups(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]}


def _pod_templates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    rc = manifest["spec"]["rayClusterConfig"]
    return [rc["headGroupSpec"]["template"], *(g["template"] for g in rc["workerGroupSpecs"])]


# --- drift -------------------------------------------------------------------------------

def test_generated_files_match_disk() -> None:
    files = generate.outputs()
    assert set(files) == {K8S / "rayservice-cpu.yaml", K8S / "rayservice-gpu.yaml",
                          K8S / "monitoring" / "alerts.yaml",
                          K8S / "monitoring" / "grafana-dashboard.json",
                          ROOT / "serve_config.gpu.yaml"}
    assert generate.drift(files) == [], "run `python -m k8s.generate` and commit the result"
    assert generate.main(["--check"]) == 0


def test_drift_check_reports_a_changed_file(tmp_path: Path) -> None:
    stale = tmp_path / "rayservice-cpu.yaml"
    stale.write_text("replicas: 1\n")
    diffs = generate.drift({stale: "replicas: 2\n", tmp_path / "missing.yaml": "a: 1\n"})
    assert len(diffs) == 2
    assert "-replicas: 1" in diffs[0] and "+replicas: 2" in diffs[0]


def test_manifests_follow_serve_config(tmp_path: Path) -> None:
    """serve_config.yaml is the one source: raising max_replicas grows the worker group and
    the replicas-at-max alert threshold, and the drift check then fails."""
    cfg = generate.load_serve_config()
    _deployment(cfg, "PolicyInference")["autoscaling_config"]["max_replicas"] = 20
    _deployment(cfg, "Ingress")["autoscaling_config"]["max_replicas"] = 3
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    files = generate.outputs(path)
    cpu = yaml.safe_load(files[K8S / "rayservice-cpu.yaml"].split("\n", 2)[2])
    before = _groups(_manifest("cpu"))["cpu-workers"]["maxReplicas"]
    after = _groups(cpu)["cpu-workers"]["maxReplicas"]
    assert after > before
    # 20 x 0.4 CPU of inference alone needs 4 two-CPU pods.
    assert after >= 4 + generate.SPARE_PODS
    assert _deployment(_serve(cpu), "PolicyInference")["autoscaling_config"]["max_replicas"] == 20
    alerts = files[K8S / "monitoring" / "alerts.yaml"]
    assert ">= 3" in alerts and ">= 20" not in alerts  # no alert on the idle PolicyInference
    assert generate.drift(files) != []


def test_check_command_fails_on_drift_and_writes_nothing(tmp_path: Path) -> None:
    """``python -m k8s.generate --check`` as CI runs it: a serve_config.yaml the committed
    files were not generated from exits 1, prints the diff of each stale file and names
    them, and leaves the files on disk as they were."""
    import subprocess
    import sys

    text = generate.SERVE_CONFIG.read_text()
    assert text.count("max_replicas: 2\n") == 2
    changed = tmp_path / "serve_config.yaml"  # the Ingress's max_replicas (the last) 2 -> 7
    head, _, tail = text.rpartition("max_replicas: 2\n")
    changed.write_text(head + "max_replicas: 7\n" + tail)
    before = {p: p.read_text() for p in generate.outputs()}
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "k8s.generate", "--check", *a], cwd=ROOT, capture_output=True,
        text=True, timeout=120)
    stale = run("--config", str(changed))
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "out of date" in stale.stderr
    assert "--- k8s/rayservice-cpu.yaml (on disk)" in stale.stdout
    assert "--- k8s/monitoring/alerts.yaml (on disk)" in stale.stdout
    added = [ln for ln in stale.stdout.splitlines() if ln.startswith("+")]
    assert any("max_replicas: 7" in ln for ln in added)  # serveConfigV2 of the manifests
    assert "-        >= 2\n+        >= 7\n" in stale.stdout  # the Ingress's at-max alert
    assert {p: p.read_text() for p in before} == before
    fresh = run()
    assert fresh.returncode == 0 and "up to date" in fresh.stdout, fresh.stdout + fresh.stderr


# --- serve_config.gpu.yaml ----------------------------------------------------------------

GPU_CONFIG = ROOT / "serve_config.gpu.yaml"


def test_gpu_serve_config_is_serve_config_plus_gpu_overrides() -> None:
    """serve_config.gpu.yaml is serve_config.yaml with the ingress calling PolicyInference
    (not inline), PolicyInference on a quarter GPU, four replicas (min, initial and max)
    and ONNX Runtime on CUDA; nothing else differs."""
    text = GPU_CONFIG.read_text()
    assert text.startswith("# GENERATED by `python -m k8s.generate` from serve_config.yaml: "
                           "do not edit by hand.\n")
    want = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    inference = _deployment(want, "PolicyInference")
    inference["ray_actor_options"]["num_gpus"] = 0.25
    inference["autoscaling_config"].update(min_replicas=4, initial_replicas=4, max_replicas=4)
    generate.inference_settings(inference).update(device="cuda", backend="onnx")
    want["applications"][0]["args"]["inline_inference"] = False
    assert yaml.safe_load(text) == want


def test_gpu_serve_config_keeps_serve_config_comments_and_anchors() -> None:
    source = (ROOT / "serve_config.yaml").read_text()
    body = source[source.index("\n\n") + 2:]   # after serve_config.yaml's own header
    text = GPU_CONFIG.read_text()
    for line in body.splitlines():
        if line.lstrip().startswith("#") or "&" in line or "*" in line:
            assert line in text, line
    assert text.count("# GPU variant (serve_config.yaml: ") >= 4


# The layout another revision of serve_config.yaml may take: inference settings under an
# ``inference`` mapping of user_config, shared with the ingress, and no ``device`` key yet.
NESTED = """\
# a header that the GPU variant replaces
applications:
  - name: app
    import_path: deployments.app:app_builder
    deployments:
      - name: PolicyInference
        ray_actor_options:
          num_cpus: 0.4
        autoscaling_config:
          max_replicas: 2   # a comment kept as it is
        user_config:
          default_model: hybrid
          inference: &inference
            max_batch_size: 64
      - name: Ingress
        ray_actor_options:
          num_cpus: 0.3
        autoscaling_config:
          max_replicas: 2
        user_config:
          inference: *inference
"""


def test_gpu_serve_config_finds_nested_inference_settings() -> None:
    text = generate.gpu_serve_config_text(NESTED)
    cfg = yaml.safe_load(text)
    inference = _deployment(cfg, "PolicyInference")
    assert inference["ray_actor_options"] == {"num_cpus": 0.4, "num_gpus": 0.25}
    assert inference["autoscaling_config"] == {"max_replicas": 4, "min_replicas": 4,
                                               "initial_replicas": 4}
    assert inference["user_config"] == {
        "default_model": "hybrid",
        "inference": {"max_batch_size": 64, "device": "cuda", "backend": "onnx"}}
    # the ingress's alias follows, as the anchor is patched in place
    assert _deployment(cfg, "Ingress")["user_config"]["inference"]["device"] == "cuda"
    assert "max_replicas: 4   # a comment kept as it is" in text
    assert "# a header that the GPU variant replaces" not in text
    assert "#   PolicyInference 4 x 0.4 + Ingress 2 x 0.3 = 2.2 CPUs (of 4)" in text
    # the RayService's GPU variant finds them in the same place
    k8s = generate.k8s_serve_config(yaml.safe_load(NESTED), VARIANTS["gpu"])
    settings = _deployment(k8s, "PolicyInference")["user_config"]
    assert settings["inference"]["device"] == "cuda" and "device" not in settings


def test_gpu_serve_config_refuses_replicas_the_machine_cannot_hold() -> None:
    too_many = NESTED.replace("num_cpus: 0.3", "num_cpus: 1")   # 4 x 0.4 + 2 x 1 = 3.6 fits
    generate.gpu_serve_config_text(too_many)
    too_many = too_many.replace("max_replicas: 2\n", "max_replicas: 3\n")  # 4.6 does not
    with pytest.raises(ValueError, match="more than GPU_MACHINE_CPUS=4"):
        generate.gpu_serve_config_text(too_many)


# --- CRD schema --------------------------------------------------------------------------

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rayservice_valid_against_kuberay_crd(variant: str) -> None:
    assert validation_errors(_manifest(variant)) == []


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        obj = obj[k]
    obj[keys[-1]] = value


HEAD = "spec.rayClusterConfig.headGroupSpec"
WORKER = "spec.rayClusterConfig.workerGroupSpecs.0"


@pytest.mark.parametrize(("path", "value", "error"), [
    (f"{HEAD}.rayStartParam", {"num-cpus": "0"}, "'rayStartParam' was unexpected"),
    (f"{HEAD}.rayStartParams.num-cpus", 0, "0 is not of type 'string'"),
    (f"{WORKER}.minReplicas", "1", "'1' is not of type 'integer'"),
    (f"{WORKER}.groupName", None, "None is not of type 'string'"),
    (f"{WORKER}.template.spec.containers.0.ports.1",
     {"name": "dup", "containerPort": 8000}, "share the list-map key"),
    ("spec.rayClusterConfig.autoscalerOptions.upscalingMode", "Fast", "is not one of"),
    ("spec.serveConfigV2", {"applications": []}, "is not of type 'string'"),
    ("kind", "RayCluster", "kind: expected 'RayService'"),
])
def test_corrupted_manifest_fails_crd(path: str, value: Any, error: str) -> None:
    bad = copy.deepcopy(_manifest("cpu"))
    _set(bad, path, value)
    errors = validation_errors(bad)
    assert any(error in e for e in errors), errors


def test_missing_required_field_fails_crd() -> None:
    bad = copy.deepcopy(_manifest("gpu"))
    del bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][1]["template"]
    assert any("'template' is a required property" in e for e in validation_errors(bad))


# --- Serve config inside -----------------------------------------------------------------

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_serve_config_v2_valid_for_ray_serve(variant: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(_serve(_manifest(variant)))
    assert schema.http_options.host == "0.0.0.0"
    assert schema.http_options.port == 8000
    assert [a.import_path for a in schema.applications] == ["deployments.app:app_builder"]


def _unknown_keys(serve: dict[str, Any]) -> list[str]:
    """Keys Ray's schemas would silently drop (they ignore extra fields): a typo such as
    ``max_ongoing_request`` passes ServeDeploySchema and then does nothing."""
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import (
        DeploymentSchema,
        HTTPOptionsSchema,
        RayActorOptionsSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    def extra(where: str, obj: dict[str, Any] | None, model: Any) -> list[str]:
        return [f"{where}.{k}" for k in (obj or {}) if k not in model.model_fields]

    out = extra("<root>", serve, ServeDeploySchema)
    out += extra("http_options", serve.get("http_options"), HTTPOptionsSchema)
    for app in serve["applications"]:
        out += extra(app["name"], app, ServeApplicationSchema)
        for d in app.get("deployments", []):
            where = f"{app['name']}.{d['name']}"
            out += extra(where, d, DeploymentSchema)
            out += extra(f"{where}.ray_actor_options", d.get("ray_actor_options"),
                         RayActorOptionsSchema)
            out += extra(f"{where}.autoscaling_config", d.get("autoscaling_config"),
                         AutoscalingConfig)
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_serve_config_v2_has_no_keys_ray_would_ignore(variant: str) -> None:
    assert _unknown_keys(_serve(_manifest(variant))) == []


def test_corrupted_serve_config_v2_fails_ray_serve_checks() -> None:
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    serve = _serve(_manifest("cpu"))
    _deployment(serve, "Ingress")["max_ongoing_requests"] = "lots"
    with pytest.raises(ValidationError, match="max_ongoing_requests"):
        ServeDeploySchema.model_validate(serve)
    typo = _serve(_manifest("cpu"))
    typo["applications"][0]["deployments"][0]["max_ongoing_request"] = 64
    typo["applications"][0]["deployments"][0]["autoscaling_config"]["max_replica"] = 4
    ServeDeploySchema.model_validate(typo)  # Ray accepts it ...
    assert _unknown_keys(typo) == [          # ... the key check does not
        "edge-allocator.PolicyInference.max_ongoing_request",
        "edge-allocator.PolicyInference.autoscaling_config.max_replica"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_serve_config_v2_is_serve_config_yaml_plus_k8s_overrides(variant: str) -> None:
    """Only the documented overrides differ from serve_config.yaml (anchors resolved)."""
    want = generate.load_serve_config()
    want["http_options"].update(host="0.0.0.0", port=8000)
    if VARIANTS[variant].gpu:
        inference = _deployment(want, "PolicyInference")
        inference["ray_actor_options"]["num_gpus"] = generate.GPU_PER_INFERENCE_REPLICA
        generate.inference_settings(inference).update(device="cuda", backend="onnx")
        auto = inference["autoscaling_config"]  # at least one replica: the ingress calls it
        auto.update(min_replicas=max(1, auto["min_replicas"]),
                    initial_replicas=max(1, auto["initial_replicas"]))
        want["applications"][0]["args"]["inline_inference"] = False
    text = _manifest(variant)["spec"]["serveConfigV2"]
    assert _serve(_manifest(variant)) == want
    assert "&" not in text and "*" not in text, "serveConfigV2 must not use YAML anchors"


# --- resources ---------------------------------------------------------------------------

def test_head_runs_no_replicas_and_exposes_ports() -> None:
    for variant in VARIANTS:
        rc = _manifest(variant)["spec"]["rayClusterConfig"]
        params = rc["headGroupSpec"]["rayStartParams"]
        assert params == {"num-cpus": "0", "dashboard-host": "0.0.0.0",
                          "metrics-export-port": "8080"}
        ports = {p["name"]: p["containerPort"]
                 for p in rc["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]}
        assert ports == {"gcs-server": 6379, "dashboard": 8265, "client": 10001,
                         "serve": 8000, "grpc": 9000, "metrics": 8080}
        svc = _manifest(variant)["spec"]["serveService"]["spec"]["ports"]
        assert {p["name"]: p["port"] for p in svc} == {"serve": 8000, "grpc": 9000}
        assert rc["enableInTreeAutoscaling"] is True and rc["autoscalerOptions"]
        assert rc["rayVersion"] == "2.60.0"


def test_every_pod_has_image_resources_and_metrics_port() -> None:
    for name, variant in VARIANTS.items():
        manifest = _manifest(name)
        for template in _pod_templates(manifest):
            (container,) = template["spec"]["containers"]
            assert container["image"] == variant.image
            assert container["image"].startswith(f"{generate.IMAGE_REPO}:{generate.IMAGE_TAG}")
            res = container["resources"]
            assert res["requests"] == res["limits"] and {"cpu", "memory"} <= set(res["limits"])
            assert {"name": "metrics", "containerPort": 8080} in container["ports"]
        for group in _groups(manifest).values():
            assert 0 < group["minReplicas"] == group["replicas"] <= group["maxReplicas"]
            assert group["rayStartParams"]["metrics-export-port"] == "8080"
            limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
            assert group["rayStartParams"]["num-cpus"] == limits["cpu"]


def test_cpu_variant_has_no_gpus() -> None:
    manifest = _manifest("cpu")
    assert "nvidia.com/gpu" not in yaml.safe_dump(manifest)
    serve = _serve(manifest)
    assert all(not d.get("ray_actor_options", {}).get("num_gpus")
               for app in serve["applications"] for d in app["deployments"])


def test_gpu_variant_puts_inference_on_a_gpu_fraction() -> None:
    manifest = _manifest("gpu")
    inference = _deployment(_serve(manifest), "PolicyInference")
    assert 0 < inference["ray_actor_options"]["num_gpus"] < 1
    assert generate.inference_settings(inference)["device"] == "cuda"
    assert generate.inference_settings(inference)["backend"] == "onnx"
    gpu = _groups(manifest)["gpu-workers"]
    spec = gpu["template"]["spec"]
    res = spec["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"] == "1"
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    assert spec["nodeSelector"] == generate.GPU_NODE_SELECTOR
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        spec["tolerations"]
    # Only the GPU group asks for GPUs; CPU deployments keep CPU pods.
    cpu = _groups(manifest)["cpu-workers"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in cpu


def test_worker_groups_hold_every_replica_at_max_scale() -> None:
    cfg = generate.load_serve_config()
    for variant in VARIANTS.values():
        serve = generate.k8s_serve_config(cfg, variant)
        groups = _groups(_manifest(variant.name))
        cpus = sum(g["maxReplicas"] * int(g["rayStartParams"]["num-cpus"])
                   for g in groups.values())
        gpus = sum(g["maxReplicas"] * int(g["rayStartParams"].get("num-gpus", 0))
                   for g in groups.values())
        want_cpus = sum(Fraction(str(d["ray_actor_options"]["num_cpus"]))
                        * d["autoscaling_config"]["max_replicas"]
                        for app in serve["applications"] for d in app["deployments"])
        want_gpus = sum(Fraction(str(d["ray_actor_options"].get("num_gpus", 0)))
                        * d["autoscaling_config"]["max_replicas"]
                        for app in serve["applications"] for d in app["deployments"])
        assert cpus >= want_cpus and gpus >= want_gpus


def test_pods_needed_packs_exactly_and_refuses_oversized_replicas() -> None:
    shape = PodShape(cpus=1, memory="1Gi")
    fits = [ReplicaDemand("a", Fraction("0.3"), Fraction(0), 1, 2),
            ReplicaDemand("b", Fraction("0.1"), Fraction(0), 1, 4)]
    assert pods_needed(fits, shape, "min") == 1      # 0.4
    assert pods_needed(fits, shape, "max") == 1      # 0.6 + 0.4 = 1.0 exactly
    thirds = [ReplicaDemand("c", Fraction("0.6"), Fraction(0), 3, 3)]
    assert pods_needed(thirds, shape, "max") == 3    # 0.6 never pairs on a 1-CPU pod
    with pytest.raises(ValueError, match="more than a whole pod"):
        pods_needed([ReplicaDemand("big", Fraction(2), Fraction(0), 1, 1)], shape, "max")


# --- monitoring --------------------------------------------------------------------------

def test_podmonitor_scrapes_metrics_port_of_every_ray_pod() -> None:
    pm = yaml.safe_load((K8S / "podmonitor.yaml").read_text())
    assert (pm["apiVersion"], pm["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert [e["port"] for e in pm["spec"]["podMetricsEndpoints"]] == ["metrics"]
    wanted = dict(pm["spec"]["selector"]["matchLabels"])
    # KubeRay labels every Ray pod ray.io/is-ray-node=yes; the rest must be in the templates.
    assert wanted.pop("ray.io/is-ray-node") == "yes"
    for variant in VARIANTS:
        for template in _pod_templates(_manifest(variant)):
            labels = template["metadata"]["labels"]
            assert wanted.items() <= labels.items(), (variant, labels)


def test_alert_rules_parse_and_follow_serve_config() -> None:
    rule = yaml.safe_load(ALERTS_PATH.read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    for r in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(r), r
        assert r["labels"]["severity"] in ("warning", "critical")
        expr = r["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
    names = {r["alert"] for r in rules}
    assert {"EdgeAllocatorHighServerErrorRate", "EdgeAllocatorHighDecisionLatency",
            "EdgeAllocatorReplicasAtMax", "EdgeAllocatorNotRunning"} <= names
    at_max = {r["labels"]["deployment"]: r["expr"] for r in rules
              if r["alert"] == "EdgeAllocatorReplicasAtMax"}
    cfg = generate.load_serve_config()
    for app in cfg["applications"]:
        for d in app["deployments"]:
            auto = d["autoscaling_config"]
            if d["name"] in uncalled_deployments(app):
                assert d["name"] not in at_max
            elif auto["max_replicas"] > auto.get("min_replicas", 1):
                assert at_max[d["name"]].endswith(f">= {auto['max_replicas']}")
            else:
                assert d["name"] not in at_max


def test_replica_alerts_follow_the_composition() -> None:
    """The shipped composition runs the policy in the ingress, so PolicyInference has no
    replicas and no replica alerts (they could never fire); with inline_inference off it
    has them."""
    cfg = generate.load_serve_config()
    app = cfg["applications"][0]
    assert app["args"]["inline_inference"] is True
    assert uncalled_deployments(app) == {"PolicyInference"}

    def at_max(config: dict[str, Any]) -> set[str]:
        return {r["labels"]["deployment"] for r in app_rules(app["name"], config)
                if r["alert"] == "EdgeAllocatorReplicasAtMax"}

    assert at_max(cfg) == {"Ingress"}
    hop = copy.deepcopy(cfg)
    hop["applications"][0]["args"]["inline_inference"] = False
    assert uncalled_deployments(hop["applications"][0]) == set()
    assert at_max(hop) == {"Ingress", "PolicyInference"}


def test_dashboard_is_grafana_json_with_the_promised_panels() -> None:
    dash = json.loads(DASHBOARD_PATH.read_text())
    assert dash["uid"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in dash["panels"]:
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])
        g = p["gridPos"]
        cell = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & cell, f"panel {p['title']!r} overlaps another"
        cells |= cell
    text = " ".join(p["title"].lower() for p in dash["panels"])
    for words in ("decisions/s", "latency", "cache hit", "batch size", "node type",
                  "feedback", "replicas", "http errors", "memory"):
        assert words in text, words
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "application"}


def test_metric_names_parse_loosely() -> None:
    expr = ('sum by (le) (rate(ray_a_bucket{route="ray_not_a_metric"}[5m]))'
            " / on() ray_b_total and xray_c")
    assert metric_names(expr) == {"ray_a_bucket", "ray_b_total"}


def test_alert_signals_and_grafana_queries_as_prometheus_runs_them() -> None:
    """What the Prometheus cluster test (tests/serve/test_prometheus.py) runs: an alert's
    operands without thresholds, and dashboard queries with Grafana's variables filled."""
    assert alert_signals("sum(rate(a[5m]))\n  / sum(rate(b[5m])) > 0.01") == [
        "sum(rate(a[5m]))\n  / sum(rate(b[5m]))"]
    assert alert_signals("histogram_quantile(0.99, x) > 100\nand sum(rate(c[5m])) > 1") == [
        "histogram_quantile(0.99, x)", "sum(rate(c[5m]))"]
    assert alert_signals('absent(s{application="a"})') == ['s{application="a"}']
    assert alert_signals("max by (d) (s)\n  <= 2") == ["max by (d) (s)"]
    assert alert_signals("x != 6") == ["x"] and alert_signals("y >= 1e3") == ["y"]
    variables = {"application": "app", "__rate_interval": "1m"}
    assert grafana_promql('rate(m{application="$application"}[$__rate_interval])',
                          variables) == ('rate(m{application="app"}[1m])', None)
    assert grafana_promql("label_values(ray_s, application)", variables) == (
        "ray_s", "application")
    named = named_expressions()
    assert [q.expr for q in named] == expressions() and len({q.where for q in named}) > 25
    assert all(q.expr != "prometheus" for q in named)  # the data-source variable is no query
    assert "panel 'Cache hit ratio' target A" in {q.where for q in named}


def test_every_queried_metric_is_declared() -> None:
    """Each series the dashboard and alerts query is one the app (deployments/metrics.py)
    or Ray Serve declares, with the suffix Ray's exporter gives its kind (counters _total,
    histograms _bucket/_sum/_count). A cluster test checks the same names on /metrics."""
    import ray.serve

    serve_dir = Path(ray.serve.__file__).parent
    declared = declared_metrics([ROOT / "deployments" / "metrics.py",
                                 *serve_dir.glob("*.py"), *serve_dir.glob("_private/*.py")])
    queried = queried_metrics()
    assert len(expressions()) > 20 and len(queried) > 10
    assert {"ray_edge_allocator_decisions_total", "ray_edge_allocator_decision_latency_ms_bucket",
            "ray_serve_deployment_replica_healthy",
            "ray_serve_num_http_error_requests_total"} <= queried
    assert sorted(queried - set(declared)) == []
    # The check has teeth: a counter without _total or a gauge with it is not declared.
    assert "ray_edge_allocator_decisions" not in declared
    assert "ray_edge_allocator_model_memory_bytes_total" not in declared
