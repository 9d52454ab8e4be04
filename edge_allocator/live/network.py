"""The ingest side as one object: store + ingest + subscriber, from a LiveNetworkConfig.

``deployments/mqtt_ingest.py`` wraps this class; tests and benchmarks use it directly.
Off (no ``mqtt.url``) it subscribes to nothing and its view stays empty.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from edge_allocator.config import LiveNetworkConfig
from edge_allocator.live.ingest import Rejection, TelemetryIngest
from edge_allocator.live.mqtt import SubscriberStatus, TelemetrySubscriber
from edge_allocator.live.requests import Decide, RequestResponder
from edge_allocator.live.telemetry import Topics
from edge_allocator.live.view import (
    LiveSnapshot,
    LocalViewStore,
    RedisViewStore,
    ViewSettings,
    ViewStore,
    ViewUnavailable,
)

#: Seconds between two prunes of forgotten nodes.
PRUNE_EVERY_S = 5.0


def view_settings(cfg: LiveNetworkConfig) -> ViewSettings:
    return ViewSettings(cfg.stale_after_s, cfg.forget_after_s)


def make_store(cfg: LiveNetworkConfig) -> ViewStore:
    if cfg.redis_url:
        return RedisViewStore(cfg.redis_url, view_settings(cfg), prefix=cfg.redis_prefix)
    return LocalViewStore(view_settings(cfg))


@dataclass(frozen=True, slots=True)
class IngestStatus:
    """What the ingest replica knows that the store does not."""

    enabled: bool
    subscriber: SubscriberStatus | None
    store_errors: int
    recent_rejections: list[Rejection]
    counts: dict[str, int]
    requests: dict[str, int]


class LiveNetwork:
    def __init__(self, cfg: LiveNetworkConfig, client_id: str | None = None) -> None:
        self.cfg = cfg
        self.store = make_store(cfg)
        topics = Topics(cfg.mqtt.device_prefix, cfg.mqtt.topology_topic)
        self.ingest = TelemetryIngest(self.store, topics)
        self.subscriber = (TelemetrySubscriber(cfg.mqtt, topics.subscriptions(),
                                               self.ingest.on_message, client_id)
                           if cfg.mqtt.enabled else None)
        self.responder: RequestResponder | None = None
        self._stop = threading.Event()
        self._pruner = threading.Thread(target=self._prune_loop, daemon=True,
                                        name="live-view-prune")

    def answer_requests(self, decide: Decide) -> None:
        """Answer tasks on ``mqtt.request_topic`` (requests.py) with ``decide``."""
        if self.subscriber is None or self.cfg.mqtt.request_topic is None:
            return
        self.responder = RequestResponder(decide, self.subscriber.publish)
        self.subscriber.on_request = self.responder.on_request

    def start(self) -> LiveNetwork:
        if self.subscriber is not None:
            self.subscriber.start()
            self._pruner.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.subscriber is not None:
            self.subscriber.stop()
        if self.responder is not None:
            self.responder.close()

    def snapshot(self) -> LiveSnapshot:
        return self.store.snapshot(time.time())

    def status(self) -> IngestStatus:
        sub = self.subscriber
        try:
            counts = self.store.counts()
        except ViewUnavailable:
            counts = {}
        requests = dict(self.responder.counts) if self.responder is not None else {}
        if self.responder is not None and self.responder.decide_ms:
            # the time decide() took (the Ingress round trip), median of the last 1,000
            requests["decide_us_p50"] = int(1000 * sorted(self.responder.decide_ms)[
                len(self.responder.decide_ms) // 2])
        if sub is not None and sub.requests_unanswered:
            requests["dropped:no_responder"] = sub.requests_unanswered
        return IngestStatus(sub is not None, sub.status() if sub else None,
                            self.ingest.store_errors, list(self.ingest.recent), counts, requests)

    def _prune_loop(self) -> None:
        while not self._stop.wait(PRUNE_EVERY_S):
            try:
                self.store.prune(time.time())
            except Exception:  # noqa: BLE001 - a store outage; the next round retries
                self.ingest.store_errors += 1
