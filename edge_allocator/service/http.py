"""HTTP without a web framework: body parsing, routing, status codes, serialisation.

``FrontDoor.handle`` takes what a request is (method, path, headers, query, body) and
returns what the response is (status, headers, bytes). The Ray Serve ingress only
converts Starlette's request into that call and its result back, so every route, status
and error body is tested without a cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

import orjson
from isal import igzip
from msgspec import UNSET

from edge_allocator import __version__
from edge_allocator.responses import BatchDecisions, ErrorBody, ErrorDetail, Liveness
from edge_allocator.schema import RequestError, ServiceUnavailable
from edge_allocator.service.api import AllocatorApi
from edge_allocator.service.columns import DecisionColumns, parse_fields
from edge_allocator.service.docs import docs_pages
from edge_allocator.service.explain_api import ExplainApi, ExplainPort
from edge_allocator.service.explorer import ExplorerApi, Replicas
from edge_allocator.service.legacy import LegacyApi
from edge_allocator.service.live_api import LiveApi, is_live
from edge_allocator.service.observe import UNMATCHED_ROUTE
from edge_allocator.service.openapi import openapi_document
from edge_allocator.service.quota import QuotaExceeded
from edge_allocator.service.sample import sample_state
from edge_allocator.service.ui import ui_pages
from edge_allocator.typed_bodies import decode_batch_body, decode_state_body
from edge_allocator.wire import (
    JSON,
    MSGPACK,
    decode_msgpack,
    encode_msgpack,
    media_type,
    wants_msgpack,
)

log = logging.getLogger(__name__)
GZIP_MIN_BYTES = 1024
#: GET / DELETE /v1/nodes/{node_id}: the rest of the path is the node id.
NODES_PREFIX = "/v1/nodes/"
#: Seconds a client should wait before retrying a 503 of a not-ready replica.
RETRY_AFTER_S = 1

PostHandler = Callable[[dict[str, Any], Mapping[str, str]], Awaitable[Any]]


def _plain(handler: Callable[[dict[str, Any]], Awaitable[Any]]) -> PostHandler:
    """A POST handler that takes no query parameters."""
    async def call(data: dict[str, Any], query: Mapping[str, str]) -> Any:
        return await handler(data)
    return call
GetHandler = Callable[[Mapping[str, str]], Awaitable[Any]]
#: A POST handler on the raw body (bytes, is msgpack, query): its answer, or
#: NOT_DECODED when the body needs the dict path (``posts``) instead.
TypedHandler = Callable[[bytes, bool, Mapping[str, str]], Awaitable[Any]]
NOT_DECODED = object()


class HttpResponse(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


def parse_json(body: bytes, content_type: str | None, max_bytes: int) -> dict[str, Any]:
    """Bytes -> an object, JSON or msgpack by Content-Type, or a RequestError: 413 too
    large, 415 neither, 400 malformed, 422 not an object."""
    if len(body) > max_bytes:
        raise RequestError(413, f"body of {len(body)} bytes exceeds the limit of {max_bytes}")
    kind = media_type(content_type)
    if not body:
        raise RequestError(400, "empty body; send a JSON object")
    if kind == MSGPACK:
        data = decode_msgpack(body)
    else:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(422, f"body must be a JSON object, got {type(data).__name__}",
                           [{"loc": "", "msg": "expected an object"}])
    return data


def _encode(obj: Any, status: int, accept_encoding: str,
            headers: dict[str, str] | None = None, msgpack: bool = False) -> HttpResponse:
    if msgpack:
        body = encode_msgpack(obj)
        hdrs = {"content-type": MSGPACK, **(headers or {})}
    else:
        body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        hdrs = {"content-type": JSON, **(headers or {})}
    if len(body) >= GZIP_MIN_BYTES and "gzip" in accept_encoding:
        body = igzip.compress(body, compresslevel=1)  # ISA-L: standard gzip, 4x zlib's speed
        hdrs["content-encoding"] = "gzip"
        hdrs["vary"] = "accept-encoding"
    return HttpResponse(status, body, hdrs)


def _batch_fields(query: Mapping[str, str], body_fields: Any) -> tuple[str, ...] | None:
    """The batch's ``fields`` option: the query parameter, else the body key."""
    spec = query.get("fields") or body_fields
    if spec is not None and not isinstance(spec, str):
        raise RequestError(422, "fields: a comma-separated string, e.g. "
                           "'node_id,confidence'", [{"loc": "fields", "msg": "not a string"}])
    return parse_fields(spec)


