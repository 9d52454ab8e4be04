"""Ingress: the HTTP front door. Routes, auth, parsing, cache, then chains the stages.

The chain passes DeploymentResponses from one stage straight into the next without
awaiting them here, so graph tensors travel GraphBuilder -> PolicyInference ->
ResponseAssembler through the object store and the ingress awaits once. With
``separate_stages: false`` graph building and assembly run in this process instead (one
hop less per request; same responses).
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import logging
import os
import time
import uuid
from typing import Any

import orjson
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from deployments.metrics import IngressMetrics
from deployments.policy_inference import BatchedPolicy
from edge_allocator import __version__
from edge_allocator.schema import (
    AllocateRequest,
    BatchAllocateRequest,
    FeedbackRequest,
    LegacyBatchRequest,
    LegacyPredictRequest,
    RequestError,
    parse,
)
from edge_allocator.service.config import ServiceConfig
from edge_allocator.service.frontend import Frontend
from edge_allocator.service.http import legacy_prediction, legacy_to_v1, openapi_document, parse_json
from edge_allocator.service.stages import AssembleMeta, GraphStage, ModelKey, ResponseStage
from edge_allocator.tracing import carrier, configure, span

log = logging.getLogger("ray.serve")
GZIP_MIN_BYTES = 1024
RETRY_AFTER_S = "1"
NODE_TYPE_NAMES = ("gateway", "edge", "cloud")


def _request_error(exc: BaseException) -> RequestError | None:
    """The client error inside an exception that crossed a Ray process boundary."""
    if isinstance(exc, RequestError):
        return exc
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, RequestError) else None


class _Overloaded(Exception):
    pass


@serve.deployment
class Ingress:
    def __init__(self, policy: DeploymentHandle | None, graph: DeploymentHandle | None = None,
                 assembler: DeploymentHandle | None = None) -> None:
        self.policy = policy
        self.local_policy = BatchedPolicy() if policy is None else None
        self.graph = graph
        self.assembler = assembler
        self.local_graph = GraphStage() if graph is None else None
        self.local_assembler = ResponseStage() if assembler is None else None
        self.frontend: Frontend | None = None
        self.metrics = IngressMetrics()
        configure()
        self.replica_tag = f"{os.getpid()}"
        self.routes = {
            ("POST", "/v1/allocate"): self.allocate,
            ("POST", "/v1/allocate/batch"): self.allocate_batch,
            ("POST", "/v1/feedback"): self.feedback,
            ("GET", "/v1/models"): self.models,
            ("GET", "/v1/sample"): self.sample,
            ("GET", "/healthz"): self.healthz,
            ("GET", "/readyz"): self.readyz,
            ("GET", "/openapi.json"): self.openapi,
            ("POST", "/predict"): self.legacy_predict,
            ("POST", "/batch-predict"): self.legacy_batch,
            ("GET", "/health"): self.legacy_health,
            ("GET", "/models"): self.legacy_models,
            ("GET", "/v1/batch-config"): self.batch_config,
        }

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        cfg = ServiceConfig.model_validate(user_config)
        if self.local_policy is not None:
            self.local_policy.reconfigure(cfg.inference or {})
        if self.frontend is None:
            self.frontend = Frontend(cfg, replica_tag=self.replica_tag)
        else:
            self.frontend.reconfigure(cfg)

    def _front(self) -> Frontend:
        if self.frontend is None:  # no user_config given: embedded defaults
            self.reconfigure({})
        assert self.frontend is not None
        return self.frontend

    async def _policy(self, method: str, *args: Any) -> Any:
        """Call the policy, in-process (inline_inference) or on its deployment."""
        if self.local_policy is not None:
            return await getattr(self.local_policy, method)(*args)
        assert self.policy is not None
        return await self._call(getattr(self.policy, method).remote(*args))

    # --- HTTP plumbing ------------------------------------------------------------------------
    async def __call__(self, request: Request) -> Response:
        root = request.scope.get("root_path", "")  # the app's route_prefix under Serve
        path = request.url.path.removeprefix(root).rstrip("/") or "/"
        method = request.method.upper()
        handler = self.routes.get((method, path))
        try:
            front = self._front()
            front.auth.check(request.headers.get("authorization"))
            if handler is None and method == "GET" and path.startswith("/models/"):
                return self._json(request, self.legacy_model(path.removeprefix("/models/")))
            if handler is None:
                allowed = sorted(m for m, p in self.routes if p == path)
                if allowed:
                    raise RequestError(405, f"{method} not allowed on {path}; use {allowed}")
                raise RequestError(404, f"no route {method} {path}")
            if method == "POST":
                body = await request.body()
                data = parse_json(body, request.headers.get("content-type"), front.cfg.max_body_bytes)
                result = await handler(data)
            else:
                result = await handler(request)
            if isinstance(result, Response):
                return result
            return self._json(request, result)
        except _Overloaded as exc:
            self.metrics.errors.inc(tags={"status": "503", "route": path})
            return self._json(request, {"error": str(exc), "status": 503}, 503,
                              {"Retry-After": RETRY_AFTER_S})
        except Exception as exc:  # noqa: BLE001 - every client error becomes a 4xx below
            err = _request_error(exc)
            if err is None:
                log.exception("internal error on %s %s", method, path)
                err = RequestError(500, f"internal error ({type(exc).__name__})")
            self.metrics.errors.inc(tags={"status": str(err.status), "route": path})
            return self._json(request, err.to_json(), err.status)

    @staticmethod
    def _json(request: Request, obj: Any, status: int = 200,
              headers: dict[str, str] | None = None) -> Response:
        body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        hdrs = dict(headers or {})
        if len(body) >= GZIP_MIN_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            hdrs["content-encoding"] = "gzip"
            hdrs["vary"] = "accept-encoding"
        return Response(body, status_code=status, media_type="application/json", headers=hdrs)

    async def _call(self, response: Any) -> Any:
        """Await a stage; overload and dead replicas become 503 with Retry-After."""
        try:
            return await response
        except BackPressureError as exc:
            raise _Overloaded(f"overloaded: {exc}; retry later") from None
        except Exception as exc:
            if _request_error(exc) is not None:
                raise
            name = type(exc).__name__
            if "ActorDied" in name or "ActorUnavailable" in name or "Unavailable" in name \
                    or "RayActorError" in name:
                raise _Overloaded(f"a replica was lost mid-request ({name}); retry") from None
            raise

    # --- decisions -----------------------------------------------------------------------------
    async def _decide(self, req: AllocateRequest, payload: dict[str, Any],
                      model: str | None) -> dict[str, Any]:
        front = self._front()
        t0 = time.perf_counter()
        key = ModelKey(*front.router.pick(model or req.model))
        ckey = front.cache_key(payload, key)
        hit = front.cached(ckey)
        if hit is not None:  # a new decision (own id, logged) that reuses the answer
            self.metrics.cache.inc(tags={"result": "hit"})
            hit["decision_id"] = uuid.uuid4().hex
            hit["batch_size"] = 0  # no model call was made for it
            hit["latency_ms"] = (time.perf_counter() - t0) * 1000
            front.record(hit, req, ckey)
            self._count(hit, req, "/v1/allocate", t0)
            return hit
        self.metrics.cache.inc(tags={"result": "miss"})
        decision_id = uuid.uuid4().hex
        with span("ingress.allocate", decision_id=decision_id, model=key.name,
                  version=key.version):
            tc = carrier()
            meta = AssembleMeta(key, front.cfg.backend, 1, t0, (decision_id,), tc)
            if self.graph is not None and self.assembler is not None:
                state = self.graph.prepare.remote(req, tc)
                scored = self.policy.infer_one.remote(key, state, tc)
                resp = await self._call(self.assembler.assemble.remote(state, scored, meta))
            else:
                assert self.local_graph is not None and self.local_assembler is not None
                state = self.local_graph.prepare(req, tc)
                scores, batch, node = await self._policy("infer_one", key, state, tc)
                resp = self.local_assembler.assemble(state, scores, meta._replace(batch_size=batch))
                resp["inference_node"] = node
        resp["latency_ms"] = (time.perf_counter() - t0) * 1000
        front.remember(ckey, resp)
        front.record(resp, req, ckey)
        self._count(resp, req, "/v1/allocate", t0)
        return resp

    async def _decide_many(self, states: list[AllocateRequest], payloads: list[dict[str, Any]],
                           model: str | None, route: str) -> list[dict[str, Any]]:
        """``payloads``: each state as sent, keyed for the log exactly as /v1/allocate
        keys it (and without re-serialising the validated model)."""
        front = self._front()
        t0 = time.perf_counter()
        key = ModelKey(*front.router.pick(model or states[0].model))
        ids = tuple(uuid.uuid4().hex for _ in states)
        with span("ingress.allocate_batch", model=key.name, version=key.version,
                  states=len(states)):
            tc = carrier()
            meta = AssembleMeta(key, front.cfg.backend, len(states), t0, ids, tc)
            if self.graph is not None and self.assembler is not None:
                prepared = self.graph.prepare_many.remote(states, tc)
                scores = self.policy.infer_many.remote(key, prepared, tc)
                out = await self._call(self.assembler.assemble_many.remote(prepared, scores, meta))
            else:
                assert self.local_graph is not None and self.local_assembler is not None
                prepared = self.local_graph.prepare_many(states, tc)
                scores = await self._policy("infer_many", key, prepared, tc)
                out = self.local_assembler.assemble_many(prepared, scores, meta)
        elapsed = (time.perf_counter() - t0) * 1000
        counts: collections.Counter[str] = collections.Counter()
        for resp, req, payload in zip(out, states, payloads):
            resp["latency_ms"] = elapsed
            counts[NODE_TYPE_NAMES[req.nodes[resp["node_index"]].node_type]] += 1
            if front.decision_log is not None:  # the request hash is only for the log
                front.record(resp, req, front.cache_key(payload, key))
        self.metrics.latency_ms.observe(elapsed, tags={"model": key.name, "route": route})
        for node_type, n in counts.items():  # one metric update per tag set, not per state
            self.metrics.decisions.inc(n, tags={"model": key.name, "version": key.version,
                                                "backend": front.cfg.backend,
                                                "node_type": node_type, "cached": "false"})
        return out

    def _count(self, resp: dict[str, Any], req: AllocateRequest, route: str | None,
               t0: float) -> None:
        m = resp["model"]
        node_type = NODE_TYPE_NAMES[req.nodes[resp["node_index"]].node_type]
        self.metrics.decisions.inc(tags={"model": m["name"], "version": m["version"],
                                         "backend": m["backend"], "node_type": node_type,
                                         "cached": str(resp["cached"]).lower()})
        if route:
            self.metrics.latency_ms.observe((time.perf_counter() - t0) * 1000,
                                            tags={"model": m["name"], "route": route})

    async def allocate(self, data: dict[str, Any]) -> dict[str, Any]:
        req = parse(AllocateRequest, data)
        return await self._decide(req, data, None)

    async def allocate_batch(self, data: dict[str, Any]) -> dict[str, Any]:
        req = parse(BatchAllocateRequest, data)
        return {"decisions": await self._decide_many(req.states, data["states"], req.model,
                                                     "/v1/allocate/batch")}

    async def feedback(self, data: dict[str, Any]) -> dict[str, Any]:
        fb = parse(FeedbackRequest, data)
        out = await asyncio.to_thread(self._front().feedback, fb)
        self.metrics.feedback.inc(tags={"success": str(fb.success).lower()})
        if fb.completion_ms is not None:
            self.metrics.feedback_completion_ms.observe(fb.completion_ms)
        return out

    # --- the original AI Edge Allocator API ------------------------------------------------------
    def _kind(self, name: str, version: str) -> str:
        return self._front().router.kind(name, version)

    async def legacy_predict(self, data: dict[str, Any]) -> dict[str, Any]:
        req = parse(LegacyPredictRequest, data)
        v1 = legacy_to_v1(req.network_state, req.model_type)
        areq = parse(AllocateRequest, v1)
        resp = await self._decide(areq, v1, req.model_type)
        kind = self._kind(resp["model"]["name"], resp["model"]["version"])
        return legacy_prediction(resp, kind, len(areq.nodes))

    async def legacy_batch(self, data: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        req = parse(LegacyBatchRequest, data)
        payloads = [legacy_to_v1(s, req.model_type) for s in req.network_states]
        states = [parse(AllocateRequest, p) for p in payloads]
        out = await self._decide_many(states, payloads, req.model_type, "/batch-predict")
        kind = self._kind(out[0]["model"]["name"], out[0]["model"]["version"])
        return {
            "predictions": [legacy_prediction(r, kind, len(s.nodes)) for r, s in zip(out, states)],
            "total_processing_time_ms": (time.perf_counter() - t0) * 1000,
        }

    async def legacy_health(self, request: Request) -> dict[str, Any]:
        front = self._front()
        loaded = {n: True for n in front.router.names()}
        return {"status": "healthy", "version": __version__, "models_loaded": loaded,
                "uptime_seconds": time.time() - front.started_at}

    async def legacy_models(self, request: Request) -> dict[str, Any]:
        described = await self._policy("describe")
        out: dict[str, Any] = {}
        for d in described:
            out.setdefault(d["name"], {"name": d["name"], "versions": [], "type": d["kind"],
                                       "backend": d["backend"], "max_nodes": d["max_nodes"]})
            out[d["name"]]["versions"].append(d["version"])
        return out

    def legacy_model(self, name: str) -> dict[str, Any]:
        front = self._front()
        if name not in front.router.names():
            raise RequestError(404, f"model {name!r} is not served; available: {front.router.names()}")
        versions = [v for n, v in front.router.versions_in_use() if n == name]
        return {"name": name, "versions": versions, "type": self._kind(name, versions[-1]),
                "default": name == front.cfg.default_model}

    # --- operations -----------------------------------------------------------------------------
    async def models(self, request: Request) -> dict[str, Any]:
        front = self._front()
        described = await self._policy("describe")
        return {"default_model": front.cfg.default_model,
                "routing": {n: front.cfg.models[n].model_dump() for n in front.router.names()},
                "models": described}

    async def sample(self, request: Request) -> dict[str, Any]:
        from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig

        q = request.query_params
        scenario = q.get("scenario", "synthetic")
        if scenario not in ("synthetic", "melbourne"):
            raise RequestError(422, "scenario: use 'synthetic' or 'melbourne'",
                               [{"loc": "scenario", "msg": "unknown scenario"}])
        try:
            nodes = int(q.get("nodes", "20"))
            seed = int(q.get("seed", "0"))
        except ValueError:
            raise RequestError(422, "nodes and seed must be integers") from None
        if not 5 <= nodes <= 1000:
            raise RequestError(422, "nodes: must be between 5 and 1000",
                               [{"loc": "nodes", "msg": "out of range"}])
        env = EdgeAllocationEnv(EnvConfig(scenario, min_nodes=nodes, max_nodes=nodes))
        await asyncio.to_thread(env.reset, seed=seed)
        return env.request_json()

    async def check_health(self) -> None:
        """Serve's health check: with the policy in-process, the model must answer."""
        if self.local_policy is not None:
            await self.local_policy.check_health()

    async def healthz(self, request: Request) -> dict[str, Any]:
        return {"status": "ok"}

    async def readyz(self, request: Request) -> Response:
        try:
            front = self._front()
            described = await asyncio.wait_for(self._policy("describe"), 5.0)
            failures = await asyncio.wait_for(self._policy("failures"), 5.0)
            missing = [f"{n} v{v}" for n, v in front.router.versions_in_use()
                       if not any(d["name"] == n and d["version"] == v for d in described)]
            if failures or missing:
                why = "; ".join(f"{k}: {v}" for k, v in failures.items())
                raise RuntimeError(f"models not loaded: {missing}. {why}")
        except Exception as exc:  # noqa: BLE001 - readiness reports why, whatever it is
            err = _request_error(exc)
            reason = err.message if err else f"{type(exc).__name__}: {exc}"
            return Response(orjson.dumps({"status": "not ready", "reason": reason[:2000]}),
                            status_code=503, media_type="application/json",
                            headers={"Retry-After": RETRY_AFTER_S})
        return Response(orjson.dumps({"status": "ready", "models": described}),
                        media_type="application/json")

    async def openapi(self, request: Request) -> dict[str, Any]:
        return openapi_document(__version__)

    async def batch_config(self, request: Request) -> dict[str, Any]:
        return await self._policy("batch_config")

    def __del__(self) -> None:
        if self.frontend is not None:
            self.frontend.close()
