"""MQTT request/response: a device publishes a task, the decision comes back over MQTT.

A request on ``mqtt.request_topic`` is a JSON object::

    {"task": {...}?, "model": "hybrid"?, "reply_to": "devices/7/decisions"?,
     "correlation_id": "abc"?, "authorization": "Bearer <token>"?}

The reply topic is the MQTT 5 Response Topic of the message, else ``reply_to``; the
MQTT 5 Correlation Data is echoed, and so is ``correlation_id``. The decision is made
exactly as ``POST /v1/allocate`` with ``{"network": "live", "task", "model"}`` (same
validation, decision log, feedback; ``authorization`` stands for the HTTP header when the
service has bearer tokens). The reply is that endpoint's response body (a decision with
its snapshot, or an error body ``{"error", "status", "details"}``), plus
``correlation_id`` when one was sent, with the HTTP status as the MQTT 5 user property
``http-status``, at the request's QoS. A request without a reply topic, or that is not
a JSON object, is counted and dropped (there is nowhere to answer).

Latency: at QoS 0 a reply is a round trip of the broker plus the decision; at QoS 1 the
broker's acknowledgements meet TCP's delayed ACK on its side (Mosquitto's default
``set_tcp_nodelay false``) and each request costs about 40 ms more (measured in
``benchmarks/mqtt.py``; our clients set TCP_NODELAY, the broker's setting is the
operator's).

``RequestResponder`` does the MQTT side; ``decide`` (the ingress, through a handle in
the deployment) does the rest, on a small thread pool so paho's network thread never
waits for a decision.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_allocator.live.telemetry import BadMessage

log = logging.getLogger(__name__)
#: Requests decided at once (each waits on the ingress).
REQUEST_WORKERS = 8
#: Fields of a request that are not the decision's.
_ENVELOPE = ("reply_to", "correlation_id", "authorization")

#: (body of POST /v1/allocate, authorization header or None) -> (HTTP status, JSON body)
Decide = Callable[[bytes, str | None], tuple[int, bytes]]
Publish = Callable[[str, bytes, Properties, int], None]  # topic, payload, properties, QoS


@dataclass(frozen=True, slots=True)
class TaskRequest:
    body: bytes  # the POST /v1/allocate body
    reply_to: str
    correlation: bytes | None
    correlation_id: Any
    authorization: str | None
    qos: int = 1  # the reply's: the request's own


def parse_request(payload: bytes, response_topic: str | None,
                  correlation: bytes | None, qos: int = 1) -> TaskRequest:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BadMessage("malformed_json", str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise BadMessage("not_an_object", f"expected an object, got {type(data).__name__}")
    reply_to = response_topic or data.get("reply_to")
    if not isinstance(reply_to, str) or not reply_to or any(c in reply_to for c in "+#"):
        raise BadMessage("missing_field", "reply_to: no MQTT 5 response topic and no "
                         "reply_to topic (without wildcards) in the payload")
    auth = data.get("authorization")
    body = {"network": "live", **{k: v for k, v in data.items() if k not in _ENVELOPE}}
    return TaskRequest(orjson.dumps(body), reply_to, correlation, data.get("correlation_id"),
                       auth if isinstance(auth, str) else None, qos)


def reply_of(req: TaskRequest, status: int, body: bytes) -> tuple[bytes, Properties]:
    """The reply payload and its MQTT 5 properties."""
    if req.correlation_id is not None:
        obj = orjson.loads(body)
        obj["correlation_id"] = req.correlation_id
        body = orjson.dumps(obj)
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = [("http-status", str(status))]
    props.ContentType = "application/json"
    if req.correlation is not None:
        props.CorrelationData = req.correlation
    return body, props


class RequestResponder:
    """Answers requests on a thread pool; counts ``requests``, ``replies`` (by status
    class) and dropped requests (by reason)."""

    def __init__(self, decide: Decide, publish: Publish,
                 workers: int = REQUEST_WORKERS) -> None:
        self.decide = decide
        self.publish = publish
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mqtt-request")
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.decide_ms: list[float] = []  # the last few, for the benchmark and status

    def on_request(self, payload: bytes, response_topic: str | None,
                   correlation: bytes | None, qos: int = 1) -> None:
        """From paho's thread: parse, then decide and reply off it (at the request's QoS)."""
        try:
            req = parse_request(payload, response_topic, correlation, qos)
        except BadMessage as exc:
            self._count(f"dropped:{exc.reason}")
            log.warning("MQTT request dropped: %s", exc)
            return
        self._count("requests")
        self._pool.submit(self._answer, req)

    def _answer(self, req: TaskRequest) -> None:
        t0 = time.perf_counter()
        try:
            status, body = self.decide(req.body, req.authorization)
        except Exception as exc:  # noqa: BLE001 - the device still gets an answer
            log.exception("MQTT request: decision failed")
            status = 503
            body = orjson.dumps({"error": f"decision failed ({type(exc).__name__}: "
                                          f"{str(exc)[:200]}); retry",
                                 "status": 503, "details": []})
        elapsed = (time.perf_counter() - t0) * 1000
        payload, props = reply_of(req, status, body)
        try:
            self.publish(req.reply_to, payload, props, req.qos)
        except Exception:  # noqa: BLE001 - broker gone: paho reconnects, the reply is lost
            self._count("reply_failed")
            return
        with self._lock:
            self.counts[f"replies:{status // 100}xx"] += 1
            self.decide_ms = [*self.decide_ms[-999:], elapsed]

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
