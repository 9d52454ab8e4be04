"""What every endpoint returns, as typed objects.

Plain dataclasses: the stages build them on the hot path (no validation cost) and
orjson serialises them as they are, in field order. The OpenAPI document derives its
response schemas from these same classes (``edge_allocator.service.openapi``), and a
test validates real responses of every endpoint against the served document, so the
published shapes cannot drift from the returned ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal

from pydantic import Field


@dataclass(slots=True)
class ModelRef:
    """The model version that made a decision, and the backend that actually ran it."""

    name: str
    version: str
    backend: str


@dataclass(slots=True)
class Decision:
    """One decision. ``scores`` and ``probabilities`` cover feasible nodes only;
    ``ranking`` lists them best first."""

    decision_id: str
    node_id: str
    node_index: int
    confidence: Annotated[float, Field(description="Softmax probability of the chosen node")]
    scores: Annotated[dict[str, float], Field(description="Policy score per feasible node")]
    ranking: Annotated[list[str], Field(description="Feasible node ids, best first")]
    probabilities: Annotated[dict[str, float],
                             Field(description="Softmax of the scores over feasible nodes")]
    model: ModelRef
    cached: Annotated[bool, Field(description="Answered from the decision cache")]
    latency_ms: Annotated[float, Field(description="From request parsed to decision ready")]
    batch_size: Annotated[int,
                          Field(description="States that shared the model call (0: cache hit)")]
    inference_node: Annotated[str | None,
                              Field(description="Ray node that ran the model")] = None
    infeasible: Annotated[dict[str, str], Field(
        description="Why each masked node could not take the task, by node id (e.g. "
        "'queue full (32 of 32)', 'memory short (need 512 MB, free 102 MB of 1024)', "
        "'unreachable (bandwidth 0)'); empty when every node is feasible")
    ] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object as plain dicts and lists (the decision cache stores it); the
        maps are this decision's own, not copies."""
        out = {name: getattr(self, name) for name in DECISION_FIELDS}
        out["model"] = {"name": self.model.name, "version": self.model.version,
                        "backend": self.model.backend}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(**{**data, "model": ModelRef(**data["model"])})


#: Every key of a decision, in order (what a ``fields`` selection may name).
DECISION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Decision))


@dataclass(slots=True)
class BatchDecisions:
    """POST /v1/allocate/batch: one decision per state, in order."""

    decisions: list[Decision]


@dataclass(slots=True)
class FeedbackReceipt:
    """POST /v1/feedback."""

    decision_id: str
    recorded: bool


@dataclass(slots=True)
class NodeSpeedInfo:
    """GET /v1/nodes/{node_id}: what feedback taught about a node's speed."""

    node_id: str
    observed_speed: Annotated[float, Field(
        description="Realised speed relative to the predicted one (0.2: tasks took 5x "
        "longer than predicted); 1.0 for a node never heard from")]
    confidence: Annotated[float, Field(description="0 (no evidence) .. 1; decays with time")]
    count: Annotated[int, Field(description="Completions learned from since the last reset")]
    updated_at: Annotated[float | None, Field(description="Unix time of the latest one")]
    applied: Annotated[bool, Field(
        description="Whether decisions use it now: node_speeds.apply is on and the node is "
        "at least node_speeds.apply_beyond (3) times slower or faster than predicted")]
    source: Literal["local", "redis"]


@dataclass(slots=True)
class NodeSpeedReset:
    """DELETE /v1/nodes/{node_id}: the node is back at speed 1.0."""

    node_id: str
    reset: Annotated[bool, Field(description="False: there was no estimate to forget")]


@dataclass(slots=True)
class ModelInfo:
    """One loaded model version, as the replica that runs it reports it."""

    name: str
    version: str
    kind: str
    backend: str
    max_nodes: Annotated[int | None, Field(description="Fixed input size; null = any N")]
    torch_loaded: Annotated[bool, Field(description="ONNX replicas never import torch")]
    evaluation: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class ModelsOverview:
    """GET /v1/models."""

    default_model: str
    routing: dict[str, dict[str, Any]]
    models: list[ModelInfo]
    shadow: Annotated[dict[str, dict[str, Any]], Field(
        description="served model -> its shadow candidate ({version, share}); a version "
                    "listed in models that no route serves is such a candidate")] = field(
        default_factory=dict)


@dataclass(slots=True)
class BatchConfig:
    """GET /v1/batch-config: the dynamic-batching settings in force."""

    max_batch_size: int
    batch_wait_timeout_s: float


