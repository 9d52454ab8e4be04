"""Per-token request quotas: a token bucket per bearer token, in this process.

Each token refills at ``rate_per_s`` up to ``burst`` requests; a request that finds its
bucket empty is refused with 429 and a ``Retry-After`` of the seconds until one request
is available again (rounded up). Buckets are keyed by the token's fingerprint (a short
sha256 prefix, ``auth.fingerprint``), never by its value, and only tokens that passed
authentication get one, so the table is bounded by the configured tokens. Quotas are
per ingress replica: with N replicas a token may reach N times its rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from edge_allocator.config import QuotaConfig
from edge_allocator.schema import RequestError


class QuotaExceeded(RequestError):
    """429: this token is over its rate; retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: int):
        super().__init__(429, f"request quota exceeded; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[object, ...]:
        return (QuotaExceeded, (self.retry_after_s,))


class TokenBuckets:
    """One bucket per key; ``take(key)`` spends one request or raises ``QuotaExceeded``."""

    def __init__(self, cfg: QuotaConfig, clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.cfg.rate_per_s is not None

    def reconfigure(self, cfg: QuotaConfig) -> None:
        """New rates apply at once; buckets keep what they hold (capped at the new
        burst), so a redeploy neither refills nor empties them."""
        with self._lock:
            self.cfg = cfg
            self._buckets = {k: (min(n, float(cfg.burst)), t)
                             for k, (n, t) in self._buckets.items()}

    def take(self, key: str) -> None:
        rate = self.cfg.rate_per_s
        if rate is None:
            return
        burst = float(self.cfg.burst)
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return
            self._buckets[key] = (tokens, now)
        raise QuotaExceeded(max(1, math.ceil((1.0 - tokens) / rate)))

    def forget_except(self, keys: set[str]) -> None:
        """Drop the buckets of tokens no longer configured (after a rotation)."""
        with self._lock:
            self._buckets = {k: v for k, v in self._buckets.items() if k in keys}
