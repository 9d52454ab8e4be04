"""Every custom metric of the application, in one place (exported by Ray's metrics agent
with a ``ray_`` prefix, e.g. ``ray_edge_allocator_decisions_total``)."""

from __future__ import annotations

from typing import cast

from ray.serve import metrics

from edge_allocator.service.observe import DecisionCounts

#: Sub-millisecond buckets: the model itself takes tens of microseconds.
LATENCY_BOUNDARIES_MS = [0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 200,
                         500, 1000]
BATCH_BOUNDARIES = [1.0, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def _tag_keys(*names: str) -> tuple[str]:
    """Ray annotates ``tag_keys`` as a 1-tuple; it takes any number of keys."""
    return cast("tuple[str]", names)


class IngressMetrics:
    def __init__(self) -> None:
        self.decisions = metrics.Counter(
            "edge_allocator_decisions", description="Decisions made",
            tag_keys=_tag_keys("model", "version", "backend", "node_type", "cached"),
        )
        self.latency_ms = metrics.Histogram(
            "edge_allocator_decision_latency_ms",
            description="Time from request parsed to decision ready, ms",
            boundaries=LATENCY_BOUNDARIES_MS, tag_keys=_tag_keys("model", "route"),
        )
        self.cache = metrics.Counter(
            "edge_allocator_cache_lookups", description="Decision cache lookups",
            tag_keys=_tag_keys("result"),
        )
        self.errors = metrics.Counter(
            "edge_allocator_request_errors", description="Requests answered with an error",
            tag_keys=_tag_keys("status", "route"),
        )
        self.feedback = metrics.Counter(
            "edge_allocator_feedback", description="Feedback received",
            tag_keys=_tag_keys("success"),
        )
        self.shadow = metrics.Counter(
            "edge_allocator_shadow_decisions",
            description="Live decisions offered to a shadow candidate, by outcome "
                        "(agree, disagree, dropped, failed); never counted as decisions",
            tag_keys=_tag_keys("model", "version", "outcome"),
        )
        self.feedback_completion_ms = metrics.Histogram(
            "edge_allocator_feedback_completion_ms",
            description="Realised completion time reported as feedback, ms",
            boundaries=[10.0, 50, 100, 250, 500, 1000, 2000, 5000, 10000],
        )


class RayObserver:
    """The service's ``Observer``: its reports as Ray Serve metrics (bounded tags only)."""

    def __init__(self) -> None:
        self.m = IngressMetrics()

    def decisions(self, counts: DecisionCounts) -> None:
        for (model, version, backend, node_type, cached), n in counts.items():
            self.m.decisions.inc(n, tags={"model": model, "version": version,
                                          "backend": backend, "node_type": node_type,
                                          "cached": str(cached).lower()})

    def latency(self, model: str, route: str, elapsed_ms: float) -> None:
        self.m.latency_ms.observe(elapsed_ms, tags={"model": model, "route": route})

    def cache_lookup(self, hit: bool) -> None:
        self.m.cache.inc(tags={"result": "hit" if hit else "miss"})

    def error(self, status: int, route: str) -> None:
        self.m.errors.inc(tags={"status": str(status), "route": route})

    def feedback(self, success: bool, completion_ms: float | None) -> None:
        self.m.feedback.inc(tags={"success": str(success).lower()})
        if completion_ms is not None:
            self.m.feedback_completion_ms.observe(completion_ms)


    def shadow(self, model: str, version: str, outcome: str, n: int) -> None:
        self.m.shadow.inc(n, tags={"model": model, "version": version, "outcome": outcome})


class InferenceMetrics:
    def __init__(self) -> None:
        self.batch_size = metrics.Histogram(
            "edge_allocator_batch_size", description="States per model call",
            boundaries=BATCH_BOUNDARIES, tag_keys=_tag_keys("model"),
        )
        self.model_ms = metrics.Histogram(
            "edge_allocator_model_latency_ms", description="Backend run time per model call, ms",
            boundaries=LATENCY_BOUNDARIES_MS, tag_keys=_tag_keys("model", "backend"),
        )
        self.model_memory = metrics.Gauge(
            "edge_allocator_model_memory_bytes",
            description="Resident memory of the inference replica, bytes",
        )
