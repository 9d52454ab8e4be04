"""A private Ray instance for benchmarks: own temp dir and ports, stopped by PID only.

The helpers shared with the tests (free ports, HAProxy files, the fast-path environment,
reaping by PID) live in :mod:`edge_allocator.runtime.raylocal`."""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edge_allocator.constants import PROJECT_ROOT
from edge_allocator.runtime.raylocal import free_port, haproxy_env

SERVE_CONFIG = PROJECT_ROOT / "serve_config.yaml"


@contextmanager
def ray_serve(num_cpus: int = 2, env: dict[str, str] | None = None,
              grpc_port: int | None = None) -> Iterator[int]:
    """Start Ray + Serve on free ports, with ``env`` set for every Ray process (and the
    gRPC API on ``grpc_port`` if given); yields the HTTP port."""
    import os

    import ray
    from ray import serve

    temp_dir = tempfile.mkdtemp(prefix="ea-bench-", dir="/tmp")
    saved = dict(os.environ)
    if env:
        os.environ.update(env)
        if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
            os.environ.update(haproxy_env())
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             object_store_memory=300 * 1024 * 1024, _temp_dir=temp_dir, log_to_driver=False,
             _metrics_export_port=free_port())
    port = free_port()
    grpc = None if grpc_port is None else {"port": grpc_port, "grpc_servicer_functions": [
        "edge_allocator.grpc.edge_allocator_pb2_grpc.add_EdgeAllocatorServicer_to_server"]}
    serve.start(http_options={"host": "127.0.0.1", "port": port}, grpc_options=grpc)
    try:
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(temp_dir, ignore_errors=True)


def shipped_options(separate: bool | None = None, fixed_replicas: bool = False,
                    inline_inference: bool = False,
                    **user_overrides: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    """serve_config.yaml's app; optionally inline stages (and inference), fixed replicas,
    or user_config overrides (e.g. cache='none')."""
    from deployments.app import config_options

    args, options = config_options(SERVE_CONFIG)
    if separate is not None or inline_inference:
        args = args.model_copy(update={  # keeps the file's stage_sizing
            "separate_stages": bool(separate) and not inline_inference,
            "inline_inference": inline_inference})
    if not args.separate_stages:
        options.pop("GraphBuilder", None)
        options.pop("ResponseAssembler", None)
    auto = options["PolicyInference"].get("autoscaling_config")
    if not args.inline_inference and auto:  # the ingress calls it: at least one replica
        auto.update(min_replicas=max(1, auto.get("min_replicas", 1)),
                    initial_replicas=max(1, auto.get("initial_replicas", 1)))
    options["Ingress"]["user_config"] = {**options["Ingress"]["user_config"], **user_overrides}
    if fixed_replicas:
        for name, d in options.items():
            if args.inline_inference and name == "PolicyInference":
                continue  # stays at zero replicas: nothing calls it
            auto = d.pop("autoscaling_config", None)
            d["num_replicas"] = (auto or {}).get("min_replicas", 1)
    return args, options


def default_settings_options(**user_overrides: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The same app, model and batch settings with Ray Serve's defaults for everything
    Serve tunes (max_ongoing_requests, queues, one replica each, no autoscaling,
    separate stages). Only the CPU fractions are kept: with Serve's default of one CPU
    per replica the four deployments would not fit a 2-CPU machine at all."""
    args, options = shipped_options(separate=True, **user_overrides)
    keep = ("user_config", "ray_actor_options")
    return args, {name: {k: copy.deepcopy(d[k]) for k in keep if k in d}
                  for name, d in options.items()}


def deploy(name: str, prefix: str, args: Any, options: dict[str, dict[str, Any]],
           timeout_s: float = 180) -> float:
    """Deploy and wait until RUNNING; returns seconds taken."""
    from ray import serve

    from deployments.app import build_app

    t0 = time.perf_counter()
    serve.run(build_app(args, options), name=name, route_prefix=prefix, blocking=False)
    while time.perf_counter() - t0 < timeout_s:
        st = serve.status().applications.get(name)
        if st is not None and st.status == "RUNNING":
            return time.perf_counter() - t0
        time.sleep(0.25)
    raise TimeoutError(f"{name} not RUNNING after {timeout_s} s")
