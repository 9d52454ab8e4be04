"""serve_config.yaml validated with Ray's own schemas, and its sizing rules."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
import yaml
from ray.serve.config import AutoscalingConfig

from deployments.app import DEPLOYMENTS, AppArgs, app_schema, config_options, load_config
from edge_allocator.config import PolicyConfig, ServiceConfig
from edge_allocator.constants import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "serve_config.yaml"
MACHINE_CPUS = 2


def _deployments():
    return {d.name: d for d in load_config(CONFIG).applications[0].deployments}


def test_config_is_a_valid_serve_deploy_schema():
    app = load_config(CONFIG).applications[0]
    assert app.import_path == "deployments.app:app_builder"
    args = AppArgs.model_validate(app.args)
    expected = {"Ingress", "PolicyInference", "MqttIngest", "Explainer"} | (  # bound even idle
        {"GraphBuilder", "ResponseAssembler"} if args.separate_stages else set())
    assert set(_deployments()) == expected and expected <= set(DEPLOYMENTS)


def test_app_schema_rebuilds_the_files_application():
    """What tests and benchmarks deploy with apply_apps (as ``serve deploy`` would) is the
    file's own application entry when nothing is overridden."""
    app = load_config(CONFIG).applications[0]
    built = app_schema(app.name, app.route_prefix, *config_options(CONFIG))
    assert (built.name, built.route_prefix, built.import_path) == \
        (app.name, app.route_prefix, app.import_path)
    assert AppArgs.model_validate(built.args) == AppArgs.model_validate(app.args)
    assert [d.model_dump(exclude_unset=True) for d in built.deployments] == \
        [d.model_dump(exclude_unset=True) for d in app.deployments]


def test_inline_inference_needs_inline_stages():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs separate_stages: false"):
        AppArgs(separate_stages=True, inline_inference=True)


def test_autoscaling_configs_are_valid_and_sane():
    inline = AppArgs.model_validate(load_config(CONFIG).applications[0].args).inline_inference
    for name, d in _deployments().items():
        auto = AutoscalingConfig(**d.autoscaling_config)
        # PolicyInference sits at zero replicas while the ingress runs the policy
        least = 0 if inline and name == "PolicyInference" else 1
        assert auto.min_replicas >= least and auto.max_replicas >= max(auto.min_replicas, 1), name
        assert auto.target_ongoing_requests < d.max_ongoing_requests, name


def test_every_stage_admits_a_full_batch():
    ds = _deployments()
    batch = ds["PolicyInference"].user_config["inference"]["max_batch_size"]
    for name, d in ds.items():
        if name == "Explainer":  # not in the decision chain: /v1/explain only, unbatched
            continue
        assert d.max_ongoing_requests >= batch, f"{name} caps batches below {batch}"


def test_fractional_cpus_fit_a_two_cpu_machine_at_max_scale():
    total = sum(
        d.ray_actor_options.num_cpus * AutoscalingConfig(**d.autoscaling_config).max_replicas
        for d in _deployments().values()
    )
    assert total <= MACHINE_CPUS, total


def test_user_configs_parse_into_the_typed_settings():
    ds = _deployments()
    ServiceConfig.model_validate(ds["Ingress"].user_config)
    PolicyConfig.model_validate(ds["PolicyInference"].user_config)
    assert ds["PolicyInference"].ray_actor_options.num_gpus == 0


def test_models_block_is_shared_between_ingress_and_inference():
    raw = yaml.safe_load(CONFIG.read_text())
    deps = {d["name"]: d for d in raw["applications"][0]["deployments"]}
    ingress, inference = deps["Ingress"], deps["PolicyInference"]
    assert ingress["user_config"]["models"] == inference["user_config"]["models"]


def test_gpu_variant_shares_one_gpu_between_four_replicas():
    app = load_config(PROJECT_ROOT / "serve_config.gpu.yaml").applications[0]
    gpu = {d.name: d for d in app.deployments}
    pi = gpu["PolicyInference"]
    assert pi.ray_actor_options.num_gpus == 0.25
    assert AutoscalingConfig(**pi.autoscaling_config).max_replicas * 0.25 <= 1.0
    assert PolicyConfig.model_validate(pi.user_config).inference.device == "cuda"


