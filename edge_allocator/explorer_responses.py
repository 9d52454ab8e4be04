"""What the decision explorer's endpoints return (``/v1/compare``, ``/v1/stats``,
``/v1/decisions``, ``/v1/manifest``), as typed objects.

Plain dataclasses, like ``edge_allocator.responses``: the OpenAPI document derives their
schemas from these classes and the conformance test holds real responses to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field


@dataclass(slots=True)
class NodeOutcome:
    """One node of a compared state: whether it may run the task and what it would cost."""

    node_id: str
    feasible: bool
    reason: Annotated[str | None, Field(description="Why it is infeasible, in words")]
    completion_ms: float
    transfer_ms: float
    wait_ms: float
    exec_ms: float
    energy_j: float
    missed_deadline: bool
    cost: Annotated[float, Field(description="The simulator's reward, negated: lower is better")]


@dataclass(slots=True)
class PolicyChoice:
    """Where one served model version or one heuristic would place the task."""

    policy: str
    kind: Literal["model", "heuristic"]
    version: Annotated[str | None, Field(description="Model version; null for a heuristic")]
    backend: str | None
    node_id: str
    node_index: int
    completion_ms: float
    cost: float
    missed_deadline: bool


@dataclass(slots=True)
class PolicyComparison:
    """POST /v1/compare: one state decided by every served model and every heuristic."""

    node_ids: list[str]
    edges: Annotated[list[tuple[int, int]],
                     Field(description="Links by node index (the default topology if the "
                           "state has none)")]
    nodes: list[NodeOutcome]
    choices: list[PolicyChoice]
    cost_model: str


@dataclass(slots=True)
class VersionTraffic:
    """Decisions one model version made on this replica, against its A/B weight."""

    model: str
    version: str
    decisions: int
    share: Annotated[float, Field(description="Of this model's decisions")]
    weight: Annotated[float, Field(description="Configured A/B weight (1 when not split)")]


@dataclass(slots=True)
class CacheStats:
    hits: int
    misses: int
    hit_rate: float | None


@dataclass(slots=True)
class ShadowTraffic:
    """One shadow candidate's work in this replica since it started (user_config shadow):
    what it scored, how often it chose as the live version did, and what it dropped."""

    model: str
    version: Annotated[str, Field(description="The candidate version")]
    share: Annotated[float, Field(description="The sampled share of live traffic configured")]
    scored: Annotated[int, Field(description="Live decisions the candidate scored")]
    agreement: Annotated[float | None, Field(description="Share of them where it chose the "
                                                          "live node; null before any")]
    dropped: Annotated[int, Field(description="Offered but dropped (its queue was full)")]
    failed: Annotated[int, Field(description="Offered but the candidate failed")]


@dataclass(slots=True)
class LiveStats:
    """GET /v1/stats: the answering ingress replica's own counters since it started."""

    replica: Annotated[str, Field(description="The ingress replica that answered")]
    uptime_s: float
    decisions_total: int
    decisions_per_s: Annotated[float, Field(description="Over the last window_s seconds")]
    window_s: float
    latency_p50_ms: Annotated[float | None, Field(description="Over the latest decisions")]
    latency_p99_ms: float | None
    cache: CacheStats
    batch_sizes: Annotated[dict[str, int],
                           Field(description="Decisions by the size of the model call that "
                                 "made them ('cached': none)")]
    traffic: list[VersionTraffic]
    errors: Annotated[dict[str, int], Field(description="Error responses by status")]
    replicas: Annotated[dict[str, dict[str, int]] | None,
                        Field(description="Replicas per deployment by state; null outside "
                              "Ray Serve")] = None
    shadow: Annotated[list[ShadowTraffic],
                      Field(description="Shadow candidates' work; their decisions are never "
                                        "counted in the figures above")] = field(
        default_factory=list)


@dataclass(slots=True)
class FeedbackView:
    received_at: str
    completion_ms: float | None
    success: bool
    energy_j: float | None


@dataclass(slots=True)
class LoggedDecision:
    """One decision as the decision log holds it, with its feedback."""

    decision_id: str
    created_at: str
    model: str
    version: str
    backend: str
    node_id: str
    confidence: float
    latency_ms: float
    cached: bool
    node_count: int
    feedback: list[FeedbackView] = field(default_factory=list)


@dataclass(slots=True)
class RecentDecisions:
    """GET /v1/decisions: newest first."""

    decisions: list[LoggedDecision]


@dataclass(slots=True)
class ModelManifest:
    """GET /v1/manifest: one served version's manifest and the plots beside it."""

    name: str
    version: str
    kind: str
    architecture: dict[str, Any]
    training: dict[str, Any]
    evaluation: list[dict[str, Any]]
    files: dict[str, str]
    plots: Annotated[list[str], Field(description="Image files in the artifact folder, "
                                      "fetched with GET /v1/artifact")]
