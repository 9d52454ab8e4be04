"""MQTT request/response without Ray: a task published on the request topic is decided
by the same FrontDoor as POST /v1/allocate and answered on the reply topic (a real
Mosquitto)."""

from __future__ import annotations

import asyncio
import queue
import threading

import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_allocator.config import LiveNetworkConfig, MqttConfig
from edge_allocator.live.mqtt import Publisher, TelemetrySubscriber
from edge_allocator.live.network import LiveNetwork
from edge_allocator.live.requests import parse_request
from edge_allocator.live.telemetry import BadMessage
from edge_allocator.service.http import FrontDoor
from edge_allocator.service.live_api import LiveApi, LocalIngest
from tests.mqtt_broker import shared_broker_url, unique_prefix
from tests.test_live import ORIGINAL_BATCH
from tests.test_live_api import TASK, _same, api, call  # noqa: F401 - api is a fixture


class Loop:
    """An event loop on its own thread, as a replica has."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def served(api):  # noqa: F811 - the fixture above
    url, prefix = shared_broker_url(), unique_prefix("req")
    cfg = LiveNetworkConfig.model_validate({"mqtt": {
        "url": url, "device_prefix": prefix, "topology_topic": f"{prefix}/topo",
        "request_topic": f"{prefix}/requests"}, "snapshot_reuse_s": 0})
    net = LiveNetwork(cfg)
    door = FrontDoor(api, LiveApi(api, LocalIngest(net)))
    loop = Loop()

    def decide(body: bytes, authorization: str | None) -> tuple[int, bytes]:
        async def read() -> bytes:
            return body

        out = loop.run(door.handle("POST", "/v1/allocate",
                                   {"content-type": "application/json"}, {}, read))
        return out.status, out.body

    net.answer_requests(decide)
    net.start()
    assert net.subscriber.wait_connected(10)
    net.ingest.on_message(f"{prefix}/batch", orjson.dumps(ORIGINAL_BATCH))
    replies: queue.Queue = queue.Queue()
    sub = TelemetrySubscriber(MqttConfig(url=url), (f"{prefix}/replies/#",),
                              lambda t, p: replies.put((t, orjson.loads(p))))
    sub.start()
    assert sub.wait_connected(10)
    pub = Publisher(MqttConfig(url=url))
    yield {"prefix": prefix, "pub": pub, "replies": replies, "net": net, "door": door}
    pub.close()
    sub.stop()
    net.stop()
    loop.close()


def test_a_task_over_mqtt_is_answered_with_the_http_decision(served):
    prefix, pub, replies = served["prefix"], served["pub"], served["replies"]
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = f"{prefix}/replies/dev-7"
    props.CorrelationData = b"\x01\x02"
    pub.publish(f"{prefix}/requests", orjson.dumps({"task": TASK, "correlation_id": "c-1"}),
                properties=props).wait_for_publish(5)
    topic, reply = replies.get(timeout=10)
    assert topic == f"{prefix}/replies/dev-7" and reply["correlation_id"] == "c-1"
    assert reply["snapshot"]["node_count"] == 3
    st, http = call(served["door"], "POST", "/v1/allocate", {"network": "live", "task": TASK})
    assert st == 200
    _same(reply, http)
    # reply_to in the payload (MQTT 3.1.1 devices); a bad task is answered with the 422
    pub.publish(f"{prefix}/requests", orjson.dumps(
        {"task": {"deadline_ms": -5}, "reply_to": f"{prefix}/replies/dev-9"})).wait_for_publish(5)
    topic, err = replies.get(timeout=10)
    assert topic == f"{prefix}/replies/dev-9"
    assert err["status"] == 422 and err["error"].startswith("task.deadline_ms")
    # nowhere to answer: counted, dropped
    pub.publish(f"{prefix}/requests", orjson.dumps({"task": TASK})).wait_for_publish(5)
    pub.publish(f"{prefix}/requests", b"{no").wait_for_publish(5)
    import time

    deadline = time.monotonic() + 5
    counts = served["net"].status().requests
    while time.monotonic() < deadline and counts.get("dropped:malformed_json") != 1:
        time.sleep(0.05)
        counts = served["net"].status().requests
    assert counts["requests"] == 2 and counts["replies:2xx"] == 1 and counts["replies:4xx"] == 1
    assert counts["dropped:missing_field"] == 1 and counts["dropped:malformed_json"] == 1


def test_request_parsing():
    req = parse_request(orjson.dumps({"task": TASK, "model": "dqn", "reply_to": "r/1",
                                      "authorization": "Bearer t"}), None, None)
    assert orjson.loads(req.body) == {"network": "live", "task": TASK, "model": "dqn"}
    assert (req.reply_to, req.authorization) == ("r/1", "Bearer t")
    assert parse_request(b"{}", "r/2", b"x").reply_to == "r/2"  # MQTT 5 wins
    for bad in (b"[]", b'{"reply_to": "r/#"}', b'{"reply_to": 5}'):
        with pytest.raises(BadMessage):
            parse_request(bad, None, None)
