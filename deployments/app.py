"""Build the application: ``serve run serve_config.yaml`` imports ``app_builder``.

Sizing (replicas, CPUs, GPUs, batch settings, model versions) lives in serve_config.yaml;
this module only wires the graph. ``separate_stages`` chooses whether graph building and
response assembly are their own deployments (scale and place them apart) or run inside
the ingress (one hop less; better on small machines). Both give the same responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray.serve import Application, Deployment
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

from deployments.explainer import Explainer
from deployments.graph_builder import GraphBuilder
from deployments.ingress import Ingress
from deployments.mqtt_ingest import MqttIngest
from deployments.policy_inference import PolicyInference
from deployments.response_assembler import ResponseAssembler

#: What serve_config.yaml's applications import: ``serve deploy`` builds the app from it.
IMPORT_PATH = "deployments.app:app_builder"

#: ``@serve.deployment`` turns each class into a ``Deployment`` (its stubs say otherwise).
DEPLOYMENTS: dict[str, Deployment] = {
    d.name: d for d in cast(tuple[Deployment, ...],
                            (Ingress, GraphBuilder, PolicyInference, ResponseAssembler,
                             MqttIngest, Explainer))}


class StageSizing(BaseModel):
    """Sizing of GraphBuilder or ResponseAssembler when they are their own deployments.

    They are listed here rather than under ``deployments:`` because Serve refuses a
    ``deployments:`` entry for a deployment the application does not have, and they exist
    only with ``separate_stages: true``. Entries under ``deployments:`` still win."""

    model_config = ConfigDict(extra="forbid")

    max_ongoing_requests: int = Field(ge=1)
    num_cpus: float = Field(ge=0)


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    separate_stages: bool = True
    """Run GraphBuilder and ResponseAssembler as their own deployments."""
    inline_inference: bool = False
    """Run the policy (with the same dynamic batching) inside the ingress too: no hop at
    all. Needs ``separate_stages: false`` and the inference settings in the ingress's
    ``user_config.inference``. PolicyInference stays bound (at zero replicas in
    serve_config.yaml), so one file holds both compositions and the GPU variant only
    flips this switch and gives PolicyInference its GPU replicas."""
    stage_sizing: dict[Literal["GraphBuilder", "ResponseAssembler"], StageSizing] = Field(
        default_factory=dict)
    """Sizing of the separate stages (used with ``separate_stages: true``)."""
    live_network: bool = True
    """Bind MqttIngest (the live network). ``make run`` (deployments.launch) turns it off
    when MQTT is not configured (no ``mqtt.url``, no ``EDGE_ALLOCATOR_MQTT_URL``): an
    idle ingest replica holds ~150 MiB (benchmarks/serve_run.py). Left on in the file,
    because Serve refuses ``deployments:`` entries for a deployment the app lacks."""

    @model_validator(mode="after")
    def _consistent(self) -> AppArgs:
        if self.inline_inference and self.separate_stages:
            raise ValueError("inline_inference: true needs separate_stages: false")
        return self


def build_app(args: AppArgs, options: dict[str, dict[str, Any]] | None = None) -> Application:
    """The bound application; ``options`` are per-deployment overrides (what a config
    file's ``deployments:`` list does under ``serve run``)."""
    opts = options or {}

    def dep(name: str) -> Deployment:
        d = DEPLOYMENTS[name]
        sizing = args.stage_sizing.get(name)  # type: ignore[call-overload]
        if sizing is not None:
            d = d.options(max_ongoing_requests=sizing.max_ongoing_requests,
                          ray_actor_options={"num_cpus": sizing.num_cpus})
        return d.options(**opts[name]) if name in opts else d

    app: Application
    policy = dep("PolicyInference").bind()
    # the live network; idle while MQTT is off (and left out by make run then)
    ingest = dep("MqttIngest").bind() if args.live_network else None
    explainer = dep("Explainer").bind()  # /v1/explain's attributions (torch)
    if args.inline_inference:
        app = dep("Ingress").bind(policy, inline=True, ingest=ingest, explainer=explainer)
        return app
    if args.separate_stages:
        app = dep("Ingress").bind(policy, dep("GraphBuilder").bind(),
                                  dep("ResponseAssembler").bind(), ingest=ingest,
                                  explainer=explainer)
    else:
        app = dep("Ingress").bind(policy, ingest=ingest, explainer=explainer)
    return app


def app_builder(args: dict[str, Any] | None = None) -> Application:
    """Entry point named by serve_config.yaml's ``import_path``."""
    return build_app(AppArgs.model_validate(args or {}))


def load_config(path: Path) -> ServeDeploySchema:
    """serve_config.yaml validated by Ray's own schema."""
    return ServeDeploySchema.model_validate(yaml.safe_load(Path(path).read_text()))


def config_options(path: Path, app_index: int = 0) -> tuple[AppArgs, dict[str, dict[str, Any]]]:
    """(app args, per-deployment options) exactly as the config file describes them, for
    ``build_app`` + ``serve.run`` in tests and benchmarks on a Ray instance they started
    themselves (the same thing ``serve run`` does with the file)."""
    cfg = load_config(path).applications[app_index]
    options = {
        d.name: d.model_dump(exclude_unset=True, exclude={"name"}) for d in cfg.deployments
    }
    return AppArgs.model_validate(cfg.args or {}), options


def app_schema(name: str, route_prefix: str | None, args: AppArgs,
               options: dict[str, dict[str, Any]]) -> ServeApplicationSchema:
    """The application as one entry of a config file's ``applications:`` (what
    ``serve deploy`` sends): import path, args and per-deployment options."""
    return ServeApplicationSchema.model_validate({
        "name": name, "route_prefix": route_prefix, "import_path": IMPORT_PATH,
        "args": args.model_dump(), "deployments": [{"name": n, **o} for n, o in options.items()]})


def apply_apps(apps: Sequence[ServeApplicationSchema]) -> None:
    """Deploy ``apps`` as ``serve deploy`` does (the controller's declarative
    ``apply_config``), on the Ray this process is connected to, with Serve started.

    Why not ``serve.run``: Ray 2.60's Python API gives every deployment of every call a
    fresh random code version (``ray/serve/_private/client.py``: ``version=
    deployment._version or get_random_string()``), so each ``serve.run`` replaces every
    replica (a rolling update, the old ingress replica draining behind HAProxy) even
    when only ``user_config`` changed. The declarative path versions an app by its
    import path and args, so a changed ``user_config`` is applied by ``reconfigure`` in
    the running replicas: token rotation, batch size, model versions and A/B splits
    change live, as the README promises (measured in benchmarks/redeploy_drops.py).

    Declarative apps missing from ``apps`` are deleted, as with a config file: pass
    every declarative app each time."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        raise RuntimeError("apply_apps needs Serve started on the connected Ray "
                           "(serve.start())")
    client.deploy_apps(ServeDeploySchema(applications=list(apps)))
