"""The heuristics explained: the rule, the numbers it compared, exact attributions.

A heuristic's score for node j is a weighted sum of node j's own features
(``policies.heuristics.RULES``), so with the all-zero input as baseline (score 0) the
attribution of feature f of node j is exactly ``weight_f x x[j, f]``, and every other
node's features get 0: completeness holds exactly. Random and round robin read no
feature: their attributions are 0 and the baseline score is the score itself (the
features cannot move it).
"""

from __future__ import annotations

import numpy as np

from edge_allocator.explain.attribution import Attribution, NodeAttribution, RuleResult
from edge_allocator.graph import FEATURE_INDEX, GraphInputs
from edge_allocator.policies.heuristics import RULES, Heuristic, all_heuristics
from edge_allocator.responses import HeuristicRule

BASELINE = "every feature 0 (score 0); a heuristic reads only the scored node's features"
NO_FEATURE_BASELINE = "the score itself: no feature moves this rule's score"


def heuristic(name: str) -> Heuristic:
    """A fresh instance (random with seed 0, round robin at its first turn): a request's
    explanation never depends on earlier requests."""
    for h in all_heuristics():
        if h.name == name:
            return h
    raise KeyError(name)


def weight_vector(name: str) -> np.ndarray:
    """[F] weights of ``name``'s rule (0 for the features it does not read)."""
    w = np.zeros(len(FEATURE_INDEX), np.float64)
    for feature, weight in RULES[name].weights.items():
        w[FEATURE_INDEX[feature]] = weight
    return w


def attribute(name: str, graph: GraphInputs, scores: np.ndarray,
              target: int) -> NodeAttribution:
    """``target``'s score under rule ``name`` split over features (exact)."""
    values = np.zeros(graph.x.shape, np.float64)
    score = float(scores[target])
    if not RULES[name].weights:
        return NodeAttribution(target, score, score, values, "rule", None)
    values[target] = weight_vector(name) * graph.x[target].astype(np.float64)
    return NodeAttribution(target, score, 0.0, values, "linear_rule", None)


def describe(name: str, graph: GraphInputs, scores: np.ndarray,
             node_ids: list[str]) -> HeuristicRule:
    """The rule and, per feasible node, the features it read and its score."""
    rule = RULES[name]
    used = list(rule.weights)
    compared = {
        node_ids[j]: {**{f: float(graph.x[j, FEATURE_INDEX[f]]) for f in used},
                      "score": float(scores[j])}
        for j in np.flatnonzero(graph.mask).tolist()}
    return HeuristicRule(name, rule.text, dict(rule.weights), compared)


def baseline_text(name: str) -> str:
    return BASELINE if RULES[name].weights else NO_FEATURE_BASELINE


def explain_rule(name: str, graph: GraphInputs, node_ids: list[str], target: int | None,
                 compare: int | None) -> RuleResult:
    """Score the state with heuristic ``name`` and explain ``target`` (default: the node
    it chooses) and ``compare``."""
    scores = heuristic(name).scores(graph)
    if target is None:
        target = int(np.argmax(scores))  # feasible: infeasible nodes score MASKED_SCORE
    explained = attribute(name, graph, scores, target)
    compared = attribute(name, graph, scores, compare) if compare is not None else None
    return RuleResult(scores, Attribution(explained, compared, baseline_text(name)),
                      describe(name, graph, scores, node_ids))