# Each Serve config states its machine in its header ("Sizing for a 2-CPU machine", "... a
# 4-CPU machine with 1 GPU") and the sum at max scale ("#   Ingress 2 x 0.3 + ... = 1.4").
BUDGET = re.compile(r"^# Sizing for an? (\d+)-CPU machine(?: with (\d+) GPUs?)?", re.M)
SUM = re.compile(r"^#\s+(\w+ \d+ x [\d.]+(?: \+ \w+ \d+ x [\d.]+)*) = ([\d.]+)( GPUs?)?", re.M)


@pytest.mark.parametrize("name", ["serve_config.yaml", "serve_config.gpu.yaml"])
def test_header_arithmetic_is_the_config_and_fits_its_machine(name):
    """max_replicas x num_cpus (and num_gpus) summed over the deployments is what the header
    says, term by term, and within the CPUs and GPUs of the machine the header names."""
    text = (PROJECT_ROOT / name).read_text()
    header = text[:text.index("\n\n")]
    budget = BUDGET.search(header)
    assert budget, f"{name}: header states no 'Sizing for a N-CPU machine'"
    cpu_budget, gpu_budget = int(budget[1]), int(budget[2] or 0)
    sums = {"gpus" if m[3] else "cpus": (m[1], Fraction(m[2])) for m in SUM.finditer(header)}
    deployments = yaml.safe_load(text)["applications"][0]["deployments"]
    for resource, default, limit in (("cpus", 1, cpu_budget), ("gpus", 0, gpu_budget)):
        terms = {}
        for d in deployments:
            auto = d.get("autoscaling_config")
            replicas = auto["max_replicas"] if auto else d.get("num_replicas", 1)
            each = Fraction(str(d.get("ray_actor_options", {}).get(f"num_{resource}", default)))
            if each:
                terms[d["name"]] = (replicas, each)
        total = sum((n * each for n, each in terms.values()), Fraction(0))
        assert total <= limit, f"{name}: {float(total)} {resource} at max scale > {limit}"
        if not terms:
            assert resource not in sums, f"{name}: header sums {resource} nobody asks for"
            continue
        assert resource in sums, f"{name}: header gives no sum of {resource}"
        stated_terms, stated_total = sums[resource]
        stated = {}
        for term in stated_terms.split(" + "):
            dep, n, _, each = term.split()
            stated[dep] = (int(n), Fraction(each))
        assert stated == terms, f"{name}: header's {resource} terms are not the config's"
        assert stated_total == total, f"{name}: header's {resource} sum is wrong"


def test_make_run_leaves_the_ingest_out_only_without_a_broker(monkeypatch):
    """deployments.launch binds MqttIngest when MQTT is configured (user_config or the
    environment variable, which wins) and leaves the idle replica out otherwise."""
    from deployments import launch
    from deployments.app import AppArgs, build_app
    from edge_allocator import constants

    monkeypatch.setattr(constants, "MQTT_URL", None)
    off = {"MqttIngest": {"user_config": {"mqtt": {"url": None}}}}
    on = {"MqttIngest": {"user_config": {"mqtt": {"url": "mqtt://127.0.0.1:1883"}}}}
    assert not launch._mqtt_configured(off) and not launch._mqtt_configured({})
    assert launch._mqtt_configured(on)
    monkeypatch.setattr(constants, "MQTT_URL", "mqtt://127.0.0.1:1883")
    assert launch._mqtt_configured(off)

    def bound(args: AppArgs) -> set[str]:
        from ray.serve.deployment import Application

        names, todo = set(), [build_app(args)._bound_deployment]
        while todo:
            d = todo.pop()
            names.add(d.name)
            todo += [a._bound_deployment for a in (*d.init_args, *d.init_kwargs.values())
                     if isinstance(a, Application)]
        return names

    args = AppArgs(separate_stages=False, inline_inference=True)
    assert "MqttIngest" in bound(args)
    assert "MqttIngest" not in bound(args.model_copy(update={"live_network": False}))
