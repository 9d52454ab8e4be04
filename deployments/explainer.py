"""Explainer: the attributions behind POST /v1/explain, on their own replicas.

Integrated gradients need torch (and Captum); the replicas that make decisions run ONNX
Runtime and never import it. So the ingress validates, decides and assembles, and only
the attribution runs here (``edge_allocator.service.explain_api.LocalExplainer``, which
loads each model version once, from the models folder the ingress names). Torch is
imported on the first explanation, not at start: an idle replica stays small.
"""

from __future__ import annotations

from ray import serve

from edge_allocator.explain.attribution import Attribution, RuleResult
from edge_allocator.graph import GraphInputs
from edge_allocator.service.explain_api import LocalExplainer
from edge_allocator.service.stages import ModelKey


@serve.deployment
class Explainer:
    def __init__(self) -> None:
        self.local = LocalExplainer()

    def attribute(self, models_dir: str, key: ModelKey, graph: GraphInputs, target: int,
                  compare: int | None) -> Attribution:
        return self.local.attribute_now(models_dir, key, graph, target, compare)

    def explain_rule(self, name: str, graph: GraphInputs, node_ids: list[str],
                     target: int | None, compare: int | None) -> RuleResult:
        return self.local.explain_rule_now(name, graph, node_ids, target, compare)
