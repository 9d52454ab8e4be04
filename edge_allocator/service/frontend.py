"""What the ingress does besides calling stages: auth, parsing and validation, model
routing, the decision cache, the decision log and feedback. Shared by the Ray Serve
ingress and the in-process service, so both behave identically."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from edge_allocator.cache import DecisionCache, make_cache, request_key
from edge_allocator.schema import NODE_FIELDS, FeedbackRequest, RequestError
from edge_allocator.service.config import ServiceConfig
from edge_allocator.service.http import TokenAuth
from edge_allocator.service.routing import ModelRouter
from edge_allocator.service.stages import ModelKey
from edge_allocator.store import DecisionLog, DecisionRecord, UnknownDecision, utc_now

log = logging.getLogger(__name__)


class Frontend:
    def __init__(self, cfg: ServiceConfig, replica_tag: str = "main"):
        self.cfg = cfg
        self.started_at = time.time()
        self.auth = TokenAuth(cfg.auth_token_env, cfg.auth_token_file)
        self.router = ModelRouter(cfg.models_dir, cfg.models, cfg.default_model)
        self.cache: DecisionCache = self._make_cache(cfg)
        self.decision_log: DecisionLog | None = None
        if cfg.database_url:
            if cfg.database_url.startswith("sqlite:///"):
                Path(cfg.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            spool = Path(cfg.spool_path)
            spool = spool.with_name(f"{spool.stem}.{replica_tag}{spool.suffix}")
            self.decision_log = DecisionLog(cfg.database_url, pool_size=cfg.db_pool_size,
                                            spool_path=spool)

    @staticmethod
    def _make_cache(cfg: ServiceConfig) -> DecisionCache:
        if cfg.cache == "redis":
            if not cfg.redis_url:
                raise ValueError("cache='redis' needs redis_url")
            return make_cache("redis", url=cfg.redis_url, ttl_s=cfg.cache_ttl_s)
        if cfg.cache == "local":
            return make_cache("local", max_entries=cfg.cache_entries, ttl_s=cfg.cache_ttl_s)
        return make_cache(cfg.cache)

    def reconfigure(self, cfg: ServiceConfig) -> None:
        """Swap routing (model versions, A/B) atomically; the cache keys carry the model
        version, so answers of the old version are never served for the new one, and
        the local cache is cleared to free them."""
        router = ModelRouter(cfg.models_dir, cfg.models, cfg.default_model)
        self.router = router
        self.cfg = cfg
        self.cache.clear()

    # --- cache -----------------------------------------------------------------------
    def cache_key(self, payload: dict[str, Any], key: ModelKey) -> str:
        return request_key(payload, key.name, key.version)

    def cached(self, ckey: str) -> dict[str, Any] | None:
        hit = self.cache.get(ckey)
        if hit is not None:
            hit["cached"] = True
        return hit

    def remember(self, ckey: str, resp: dict[str, Any]) -> None:
        self.cache.set(ckey, resp)

    # --- decision log --------------------------------------------------------------------
    def record(self, resp: dict[str, Any], request: Any, ckey: str) -> None:
        if self.decision_log is None:
            return
        nodes = [
            {"node_id": nid, **{f: getattr(n, f) for f in NODE_FIELDS}}
            for nid, n in zip(request.node_ids(), request.nodes)
        ]
        m = resp["model"]
        self.decision_log.record(DecisionRecord(
            decision_id=resp["decision_id"], created_at=utc_now(), model_name=m["name"],
            model_version=m["version"], backend=m["backend"], node_id=resp["node_id"],
            node_index=resp["node_index"], confidence=resp["confidence"], scores=resp["scores"],
            latency_ms=resp["latency_ms"], request_hash=ckey, cached=resp["cached"], nodes=nodes,
        ))

    def feedback(self, fb: FeedbackRequest) -> dict[str, Any]:
        if self.decision_log is None:
            raise RequestError(503, "feedback needs a decision log (database_url is not set)")
        try:
            self.decision_log.record_feedback(fb.decision_id, fb.completion_ms, fb.success,
                                              fb.energy_j)
        except UnknownDecision:
            raise RequestError(404, f"decision_id {fb.decision_id!r} is unknown",
                               [{"loc": "decision_id", "msg": "unknown decision"}]) from None
        return {"decision_id": fb.decision_id, "recorded": True}

    def close(self) -> None:
        if self.decision_log is not None:
            self.decision_log.close()
