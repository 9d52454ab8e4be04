"""Decision cache: the same network state asked of the same model gets the same answer.

Operators often poll with an unchanged state, and a cache hit costs microseconds where a
trip through graph building and the model costs milliseconds. Three stores share one
protocol: ``NullCache`` (always misses), ``LocalCache`` (per-replica LRU with TTL) and
``RedisCache`` (shared by all replicas).

Values are JSON objects (response bodies) stored as orjson bytes, never pickle: a shared
store must not be able to run code in a replica, and a stored value must come back as a
fresh dict the caller may edit without corrupting the cache.

A model swap needs no invalidation: the model name and version are part of every key.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import orjson

from edge_allocator.constants import DECISION_CACHE_TTL_S
from edge_allocator.schema import REFERENCE_TASK, Node, Task

logger = logging.getLogger(__name__)

#: Bumped when the canonical form below changes, so old entries are never read back.
KEY_FORMAT_VERSION = "1"
#: Size of the blake2b digest of a key, bytes (32 hex characters).
KEY_DIGEST_BYTES = 16
#: Default number of entries of the in-process cache.
LOCAL_CACHE_ENTRIES = 10_000
#: Default Redis socket (connect and read) timeout.
REDIS_SOCKET_TIMEOUT_S = 0.05
#: How long Redis is skipped after a failure before one call probes it again.
REDIS_BREAKER_BACKOFF_S = 1.0
#: Keys deleted per DEL command in ``RedisCache.clear``.
REDIS_CLEAR_BATCH_KEYS = 500
#: Choices of ``make_cache``.
CACHE_KINDS: tuple[str, ...] = ("none", "local", "redis")

_NODE_KEYS: tuple[str, ...] = tuple(Node.model_fields)
_TASK_KEYS: tuple[str, ...] = tuple(Task.model_fields)
_REFERENCE_TASK: dict[str, Any] = REFERENCE_TASK.model_dump()

Clock = Callable[[], float]


# --------------------------------------------------------------------------- keys


def _normalise_state(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Keep what decides the answer; drop what does not (``model``, unknown fields).

    Numbers are kept as sent (``1`` and ``1.0`` differ: a missed hit, never a wrong one).
    An omitted task and an explicit reference task are the same task; an omitted
    ``edges`` (default topology) and ``[]`` (no links) are not the same graph.
    """
    if not isinstance(payload, Mapping):
        raise ValueError(
            f"request_key: payload must be a JSON object, got {type(payload).__name__}"
        )
    nodes = payload.get("nodes")
    if not isinstance(nodes, list) or not all(isinstance(n, Mapping) for n in nodes):
        raise ValueError("request_key: payload['nodes'] must be a list of objects; validate first")
    task = payload.get("task")
    if task is not None and not isinstance(task, Mapping):
        raise ValueError(
            f"request_key: payload['task'] must be an object, got {type(task).__name__}"
        )
    return {
        "nodes": [{k: n.get(k) for k in _NODE_KEYS} for n in nodes],
        "edges": payload.get("edges"),
        "task": {**_REFERENCE_TASK, **{k: task[k] for k in _TASK_KEYS if k in task}}
        if task is not None
        else _REFERENCE_TASK,
    }


def request_key(payload: Mapping[str, Any], model_name: str, model_version: str) -> str:
    """Canonical 32-hex-character key of (state, model name, model version).

    Key order and whitespace of the request body do not matter; node order, every node
    value, every edge, the task and the model version do. Raises ``ValueError`` on a
    payload without a list of node objects (validate before keying).
    """
    doc = {
        "v": KEY_FORMAT_VERSION,
        "model": model_name,
        "version": model_version,
        "state": _normalise_state(payload),
    }
    blob = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(blob, digest_size=KEY_DIGEST_BYTES).hexdigest()


# --------------------------------------------------------------------------- protocol


class CacheStats(NamedTuple):
    """Counters since the cache was made. ``errors`` are calls that could not use the
    store (failed, or skipped while a Redis breaker was open); they answered as misses."""

    hits: int
    misses: int
    errors: int


