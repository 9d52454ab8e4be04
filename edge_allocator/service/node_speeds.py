"""Where the service keeps the per-node speed estimates (``edge_allocator.speeds``).

Without Redis: in this process (``LocalSpeeds``), i.e. per ingress replica and lost on
restart. With ``redis_url``: one Redis hash shared by every replica and restart, each
field a node id, each value the estimate as JSON (never pickle). Feedback updates the
hash with an optimistic transaction (WATCH/MULTI: replicas may learn about the same
node at once) and this replica's copy at once; decisions read this replica's copy,
refreshed from Redis at most every ``refresh_s``, so the decision path makes no Redis
call of its own. A Redis outage keeps the last copy (decisions go on) and makes
``GET``/``DELETE /v1/nodes/...`` and learning a 503.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import numpy as np
import orjson

from edge_allocator.cache import redact_url
from edge_allocator.schema import ServiceUnavailable
from edge_allocator.speeds import DEFAULT_PARAMS, LocalSpeeds, SpeedEstimate, SpeedParams, observe

log = logging.getLogger(__name__)
#: Redis calls wait at most this long.
REDIS_TIMEOUT_S = 0.25
_WATCH_RETRIES = 8


class NodeSpeeds:
    """The estimates of one ingress replica: local, or local as a copy of Redis."""

    def __init__(self, params: SpeedParams = DEFAULT_PARAMS, redis_url: str | None = None,
                 key: str = "edge-allocator:node-speeds", refresh_s: float = 1.0) -> None:
        self.local = LocalSpeeds(params)
        self.params = params
        self.key = key
        self.refresh_s = refresh_s
        self._refreshed_at = 0.0
        self._redis: Any = None
        self.url = redact_url(redis_url) if redis_url else None
        if redis_url:
            import redis  # the optional extra, as cache.RedisCache imports it

            self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
            self._watch_error = redis.WatchError
            self._redis = redis.Redis.from_url(redis_url, socket_timeout=REDIS_TIMEOUT_S,
                                               socket_connect_timeout=REDIS_TIMEOUT_S)

    @property
    def source(self) -> Literal["local", "redis"]:
        return "redis" if self._redis is not None else "local"

    def any_known(self, now: float) -> bool:
        """Whether any node has an estimate (refreshing the Redis copy when due): while
        none has, a request's node ids need not even be listed."""
        self._refresh(now)
        return len(self.local) > 0

    def speeds(self, node_ids: list[str], now: float) -> np.ndarray | None:
        """[N] speed per id for the features, None if none is known (``LocalSpeeds``)."""
        self._refresh(now)
        return self.local.speeds(node_ids, now)

    def _refresh(self, now: float) -> None:
        """The local copy of Redis's estimates, at most every ``refresh_s``."""
        if self._redis is None or now - self._refreshed_at < self.refresh_s:
            return
        self._refreshed_at = now
        try:
            raw = self._redis.hgetall(self.key)
        except self._errors as exc:
            log.warning("node speeds: Redis at %s unreachable, keeping the last copy: %s",
                        self.url, type(exc).__name__)
            return
        self.local.replace_all({k.decode(): SpeedEstimate.from_json(orjson.loads(v))
                                for k, v in raw.items()})

    def _unavailable(self, exc: BaseException) -> ServiceUnavailable:
        return ServiceUnavailable(f"node speeds: Redis at {self.url} is unreachable "
                                  f"({type(exc).__name__})")

    def get(self, node_id: str) -> SpeedEstimate | None:
        if self._redis is None:
            return self.local.get(node_id)
        try:
            raw = self._redis.hget(self.key, node_id)
        except self._errors as exc:
            raise self._unavailable(exc) from None
        return None if raw is None else SpeedEstimate.from_json(orjson.loads(raw))

    def observe(self, node_id: str, ratio: float, now: float | None = None) -> SpeedEstimate:
        now = time.time() if now is None else now
        if self._redis is None:
            return self.local.observe(node_id, ratio, now)
        try:
            with self._redis.pipeline() as pipe:
                for _ in range(_WATCH_RETRIES):
                    try:
                        pipe.watch(self.key)
                        raw = pipe.hget(self.key, node_id)
                        prev = None if raw is None else SpeedEstimate.from_json(
                            orjson.loads(raw))
                        est = observe(prev, ratio, now, self.params)
                        pipe.multi()
                        pipe.hset(self.key, node_id, orjson.dumps(est.to_json()))
                        pipe.execute()
                        break
                    except self._watch_error:
                        continue
                else:
                    raise ServiceUnavailable(f"node speeds: {node_id!r} contended")
        except self._errors as exc:
            raise self._unavailable(exc) from None
        self.local.put(node_id, est)
        return est

    def reset(self, node_id: str) -> bool:
        """Forget a node's estimate; whether there was one."""
        if self._redis is None:
            return self.local.reset(node_id)
        try:
            removed = bool(self._redis.hdel(self.key, node_id))
        except self._errors as exc:
            raise self._unavailable(exc) from None
        return self.local.reset(node_id) or removed

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
