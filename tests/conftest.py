"""Shared fixtures. The Ray cluster fixture lives in tests/serve/conftest.py so that
core tests never pay for it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.xdist_schedule import (  # noqa: F401  (hooks: the workers' order of files)
    pytest_addoption,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_xdist_make_scheduler,
)

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _direct_ingress_ports(worker: str) -> dict[str, str]:
    """Serve's direct-ingress port ranges for one pytest-xdist worker (``gw0``, ``gw1``):
    each worker's Ray clusters hand replicas their HTTP and gRPC ports from a quarter of
    the default ranges (30000-31000, 40000-41000) of their own. Each cluster's port manager
    knows only its own replicas, so two workers' clusters on one machine otherwise hand
    out the same numbers and depend on bind failures and retries to sort them out."""
    index = int(worker[2:]) % 4 if worker.startswith("gw") and worker[2:].isdigit() else 0
    env = {}
    for protocol, base in (("HTTP", 30000), ("GRPC", 40000)):
        env[f"RAY_SERVE_DIRECT_INGRESS_MIN_{protocol}_PORT"] = str(base + 250 * index)
        env[f"RAY_SERVE_DIRECT_INGRESS_MAX_{protocol}_PORT"] = str(base + 250 * index + 249)
    return env


# before any test starts a Ray cluster or a `serve run`, which inherit the environment
os.environ.update(_direct_ingress_ports(os.environ.get("PYTEST_XDIST_WORKER", "")))


@pytest.fixture(scope="module", autouse=True)
def _exclusive_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """Modules marked ``exclusive`` (their own Ray cluster, a soak, Prometheus under load)
    take one lock shared by this run's pytest-xdist workers, before their other module
    fixtures start: on two cores, two of them at once left a raylet unable to register
    in Ray's fixed 30 s, twice in a row, and Prometheus's 1-s scrapes timing out."""
    if request.node.get_closest_marker("exclusive") is None:
        yield
        return
    import fcntl
    import hashlib
    import tempfile

    run = hashlib.sha1(str(request.config.rootpath).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"edge-allocator-tests-{run}.lock"
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while the other worker holds it
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def missing(component: str, why: str) -> NoReturn:
    """A real component a test needs is absent. On a developer's machine the test is
    skipped with the reason; under CI (``CI=true``) it fails with it: CI never passes a
    run that did not exercise the real thing."""
    message = f"{component} is required but {why}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: components are never skipped)", pytrace=False)
    pytest.skip(message)


def prometheus_tool(name: str) -> str:
    """Path of ``prometheus`` or ``promtool`` (Debian's ``prometheus`` package), or
    :func:`missing` (a skip here, a failure under CI)."""
    import shutil

    path = shutil.which(name)
    if path is None:
        missing(name, "it is not installed (scripts/setup.sh installs Debian's "
                      "'prometheus' package when run as root)")
    return path


def node(**kw: Any) -> dict[str, Any]:
    base = {"cpu_util": 0.2, "mem_util": 0.3, "energy": 5.0, "latency": 5.0,
            "bandwidth": 100.0, "queue_len": 0, "node_type": 1}
    base.update(kw)
    return base


@pytest.fixture
def small_state() -> dict[str, Any]:
    """Five nodes: two gateways, two fog nodes, one cloud; fog node n3 is idle and near."""
    return {
        "nodes": [
            node(node_id="g0", node_type=0, cpu_util=0.5, latency=0.0, bandwidth=10000),
            node(node_id="g1", node_type=0, cpu_util=0.6, latency=3.0, bandwidth=50),
            node(node_id="n2", node_type=1, cpu_util=0.9, queue_len=20, latency=4.0),
            node(node_id="n3", node_type=1, cpu_util=0.05, latency=2.0, bandwidth=500),
            node(node_id="c4", node_type=2, cpu_util=0.3, latency=60.0, bandwidth=100),
        ],
        "edges": [[0, 2], [0, 3], [1, 3], [2, 3], [2, 4], [3, 4]],
        "task": {"compute_gcycles": 2.0, "memory_mb": 256, "data_mb": 1.0, "deadline_ms": 2000},
    }
