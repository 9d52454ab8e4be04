"""``edge-allocator simulate-devices`` publishes the simulator's telemetry in the original
project's format to a real broker (subprocess, as a user runs it)."""

from __future__ import annotations

import subprocess
import sys
import threading

import orjson

from edge_allocator.config import MqttConfig
from edge_allocator.live.mqtt import TelemetrySubscriber
from edge_allocator.live.telemetry import Topics, parse_message
from tests.mqtt_broker import shared_broker_url, unique_prefix

ORIGINAL_KEYS = {"device_id", "device_type", "type_name", "timestamp", "metrics"}


def test_simulate_devices_publishes_original_payloads():
    url, prefix = shared_broker_url(), unique_prefix("cli")
    topics = Topics(prefix, f"{prefix}/topology")
    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def keep(topic: str, payload: bytes) -> None:
        with lock:
            got.append((topic, payload))

    sub = TelemetrySubscriber(MqttConfig(url=url, qos=1), topics.subscriptions(), keep)
    sub.start()
    assert sub.wait_connected(10)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "edge_allocator.cli", "simulate-devices", "--broker", url,
             "--devices", "8", "--interval", "0.05", "--ticks", "3", "--prefix", prefix,
             "--topology-topic", topics.topology, "--seed", "4"],
            capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "published 28 messages" in out.stderr  # topology + 3 x (8 devices + batch)
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(got) < 28:
            time.sleep(0.05)
    finally:
        sub.stop()
    with lock:
        msgs = list(got)
    assert len(msgs) == 28, [t for t, _ in msgs]
    devices = [orjson.loads(p) for t, p in msgs if t.rsplit("/", 1)[1].isdigit()]
    batches = [orjson.loads(p) for t, p in msgs if t == topics.batch]
    assert len(devices) == 24 and len(batches) == 3
    assert all(set(d) == ORIGINAL_KEYS for d in devices)
    assert {d["type_name"] for d in devices} <= {"sensor", "fog_node", "cloud_node"}
    assert all(b["num_devices"] == 8 and len(b["devices"]) == 8 for b in batches)
    assert all(isinstance(d["metrics"]["queue_len"], int) for d in devices)
    for topic, payload in msgs:  # every one of them is accepted as sent
        parsed = parse_message(topic, payload, topics)
        assert not parsed.dropped
    # the load moves between ticks: the simulator runs, this is not a replay
    first, last = batches[0]["devices"], batches[-1]["devices"]
    assert [d["metrics"] for d in first] != [d["metrics"] for d in last]
    from tests.test_live import _clear_retained

    _clear_retained(url, topics.topology)
