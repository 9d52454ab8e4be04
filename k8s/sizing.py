"""Ray pod counts from the replica counts and resources in serve_config.yaml.

Serve places each replica whole on one Ray node, so the number of pods a worker group
needs is a bin-packing of replicas (CPU and GPU demands) into pods of a fixed shape; first
fit decreasing gives it exactly for the handful of replica sizes a config has. Fractions
are kept exact (``0.3 + 0.1`` CPUs must fit where 0.4 fits).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

#: Ray Serve's default when a deployment's ray_actor_options set no num_cpus.
SERVE_DEFAULT_NUM_CPUS = 1


@dataclass(frozen=True)
class PodShape:
    """Resources of one Ray pod (container requests = limits)."""

    cpus: int
    """Kubernetes CPU and Ray ``num-cpus`` of the pod."""
    memory: str
    """Kubernetes memory quantity, e.g. ``8Gi``."""
    gpus: int = 0
    """``nvidia.com/gpu`` of the pod and its Ray ``num-gpus``."""


@dataclass(frozen=True)
class ReplicaDemand:
    """What one deployment asks of the cluster."""

    deployment: str
    cpus: Fraction
    gpus: Fraction
    min_replicas: int
    max_replicas: int


def _exact(value: Any) -> Fraction:
    return Fraction(str(value))


def replica_demand(deployment: dict[str, Any]) -> ReplicaDemand:
    """CPU/GPU per replica and the replica range of one entry of a config's ``deployments``."""
    name = deployment["name"]
    opts = deployment.get("ray_actor_options") or {}
    auto = deployment.get("autoscaling_config")
    if auto is not None:
        low, high = int(auto.get("min_replicas", 1)), int(auto.get("max_replicas", 1))
    else:
        replicas = deployment.get("num_replicas", 1)
        if not isinstance(replicas, int):
            raise ValueError(f"deployment {name}: num_replicas={replicas!r} cannot be sized; "
                             "give an integer or an autoscaling_config with max_replicas")
        low = high = replicas
    if not 0 <= low <= high:
        raise ValueError(f"deployment {name}: min_replicas={low} > max_replicas={high}")
    return ReplicaDemand(name, _exact(opts.get("num_cpus", SERVE_DEFAULT_NUM_CPUS)),
                         _exact(opts.get("num_gpus", 0) or 0), low, high)


def app_demands(serve_config: dict[str, Any]) -> list[ReplicaDemand]:
    """Demands of every deployment of every application in a Serve config."""
    return [replica_demand(d) for app in serve_config["applications"]
            for d in app.get("deployments", [])]


def pods_needed(demands: list[ReplicaDemand], shape: PodShape, at: str) -> int:
    """Pods of ``shape`` that hold every replica of ``demands`` at ``at`` = ``"min"`` or
    ``"max"`` scale (first fit decreasing)."""
    if at not in ("min", "max"):
        raise ValueError(f"pods_needed: at={at!r}; use 'min' or 'max'")
    replicas = [(d.cpus, d.gpus, d.deployment) for d in demands
                for _ in range(d.min_replicas if at == "min" else d.max_replicas)]
    replicas.sort(key=lambda r: (r[1], r[0]), reverse=True)
    free: list[list[Fraction]] = []
    for cpus, gpus, name in replicas:
        if cpus > shape.cpus or gpus > shape.gpus:
            raise ValueError(f"deployment {name}: one replica needs {float(cpus)} CPU and "
                             f"{float(gpus)} GPU, more than a whole pod ({shape.cpus} CPU, "
                             f"{shape.gpus} GPU); make the pod larger or the replica smaller")
        for pod in free:
            if pod[0] >= cpus and pod[1] >= gpus:
                pod[0] -= cpus
                pod[1] -= gpus
                break
        else:
            free.append([shape.cpus - cpus, shape.gpus - gpus])
    return len(free)