@runtime_checkable
class DecisionCache(Protocol):
    """What the serving path needs from a cache. ``get`` and ``set`` never raise for a
    store outage; a value that is not JSON-able is a caller bug and raises TypeError."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def set(self, key: str, value: dict[str, Any]) -> None: ...

    def clear(self) -> int: ...

    def stats(self) -> CacheStats: ...


def _dumps(value: dict[str, Any]) -> bytes:
    if not isinstance(value, dict):
        raise TypeError(f"cache values must be dicts, got {type(value).__name__}")
    return orjson.dumps(value)


def _check_ttl(owner: str, ttl_s: float) -> float:
    if not isinstance(ttl_s, (int, float)) or not math.isfinite(ttl_s) or ttl_s <= 0:
        raise ValueError(f"{owner}: ttl_s must be a finite number > 0, got {ttl_s!r}; "
                         "use make_cache('none') to disable caching")
    return float(ttl_s)


class NullCache:
    """Always misses: caching switched off without an ``if`` at every call site."""

    def __init__(self) -> None:
        self._misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        self._misses += 1
        return None

    def set(self, key: str, value: dict[str, Any]) -> None:
        _dumps(value)  # same contract as the real stores, so bugs show with caching off

    def clear(self) -> int:
        return 0

    def stats(self) -> CacheStats:
        return CacheStats(0, self._misses, 0)


# --------------------------------------------------------------------------- local


class LocalCache:
    """In-process LRU with a TTL, O(1) per call, safe to share between threads.

    Expired entries are dropped when read or pushed out by LRU order, so memory stays
    bounded by ``max_entries`` without a sweeper thread.
    """

    def __init__(self, max_entries: int, ttl_s: float, clock: Clock = time.monotonic) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"LocalCache: max_entries must be an int >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self.ttl_s = _check_ttl("LocalCache", ttl_s)
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= now:
                if entry is not None:
                    del self._entries[key]
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            blob = entry[1]
        return orjson.loads(blob)  # type: ignore[no-any-return]

    def set(self, key: str, value: dict[str, Any]) -> None:
        blob = _dumps(value)
        expires_at = self._clock() + self.ttl_s
        with self._lock:
            self._entries[key] = (expires_at, blob)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> int:
        with self._lock:
            n = len(self._entries)
            self._entries.clear()
        return n

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, 0)

    def __len__(self) -> int:
        return len(self._entries)


# --------------------------------------------------------------------------- redis


def redact_url(url: str) -> str:
    """``url`` with any password (in the authority or a ``password=`` query option)
    replaced by ``***``, fit for logs and reprs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        hidden = [(k, "***" if k.lower() == "password" else v) for k, v in pairs]
        query = urlencode(hidden, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class RedisCache:
    """Cache shared by all replicas through Redis, that degrades to a miss, never an error.

    Each call waits at most ``socket_timeout_s``. After a failure Redis is skipped for
    ``backoff_s`` (a circuit breaker), then a single call probes it again, so a dead or
    slow Redis costs one timeout per back-off period rather than one per request.
    Keys are ``prefix`` + the request hash; ``clear`` deletes only that prefix.
    """

    def __init__(
        self,
        url: str,
        ttl_s: float,
        prefix: str = "edge-allocator:",
        socket_timeout_s: float = REDIS_SOCKET_TIMEOUT_S,
        backoff_s: float = REDIS_BREAKER_BACKOFF_S,
        clock: Clock = time.monotonic,
    ) -> None:
        import redis  # optional extra [redis]: imported only when asked for
        from redis.backoff import NoBackoff
        from redis.maint_notifications import MaintNotificationsConfig
        from redis.retry import Retry

        if not prefix:
            raise ValueError("RedisCache: prefix must be non-empty, or clear() would empty the db")
        if not (socket_timeout_s > 0 and backoff_s >= 0):
            raise ValueError(f"RedisCache: need socket_timeout_s > 0 and backoff_s >= 0, got "
                             f"{socket_timeout_s!r} and {backoff_s!r}")
        self.ttl_s = _check_ttl("RedisCache", ttl_s)
        self._ttl_ms = max(1, round(self.ttl_s * 1000))
        self.prefix = prefix
        self.url = redact_url(url)
        self._secrets = [p for p in self._passwords(url) if p]
        self._backoff_s = float(backoff_s)
        self._clock = clock
        self._errors_caught = (redis.RedisError, OSError, ValueError)
        # No retries: a retry multiplies the stall, and the breaker already decides when
        # to try again. Maintenance notifications off: they may relax timeouts to 10 s.
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )
        self._lock = threading.Lock()
        self._open_until = 0.0  # 0: breaker closed
        self._hits = 0
        self._misses = 0
        self._errors = 0

    def __repr__(self) -> str:
        return f"RedisCache(url={self.url!r}, prefix={self.prefix!r}, ttl_s={self.ttl_s})"

    @staticmethod
    def _passwords(url: str) -> list[str]:
        parts = urlsplit(url)
        found = [parts.password or "", unquote(parts.password or "")]
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
        return found

    @property
    def breaker_open(self) -> bool:
        """True while Redis is being skipped after a failure."""
        return self._open_until != 0.0 and self._clock() < self._open_until

    def _allow(self) -> bool:
        """Closed: go. Open: skip. Back-off over: this caller probes, the rest keep
        skipping until the probe ends (the deadline moves before the probe starts)."""
        if self._open_until == 0.0:
            return True
        with self._lock:
            now = self._clock()
            if self._open_until == 0.0:
                return True
            if now < self._open_until:
                self._errors += 1
                return False
            self._open_until = now + self._backoff_s
            return True

    def _succeeded(self) -> None:
        if self._open_until != 0.0:
            with self._lock:
                self._open_until = 0.0
            logger.info("decision cache: Redis at %s is back", self.url)

    def _failed(self, op: str, exc: BaseException) -> None:
        with self._lock:
            self._errors += 1
            was_closed = self._open_until == 0.0
            self._open_until = self._clock() + self._backoff_s
        if was_closed:
            msg = str(exc)
            for secret in self._secrets:
                msg = msg.replace(secret, "***")
            logger.warning("decision cache: Redis %s at %s failed (%s: %s); skipping Redis "
                           "for %.1f s between probes", op, self.url, type(exc).__name__,
                           msg, self._backoff_s)

    def get(self, key: str) -> dict[str, Any] | None:
        if not self._allow():
            return None
        try:
            blob = self._client.get(self.prefix + key)
        except self._errors_caught as exc:
            self._failed("GET", exc)
            return None
        self._succeeded()
        if blob is None:
            with self._lock:
                self._misses += 1
            return None
        try:
            value = orjson.loads(blob)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            # A foreign writer under our prefix: Redis itself is fine, so no breaker.
            with self._lock:
                self._errors += 1
            logger.debug("decision cache: undecodable value under %s%s", self.prefix, key)
            return None
        with self._lock:
            self._hits += 1
        return value

    def set(self, key: str, value: dict[str, Any]) -> None:
        blob = _dumps(value)
        if not self._allow():
            return
        try:
            self._client.psetex(self.prefix + key, self._ttl_ms, blob)
        except self._errors_caught as exc:
            self._failed("SET", exc)
            return
        self._succeeded()

    def clear(self) -> int:
        """Delete this prefix's keys (SCAN + DEL, never FLUSHDB); 0 when Redis is down."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "*"
        deleted = 0
        try:
            batch: list[bytes] = []
            for name in self._client.scan_iter(match=pattern, count=REDIS_CLEAR_BATCH_KEYS):
                batch.append(name)
                if len(batch) >= REDIS_CLEAR_BATCH_KEYS:
                    deleted += int(self._client.delete(*batch))
                    batch.clear()
            if batch:
                deleted += int(self._client.delete(*batch))
        except self._errors_caught as exc:
            self._failed("clear", exc)
            return deleted
        self._succeeded()
        return deleted

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._errors)

    def close(self) -> None:
        self._client.close()


# --------------------------------------------------------------------------- factory


def make_cache(kind: str, **kw: Any) -> DecisionCache:
    """Build the cache named by config: ``none``, ``local`` or ``redis``.

    ``local`` takes ``max_entries`` and ``ttl_s``; ``redis`` needs ``url`` and takes the
    other ``RedisCache`` arguments. ``none`` ignores its arguments, so one config block
    can switch caching off by changing ``kind`` alone.
    """
    name = kind.strip().lower() if isinstance(kind, str) else kind
    if name == "none":
        return NullCache()
    if name == "local":
        kw.setdefault("max_entries", LOCAL_CACHE_ENTRIES)
        kw.setdefault("ttl_s", DECISION_CACHE_TTL_S)
        return LocalCache(**kw)
    if name == "redis":
        if not kw.get("url"):
            raise ValueError("make_cache('redis') needs url='redis://[:password@]host:port/db'")
        kw.setdefault("ttl_s", DECISION_CACHE_TTL_S)
        return RedisCache(**kw)
    raise ValueError(f"make_cache: unknown cache kind {kind!r}; choose one of {list(CACHE_KINDS)}")
