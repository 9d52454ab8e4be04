"""Telemetry into the view: parse, validate, apply, count, and never raise.

``TelemetryIngest.on_message`` is what the MQTT client calls for every message (on its
network thread). A bad message, or a bad device of a batch, is counted under its reason
(``telemetry.REASONS``) and logged with the topic and the reason (at most once a second
per reason, with how many were not logged), and nothing of it reaches the view. A store
outage (Redis down) is counted as ``store_errors`` and logged the same way; the
subscriber keeps running and the next message tries again.

Counters, in the store (so with Redis they survive an ingest restart): ``messages``,
``reports`` (node reports applied), ``topology``, ``rejected:<reason>``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edge_allocator.live.telemetry import BadMessage, Topics, parse_message
from edge_allocator.live.view import ViewStore, ViewUnavailable

log = logging.getLogger(__name__)
#: Rejections remembered for GET /v1/network.
RECENT_REJECTIONS = 20
#: Seconds between two log lines of the same reason.
LOG_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class Rejection:
    """A dropped message (or device of a batch): where, why, when (Unix seconds)."""

    topic: str
    reason: str
    detail: str
    at: float


class TelemetryIngest:
    def __init__(self, store: ViewStore, topics: Topics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.topics = topics or Topics()
        self._clock = clock
        self.recent: deque[Rejection] = deque(maxlen=RECENT_REJECTIONS)
        self.store_errors = 0
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def on_message(self, topic: str, payload: bytes) -> None:
        now = self._clock()
        try:
            parsed = parse_message(topic, payload, self.topics)
        except BadMessage as exc:
            self._reject(topic, exc, now, counted_message=True)
            return
        try:
            if parsed.topology is not None:
                self.store.apply_topology(parsed.topology, now)
            self.store.apply(parsed.reports, now, {
                "messages": 1, "reports": len(parsed.reports),
                "topology": int(parsed.topology is not None)})
            for bad in parsed.dropped:
                self._reject(topic, bad, now, counted_message=False)
        except ViewUnavailable as err:
            self.store_errors += 1
            self._log("store_error", now, "live view: telemetry on %s not stored: %s", topic, err)

    def _reject(self, topic: str, exc: BadMessage, now: float, counted_message: bool) -> None:
        self.recent.append(Rejection(topic[:200], exc.reason, exc.detail[:300], now))
        counts = {f"rejected:{exc.reason}": 1}
        if counted_message:
            counts["messages"] = 1
        try:
            self.store.add_counts(counts)
        except ViewUnavailable:
            self.store_errors += 1
        self._log(exc.reason, now, "telemetry dropped on %s: %s", topic[:200], exc)

    def _log(self, key: str, now: float, msg: str, *args: object) -> None:
        if now - self._last_log.get(key, -1e18) < LOG_EVERY_S:
            self._unlogged[key] = self._unlogged.get(key, 0) + 1
            return
        self._last_log[key] = now
        more = self._unlogged.pop(key, 0)
        log.warning(msg + (f" (and {more} more like it in the last second)" if more else ""),
                    *args)
