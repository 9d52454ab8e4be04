"""Network state -> model inputs: node features, adjacency, feasibility mask, batching.

Why dense adjacency: for the graph sizes we serve (tens to a thousand nodes) a dense
``D^-1/2 (A+I) D^-1/2`` followed by matmuls exports to plain ONNX and runs 5-20x faster
than scatter-based message passing; PyTorch Geometric stays the reference in the tests.

Shapes: N nodes, E edges, F = ``NUM_FEATURES`` features, B graphs in a batch.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from threading import Lock
from typing import NamedTuple

import numpy as np

from edge_allocator.capacity import CAPACITY, MEMORY, QUEUE, SPEED, nominal_limits
from edge_allocator.constants import TOPOLOGY_CACHE_ENTRIES
from edge_allocator.profiles import MEAN_TASK_GCYCLES
from edge_allocator.schema import NODE_FIELDS, REFERENCE_TASK, TASK_FIELDS, NetworkState, Task

#: Derived per-node estimates appended to the raw fields: they turn products the
#: networks would otherwise have to learn (data / bandwidth) into inputs.
DERIVED_FIELDS: tuple[str, ...] = ("est_transfer_ms", "est_wait_ms", "est_exec_ms")
FEATURE_NAMES: tuple[str, ...] = NODE_FIELDS + TASK_FIELDS + DERIVED_FIELDS
NUM_FEATURES = len(FEATURE_NAMES)
#: Column of each feature in ``x``: code reads ``x[:, FEATURE_INDEX["node_type"]]``, never
#: a bare column number.
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}
NODE_TYPE_COLUMN = FEATURE_INDEX["node_type"]
#: Features that span orders of magnitude; the models take log1p of them first.
LOG_FEATURES: tuple[str, ...] = (
    "energy", "latency", "bandwidth", "queue_len", "compute_gcycles", "memory_mb",
    "data_mb", "deadline_ms", "est_transfer_ms", "est_wait_ms", "est_exec_ms",
)
LOG_FEATURE_MASK = np.array([f in LOG_FEATURES for f in FEATURE_NAMES], dtype=bool)
#: Used when a bandwidth is 0 so estimates stay finite (the node is masked anyway).
_MIN_BANDWIDTH_MBPS = 1e-3
_MAX_EST_MS = 1e7
_MIN_CAPACITY_GCPS = 1e-6


class GraphInputs(NamedTuple):
    """Model inputs for one graph (unbatched)."""

    x: np.ndarray  # [N, F] float32
    adj: np.ndarray  # [N, N] float32, normalised
    mask: np.ndarray  # [N] bool, True = feasible


class GraphBatch(NamedTuple):
    """B graphs padded to the largest N in the batch."""

    x: np.ndarray  # [B, Nmax, F] float32
    adj: np.ndarray  # [B, Nmax, Nmax] float32
    mask: np.ndarray  # [B, Nmax] bool; padding is False
    sizes: np.ndarray  # [B] int64, real node count of each graph


def node_matrix(state: NetworkState) -> np.ndarray:
    """[N, 7] raw node fields in ``NODE_FIELDS`` order."""
    return np.array(
        [[getattr(n, f) for f in NODE_FIELDS] for n in state.nodes], dtype=np.float32
    ).reshape(len(state.nodes), len(NODE_FIELDS))


def task_vector(task: Task | None) -> np.ndarray:
    t = task or REFERENCE_TASK
    return np.array([getattr(t, f) for f in TASK_FIELDS], dtype=np.float32)


def features(nodes: np.ndarray, task: np.ndarray, limits: np.ndarray | None = None
             ) -> np.ndarray:
    """[N, 7] node fields + [4] task -> [N, F] features (raw units, not normalised).

    The estimates use only what the operator sees plus each node's capacity (declared,
    or its type's nominal one: ``capacity.resolve_limits``) scaled by its observed speed
    (1.0 unless learned from feedback or sent): transfer = latency + data / bandwidth;
    wait = queue x mean task / free capacity; exec = task compute / free capacity.
    """
    cpu, _, _, latency, bandwidth, queue, ntype = nodes.T
    compute, _, data_mb, _ = task.T  # [4] for all nodes, or [N, 4]: one task per node
    lim = nominal_limits(ntype) if limits is None else limits
    # floored: a declared 1e-300 (valid: > 0) is 0 in float32, and 0 / 0 would be NaN
    capacity = np.maximum(lim[:, CAPACITY] * lim[:, SPEED], _MIN_CAPACITY_GCPS).astype(
        np.float32)
    free_gcps = capacity * np.maximum(1.0 - cpu, 0.05)
    transfer = latency + data_mb * 8.0 * 1000.0 / np.maximum(bandwidth, _MIN_BANDWIDTH_MBPS)
    wait = queue * MEAN_TASK_GCYCLES / free_gcps * 1000.0
    exe = compute / free_gcps * 1000.0
    derived = np.minimum(np.stack([transfer, wait, exe], axis=1), _MAX_EST_MS)
    tiled = np.broadcast_to(task, (nodes.shape[0], task.shape[-1]))
    return np.concatenate([nodes, tiled, derived], axis=1).astype(np.float32)


def feasible_mask(nodes: np.ndarray, task: np.ndarray, limits: np.ndarray | None = None
                  ) -> np.ndarray:
    """[N] True where the task may run: reachable, queue not full, memory fits.

    Memory fits when ``mem_util + task.memory_mb / memory_mb <= 1``, the queue is full at
    ``queue_capacity`` (each declared, or the type's default: ``capacity.resolve_limits``);
    ``capacity.mask_reasons`` says which check failed, in the same terms.
    """
    _, mem, _, _, bandwidth, queue, ntype = nodes.T
    lim = nominal_limits(ntype) if limits is None else limits
    with np.errstate(divide="ignore", invalid="ignore"):  # memory_mb 1e-300: 0 in f32
        need = task.T[1] / lim[:, MEMORY].astype(np.float32)  # NaN / inf: masked
    ok: np.ndarray = (bandwidth > 0) & (queue < lim[:, QUEUE]) & (mem + need <= 1.0)
    return ok


def default_edges(node_types: np.ndarray) -> np.ndarray:
    """The topology assumed when a request carries no edges, as [E, 2] undirected pairs.

    Each gateway links to its nearest edge/fog node by index distance (the best stand-in
    for locality a state without coordinates offers); edge/fog nodes form a full mesh;
    every edge/fog node links to every cloud. Without edge/fog nodes, gateways link
    straight to the clouds; with neither, gateways form a chain.
    """
    types = np.asarray(node_types, dtype=np.int64)
    idx = np.arange(len(types))
    gw, fog, cloud = idx[types == 0], idx[types == 1], idx[types == 2]
    pairs: list[tuple[int, int]] = []
    if len(fog):
        for g in gw:
            pairs.append((int(g), int(fog[np.argmin(np.abs(fog - g))])))
        pairs += [(int(a), int(b)) for i, a in enumerate(fog) for b in fog[i + 1:]]
        pairs += [(int(f), int(c)) for f in fog for c in cloud]
    elif len(cloud):
        pairs += [(int(g), int(c)) for g in gw for c in cloud]
    else:
        pairs += [(int(a), int(b)) for a, b in zip(gw[:-1], gw[1:])]
    pairs += [(int(a), int(b)) for i, a in enumerate(cloud) for b in cloud[i + 1:]]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def edge_index(n: int, edges: np.ndarray) -> np.ndarray:
    """[E, 2] undirected pairs -> [2, E'] directed edge_index (both directions, no loops,
    duplicates removed), the sparse form PyTorch Geometric takes."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    e = e[e[:, 0] != e[:, 1]]
    both = np.concatenate([e, e[:, ::-1]], axis=0)
    if both.size == 0:
        return np.zeros((2, 0), dtype=np.int64)
    uniq = np.unique(both[:, 0] * n + both[:, 1])
    return np.stack([uniq // n, uniq % n]).astype(np.int64)


def normalized_adjacency(n: int, edges: np.ndarray) -> np.ndarray:
    """[N, N] ``D^-1/2 (A + I) D^-1/2`` (GCN normalisation, Kipf & Welling 2017)."""
    a = np.eye(n, dtype=np.float32)
    ei = edge_index(n, edges)
    a[ei[0], ei[1]] = 1.0
    dinv = 1.0 / np.sqrt(a.sum(axis=1))
    out: np.ndarray = (dinv[:, None] * a * dinv[None, :]).astype(np.float32)
    return out


class TopologyCache:
    """LRU of normalised adjacencies keyed by (N, edge list digest).

    Operators resend the same topology with new loads every few ms; building the
    adjacency is O(N^2) while hashing the edge list is O(E), so identical topologies
    reuse the array. Thread-safe; arrays are read-only so a hit cannot be corrupted.
    """

    def __init__(self, max_entries: int = TOPOLOGY_CACHE_ENTRIES):
        self.max_entries = max_entries
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = Lock()
        self.hits = 0
        self.misses = 0

    def get(self, n: int, edges: np.ndarray) -> np.ndarray:
        e = np.ascontiguousarray(edges, dtype=np.int64)
        key = hashlib.blake2b(n.to_bytes(4, "little") + e.tobytes(), digest_size=16).digest()
        return self.get_or_build(key, lambda: normalized_adjacency(n, e))

    def get_or_build(self, key: bytes, build: Callable[[], np.ndarray]) -> np.ndarray:
        """The adjacency cached under ``key``, built (outside the lock) on a miss."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return hit
        adj = build()
        adj.setflags(write=False)
        with self._lock:
            self.misses += 1
            self._items[key] = adj
            if len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return adj

    def __len__(self) -> int:
        return len(self._items)

    def __deepcopy__(self, memo: dict[int, object]) -> TopologyCache:
        return self  # shared on purpose: entries are immutable and access is locked


def state_edges(state: NetworkState, nodes: np.ndarray) -> np.ndarray:
    if state.edges is not None:
        return np.array(state.edges, dtype=np.int64).reshape(-1, 2)
    return default_edges(nodes[:, NODE_TYPE_COLUMN])


def build_graph(
    state: NetworkState, task: Task | None = None, cache: TopologyCache | None = None
) -> GraphInputs:
    """One validated state -> features, adjacency and mask."""
    nodes = node_matrix(state)
    tvec = task_vector(task)
    edges = state_edges(state, nodes)
    n = nodes.shape[0]
    adj = cache.get(n, edges) if cache is not None else normalized_adjacency(n, edges)
    return GraphInputs(features(nodes, tvec), adj, feasible_mask(nodes, tvec))


def probe_graph(n: int = 4) -> GraphInputs:
    """A tiny valid graph (gateway, two fog nodes, cloud; idle, reachable, default
    topology) that health checks run through every loaded model to prove it answers."""
    types = np.array([0, 1, 1, 2][:n])
    x = np.zeros((n, NUM_FEATURES), np.float32)
    x[:, NODE_TYPE_COLUMN] = types
    x[:, FEATURE_INDEX["bandwidth"]] = 100.0
    return GraphInputs(x, normalized_adjacency(n, default_edges(types)), np.ones(n, bool))


def collate(graphs: Sequence[GraphInputs], pad_to: int | None = None) -> GraphBatch:
    """Pad graphs of different sizes into one batch. Padding nodes have zero features,
    zero adjacency rows and a False mask, so they neither send nor receive messages and
    can never be chosen."""
    sizes = np.array([g.x.shape[0] for g in graphs], dtype=np.int64)
    nmax = int(sizes.max()) if pad_to is None else pad_to
    if sizes.max() > nmax:
        raise ValueError(f"collate: graph of {sizes.max()} nodes exceeds pad_to={nmax}")
    b = len(graphs)
    x = np.zeros((b, nmax, NUM_FEATURES), dtype=np.float32)
    adj = np.zeros((b, nmax, nmax), dtype=np.float32)
    mask = np.zeros((b, nmax), dtype=bool)
    for i, g in enumerate(graphs):
        n = g.x.shape[0]
        x[i, :n] = g.x
        adj[i, :n, :n] = g.adj
        mask[i, :n] = g.mask
    return GraphBatch(x, adj, mask, sizes)
