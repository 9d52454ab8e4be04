"""Decisions on the live network: ``{"network": "live", "task": {...}}`` and GET /v1/network.

The nodes come from a snapshot of the live view (``edge_allocator.live``); the rest is
the ordinary decision path of ``AllocatorApi`` (model routing, cache, chain of stages,
decision log, feedback), so a live decision is exactly the decision for the same state
sent in full (tested).

Where the snapshot comes from is the ingest's business, read from its settings
(``IngestPort.settings``, refreshed every ``SETTINGS_REFRESH_S``): with ``redis_url``
every ingress replica reads the view from Redis itself (and keeps deciding while the
ingest replica restarts); without, it asks the MqttIngest deployment through its handle.
A replica reuses a snapshot for ``snapshot_reuse_s``, then serves it up to twice that
old while one refresh runs in the background (so requests do not queue behind the
handle call), and every response says which snapshot it used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

import numpy as np

from edge_allocator.config import LiveNetworkConfig
from edge_allocator.live.network import IngestStatus, LiveNetwork, view_settings
from edge_allocator.live.telemetry import METRICS
from edge_allocator.live.view import LiveSnapshot, RedisViewStore, ViewUnavailable
from edge_allocator.responses import (
    DECISION_FIELDS,
    IngestInfo,
    LiveBatchDecisions,
    LiveDecision,
    LiveNode,
    NetworkView,
    SnapshotRef,
)
from edge_allocator.schema import (
    REFERENCE_TASK,
    TASK_FIELDS,
    LiveAllocateRequest,
    LiveBatchRequest,
    RequestError,
    ServiceUnavailable,
    Task,
    parse,
)
from edge_allocator.service.api import AllocatorApi

log = logging.getLogger(__name__)
#: How often an ingress replica re-reads the ingest's settings.
SETTINGS_REFRESH_S = 10.0
#: How long a call to the ingest replica may take.
INGEST_TIMEOUT_S = 5.0
ROUTE, BATCH_ROUTE = "/v1/allocate", "/v1/allocate/batch"


class IngestPort(Protocol):
    """The MqttIngest deployment, wherever it runs."""

    async def settings(self) -> LiveNetworkConfig: ...

    async def snapshot(self) -> LiveSnapshot: ...

    async def status(self) -> IngestStatus: ...


def is_live(data: dict[str, Any]) -> bool:
    """A request for the live network (any ``network`` key: a wrong value is a 422)."""
    return "network" in data


def _off() -> RequestError:
    return RequestError(422, "network: 'live' needs the live network, which is off: set "
                        "mqtt.url in the MqttIngest deployment's user_config or "
                        "EDGE_ALLOCATOR_MQTT_URL", [{"loc": "network", "msg": "live network off"}])


def _tasks(tasks: list[Task | None]) -> np.ndarray:
    return np.array([[getattr(t or REFERENCE_TASK, f) for f in TASK_FIELDS] for t in tasks],
                    np.float64).reshape(-1, len(TASK_FIELDS))


def _retrieved(done: asyncio.Future[LiveSnapshot]) -> None:
    """A background refresh's failure is seen by whoever awaits it, or logged here."""
    if not done.cancelled() and done.exception() is not None:
        log.warning("live network: snapshot refresh failed: %s", done.exception())


