"""One real Ray cluster per test session (own temp dir and ports), with the application
deployed from serve_config.yaml, only pointed at test paths."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_allocator.constants import MODELS_DIR, PROJECT_ROOT
from edge_allocator.runtime.artifacts import default_version
from edge_allocator.runtime.raylocal import free_port

SERVE_CONFIG = PROJECT_ROOT / "serve_config.yaml"
#: The gRPC API, as serve_config.yaml registers it (its port is the session's own).
GRPC_SERVICERS = ["edge_allocator.grpc.edge_allocator_pb2_grpc.add_EdgeAllocatorServicer_to_server"]




@pytest.fixture(scope="session")
def ray_cluster():
    import ray
    from ray import serve

    temp_dir = tempfile.mkdtemp(prefix="ea-ray-", dir="/tmp")  # short: socket paths
    from edge_allocator.runtime.raylocal import FAST_PATH_ENV, haproxy_env

    saved = dict(os.environ)
    os.environ.update({**FAST_PATH_ENV, **haproxy_env()})  # test what ships (scripts/run.sh)
    # Logical CPUs for placing replicas, not cores: the session's apps stay deployed (the
    # shipped app, its separate and hop compositions, the explain, soak and reliability
    # apps, each with an Explainer), and at 4 the reliability test's app waited forever
    # for a replica slot ("taken more than 30s to be scheduled").
    ray.init(address="local", num_cpus=8, include_dashboard=False,
             object_store_memory=200 * 1024 * 1024, _temp_dir=temp_dir,
             _metrics_export_port=free_port(), log_to_driver=False)
    port, grpc_port = free_port(), free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port},
                grpc_options={"port": grpc_port, "grpc_servicer_functions": GRPC_SERVICERS})
    yield {"port": port, "grpc_port": grpc_port,
           "metrics_port": ray._private.worker.global_worker.node.metrics_export_port}
    serve.shutdown()
    ray.shutdown()
    os.environ.clear()
    os.environ.update(saved)
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def test_models(tmp_path_factory) -> Path:
    """The shipped models, plus hybrid copied as a second version for hot swap and A/B."""
    root = tmp_path_factory.mktemp("models")
    for name in ("hybrid", "dqn", "ppo", "hybrid_gat"):
        src = MODELS_DIR / name
        served = src / str(default_version(MODELS_DIR, name))  # not a candidate (hybrid v3)
        shutil.copytree(served, root / name / "1")
    shutil.copytree(root / "hybrid" / "1", root / "hybrid" / "2")
    return root


def app_options(test_models: Path, db_path: Path, *, mode: str = "shipped",
                ingress: dict[str, Any] | None = None,
                inference: dict[str, Any] | None = None,
                autoscaling: bool = False,
                replicas: int = 1) -> tuple[Any, dict[str, dict[str, Any]]]:
    """serve_config.yaml's application with test paths and overrides merged in.

    ``mode``: 'shipped' (the file's own args: the ingress runs the policy), 'separate'
    (every stage its own deployment) or 'hop' (PolicyInference its own deployment, as in
    serve_config.gpu.yaml). ``autoscaling``: keep the file's autoscaling_config (else one
    replica each, no waiting on the autoscaler). ``replicas``: that many of each deployment
    instead (MqttIngest stays at exactly one)."""
    from deployments.app import config_options
    from edge_allocator.config import InferenceConfig

    args, options = config_options(SERVE_CONFIG)
    if mode == "separate":
        args = args.model_copy(update={"separate_stages": True, "inline_inference": False})
    elif mode == "hop":
        args = args.model_copy(update={"separate_stages": False, "inline_inference": False})
    inf = copy.deepcopy(options["PolicyInference"]["user_config"])
    inf.update(models_dir=str(test_models))
    for k, v in (inference or {}).items():  # batching/backend keys go under "inference"
        (inf["inference"] if k in InferenceConfig.model_fields else inf)[k] = v
    ing = copy.deepcopy(options["Ingress"]["user_config"])
    ing.update(models_dir=str(test_models), database_url=f"sqlite:///{db_path}",
               spool_path=str(db_path.parent / "spool" / "decisions.jsonl"),
               inference=inf["inference"])
    ing.update(ingress or {})
    options["Ingress"]["user_config"] = ing
    options["PolicyInference"]["user_config"] = inf
    for name, d in options.items():  # fixed replica counts: no waiting on autoscaling
        if autoscaling or (args.inline_inference and name == "PolicyInference"):
            continue  # stays at zero replicas: nothing calls it
        d.pop("autoscaling_config", None)
        d["num_replicas"] = 1 if name == "MqttIngest" else replicas
    return args, options


#: The session's apps deployed by ``deploy``, name -> config entry. Each deploy sends them
#: all, as a config file holds them all: the controller deletes a declaratively deployed
#: app that a config leaves out.
_DECLARED: dict[str, Any] = {}


def deploy(name: str, prefix: str, test_models: Path, db_path: Path, **kw: Any) -> None:
    """Deploy (or redeploy) ``name`` as ``serve deploy`` does (deployments.app.apply_apps):
    a redeploy that changes only ``user_config`` reconfigures the running replicas, where
    ``serve.run`` would replace every one of them."""
    from ray import serve

    from deployments.app import app_schema, apply_apps

    args, options = app_options(test_models, db_path, **kw)
    live = serve.status().applications
    for gone in [n for n in _DECLARED if n not in live]:  # serve.delete'd by a test
        del _DECLARED[gone]
    _DECLARED[name] = app_schema(name, prefix, args, options)
    applied = time.time()
    apply_apps(list(_DECLARED.values()))
    deadline = applied + 120
    while time.time() < deadline:  # this config applied (its timestamp) and RUNNING
        status = serve.status().applications.get(name)
        if status is not None and status.status == "RUNNING" \
                and status.last_deployed_time_s >= applied - 1:
            return
        time.sleep(0.25)
    raise TimeoutError(f"application {name} not RUNNING after 120 s: {serve.status()}")


@pytest.fixture(scope="session")
def app_db(tmp_path_factory) -> Path:
    """The SQLite decision log of ``app_url``."""
    return tmp_path_factory.mktemp("db") / "decisions.db"


@pytest.fixture(scope="session")
def app_url(ray_cluster, test_models, app_db) -> str:
    """The application exactly as serve_config.yaml composes it."""
    deploy("edge-allocator", "/", test_models, app_db)
    return f"http://127.0.0.1:{ray_cluster['port']}"


@pytest.fixture(scope="session")
def separate_url(ray_cluster, test_models, tmp_path_factory) -> str:
    """Every stage its own deployment (GraphBuilder -> PolicyInference -> Assembler)."""
    db = tmp_path_factory.mktemp("db-separate") / "decisions.db"
    deploy("edge-allocator-separate", "/separate", test_models, db, mode="separate")
    return f"http://127.0.0.1:{ray_cluster['port']}/separate"


@pytest.fixture(scope="session")
def hop_url(ray_cluster, test_models, tmp_path_factory) -> str:
    """The ingress builds graphs and responses; PolicyInference is its own deployment."""
    db = tmp_path_factory.mktemp("db-hop") / "decisions.db"
    deploy("edge-allocator-hop", "/hop", test_models, db, mode="hop")
    return f"http://127.0.0.1:{ray_cluster['port']}/hop"


@pytest.fixture
def client() -> httpx.Client:
    with httpx.Client(timeout=30) as c:
        yield c


@pytest.fixture
def postgres_db():
    """A database of its own on the machine's PostgreSQL (trust auth), dropped after."""
    import psycopg  # a pinned dev dependency

    from benchmarks.faults import scratch_database
    from tests.conftest import missing

    try:
        db = scratch_database()
        name = db.__enter__()
    except psycopg.OperationalError as exc:
        missing("PostgreSQL", f"it is not reachable on 127.0.0.1:5432 ({exc})")
    yield name
    db.__exit__(None, None, None)
