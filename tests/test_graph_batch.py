"""A batch padded into buckets holds, for every state, exactly the graph that state
makes alone (``one_graph``): its features, mask and adjacency in its own slot, zeros in
the padding, whatever mix of sizes and topologies the batch has."""

from __future__ import annotations

import numpy as np

from edge_allocator.columnar import decode_batch
from edge_allocator.graph import TopologyCache
from edge_allocator.graph_batch import TopologyKeys, bucket_size, buckets, node_features
from tests.conftest import node


def _state(n: int, edges: list[list[int]] | None, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    nodes = [node(node_id=f"s{seed}n{k}", cpu_util=float(rng.uniform(0, 1)),
                  mem_util=float(rng.uniform(0, 0.5)), node_type=int(k % 3))
             for k in range(n)]
    return {"nodes": nodes, **({"edges": edges} if edges is not None else {})}


def test_every_state_finds_its_own_graph_in_its_bucket():
    ring5 = [[k, (k + 1) % 5] for k in range(5)]
    star5 = [[0, k] for k in range(1, 5)]
    states = [_state(5, ring5, 0), _state(12, None, 1), _state(5, star5, 2),
              _state(5, ring5, 3), _state(30, [[0, 29]], 4), _state(6, None, 5),
              _state(12, None, 6), _state(5, None, 7)]
    batch, _ = decode_batch({"states": states})
    topo = TopologyKeys(TopologyCache(64))
    x, mask = node_features(batch)
    seen = []
    for bucket in buckets(batch, topo, x, mask):
        g = bucket.graphs
        for j, i in enumerate(bucket.states.tolist()):
            seen.append(i)
            lo, hi = batch.offsets[i], batch.offsets[i + 1]
            n = hi - lo
            assert g.x.shape[1] == bucket_size(n) and g.sizes[j] == n
            np.testing.assert_array_equal(g.x[j, :n], x[lo:hi])
            np.testing.assert_array_equal(g.mask[j, :n], mask[lo:hi])
            np.testing.assert_array_equal(g.adj[j, :n, :n], topo.adjacency(batch, i))
            assert not g.x[j, n:].any() and not g.mask[j, n:].any()
            assert not g.adj[j, n:].any() and not g.adj[j, :, n:].any()
    assert sorted(seen) == list(range(len(states)))
    # ring and star differ, and two states that share the ring share its adjacency
    assert not np.array_equal(topo.adjacency(batch, 0), topo.adjacency(batch, 2))
    np.testing.assert_array_equal(topo.adjacency(batch, 0), topo.adjacency(batch, 3))
