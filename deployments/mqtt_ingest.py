"""MqttIngest: subscribes to the MQTT broker and keeps the live network view.

All behaviour lives in ``edge_allocator.live`` (``LiveNetwork``); this class starts it
from ``user_config`` (``edge_allocator.config.LiveNetworkConfig``; off without an MQTT
URL) and answers the ingress replicas: ``settings`` (where the view is and how it
ages), ``snapshot`` (when the view is kept here rather than in Redis) and ``status``.
With ``mqtt.request_topic`` it also answers tasks published over MQTT, each decided by
the Ingress (``Ingress.mqtt_request``: POST /v1/allocate with ``network: live``).
One replica: each replica would be one more subscriber applying every message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.remote import call
from edge_allocator.config import LiveNetworkConfig
from edge_allocator.live.network import IngestStatus, LiveNetwork
from edge_allocator.live.view import LiveSnapshot

log = logging.getLogger(__name__)
#: How long an MQTT request may wait for its decision.
REQUEST_TIMEOUT_S = 10.0


@serve.deployment
class MqttIngest:
    def __init__(self) -> None:
        self.network: LiveNetwork | None = None
        self._ingress: DeploymentHandle[Any] | None = None
        self._app = serve.get_replica_context().app_name  # here: not on a responder thread
        self._loop: asyncio.AbstractEventLoop | None = None

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        self._loop = asyncio.get_running_loop()  # the replica's: handle calls happen on it
        self._configure(user_config)

    def _configure(self, user_config: dict[str, Any]) -> None:
        """Validates ``user_config`` (an unknown key fails the deployment, naming it); a
        changed config replaces the subscriber (and the view, unless it is in Redis)."""
        cfg = LiveNetworkConfig.model_validate(user_config)
        if self.network is not None:
            if self.network.cfg == cfg:
                return
            self.network.stop()
        self.network = LiveNetwork(cfg)
        self.network.answer_requests(self._decide)  # with mqtt.request_topic set
        self.network.start()

    def _decide(self, body: bytes, authorization: str | None) -> tuple[int, bytes]:
        """An MQTT request, decided by the app's Ingress as POST /v1/allocate. Runs on a
        responder thread, which waits while the call runs on the replica's loop."""
        if self._loop is None:
            raise RuntimeError("MqttIngest: not configured yet")
        future = asyncio.run_coroutine_threadsafe(self._ask(body, authorization), self._loop)
        return future.result(REQUEST_TIMEOUT_S)

    async def _ask(self, body: bytes, authorization: str | None) -> tuple[int, bytes]:
        if self._ingress is None:
            self._ingress = serve.get_deployment_handle("Ingress", self._app)
        result: tuple[int, bytes] = await call(self._ingress.mqtt_request.remote(
            body, authorization))
        return result

    def _net(self) -> LiveNetwork:
        if self.network is None:  # deployed without user_config: off
            self._configure({})
        assert self.network is not None
        return self.network

    def settings(self) -> LiveNetworkConfig:
        return self._net().cfg

    def snapshot(self) -> LiveSnapshot:
        return self._net().snapshot()

    def status(self) -> IngestStatus:
        return self._net().status()

    def __del__(self) -> None:
        if self.network is not None:
            self.network.stop()


class RemoteIngest:
    """``IngestPort`` (service/live_api.py) over the MqttIngest handle."""

    def __init__(self, handle: DeploymentHandle[Any]) -> None:
        self.handle = handle

    async def settings(self) -> LiveNetworkConfig:
        result: LiveNetworkConfig = await call(self.handle.settings.remote())
        return result

    async def snapshot(self) -> LiveSnapshot:
        result: LiveSnapshot = await call(self.handle.snapshot.remote())
        return result

    async def status(self) -> IngestStatus:
        result: IngestStatus = await call(self.handle.status.remote())
        return result