class LiveApi:
    def __init__(self, api: AllocatorApi, ingest: IngestPort,
                 clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.ingest = ingest
        self._clock = clock
        self._settings: LiveNetworkConfig | None = None
        self._settings_at = -1e18
        self._redis: RedisViewStore | None = None
        self._snapshot: LiveSnapshot | None = None
        self._refreshing: asyncio.Future[LiveSnapshot] | None = None

    # --- where the view is -------------------------------------------------------------
    async def settings(self) -> LiveNetworkConfig:
        """The ingest's settings; the last known ones while it cannot answer."""
        now = self._clock()
        if now - self._settings_at >= SETTINGS_REFRESH_S or self._settings is None:
            try:
                cfg = await asyncio.wait_for(self.ingest.settings(), INGEST_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - any failure: keep what we know
                if self._settings is None:
                    raise ServiceUnavailable(f"live network: the ingest replica does not "
                                             f"answer ({type(exc).__name__}); retry") from None
                log.warning("live network: ingest settings unavailable (%s); using the last "
                            "known", type(exc).__name__)
            else:
                if self._settings != cfg:
                    self._snapshot = None
                    self._redis = (RedisViewStore(cfg.redis_url, view_settings(cfg),
                                                  prefix=cfg.redis_prefix)
                                   if cfg.redis_url else None)
                self._settings = cfg
            self._settings_at = now
        assert self._settings is not None
        return self._settings

    async def snapshot(self) -> LiveSnapshot:
        """A snapshot at most ``snapshot_reuse_s`` old, or one at most twice that old
        while a newer one is fetched in the background (requests wait for a refresh only
        when there is no snapshot that young); one refresh at a time."""
        cfg = await self.settings()
        if not cfg.mqtt.enabled:
            raise _off()
        snap, reuse = self._snapshot, cfg.snapshot_reuse_s
        age = self._clock() - snap.taken_at if snap is not None else float("inf")
        if age <= reuse:
            return snap  # type: ignore[return-value]  # age is finite: snap is set
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._fetch())
            self._refreshing.add_done_callback(_retrieved)
        if snap is not None and reuse > 0 and age <= 2 * reuse:
            return snap
        return await asyncio.shield(self._refreshing)

    async def _fetch(self) -> LiveSnapshot:
        try:
            if self._redis is not None:
                snap = self._redis.snapshot(self._clock())
            else:
                snap = await asyncio.wait_for(self.ingest.snapshot(), INGEST_TIMEOUT_S)
        except ViewUnavailable as exc:
            raise ServiceUnavailable(f"{exc}; retry") from None
        except (RequestError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - the ingest replica is gone or stuck
            raise ServiceUnavailable(f"live network: the ingest replica does not answer "
                                     f"({type(exc).__name__}); retry") from None
        self._snapshot = snap
        return snap

    async def _usable(self) -> LiveSnapshot:
        snap = await self.snapshot()
        if not len(snap):
            raise ServiceUnavailable("live network: no telemetry has arrived yet (no nodes in "
                                     "the view); retry")
        return snap

    def _ref(self, snap: LiveSnapshot) -> SnapshotRef:
        return SnapshotRef(snap.taken_at, (self._clock() - snap.taken_at) * 1000, len(snap),
                           dict(snap.masked), "redis" if snap.source == "redis" else "ingest")

    # --- decisions ---------------------------------------------------------------------
    async def allocate(self, data: dict[str, Any], selected: tuple[str, ...] | None
                       ) -> LiveDecision | dict[str, Any]:
        req = parse(LiveAllocateRequest, data)
        snap = await self._usable()
        state = snap.state(_tasks([req.task]), [req.model])
        d = await self.api.decide(state, req.model, ROUTE)
        ref = self._ref(snap)
        if selected is not None:
            return {**{f: getattr(d, f) for f in selected}, "snapshot": ref}
        return LiveDecision(**{f: getattr(d, f) for f in DECISION_FIELDS}, snapshot=ref)

    async def allocate_batch(self, data: dict[str, Any], selected: tuple[str, ...] | None
                             ) -> LiveBatchDecisions:
        if "task" in data and "tasks" not in data:  # one task: a batch of one
            data = {**data, "tasks": [data["task"]]}
            del data["task"]
        req = parse(LiveBatchRequest, data)
        snap = await self._usable()
        batch = snap.state(_tasks(list(req.tasks)), [req.model] * len(req.tasks))
        cols = await self.api.decide_many(batch, req.model, BATCH_ROUTE)
        return LiveBatchDecisions(cols.decisions() if selected is None else cols.rows(selected),
                                  self._ref(snap))

    # --- GET /v1/network -----------------------------------------------------------------
    async def network(self) -> NetworkView:
        cfg = await self.settings()
        info = await self._ingest_info()
        if not cfg.mqtt.enabled:
            return NetworkView(False, None, None, cfg.stale_after_s, 0, 0, [], None, {}, info)
        snap = await self.snapshot()
        now = self._clock()
        nodes = [LiveNode(nid, int(row[len(METRICS)]),
                          dict(zip(METRICS, row[:len(METRICS)])), now - seen, seen, dev,
                          nid in snap.masked, snap.masked.get(nid), snap.extra.get(nid, {}))
                 for nid, row, seen, dev in zip(snap.node_ids, snap.values.tolist(),
                                                snap.last_seen.tolist(), snap.device_time)]
        edges = None
        if snap.edges is not None:
            edges = [(snap.node_ids[a], snap.node_ids[b]) for a, b in snap.edges.tolist()]
        return NetworkView(True, "redis" if snap.source == "redis" else "ingest", snap.taken_at,
                           cfg.stale_after_s, len(snap), len(snap.masked), nodes, edges,
                           await self._counts(), info)

    async def _counts(self) -> dict[str, Any]:
        try:
            if self._redis is not None:
                raw = self._redis.counts()
            else:
                raw = (await asyncio.wait_for(self.ingest.status(), INGEST_TIMEOUT_S)).counts
        except Exception:  # noqa: BLE001 - the view above is what matters
            return {}
        out: dict[str, Any] = {k: v for k, v in raw.items() if not k.startswith("rejected:")}
        out["rejected"] = {k.removeprefix("rejected:"): v for k, v in raw.items()
                           if k.startswith("rejected:")}
        return out

    async def _ingest_info(self) -> IngestInfo:
        try:
            st = await asyncio.wait_for(self.ingest.status(), INGEST_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - shown as unreachable
            return IngestInfo(False)
        sub = st.subscriber
        return IngestInfo(True, sub.connected if sub else None, sub.broker if sub else None,
                          sub.connections if sub else None, sub.last_error if sub else None,
                          st.store_errors, [asdict(r) for r in st.recent_rejections],
                          dict(st.requests))


class LocalIngest:
    """``IngestPort`` over a ``LiveNetwork`` in this process (tests, benchmarks, and the
    MqttIngest deployment's own methods)."""

    def __init__(self, network: LiveNetwork) -> None:
        self.network = network

    async def settings(self) -> LiveNetworkConfig:
        return self.network.cfg

    async def snapshot(self) -> LiveSnapshot:
        return self.network.snapshot()

    async def status(self) -> IngestStatus:
        return self.network.status()
