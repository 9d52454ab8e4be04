"""The replica's own counters for GET /v1/stats (the explorer's Live view).

Prometheus gets the same events through the ``Observer``; these are kept in process so
the page can show them without a metrics server. Bounded: counters are keyed by served
(model, version) pairs, batch-size buckets and status codes only; latencies and rates
use fixed-size windows.
"""

from __future__ import annotations

import time
from collections import Counter, deque

import numpy as np

from edge_allocator.explorer_responses import CacheStats, LiveStats, VersionTraffic

#: Decisions per second are counted over this many recent seconds.
RATE_WINDOW_S = 10.0
#: Percentiles are over this many latest decisions.
LATENCY_WINDOW = 2048
_BATCH_EDGES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def batch_bucket(size: int) -> str:
    """'cached' for 0 (no model call), else the power-of-two range holding ``size``."""
    if size <= 0:
        return "cached"
    lo = 1
    for hi in _BATCH_EDGES:
        if size <= hi:
            return str(hi) if lo == hi else f"{lo}-{hi}"
        lo = hi + 1
    return f">{_BATCH_EDGES[-1]}"


class ReplicaStats:
    """Counters since this replica started; one event per decision or per batch."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.started = time.monotonic()
        self.total = 0
        self.by_version: Counter[tuple[str, str]] = Counter()
        self.batch_sizes: Counter[str] = Counter()
        self.hits = 0
        self.misses = 0
        self.errors: Counter[str] = Counter()
        self._recent: deque[tuple[float, int]] = deque()  # (monotonic time, decisions)
        self._latency: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def decisions(self, model: str, version: str, n: int, batch_size: int,
                  latency_ms: float) -> None:
        now = time.monotonic()
        self.total += n
        self.by_version[(model, version)] += n
        self.batch_sizes[batch_bucket(batch_size)] += n
        self._recent.append((now, n))
        self._latency.append(latency_ms)
        self._trim(now)

    def cache_lookup(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def error(self, status: int) -> None:
        self.errors[str(status)] += 1

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent.popleft()

    def snapshot(self, weights: dict[tuple[str, str], float],
                 replicas: dict[str, dict[str, int]] | None = None) -> LiveStats:
        """``weights``: the A/B weight of every routed (model, version)."""
        now = time.monotonic()
        self._trim(now)
        window = min(RATE_WINDOW_S, max(now - self.started, 1e-9))
        lat = np.fromiter(self._latency, float) if self._latency else None
        p50, p99 = (None, None) if lat is None else (float(np.percentile(lat, 50)),
                                                     float(np.percentile(lat, 99)))
        per_model: Counter[str] = Counter()
        for (model, _), n in self.by_version.items():
            per_model[model] += n
        keys = list(weights) + [k for k in self.by_version if k not in weights]
        traffic = [VersionTraffic(m, v, self.by_version[(m, v)],
                                  self.by_version[(m, v)] / per_model[m] if per_model[m] else 0.0,
                                  weights.get((m, v), 0.0)) for m, v in keys]
        lookups = self.hits + self.misses
        return LiveStats(
            replica=self.replica, uptime_s=now - self.started, decisions_total=self.total,
            decisions_per_s=sum(n for _, n in self._recent) / window, window_s=RATE_WINDOW_S,
            latency_p50_ms=p50, latency_p99_ms=p99,
            cache=CacheStats(self.hits, self.misses, self.hits / lookups if lookups else None),
            batch_sizes=dict(self.batch_sizes), traffic=traffic, errors=dict(self.errors),
            replicas=replicas)
