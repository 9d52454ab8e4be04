"""The endpoints behind the decision explorer (``/ui/``) that the v1 API lacked: a
side-by-side comparison, the replica's counters, the decision log read back, and each
served version's manifest and plots. Each checks its query parameters and answers a 4xx
that names the parameter at fault."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from edge_allocator.explorer_responses import (
    FeedbackView,
    LiveStats,
    LoggedDecision,
    ModelManifest,
    PolicyComparison,
    RecentDecisions,
)
from edge_allocator.runtime.artifacts import MANIFEST
from edge_allocator.schema import RequestError
from edge_allocator.service.api import AllocatorApi
from edge_allocator.service.compare import compare
from edge_allocator.store import StoreUnavailable
from edge_allocator.store.browse import DecisionRow

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
_HEX_PREFIX = re.compile(r"^[0-9a-fA-F]{1,32}\Z")
_DIGITS = re.compile(r"^[0-9]{1,6}\Z")
#: Files of an artifact folder the page may fetch (plots), with their media types.
PLOT_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}
#: A plot's file name: one path segment, no leading dot (the document's pattern too).
PLOT_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,122}\.(png|svg)$"
_PLOT_NAME = re.compile(PLOT_NAME.replace("$", "\\Z"))
Replicas = Callable[[], Awaitable[dict[str, dict[str, int]] | None]]


def bad(param: str, msg: str) -> RequestError:
    return RequestError(422, f"{param}: {msg}", [{"loc": param, "msg": msg}])


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit", str(DEFAULT_LIMIT))
    if not _DIGITS.match(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad("limit", f"an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _logged(r: DecisionRow) -> LoggedDecision:
    return LoggedDecision(
        r.decision_id, r.created_at.isoformat(), r.model_name, r.model_version, r.backend,
        r.node_id, r.confidence, r.latency_ms, r.cached, r.node_count,
        [FeedbackView(f.received_at.isoformat(), f.completion_ms, f.success, f.energy_j)
         for f in r.feedback])


class ExplorerApi:
    """``replicas`` reports replica counts per deployment (the deployment layer asks Ray
    Serve); None outside Serve."""

    def __init__(self, api: AllocatorApi, replicas: Replicas | None = None) -> None:
        self.api = api
        self.replicas = replicas

    async def compare(self, data: dict[str, Any]) -> PolicyComparison:
        return await compare(data, self.api.chain, self.api.router)

    async def stats(self, query: Mapping[str, str]) -> LiveStats:
        replicas = await self.replicas() if self.replicas is not None else None
        stats = self.api.stats.snapshot(self.api.router.weights(), replicas)
        targets = [(name, t.version, t.share) for name in self.api.cfg.shadow
                   if (t := self.api.router.shadow_of(name)) is not None]
        stats.shadow = self.api.shadow.traffic(targets)
        return stats

    async def decisions(self, query: Mapping[str, str]) -> RecentDecisions:
        """``limit`` (1..500, default 50) and ``decision_id``: a hex prefix of the ids."""
        limit = _limit(query)
        prefix = query.get("decision_id")
        if prefix is not None:
            if not _HEX_PREFIX.match(prefix):
                raise bad("decision_id", "1 to 32 hexadecimal digits (a decision id or its "
                          "beginning)")
            prefix = prefix.lower()
        log = self.api.decision_log
        if log is None:
            raise RequestError(503, "the decision log is off (database_url is not set)")
        try:
            rows = await asyncio.to_thread(log.recent, limit, prefix)
        except StoreUnavailable as err:
            raise RequestError(503, str(err)) from None
        return RecentDecisions([_logged(r) for r in rows])

    def _served(self, query: Mapping[str, str]) -> tuple[str, str]:
        """(model, version) of the query; only versions this service routes to or scores
        in shadow (the Models view shows both: /v1/models lists every loaded version)."""
        served = self.api.router.versions_in_use() + self.api.router.shadow_versions()
        model, version = query.get("model", ""), query.get("version", "")
        if model not in {m for m, _ in served}:
            raise RequestError(404, f"model {model!r} is not served; served: "
                               f"{sorted({m for m, _ in served})}",
                               [{"loc": "model", "msg": "not served"}])
        if (model, version) not in served:
            raise RequestError(404, f"version {version!r} of {model!r} is not served; served: "
                               f"{[v for m, v in served if m == model]}",
                               [{"loc": "version", "msg": "not served"}])
        return model, version

    async def manifest(self, query: Mapping[str, str]) -> ModelManifest:
        model, version = self._served(query)
        folder = self.api.router.models_dir / model / version
        raw = json.loads((folder / MANIFEST).read_text())
        plots = sorted(p.name for p in folder.iterdir()
                       if p.suffix in PLOT_TYPES and _PLOT_NAME.match(p.name))
        return ModelManifest(
            name=model, version=version, kind=str(raw.get("kind", "")),
            architecture=raw.get("architecture", {}), training=raw.get("training", {}),
            evaluation=raw.get("evaluation", []), files=raw.get("files", {}), plots=plots)

    async def artifact(self, query: Mapping[str, str]) -> tuple[bytes, str]:
        """A plot of a served version's artifact folder: (bytes, media type)."""
        model, version = self._served(query)
        name = query.get("file", "")
        if not _PLOT_NAME.match(name):
            raise bad("file", f"a plot's file name ending in {sorted(PLOT_TYPES)}")
        media = PLOT_TYPES[name[name.rfind("."):]]
        path = self.api.router.models_dir / model / version / name
        if not path.is_file():
            raise RequestError(404, f"file {name!r} is not in {model} v{version}'s artifact "
                               "folder", [{"loc": "file", "msg": "no such file"}])
        return path.read_bytes(), media