@dataclass(slots=True)
class SnapshotRef:
    """Which snapshot of the live network a decision used."""

    taken_at: Annotated[float, Field(description="Unix time of the snapshot, seconds")]
    age_ms: Annotated[float, Field(description="Its age when the decision was made")]
    node_count: int
    masked: Annotated[dict[str, str],
                      Field(description="Nodes masked as unreachable, with the reason")]
    source: Annotated[Literal["ingest", "redis"], Field(description="Where the view is kept")]


@dataclass(slots=True)
class LiveDecision(Decision):
    """POST /v1/allocate with ``network: live``: a decision and the snapshot it used."""

    snapshot: SnapshotRef | None = None


@dataclass(slots=True)
class LiveBatchDecisions:
    """POST /v1/allocate/batch with ``network: live``: one decision per task, in order,
    all on one snapshot."""

    decisions: list[Decision] | list[dict[str, Any]]
    snapshot: SnapshotRef


@dataclass(slots=True)
class LiveNode:
    """One node of the live view."""

    node_id: str
    node_type: int
    metrics: Annotated[dict[str, float], Field(description="Latest reported metrics")]
    age_s: Annotated[float, Field(description="Seconds since its latest telemetry arrived")]
    last_seen: Annotated[float, Field(description="Unix time its latest telemetry arrived")]
    device_time: Annotated[float | None, Field(description="Unix time the device stamped")]
    masked: bool
    reason: Annotated[str | None, Field(description="Why it is masked as unreachable")]
    fields: Annotated[dict[str, float],
                      Field(description="From the topology topic (capacities; shown only)")]


@dataclass(slots=True)
class IngestInfo:
    """The MqttIngest replica's subscriber, as it reports itself."""

    reachable: bool
    connected: bool | None = None
    broker: str | None = None
    connections: Annotated[int | None, Field(description="> 1: it has reconnected")] = None
    last_error: str | None = None
    store_errors: int | None = None
    recent_rejections: list[dict[str, Any]] = field(default_factory=list)
    requests: Annotated[dict[str, int], Field(
        description="MQTT request/response: requests, replies:2xx/4xx/5xx, dropped:<reason>")
    ] = field(default_factory=dict)


@dataclass(slots=True)
class NetworkView:
    """GET /v1/network: the live view, per-node age and masking, and the ingest counters."""

    enabled: bool
    source: Literal["ingest", "redis"] | None
    taken_at: float | None
    stale_after_s: float
    node_count: int
    masked_count: int
    nodes: list[LiveNode]
    edges: Annotated[list[tuple[str, str]] | None,
                     Field(description="Published links by node id; null: default topology")]
    counts: Annotated[dict[str, Any],
                      Field(description="messages, reports, topology, rejected: {reason: n}")]
    ingest: IngestInfo


@dataclass(slots=True)
class Liveness:
    status: Literal["ok"] = "ok"


@dataclass(slots=True)
class Readiness:
    """GET /readyz: 200 with the loaded models, or 503 with the reason."""

    status: Literal["ready", "not ready"]
    models: list[ModelInfo] | None = None
    reason: str | None = None


@dataclass(slots=True)
class ErrorDetail:
    loc: str
    msg: str


@dataclass(slots=True)
class ErrorBody:
    """Every 4xx/5xx: the message names the field path at fault first."""

    error: str
    status: int
    details: list[ErrorDetail]


# --- the original AI Edge Allocator API -----------------------------------------------------


@dataclass(slots=True)
class LegacyPrediction:
    """POST /predict. Nodes are identified by index."""

    selected_node: int
    confidence: float
    q_values: Annotated[list[float] | None,
                        Field(description="DQN only: Q-values, infeasible nodes at -1e9")]
    node_scores: Annotated[dict[str, float], Field(description="Probability per node index")]
    processing_time_ms: float
    model_version: str
    decision_id: str


@dataclass(slots=True)
class LegacyBatchPrediction:
    """POST /batch-predict."""

    predictions: list[LegacyPrediction]
    total_processing_time_ms: float


@dataclass(slots=True)
class LegacyHealth:
    """GET /health: what actually loaded; ``degraded`` when a routed model did not."""

    status: Literal["healthy", "degraded"]
    version: str
    models_loaded: dict[str, bool]
    uptime_seconds: float


@dataclass(slots=True)
class LegacyModelSummary:
    """One entry of GET /models."""

    name: str
    versions: list[str]
    type: str
    backend: str
    max_nodes: int | None


