"""Why a policy scored a node as it did: feature attributions over every node.

* ``gradients``: integrated gradients (Captum) on a learned policy's torch module: the
  hybrid GNN, DQN and PPO. Needs torch, so the service runs it on its own deployment
  (``deployments/explainer.py``) and the decision replicas stay torch-free.
* ``rules``: the heuristics, whose scores are fixed rules of a node's own features:
  exact attributions and the numbers each rule compared. Numpy only.
* ``attribution``: the typed result both produce, and what turns it into the response.

Every attribution satisfies completeness: summed over all nodes and features it equals
``score - baseline_score`` (within 1 % for integrated gradients, exactly for the rules).
"""

from edge_allocator.explain.attribution import Attribution, NodeAttribution

#: The heuristics /v1/explain answers for (``policies.heuristics.HEURISTIC_NAMES``, which a
#: test holds this to): named here because importing ``edge_allocator.policies`` imports
#: torch, and the ingress that routes explanations stays torch-free.
HEURISTICS: tuple[str, ...] = ("random", "round_robin", "least_loaded", "lowest_latency",
                               "greedy_eft")

__all__ = ["HEURISTICS", "Attribution", "NodeAttribution"]
