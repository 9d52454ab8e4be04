from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from edge_allocator.graph import edge_index, normalized_adjacency
from edge_allocator.policies import build_policy
from edge_allocator.policies.dense_gat import DenseGATLayer
from edge_allocator.policies.dense_gcn import DenseGCNLayer
from edge_allocator.policies.dense_sage import DenseSAGELayer
from edge_allocator.policies.hybrid import MASKED_SCORE

EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [1, 3]])
N = 4


def _inputs():
    torch.manual_seed(0)
    x = torch.randn(N, 5)
    adj = torch.from_numpy(normalized_adjacency(N, EDGES))
    ei = torch.from_numpy(edge_index(N, EDGES))
    return x, adj, ei


def test_dense_gcn_equals_pyg():
    x, adj, ei = _inputs()
    dense, ref = DenseGCNLayer(5, 3), GCNConv(5, 3)
    with torch.no_grad():
        ref.lin.weight.copy_(dense.lin.weight)
        ref.bias.copy_(torch.randn(3))
        dense.bias.copy_(ref.bias)
    assert torch.allclose(dense(x[None], adj[None])[0], ref(x, ei), atol=1e-6)


def test_dense_sage_equals_pyg():
    x, adj, ei = _inputs()
    dense, ref = DenseSAGELayer(5, 3), SAGEConv(5, 3, aggr="mean")
    with torch.no_grad():
        ref.lin_l.weight.copy_(dense.lin_neigh.weight)
        ref.lin_l.bias.copy_(dense.lin_neigh.bias)
        ref.lin_r.weight.copy_(dense.lin_self.weight)
    assert torch.allclose(dense(x[None], adj[None])[0], ref(x, ei), atol=1e-6)


def test_dense_gat_equals_pyg():
    x, adj, ei = _inputs()
    dense, ref = DenseGATLayer(5, 3), GATConv(5, 3, heads=1)
    with torch.no_grad():
        ref.lin.weight.copy_(dense.lin.weight)
        ref.att_src.copy_(dense.att_src.view(1, 1, 3))
        ref.att_dst.copy_(dense.att_dst.view(1, 1, 3))
        dense.bias.copy_(torch.randn(3))
        ref.bias.copy_(dense.bias)
    assert torch.allclose(dense(x[None], adj[None])[0], ref(x, ei), atol=1e-5)


@pytest.mark.parametrize("conv", ["gcn", "sage", "gat"])
@pytest.mark.parametrize("n", [1, 7, 300])
def test_hybrid_scores_any_n_and_masks(conv, n):
    m = build_policy("hybrid", {"conv": conv}).eval()
    x = torch.rand(2, n, 14)
    adj = torch.eye(n).expand(2, n, n)
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[1, 0] = False
    scores, value = m.scores_and_value(x, adj, mask)
    assert scores.shape == (2, n) and value.shape == (2,)
    assert scores[1, 0] == MASKED_SCORE and torch.isfinite(scores[0]).all()


def test_padding_does_not_change_hybrid_scores():
    """Padding nodes neither send nor receive messages: a graph scores the same alone
    and padded inside a batch."""
    m = build_policy("hybrid").eval()
    n = 6
    x = torch.rand(1, n, 14)
    adj = torch.from_numpy(normalized_adjacency(n, np.array([[0, 1], [1, 2], [4, 5]])))[None]
    mask = torch.ones(1, n, dtype=torch.bool)
    alone = m(x, adj, mask)
    xp = torch.zeros(1, n + 4, 14)
    xp[:, :n] = x
    ap = torch.zeros(1, n + 4, n + 4)
    ap[:, :n, :n] = adj
    mp = torch.zeros(1, n + 4, dtype=torch.bool)
    mp[:, :n] = True
    padded = m(xp, ap, mp)
    assert torch.allclose(alone, padded[:, :n], atol=1e-5)
    assert (padded[:, n:] == MASKED_SCORE).all()


def test_flat_policy_has_fixed_size():
    m = build_policy("dqn", {"max_nodes": 10})
    out = m(torch.rand(3, 10, 14), torch.zeros(()), torch.ones(3, 10, dtype=torch.bool))
    assert out.shape == (3, 10)
    with pytest.raises(RuntimeError):
        m(torch.rand(3, 11, 14), torch.zeros(()), torch.ones(3, 11, dtype=torch.bool))


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="conv='gin'"):
        build_policy("hybrid", {"conv": "gin"})
    with pytest.raises(ValueError, match="kind='a2c'"):
        build_policy("a2c")