def _batch_answer(cols: DecisionColumns, selected: tuple[str, ...] | None) -> Any:
    if selected is None:
        return BatchDecisions(cols.decisions())
    return {"decisions": cols.rows(selected)}


class MethodNotAllowed(RequestError):
    """405 on a route that exists for other methods; ``allow`` goes into the Allow
    header (RFC 9110)."""

    def __init__(self, method: str, path: str, allow: list[str]):
        super().__init__(405, f"{method} not allowed on {path}; use {allow}")
        self.method, self.path, self.allow = method, path, allow

    def __reduce__(self) -> tuple[Any, ...]:
        return (MethodNotAllowed, (self.method, self.path, self.allow))


class FrontDoor:
    """Routes of the v1 API and the original API over ``AllocatorApi``, and /docs."""

    def __init__(self, api: AllocatorApi, live: LiveApi | None = None,
                 replicas: Replicas | None = None,
                 explainer: ExplainPort | None = None) -> None:
        self.api = api
        self.live = live
        self.legacy = LegacyApi(api)
        self.explorer = ExplorerApi(api, replicas)
        self.explain = ExplainApi(api, explainer)
        self.pages = (docs_pages(), ui_pages())
        self.posts: dict[str, PostHandler] = {
            "/v1/allocate": self._allocate,
            "/v1/allocate/batch": self._allocate_batch,
            "/v1/feedback": _plain(api.feedback),
            "/v1/compare": _plain(self.explorer.compare),
            "/v1/explain": _plain(self.explain.explain),
            "/predict": _plain(self.legacy.predict),
            "/batch-predict": _plain(self.legacy.batch_predict),
            "/generate-mock-network": _plain(self.legacy.mock_network),
        }
        #: Routes whose usual bodies skip the dict: typed structs straight to columns.
        self.typed_posts: dict[str, TypedHandler] = {
            "/v1/allocate": self._allocate_typed,
            "/v1/allocate/batch": self._allocate_batch_typed,
        }
        self.gets: dict[str, GetHandler] = {
            "/v1/models": lambda q: api.models(),
            "/v1/batch-config": lambda q: api.chain.policy.batch_config(),
            "/v1/sample": self._sample,
            "/v1/network": lambda q: self._live().network(),
            "/v1/stats": self.explorer.stats,
            "/v1/decisions": self.explorer.decisions,
            "/v1/manifest": self.explorer.manifest,
            "/v1/artifact": self._artifact,
            "/healthz": self._liveness,
            "/openapi.json": self._openapi,
            "/health": lambda q: self.legacy.health(),
            "/models": lambda q: self.legacy.models(),
            "/": self._info,
        }

    async def _allocate(self, data: dict[str, Any], query: Mapping[str, str]) -> Any:
        """``?fields=node_id,confidence`` returns only those keys."""
        selected = parse_fields(query.get("fields"))
        if is_live(data):
            return await self._live().allocate(data, selected)
        d = await self.api.allocate(data)
        return d if selected is None else {f: getattr(d, f) for f in selected}

    async def _allocate_typed(self, body: bytes, msgpack: bool,
                              query: Mapping[str, str]) -> Any:
        state = decode_state_body(body, msgpack)
        if state is None:
            return NOT_DECODED
        selected = parse_fields(query.get("fields"))
        d = await self.api.decide(state, None, "/v1/allocate")
        return d if selected is None else {f: getattr(d, f) for f in selected}

    async def _allocate_batch(self, data: dict[str, Any], query: Mapping[str, str]) -> Any:
        """``fields`` as a query parameter or body key; per-node maps are not built
        unless selected."""
        selected = _batch_fields(query, data.get("fields"))
        if is_live(data):
            return await self._live().allocate_batch(data, selected)
        return _batch_answer(await self.api.allocate_columns(data), selected)

    async def _allocate_batch_typed(self, body: bytes, msgpack: bool,
                                    query: Mapping[str, str]) -> Any:
        decoded = decode_batch_body(body, msgpack)
        if decoded is None:
            return NOT_DECODED
        selected = _batch_fields(query, None if decoded.fields is UNSET else decoded.fields)
        cols = await self.api.decide_many(decoded.batch, decoded.model, "/v1/allocate/batch")
        return _batch_answer(cols, selected)

    def _live(self) -> LiveApi:
        if self.live is None:
            raise RequestError(422, "network: this service runs without the live network "
                               "(no MqttIngest deployment)", [{"loc": "network",
                                                              "msg": "live network absent"}])
        return self.live

    @staticmethod
    async def _liveness(query: Mapping[str, str]) -> Liveness:
        return Liveness()

    @staticmethod
    async def _sample(query: Mapping[str, str]) -> dict[str, Any]:
        import asyncio

        return await asyncio.to_thread(sample_state, query)

    @staticmethod
    async def _openapi(query: Mapping[str, str]) -> dict[str, Any]:
        return openapi_document(__version__)

    async def _info(self, query: Mapping[str, str]) -> Any:
        return self.legacy.info()

    async def _post(self, path: str, raw: bytes, ctype: str | None,
                    query: Mapping[str, str]) -> Any:
        """A POST route's answer: through its typed handler when it has one and the body
        suits it, else parsed to a dict (which words every error: 413, 415, 400, 422)."""
        typed = self.typed_posts.get(path)
        if typed is not None and raw and len(raw) <= self.api.cfg.max_body_bytes:
            out = await typed(raw, media_type(ctype) == MSGPACK, query)
            if out is not NOT_DECODED:
                return out
        return await self.posts[path](parse_json(raw, ctype, self.api.cfg.max_body_bytes),
                                      query)

    def _page(self, method: str, path: str, raw_path: str, accept: str) -> HttpResponse | None:
        """/docs, /ui/ and their files; None: not a page."""
        if method == "GET":
            for pages in self.pages:
                page = pages.get(path, raw_path, accept)
                if page is not None:
                    return HttpResponse(*page)
        return None

    async def _artifact(self, query: Mapping[str, str]) -> HttpResponse:
        image, media = await self.explorer.artifact(query)
        return HttpResponse(200, image, {"content-type": media,
                                         "cache-control": "private, max-age=60"})

    async def _legacy_model(self, method: str, path: str) -> Any:
        """POST /models/{name}/load and GET /models/{name} (the original API)."""
        if path.endswith("/load"):
            if method != "POST":
                raise MethodNotAllowed(method, path, ["POST"])
            return await self.legacy.load(path.removeprefix("/models/").removesuffix("/load"))
        if method != "GET":
            raise MethodNotAllowed(method, path, ["GET"])
        return self.legacy.model(path.removeprefix("/models/"))

    def _node(self, method: str, path: str) -> Any:
        """GET / DELETE /v1/nodes/{node_id}: a node's learned speed."""
        node_id = path.removeprefix(NODES_PREFIX)
        if path == NODES_PREFIX.rstrip("/"):  # /v1/nodes/ with an empty id (the fuzz found
            # it answered an undocumented 404 "no route"): the id is what is wrong
            if method not in ("GET", "DELETE"):
                raise MethodNotAllowed(method, path, ["DELETE", "GET"])
            raise RequestError(422, "node_id: empty; GET or DELETE /v1/nodes/{node_id}",
                               [{"loc": "node_id", "msg": "empty"}])
        if method == "GET":
            return self.api.node_speed(node_id)
        if method == "DELETE":
            return self.api.reset_node_speed(node_id)
        raise MethodNotAllowed(method, path, ["DELETE", "GET"])

    def route_of(self, method: str, path: str) -> str:
        """The route template a request matched, for metric tags (bounded)."""
        if path in self.posts or path in self.gets or path == "/readyz":
            return path
        if path.startswith("/models/") and path.endswith("/load"):
            return "/models/{name}/load"
        if method == "GET" and path.startswith("/models/"):
            return "/models/{name}"
        for page in ("/docs", "/ui"):
            if path == page or path.startswith(page + "/"):
                return page
        if path.startswith(NODES_PREFIX):
            return "/v1/nodes/{node_id}"
        return UNMATCHED_ROUTE

    async def handle(self, method: str, path: str, headers: Mapping[str, str],
                     query: Mapping[str, str], body: Callable[[], Awaitable[bytes]]
                     ) -> HttpResponse:
        """``path`` is relative to the app's route prefix; ``body`` is read only for
        POST routes (after auth, so an unauthenticated client cannot make us read it).
        /docs and its assets are public: static files, no data (the page asks for a
        token to fetch /openapi.json when tokens are set)."""
        raw_path, path = path, path.rstrip("/") or "/"
        accepted = headers.get("accept-encoding", "")
        # API answers are compressed only when the service is told to (gzip_responses)
        accept = accepted if self.api.cfg.gzip_responses else ""
        try:
            page = self._page(method, path, raw_path, accepted)
            if page is not None:
                return page
            caller = self.api.auth.check(headers.get("authorization"))
            if caller is not None:
                self.api.quota.take(caller)  # 429 + Retry-After over the token's rate
            if method == "POST" and path in self.posts:
                out = await self._post(path, await body(), headers.get("content-type"), query)
                return _encode(out, 200, accept, msgpack=wants_msgpack(headers.get("accept")))
            if method == "GET" and path == "/readyz":
                ready = await self.api.readiness()
                if ready.status == "ready":
                    return _encode(ready, 200, accept)
                return _encode(ready, 503, accept, {"retry-after": str(RETRY_AFTER_S)})
            if method == "GET" and path in self.gets:
                out = await self.gets[path](query)
                if isinstance(out, HttpResponse):  # not JSON (a plot)
                    return out
                return _encode(out, 200, accept)
            if path.startswith(NODES_PREFIX) or path == NODES_PREFIX.rstrip("/"):
                return _encode(self._node(method, path), 200, accept)
            if path.startswith("/models/"):
                return _encode(await self._legacy_model(method, path), 200, accept)
            allowed = sorted(m for m, table in (("POST", self.posts), ("GET", self.gets))
                             if path in table or (m == "GET" and path == "/readyz"))
            if allowed:
                raise MethodNotAllowed(method, path, allowed)
            raise RequestError(404, f"no route {method} {path}")
        except RequestError as err:
            return self._error(err, method, path, accept, headers.get("accept"))
        except Exception as exc:
            log.exception("internal error on %s %s", method, path)
            return self._error(RequestError(500, f"internal error ({type(exc).__name__})"),
                               method, path, accept, headers.get("accept"))

    def _error(self, err: RequestError, method: str, path: str, accept: str,
               media: str | None) -> HttpResponse:
        self.api.observer.error(err.status, self.route_of(method, path))
        self.api.stats.error(err.status)
        headers: dict[str, str] | None = None
        if isinstance(err, ServiceUnavailable | QuotaExceeded):
            headers = {"retry-after": str(err.retry_after_s)}
        elif isinstance(err, MethodNotAllowed):  # RFC 9110 15.5.6: a 405 lists what is
            headers = {"allow": ", ".join(err.allow)}
        details = [ErrorDetail(str(d.get("loc", "")), str(d.get("msg", ""))) for d in err.details]
        return _encode(ErrorBody(err.message, err.status, details), err.status, accept, headers,
                       msgpack=wants_msgpack(media))
