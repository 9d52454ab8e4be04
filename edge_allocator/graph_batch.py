"""A whole ``StateBatch`` -> model inputs in a few array operations, in padded buckets.

Features and the feasibility mask are computed once over every node of the batch (one
numpy expression, not one per state). States are grouped by size into buckets (see
``bucket_size``) so ONNX Runtime sees few shapes and a 1,000-node state never pads 255
small ones to 1,000 x 1,000. Adjacencies come from the topology
cache, keyed by a digest of the edge list (or of the node types, for the default
topology, which is built with array operations).

Shapes: B states, T nodes in all, P padded size of a bucket, F features.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from edge_allocator.capacity import SPEED
from edge_allocator.columnar import StateBatch, edge_list_key, no_feasible_node
from edge_allocator.graph import (
    FEATURE_INDEX,
    NODE_TYPE_COLUMN,
    NUM_FEATURES,
    GraphBatch,
    GraphInputs,
    TopologyCache,
    feasible_mask,
    features,
    normalized_adjacency,
)

#: Smallest padded size: tiny states share one shape.
MIN_BUCKET = 8
#: Padded sizes per doubling of the node count above ``FINE_BUCKETS_UP_TO``.
BUCKETS_PER_OCTAVE = 8
#: Up to this many nodes, sizes are padded to a multiple of ``FINE_BUCKET_STEP``.
FINE_BUCKETS_UP_TO = 64
FINE_BUCKET_STEP = 4


def bucket_size(n: int) -> int:
    """The padded size of a state of ``n`` nodes: a multiple of 4 up to 64 nodes, then
    eight sizes per doubling (72, 80, ... 128, 144, ...), so padding adds at most 12.5 %
    and a batch sees a bounded set of shapes (55 up to the default MAX_NODES of 2,000).

    Why not powers of two: the model's cost grows with the padded size (the dense
    adjacency is P x P), and padding 20 nodes to 32 made the hybrid 1.7x slower per
    state than at 20 (benchmarks/results/batch_path.md)."""
    n = max(n, MIN_BUCKET)
    if n <= FINE_BUCKETS_UP_TO:
        return -(-n // FINE_BUCKET_STEP) * FINE_BUCKET_STEP
    step = 1 << (n.bit_length() - 1 - int(math.log2(BUCKETS_PER_OCTAVE)))
    return -(-n // step) * step


def default_adjacency(node_types: np.ndarray) -> np.ndarray:
    """``normalized_adjacency(n, default_edges(types))`` without building the edge list:
    gateways link to their nearest edge/fog node by index, edge/fog nodes form a mesh and
    link to every cloud; without edge/fog nodes gateways link to the clouds, with neither
    they form a chain; clouds form a mesh."""
    types = np.asarray(node_types, dtype=np.int64)
    n = len(types)
    idx = np.arange(n)
    gw, fog, cloud = idx[types == 0], idx[types == 1], idx[types == 2]
    a = np.zeros((n, n), np.float32)
    if len(fog):
        if len(gw):
            near = fog[np.argmin(np.abs(fog[None, :] - gw[:, None]), axis=1)]
            a[gw, near] = a[near, gw] = 1.0
        a[np.ix_(fog, fog)] = 1.0
        a[np.ix_(fog, cloud)] = 1.0
        a[np.ix_(cloud, fog)] = 1.0
    elif len(cloud):
        a[np.ix_(gw, cloud)] = 1.0
        a[np.ix_(cloud, gw)] = 1.0
    else:
        a[gw[:-1], gw[1:]] = a[gw[1:], gw[:-1]] = 1.0
    a[np.ix_(cloud, cloud)] = 1.0
    np.fill_diagonal(a, 1.0)
    dinv = 1.0 / np.sqrt(a.sum(axis=1))
    out: np.ndarray = (dinv[:, None] * a * dinv[None, :]).astype(np.float32)
    return out


class TopologyKeys:
    """Adjacency per state through the cache: a digest of the edge list (or of the
    node types when the default topology applies) finds it in O(E) instead of O(N^2)."""

    def __init__(self, cache: TopologyCache) -> None:
        self.cache = cache

    def adjacency(self, batch: StateBatch, i: int) -> np.ndarray:
        key, build = self._key(batch, i)
        return self.cache.get_or_build(key, build)

    def _key(self, batch: StateBatch, i: int) -> tuple[bytes, Callable[[], np.ndarray]]:
        """State i's cache key, and how to build its adjacency on a miss."""
        nodes = batch.nodes_of(i)
        n = nodes.shape[0]
        edges = batch.edges[i]
        if edges is None:
            types = nodes[:, NODE_TYPE_COLUMN].astype(np.int8)
            return (b"d" + hashlib.blake2b(types.tobytes(), digest_size=16).digest(),
                    lambda: default_adjacency(types))
        keys = batch.edge_keys
        known = keys[i] if keys is not None else None
        return (known if known is not None else edge_list_key(n, edges),
                lambda: normalized_adjacency(n, edges))

    def fill(self, batch: StateBatch, members: np.ndarray, adj: np.ndarray) -> None:
        """``adj[j, :n, :n]`` = the adjacency of state ``members[j]`` (n its nodes), one
        cache lookup and one assignment per distinct topology: a batch's states mostly
        share a few (one operator's network), and per state this was ~1.5 µs."""
        groups: dict[bytes, tuple[Callable[[], np.ndarray], list[int]]] = {}
        for j, i in enumerate(members.tolist()):
            key, build = self._key(batch, i)
            group = groups.get(key)
            if group is None:
                groups[key] = (build, [j])
            else:
                group[1].append(j)
        for key, (build, slots) in groups.items():
            a = self.cache.get_or_build(key, build)
            n = a.shape[0]
            adj[slots, :n, :n] = a


