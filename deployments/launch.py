"""``make run``: serve_config.yaml on a Ray started here, lighter than ``serve run``.

``serve run`` starts Ray with its dashboard head (about ten processes and ~1.1 GiB RSS
on this machine) before our code runs. The application needs none of it: metrics are
exported by each node's agent, which runs without the dashboard head. So this starts a
local Ray without the dashboard, applies the config file declaratively, exactly as
``serve run`` does (same import path, args, deployment options, HTTP and gRPC options,
logging; a changed ``user_config`` reconfigures replicas in place), waits for
the application to be RUNNING, then hands the terminal to ``deployments/supervise.py``
(``os.execv``, same PID: the driver's ~170 MiB of Ray and app modules are not needed
once Serve runs, measured in benchmarks/serve_run.py), which stops everything it
started on Ctrl-C or SIGTERM, Serve gracefully first.

On a cluster, ``serve deploy serve_config.yaml`` (which goes through the dashboard's
REST API) remains the way to deploy; see the README.

    python -m deployments.launch [serve_config.yaml] [--num-cpus N] [--metrics-port P]
    python -m deployments.launch --shutdown GCS_ADDRESS   # what the supervisor runs
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from deployments.app import app_schema, apply_apps, config_options, load_config
from edge_allocator.constants import PROJECT_ROOT

#: Where Prometheus scrapes the app's metrics (Ray's metrics agent) when run locally.
METRICS_PORT = int(os.environ.get("EDGE_ALLOCATOR_METRICS_PORT", "8080"))
READY_TIMEOUT_S = 120.0
SUPERVISOR = Path(__file__).with_name("supervise.py")


def _options(model: Any) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(exclude_unset=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", default=str(PROJECT_ROOT / "serve_config.yaml"))
    p.add_argument("--num-cpus", type=int, default=None, help="default: this machine's")
    p.add_argument("--metrics-port", type=int, default=METRICS_PORT)
    p.add_argument("--shutdown", metavar="GCS_ADDRESS", default=None,
                   help="shut down Serve on that Ray (gracefully: replicas drain) and exit")
    p.add_argument("--no-handover", action="store_true",
                   help="stay the Ray driver while serving instead of handing over to "
                   "deployments/supervise.py")
    args = p.parse_args(argv)
    if args.shutdown:
        shutdown(args.shutdown)
        return
    path = Path(args.config)
    cfg = load_config(path)

    import ray
    from ray import serve

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    _without_cluster_autoscaler()
    ray.init(address="local", include_dashboard=False, num_cpus=args.num_cpus,
             _metrics_export_port=args.metrics_port, log_to_driver=False)
    try:
        serve.start(proxy_location=cfg.proxy_location, http_options=_options(cfg.http_options),
                    grpc_options=_options(cfg.grpc_options),
                    logging_config=_options(cfg.logging_config))
        apps = []
        for i, app in enumerate(cfg.applications):
            app_args, options = config_options(path, i)
            if not _mqtt_configured(options):  # leave the idle ingest replica out
                app_args = app_args.model_copy(update={"live_network": False})
                options.pop("MqttIngest", None)
            schema = app_schema(app.name, app.route_prefix, app_args, options)
            apps.append(schema.model_copy(update={"logging_config": app.logging_config}))
        apply_apps(apps)  # declaratively, as serve run and serve deploy do with the file
        deadline = time.monotonic() + READY_TIMEOUT_S
        names = [a.name for a in cfg.applications]
        while not stop.is_set():
            status = serve.status().applications
            if all(n in status and status[n].status == "RUNNING" for n in names):
                break
            failed = {n: status[n].message for n in names
                      if n in status and status[n].status == "DEPLOY_FAILED"}
            if failed:
                raise RuntimeError(f"deploying {path} failed: {failed}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"applications not RUNNING after {READY_TIMEOUT_S} s: "
                                   f"{ {n: status[n].status for n in names if n in status} }")
            time.sleep(0.2)
        http = cfg.http_options
        print(f"Edge Allocator ready on http://{http.host}:{http.port} (metrics on "
              f":{args.metrics_port}); Ctrl-C stops it", flush=True)
        if not args.no_handover and not stop.is_set():
            hand_over()  # does not return
        stop.wait()
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def _mqtt_configured(options: dict[str, Any]) -> bool:
    """Whether the live network has a broker: ``mqtt.url`` in MqttIngest's user_config
    or ``EDGE_ALLOCATOR_MQTT_URL`` (which wins over it)."""
    from edge_allocator.constants import MQTT_URL

    user = options.get("MqttIngest", {}).get("user_config") or {}
    return bool(MQTT_URL or (user.get("mqtt") or {}).get("url"))


def _without_cluster_autoscaler() -> None:
    """Start the local Ray without its autoscaler monitor (``ray start --no-monitor``;
    ``ray.init`` has no such option): one machine has no nodes to add or remove, Serve
    scales replicas itself, and the monitor holds ~49 MiB PSS (benchmarks/serve_run.py).
    Ray is pinned (2.60.0); this fails loudly rather than silently if its node class
    changes."""
    from ray._private import node

    if not callable(getattr(node.Node, "start_monitor", None)):
        raise RuntimeError("ray._private.node.Node.start_monitor is gone: this Ray version "
                           "is not the pinned one; drop _without_cluster_autoscaler")
    node.Node.start_monitor = lambda self: None  # type: ignore[method-assign]


def hand_over() -> None:
    """Become ``deployments/supervise.py`` (same PID, so Ray's processes stay children
    and a Ctrl-C or SIGTERM still reaches whoever holds the terminal)."""
    import ray

    node = ray._private.worker.global_worker.node
    if node is None:
        raise RuntimeError("hand_over() needs the Ray this process started")
    gcs_address = node.gcs_address
    gcs_pid = node.all_processes[ray._private.ray_constants.PROCESS_TYPE_GCS_SERVER][0].process.pid
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-S", str(SUPERVISOR), gcs_address,
                              str(gcs_pid), sys.executable])


def shutdown(gcs_address: str) -> None:
    """``serve.shutdown()`` on a running Ray: every replica drains and closes (the
    decision log flushes), then the controller and proxies go."""
    import ray
    from ray import serve

    ray.init(address=gcs_address, log_to_driver=False)
    try:
        serve.shutdown()  # type: ignore[no-untyped-call]
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
