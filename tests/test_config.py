"""serve_config.yaml validated with Ray's own schemas, and its sizing rules."""

from __future__ import annotations

import yaml
from ray.serve.config import AutoscalingConfig

from deployments.app import DEPLOYMENTS, AppArgs, load_config
from deployments.policy_inference import InferenceConfig
from edge_allocator.constants import PROJECT_ROOT
from edge_allocator.service.config import ServiceConfig

CONFIG = PROJECT_ROOT / "serve_config.yaml"
MACHINE_CPUS = 2


def _deployments():
    return {d.name: d for d in load_config(CONFIG).applications[0].deployments}


def test_config_is_a_valid_serve_deploy_schema():
    app = load_config(CONFIG).applications[0]
    assert app.import_path == "deployments.app:app_builder"
    args = AppArgs.model_validate(app.args)
    expected = {"Ingress"} | ({"PolicyInference"} if not args.inline_inference else set()) | (
        {"GraphBuilder", "ResponseAssembler"} if args.separate_stages else set())
    assert set(_deployments()) == expected and expected <= set(DEPLOYMENTS)


def test_inline_inference_needs_inline_stages():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs separate_stages: false"):
        AppArgs(separate_stages=True, inline_inference=True)


def test_autoscaling_configs_are_valid_and_sane():
    for name, d in _deployments().items():
        auto = AutoscalingConfig(**d.autoscaling_config)
        assert auto.min_replicas >= 1 and auto.max_replicas >= auto.min_replicas, name
        assert auto.target_ongoing_requests < d.max_ongoing_requests, name


def test_every_stage_admits_a_full_batch():
    ds = _deployments()
    batch = ds["PolicyInference"].user_config["max_batch_size"]
    for name, d in ds.items():
        assert d.max_ongoing_requests >= batch, f"{name} caps batches below {batch}"


def test_fractional_cpus_fit_a_two_cpu_machine_at_max_scale():
    total = sum(d.ray_actor_options.num_cpus * AutoscalingConfig(**d.autoscaling_config).max_replicas
                for d in _deployments().values())
    assert total <= MACHINE_CPUS, total


def test_user_configs_parse_into_the_typed_settings():
    ds = _deployments()
    ServiceConfig.model_validate(ds["Ingress"].user_config)
    InferenceConfig.model_validate(ds["PolicyInference"].user_config)
    assert ds["PolicyInference"].ray_actor_options.num_gpus == 0


def test_models_block_is_shared_between_ingress_and_inference():
    raw = yaml.safe_load(CONFIG.read_text())
    deps = {d["name"]: d for d in raw["applications"][0]["deployments"]}
    assert deps["Ingress"]["user_config"]["models"] == deps["PolicyInference"]["user_config"]["models"]


def test_gpu_variant_shares_one_gpu_between_four_replicas():
    gpu = {d.name: d for d in load_config(PROJECT_ROOT / "serve_config.gpu.yaml").applications[0].deployments}
    pi = gpu["PolicyInference"]
    assert pi.ray_actor_options.num_gpus == 0.25
    assert AutoscalingConfig(**pi.autoscaling_config).max_replicas * 0.25 <= 1.0
    assert InferenceConfig.model_validate(pi.user_config).device == "cuda"
