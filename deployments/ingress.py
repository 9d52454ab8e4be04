"""Ingress: the HTTP front door as a deployment.

All behaviour lives in ``edge_allocator.service`` (``FrontDoor`` over ``AllocatorApi``);
this class only picks the chain of stages once, from what ``app.py`` bound:

* a GraphBuilder and a ResponseAssembler handle: every stage is its own deployment
  (``SeparateStages``);
* only a PolicyInference handle: graphs and responses are made here, the policy runs
  on its replicas (``StagesHere`` + ``RemotePolicy``; serve_config.gpu.yaml's composition);
* ``inline``: the policy runs here too, with the same dynamic batching
  (``inline_inference``; the PolicyInference handle is then unused).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from deployments.metrics import RayObserver
from deployments.mqtt_ingest import RemoteIngest
from deployments.policy_inference import BatchedPolicy
from deployments.remote import RemoteExplainer, RemotePolicy, SeparateStages
from edge_allocator.config import ServiceConfig
from edge_allocator.grpc import edge_allocator_pb2 as pb
from edge_allocator.runtime import heap_watch
from edge_allocator.runtime.gc_tuning import tune_gc
from edge_allocator.service.api import AllocatorApi
from edge_allocator.service.chain import Chain, StagesHere
from edge_allocator.service.cors import CorsFront, cors_front
from edge_allocator.service.grpc_api import GrpcFrontDoor, ServicerContext
from edge_allocator.service.http import FrontDoor
from edge_allocator.service.live_api import LiveApi
from edge_allocator.tracing import configure

log = logging.getLogger(__name__)
#: How long GET /v1/stats reuses Serve's replica counts (each read asks the controller).
REPLICAS_TTL_S = 5.0


class ServeReplicas:
    """Replicas per deployment by state, from Serve's controller (``serve.status()``),
    for the explorer's Live view; None when the controller does not answer."""

    def __init__(self) -> None:
        self._at = -REPLICAS_TTL_S
        self._last: dict[str, dict[str, int]] | None = None

    async def __call__(self) -> dict[str, dict[str, int]] | None:
        if time.monotonic() - self._at < REPLICAS_TTL_S:
            return self._last
        try:
            status = await asyncio.to_thread(serve.status)
            self._last = {name: {str(getattr(k, "value", k)): int(n)
                                 for k, n in dep.replica_states.items()}
                          for app in status.applications.values()
                          for name, dep in app.deployments.items()}
        except Exception as exc:  # noqa: BLE001 - the counts are optional; say why once
            log.warning("serve.status() failed: %s: %s", type(exc).__name__, exc)
            self._last = None
        self._at = time.monotonic()
        return self._last


@serve.deployment
class Ingress:
    def __init__(self, policy: DeploymentHandle[Any],
                 graph: DeploymentHandle[Any] | None = None,
                 assembler: DeploymentHandle[Any] | None = None, inline: bool = False,
                 ingest: DeploymentHandle[Any] | None = None,
                 explainer: DeploymentHandle[Any] | None = None) -> None:
        configure()
        heap_watch.start_from_env("ingress")  # off unless the soak asks for it
        self.local_policy = BatchedPolicy() if inline else None
        self.chain: Chain
        if self.local_policy is not None:
            self.chain = StagesHere(self.local_policy)
        elif graph is not None and assembler is not None:
            self.chain = SeparateStages(graph, policy, assembler)
        else:
            self.chain = StagesHere(RemotePolicy(policy))
        self.observer = RayObserver()
        self.door: FrontDoor | None = None
        self.ingest = RemoteIngest(ingest) if ingest is not None else None  # live network
        # /v1/explain's attributions (torch) on their own replicas; unbound: in-process
        self.explainer = RemoteExplainer(explainer) if explainer is not None else None
        self.cors: CorsFront | None = None
        self.grpc = GrpcFrontDoor(lambda: self._door().api)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Validates ``user_config`` (an unknown key fails the deployment, naming it)."""
        cfg = ServiceConfig.model_validate(user_config)
        if self.local_policy is not None:
            self.local_policy.reconfigure(cfg.policy())
        if self.door is None:
            api = AllocatorApi(cfg, self.chain, self.observer, replica_tag=str(os.getpid()))
            self.door = FrontDoor(api, LiveApi(api, self.ingest) if self.ingest else None,
                                  replicas=ServeReplicas(), explainer=self.explainer)
        else:
            self.door.api.reconfigure(cfg)
        self.cors = cors_front(cfg.cors, self.door.handle)  # None: CORS off (the default)
        if self.local_policy is None:  # inline, BatchedPolicy.reconfigure has done it
            tune_gc()  # after the stores are set up: they are never scanned again

    def _door(self) -> FrontDoor:
        if self.door is None:  # deployed without user_config: embedded defaults
            self.reconfigure({})
        assert self.door is not None
        return self.door

    async def __call__(self, request: Request) -> Response:
        door = self._door()
        if self.cors is not None:  # Starlette's CORSMiddleware, then the same handle()
            status, body, headers = await self.cors.respond(request.scope, request.receive)
            return Response(body, status_code=status, headers=headers)
        root = request.scope.get("root_path", "")  # the app's route_prefix under Serve
        # the whole request, body read to answer encoded: shadow scoring waits meanwhile
        with door.api.shadow.live_request():
            out = await door.handle(
                request.method.upper(), request.url.path.removeprefix(root),
                request.headers, request.query_params, request.body)
        return Response(out.body, status_code=out.status, headers=out.headers)

    # gRPC (edge_allocator/grpc/edge_allocator.proto): Serve calls the method named as the RPC
    async def Allocate(self, request: pb.AllocateRequest,  # noqa: N802
                       grpc_context: ServicerContext) -> pb.Decision:
        return await self.grpc.allocate(request, grpc_context)

    async def AllocateBatch(self, request: pb.BatchAllocateRequest,  # noqa: N802
                            grpc_context: ServicerContext) -> pb.BatchDecisions:
        return await self.grpc.allocate_batch(request, grpc_context)

    async def mqtt_request(self, body: bytes, authorization: str | None) -> tuple[int, bytes]:
        """A task that arrived over MQTT (MqttIngest's request topic), answered as POST
        /v1/allocate: (HTTP status, JSON body)."""
        headers = {"content-type": "application/json"}
        if authorization is not None:
            headers["authorization"] = authorization

        async def read() -> bytes:
            return body

        out = await self._door().handle("POST", "/v1/allocate", headers, {}, read)
        return out.status, out.body

    async def check_health(self) -> None:
        """Serve's health check: with the policy in-process, the model must answer."""
        if self.local_policy is not None:
            await self.local_policy.check_health()

    def __del__(self) -> None:
        if self.door is not None:
            self.door.api.close()