@dataclass(slots=True)
class LegacyModelInfo:
    """GET /models/{name}."""

    name: str
    versions: list[str]
    type: str
    default: bool


@dataclass(slots=True)
class LegacyLoadResult:
    """POST /models/{model_type}/load: the model is loaded and answering."""

    status: Literal["success"]
    message: str


@dataclass(slots=True)
class MockNode:
    """One node of a generated network: the seven node fields, identified by index."""

    cpu_util: float
    mem_util: float
    energy: float
    latency: float
    bandwidth: float
    queue_len: float
    node_type: int


@dataclass(slots=True)
class MockNetworkState:
    """A generated network, ready to send as ``network_state`` to /predict."""

    nodes: list[MockNode]
    edges: Annotated[list[tuple[int, int]], Field(description="Links [s, t] by node index")]


@dataclass(slots=True)
class MockNetwork:
    """POST /generate-mock-network."""

    network_state: MockNetworkState
    num_nodes: int
    num_edges: Annotated[int, Field(description="Links returned (at most the num_edges asked)")]
    generated_at: Annotated[float, Field(description="Unix time, seconds")]


@dataclass(slots=True)
class ServiceInfo:
    """GET /: what this service is and where its documentation and health are."""

    service: str
    version: str
    status: Literal["running"]
    docs: str
    health: str


# --- POST /v1/explain ------------------------------------------------------------------


@dataclass(slots=True)
class FeatureShare:
    """One (node, feature) attribution."""

    node_id: str
    feature: str
    value: float


@dataclass(slots=True)
class HeuristicRule:
    """What a heuristic decided by: its rule, the weight of each feature it reads (its
    score is the weighted sum of the node's own features) and, per feasible node, the
    numbers it compared."""

    name: str
    rule: str
    weights: Annotated[dict[str, float],
                       Field(description="score = sum of weight x feature, over these")]
    compared: Annotated[dict[str, dict[str, float]],
                        Field(description="Per feasible node: the features the rule reads "
                              "and its score")]


@dataclass(slots=True)
class Explanation:
    """Which features drove one node's score. ``attributions`` covers every node's
    features (a GNN's score for one node depends on its neighbours) and sums to
    ``score - baseline_score`` (completeness; ``completeness_error`` is the residual)."""

    node_id: str
    method: Annotated[Literal["integrated_gradients", "linear_rule", "rule"],
                      Field(description="integrated_gradients (Captum) for learned "
                            "models; linear_rule (exact) or rule (no feature decides) for "
                            "heuristics")]
    score: Annotated[float, Field(description="The node's score, as in the decision")]
    baseline_score: Annotated[float, Field(description="Its score on the baseline input")]
    attributions: Annotated[dict[str, dict[str, float]],
                            Field(description="{node_id: {feature: share of score - "
                                  "baseline_score}}, every node and feature")]
    baseline: Annotated[str, Field(description="What the baseline input is")]
    completeness_error: Annotated[float, Field(
        description="sum(attributions) - (score - baseline_score)")]
    n_steps: Annotated[int | None, Field(
        description="Integration steps used (integrated gradients); null for rules")]
    top: Annotated[list[FeatureShare],
                   Field(description="The largest attributions by magnitude, largest first")]
    rule: Annotated[HeuristicRule | None,
                    Field(description="For a heuristic: its rule and the numbers it "
                          "compared")] = None


@dataclass(slots=True)
class Comparison:
    """Why the explained node scored ``gap`` above (or below) ``node_id``: the difference
    of the two nodes' attributions against the same baseline. It sums to
    ``gap - baseline_gap`` (the part of the gap the features account for)."""

    node_id: Annotated[str, Field(description="The node compared to (compare_to)")]
    score: float
    baseline_score: float
    gap: Annotated[float, Field(description="explained score - this node's score")]
    baseline_gap: Annotated[float, Field(description="The same gap on the baseline input")]
    attributions: Annotated[dict[str, dict[str, float]], Field(
        description="{node_id: {feature: explained attribution - this node's}}")]
    completeness_error: Annotated[float, Field(
        description="sum(attributions) - (gap - baseline_gap)")]
    top: Annotated[list[FeatureShare], Field(
        description="The features behind the gap, largest magnitude first")]


@dataclass(slots=True)
class ExplainResponse:
    """POST /v1/explain: the decision (as /v1/allocate makes it; for a heuristic, the
    heuristic's own), the explanation of one node's score and, with ``compare_to``, the
    comparison with another node."""

    decision: Decision
    explanation: Explanation
    comparison: Comparison | None = None
