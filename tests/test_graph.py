from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.nn import GCNConv
from torch_geometric.utils import to_dense_adj

from edge_allocator.graph import (
    FEATURE_NAMES,
    NUM_FEATURES,
    TopologyCache,
    build_graph,
    collate,
    default_edges,
    edge_index,
    feasible_mask,
    normalized_adjacency,
)
from edge_allocator.schema import AllocateRequest, parse
from tests.conftest import node


def test_dense_adjacency_equals_pyg_gcn_normalisation():
    n = 6
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [1, 4]])
    ei = torch.from_numpy(edge_index(n, edges))
    conv = GCNConv(3, 3, bias=False)
    with torch.no_grad():
        conv.lin.weight.copy_(torch.eye(3))
    x = torch.randn(n, 3)
    sparse_out = conv(x, ei)
    dense_out = torch.from_numpy(normalized_adjacency(n, edges)) @ x
    assert torch.allclose(sparse_out, dense_out, atol=1e-6)


def test_edge_index_is_symmetric_deduplicated_and_loop_free():
    ei = edge_index(3, np.array([[0, 1], [1, 0], [0, 1], [2, 2]]))
    dense = to_dense_adj(torch.from_numpy(ei), max_num_nodes=3)[0]
    assert torch.equal(dense, torch.tensor([[0., 1, 0], [1, 0, 0], [0, 0, 0]]))


def test_default_topology_links_every_tier():
    types = np.array([0, 0, 0, 1, 1, 2])
    e = {tuple(sorted(p)) for p in default_edges(types).tolist()}
    assert (3, 4) in e  # fog mesh
    assert {(3, 5), (4, 5)} <= e  # fog to cloud
    for g in (0, 1, 2):  # every gateway reaches a fog node
        assert any(g in p and ({3, 4} & set(p)) for p in e)


def test_default_topology_without_fog_links_gateways_to_cloud():
    e = default_edges(np.array([0, 0, 2])).tolist()
    assert sorted(map(sorted, e)) == [[0, 2], [1, 2]]


def test_features_and_mask(small_state):
    req = parse(AllocateRequest, small_state)
    g = build_graph(req, req.task)
    assert g.x.shape == (5, NUM_FEATURES) and g.adj.shape == (5, 5)
    col = FEATURE_NAMES.index
    assert g.x[3, col("cpu_util")] == pytest.approx(0.05)
    assert g.x[0, col("compute_gcycles")] == pytest.approx(2.0)
    # transfer estimate = latency + data * 8 / bandwidth (ms)
    assert g.x[4, col("est_transfer_ms")] == pytest.approx(60 + 8000 / 100)
    assert g.mask.all()


def test_mask_excludes_unreachable_full_and_out_of_memory():
    nodes = np.array([
        [0.1, 0.1, 1, 1, 0.0, 0, 1],  # bandwidth 0: unreachable
        [0.1, 0.1, 1, 1, 10, 999, 1],  # queue full
        [0.1, 0.9, 1, 1, 10, 0, 0],  # gateway (1 GB) at 90% cannot take 256 MB
        [0.1, 0.9, 1, 1, 10, 0, 2],  # cloud (64 GB) at 90% can
    ], dtype=np.float32)
    task = np.array([1.0, 256.0, 1.0, 1000.0], dtype=np.float32)
    assert feasible_mask(nodes, task).tolist() == [False, False, False, True]


def test_collate_pads_mixed_sizes_with_masked_isolated_nodes(small_state):
    a = build_graph(parse(AllocateRequest, small_state))
    b = build_graph(parse(AllocateRequest, {"nodes": [node(), node(node_type=2)]}))
    batch = collate([a, b])
    assert batch.x.shape == (2, 5, NUM_FEATURES)
    assert batch.sizes.tolist() == [5, 2]
    assert not batch.mask[1, 2:].any()
    assert not batch.adj[1, 2:].any() and not batch.adj[1, :, 2:].any()
    np.testing.assert_array_equal(batch.adj[0], a.adj)


def test_topology_cache_reuses_identical_topologies():
    cache = TopologyCache(max_entries=2)
    e = np.array([[0, 1], [1, 2]])
    first = cache.get(3, e)
    assert cache.get(3, e.copy()) is first
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.get(3, np.array([[0, 2]])) is not first
    cache.get(4, e)  # evicts the least recently used
    assert len(cache) == 2
    assert not first.flags.writeable
