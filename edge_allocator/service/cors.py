"""CORS: Starlette's CORSMiddleware in front of ``FrontDoor.handle``.

The ingress takes a Starlette request rather than serving an ASGI app, so the
middleware runs here around a small ASGI app that calls ``handle``: it answers
preflight requests itself (before auth, which browsers do not send with them) and adds
the CORS headers to every other response, errors included. Built only when
``cors.allow_origins`` is set; otherwise the ingress calls ``handle`` directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from edge_allocator.config import CorsConfig

Handle = Callable[[str, str, Mapping[str, str], Mapping[str, str],
                   Callable[[], Awaitable[bytes]]], Awaitable[Any]]


class CorsFront:
    """An ASGI app: CORS, then ``handle`` (whose result has status, body, headers)."""

    def __init__(self, cfg: CorsConfig, handle: Handle) -> None:
        self.handle = handle
        self.app = CORSMiddleware(
            self._inner, allow_origins=cfg.allow_origins, allow_methods=cfg.allow_methods,
            allow_headers=cfg.allow_headers, allow_credentials=cfg.allow_credentials,
            expose_headers=cfg.expose_headers, max_age=cfg.max_age_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def _inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        root = scope.get("root_path", "")  # the app's route prefix under Serve
        out = await self.handle(request.method.upper(), request.url.path.removeprefix(root),
                                request.headers, request.query_params, request.body)
        await send({"type": "http.response.start", "status": out.status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1"))
                                for k, v in out.headers.items()]})
        await send({"type": "http.response.body", "body": out.body})

    async def respond(self, scope: Scope, receive: Receive) -> tuple[int, bytes, dict[str, str]]:
        """The response to one request as (status, body, headers); a header the
        middleware repeats (``vary``) is joined with commas."""
        status = 500
        chunks: list[bytes] = []
        headers: dict[str, str] = {}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", []):
                    name, value = k.decode("latin-1").lower(), v.decode("latin-1")
                    headers[name] = f"{headers[name]}, {value}" if name in headers else value
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks), headers


def cors_front(cfg: CorsConfig, handle: Handle) -> CorsFront | None:
    """The CORS layer ``cfg`` asks for, or None when CORS is off."""
    return CorsFront(cfg, handle) if cfg.enabled else None