class Bucket(NamedTuple):
    """States of one padded size, ready for one model call."""

    states: np.ndarray  # [b] indices into the StateBatch
    graphs: GraphBatch  # x [b, P, F], adj [b, P, P], mask [b, P], sizes [b]


def node_features(batch: StateBatch) -> tuple[np.ndarray, np.ndarray]:
    """[T, F] features and [T] mask of every node, each state with its own task."""
    # float32 as the policies were trained on (graph.build_graph), whatever was sent
    values = batch.values32
    per_node_task = np.repeat(batch.tasks.astype(np.float32), batch.sizes, axis=0)
    limits = batch.limits
    return (features(values, per_node_task, limits),
            feasible_mask(values, per_node_task, limits))


def predicted_times(batch: StateBatch, best: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[B] each state's predicted wait + execution on node ``best[i]`` at observed speed
    1 (declared or nominal capacity only: what feedback is compared with, so the speed
    estimate converges to the real ratio instead of to 1), and [B] predicted transfer."""
    rows = batch.offsets[:-1] + np.asarray(best, np.int64)
    limits = batch.limits[rows].copy()
    limits[:, SPEED] = 1.0
    x = features(batch.values32[rows], batch.tasks.astype(np.float32), limits)
    wait, exe, transfer = (FEATURE_INDEX[f] for f in ("est_wait_ms", "est_exec_ms",
                                                      "est_transfer_ms"))
    return x[:, wait] + x[:, exe], x[:, transfer]


def feasibility(batch: StateBatch) -> np.ndarray:
    """[T] the feasibility mask alone (``node_features``' second half)."""
    per_node_task = np.repeat(batch.tasks.astype(np.float32), batch.sizes, axis=0)
    return feasible_mask(batch.values32, per_node_task, batch.limits)


def check_feasible(batch: StateBatch, mask: np.ndarray, in_batch: bool) -> None:
    """422 naming the first state (in a batch) whose every node is masked, and why for
    each of its nodes."""
    any_ok = np.logical_or.reduceat(mask, batch.offsets[:-1])
    if not any_ok.all():
        i = int(np.flatnonzero(~any_ok)[0])
        lo, hi = batch.offsets[i], batch.offsets[i + 1]
        only = np.ones_like(mask)
        only[lo:hi] = mask[lo:hi]  # reasons for this state's nodes only
        raise no_feasible_node(batch.masked_reasons(only)[i],
                               f"states.{i}." if in_batch else "")


def one_graph(batch: StateBatch, topo: TopologyKeys, x: np.ndarray, mask: np.ndarray,
              i: int = 0) -> GraphInputs:
    """State i unpadded (the single-request path: the policy batches across requests)."""
    lo, hi = batch.offsets[i], batch.offsets[i + 1]
    return GraphInputs(x[lo:hi], topo.adjacency(batch, i), mask[lo:hi])


def buckets(batch: StateBatch, topo: TopologyKeys, x: np.ndarray, mask: np.ndarray
            ) -> list[Bucket]:
    """The batch padded into buckets (``bucket_size``), in order of first appearance."""
    sizes = batch.sizes
    size_list = sizes.tolist()
    padded = {n: bucket_size(n) for n in set(size_list)}
    pads = np.array([padded[n] for n in size_list])
    out = []
    for pad in dict.fromkeys(pads.tolist()):  # keeps first-appearance order
        members = np.flatnonzero(pads == pad)
        b = len(members)
        xb = np.zeros((b, pad, NUM_FEATURES), np.float32)
        adj = np.zeros((b, pad, pad), np.float32)
        mb = np.zeros((b, pad), bool)
        # every node row of the members, scattered to (its state's slot, its position)
        counts = sizes[members]
        slot = np.repeat(np.arange(b), counts)
        pos = np.arange(len(slot)) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = np.repeat(batch.offsets[members], counts) + pos
        xb[slot, pos] = x[rows]
        mb[slot, pos] = mask[rows]
        topo.fill(batch, members, adj)
        out.append(Bucket(members, GraphBatch(xb, adj, mb, counts.astype(np.int64))))
    return out
