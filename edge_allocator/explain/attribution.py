"""The typed result of every explanation method, and the response parts made from it.

Why one shape for all methods: the comparison ("why this node and not that one") is the
difference of two attributions taken against the same baseline, which is the same
arithmetic whether they came from integrated gradients or from a heuristic's rule.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from edge_allocator.graph import FEATURE_NAMES
from edge_allocator.responses import Comparison, Explanation, FeatureShare, HeuristicRule

Method = Literal["integrated_gradients", "linear_rule", "rule"]
#: How many of the largest attributions ``top`` lists.
TOP_FEATURES = 10


class NodeAttribution(NamedTuple):
    """One node's score split over every node's features.

    ``values[j, f]`` is the share of ``score - baseline_score`` that feature ``f`` of node
    ``j`` accounts for; they sum to it (completeness), up to the integration error of
    integrated gradients."""

    node_index: int
    score: float
    baseline_score: float
    values: np.ndarray  # [N, F] float64
    method: Method
    n_steps: int | None  # integration steps actually used; None for exact rules

    @property
    def completeness_error(self) -> float:
        """sum(values) - (score - baseline_score), in score units."""
        return float(self.values.sum() - (self.score - self.baseline_score))


class Attribution(NamedTuple):
    """The attributions of the explained node and, optionally, of the one compared."""

    explained: NodeAttribution
    compared: NodeAttribution | None
    baseline: str  # what the baseline input is, in words


class RuleResult(NamedTuple):
    """A heuristic's scores for the state and its explanation."""

    scores: np.ndarray  # [N] float32, infeasible nodes at MASKED_SCORE
    attribution: Attribution
    rule: HeuristicRule


def per_node(values: np.ndarray, node_ids: list[str]) -> dict[str, dict[str, float]]:
    """[N, F] -> {node_id: {feature: value}} over every node and feature."""
    rows = values.tolist()
    return {nid: dict(zip(FEATURE_NAMES, row)) for nid, row in zip(node_ids, rows)}


def top(values: np.ndarray, node_ids: list[str], k: int = TOP_FEATURES) -> list[FeatureShare]:
    """The ``k`` (node, feature) pairs of largest magnitude, largest first."""
    flat = np.abs(values).ravel()
    k = min(k, flat.size)
    idx = np.argpartition(-flat, k - 1)[:k]
    idx = idx[np.argsort(-flat[idx], kind="stable")]
    f = values.shape[1]
    return [FeatureShare(node_ids[int(i) // f], FEATURE_NAMES[int(i) % f],
                         float(values.ravel()[i])) for i in idx]


def explanation(a: NodeAttribution, node_ids: list[str], baseline: str,
                rule: HeuristicRule | None = None) -> Explanation:
    return Explanation(
        node_id=node_ids[a.node_index], method=a.method, score=a.score,
        baseline_score=a.baseline_score, attributions=per_node(a.values, node_ids),
        baseline=baseline, completeness_error=a.completeness_error, n_steps=a.n_steps,
        top=top(a.values, node_ids), rule=rule)


def comparison(a: NodeAttribution, b: NodeAttribution, node_ids: list[str]) -> Comparison:
    """Why ``a``'s node scored ``gap`` above ``b``'s: the attribution difference, which
    sums to ``gap - baseline_gap`` (both taken against the same baseline input)."""
    diff = a.values - b.values
    return Comparison(
        node_id=node_ids[b.node_index], score=b.score, baseline_score=b.baseline_score,
        gap=a.score - b.score, baseline_gap=a.baseline_score - b.baseline_score,
        attributions=per_node(diff, node_ids),
        completeness_error=float(diff.sum() - ((a.score - b.score)
                                               - (a.baseline_score - b.baseline_score))),
        top=top(diff, node_ids))
