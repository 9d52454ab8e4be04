"""Limits and defaults in one place, each overridable by environment variable.

Names end in their unit so a reader never has to guess it.
"""

from __future__ import annotations

import os
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


#: Largest network one request may carry. Requests above it get a 422, not an OOM.
MAX_NODES = _env_int("EDGE_ALLOCATOR_MAX_NODES", 2000)
#: Largest number of edges in one state.
MAX_EDGES = _env_int("EDGE_ALLOCATOR_MAX_EDGES", 20000)
#: Largest number of states in one /v1/allocate/batch request.
MAX_BATCH_STATES = _env_int("EDGE_ALLOCATOR_MAX_BATCH_STATES", 1024)
if not 1 <= MAX_BATCH_STATES <= 0x10000:  # a batch is logged as one run (store.runs)
    raise ValueError(f"EDGE_ALLOCATOR_MAX_BATCH_STATES must be 1..65536, got {MAX_BATCH_STATES}")
#: Request bodies above this are refused with 413 before parsing.
MAX_BODY_BYTES = _env_int("EDGE_ALLOCATOR_MAX_BODY_BYTES", 8 * 1024 * 1024)
#: Queue length at which a node accepts no more tasks (masked as infeasible).
QUEUE_CAPACITY = _env_int("EDGE_ALLOCATOR_QUEUE_CAPACITY", 32)
#: Score of an infeasible node: low enough that softmax gives it 0, finite so fp32/ONNX
#: stay NaN-free (policies mask in fp32: -1e9 overflows fp16).
MASKED_SCORE = -1e9
#: Allocations between two runs of the garbage collector's youngest generation in a
#: serving process (CPython's default is 700; see runtime/gc_tuning.py).
GC_THRESHOLD = _env_int("EDGE_ALLOCATOR_GC_THRESHOLD", 50_000)
#: Entries of the in-process topology (adjacency) cache.
TOPOLOGY_CACHE_ENTRIES = _env_int("EDGE_ALLOCATOR_TOPOLOGY_CACHE_ENTRIES", 4096)
#: Shadow scoring (``service.shadow``): states waiting for the candidate at most; beyond
#: it new work is dropped and counted, so a slow candidate never grows memory.
SHADOW_QUEUE_STATES = _env_int("EDGE_ALLOCATOR_SHADOW_QUEUE_STATES", 4096)
#: States per shadow model call, at most: bounds how long one shadow call holds the
#: replica's event loop (live requests wait behind it).
SHADOW_BATCH_STATES = _env_int("EDGE_ALLOCATOR_SHADOW_BATCH_STATES", 64)
#: Shadow work waits while live requests are being decided, up to this long; then one
#: call runs anyway (under saturation the candidate gets a trickle, the rest is dropped).
SHADOW_MAX_DEFER_S = _env_float("EDGE_ALLOCATOR_SHADOW_MAX_DEFER_S", 1.0)
#: A shadow call starts only once no live request has been in the replica for this long:
#: the next request of a busy client arrives within a millisecond or two of its answer.
SHADOW_QUIET_S = _env_float("EDGE_ALLOCATOR_SHADOW_QUIET_S", 0.003)
#: How long the shadow worker lets work gather before a call (fewer, larger calls).
SHADOW_GATHER_S = _env_float("EDGE_ALLOCATOR_SHADOW_GATHER_S", 0.005)
#: Default decision-cache TTL.
DECISION_CACHE_TTL_S = _env_float("EDGE_ALLOCATOR_DECISION_CACHE_TTL_S", 5.0)

#: MQTT broker of the live network (``mqtt://host:port``, ``mqtts://`` for TLS); set, it
#: wins over the MqttIngest deployment's ``user_config`` ``mqtt.url``. Unset: off.
MQTT_URL = os.environ.get("EDGE_ALLOCATOR_MQTT_URL") or None

#: The checkout (or install prefix) the package lives in: defaults resolve against it,
#: not against the working directory of whichever Ray worker happens to read them.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Where shipped artifacts live.
MODELS_DIR = Path(os.environ.get("EDGE_ALLOCATOR_MODELS_DIR", PROJECT_ROOT / "models"))
#: Embedded default decision log.
DATABASE_URL = os.environ.get(
    "EDGE_ALLOCATOR_DATABASE_URL", f"sqlite:///{PROJECT_ROOT / 'var' / 'edge_allocator.db'}"
)
#: Where records wait while the database is unreachable.
SPOOL_PATH = Path(
    os.environ.get("EDGE_ALLOCATOR_SPOOL", PROJECT_ROOT / "var" / "spool" / "decisions.jsonl")
)
#: Ray Serve's fast path, measured in benchmarks/serve_bench.py: HAProxy on the HTTP port
#: forwarding straight to the ingress replicas' own HTTP servers (direct ingress), gRPC
#: between deployments, user code on the replica's event loop. Process-level settings:
#: the environment of whatever starts Ray (scripts/run.sh, the k8s pods, the tests).
SERVE_FAST_PATH_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}
#: On one machine nothing external balances load onto the ingress replicas, so they need
#: not drain for Serve's default 30 s before stopping (k8s keeps the default).
SERVE_LOCAL_ENV = {**SERVE_FAST_PATH_ENV, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
