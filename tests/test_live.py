"""The live network without Ray: telemetry parsing, the view, the ingest, Redis, and a
real Mosquitto (the shared one on 1883, and our own for restarts)."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from edge_allocator.config import LiveNetworkConfig, MqttConfig
from edge_allocator.live.devices import DeviceFleet, publish_fleet
from edge_allocator.live.ingest import TelemetryIngest
from edge_allocator.live.mqtt import Publisher, broker_of
from edge_allocator.live.network import LiveNetwork
from edge_allocator.live.telemetry import BadMessage, Topics, parse_message
from edge_allocator.live.view import (
    LocalViewStore,
    RedisViewStore,
    ViewSettings,
    ViewUnavailable,
)
from edge_allocator.schema import NODE_FIELDS
from tests.conftest import missing
from tests.mqtt_broker import OwnBroker, shared_broker_url, unique_prefix, wait_for

TOPICS = Topics()
#: Exactly what the original project's iot_device_simulator.py publishes (its
#: get_telemetry(): int ids, naive local ISO timestamps, metrics rounded, int queue).
ORIGINAL_DEVICE = {
    "device_id": 7, "device_type": 1, "type_name": "fog_node",
    "timestamp": "2025-10-09T14:03:11.482913",
    "metrics": {"cpu_util": 0.4731, "mem_util": 0.5512, "energy": 55.74, "latency": 17.31,
                "bandwidth": 211.4, "queue_len": 6},
}
ORIGINAL_BATCH = {
    "timestamp": "2025-10-09T14:03:11.483120", "num_devices": 3,
    "devices": [
        {**ORIGINAL_DEVICE, "device_id": 0, "device_type": 0, "type_name": "sensor"},
        ORIGINAL_DEVICE,
        {**ORIGINAL_DEVICE, "device_id": 9, "device_type": 2, "type_name": "cloud_node",
         "metrics": {**ORIGINAL_DEVICE["metrics"], "queue_len": 15}},
    ],
}


def _msg(topic: str, payload: object) -> bytes:
    return orjson.dumps(payload)


# --- parsing ---------------------------------------------------------------------------


def test_the_original_simulators_payload_shapes_are_accepted():
    one = parse_message("iot/devices/7", _msg("", ORIGINAL_DEVICE), TOPICS)
    (r,) = one.reports
    assert r.node_id == "7" and r.node_type == 1
    assert r.metrics == (0.4731, 0.5512, 55.74, 17.31, 211.4, 6.0)
    assert r.device_time is not None and abs(r.device_time - 1760018591.48) < 86400
    batch = parse_message("iot/devices/batch", _msg("", ORIGINAL_BATCH), TOPICS)
    assert [(x.node_id, x.node_type) for x in batch.reports] == [("0", 0), ("7", 1), ("9", 2)]
    assert not batch.dropped
    # type_name alone decides the type; the topic gives a missing id
    only_name = {k: v for k, v in ORIGINAL_DEVICE.items() if k not in ("device_type",
                                                                       "device_id")}
    (r2,) = parse_message("iot/devices/7", _msg("", only_name), TOPICS).reports
    assert (r2.node_id, r2.node_type) == ("7", 1)


@pytest.mark.parametrize("topic,payload,reason", [
    ("iot/devices/7", b"{not json", "malformed_json"),
    ("iot/devices/7", b"[1, 2]", "not_an_object"),
    ("iot/devices/7", {**ORIGINAL_DEVICE, "device_type": 5}, "unknown_type"),
    ("iot/devices/7", {**ORIGINAL_DEVICE, "device_type": True}, "unknown_type"),
    ("iot/devices/7", {k: v for k, v in ORIGINAL_DEVICE.items() if k != "device_type"}
     | {"type_name": "toaster"}, "unknown_type"),
    ("iot/devices/7", {**ORIGINAL_DEVICE, "metrics": {**ORIGINAL_DEVICE["metrics"],
                                                      "cpu_util": 1.7}}, "out_of_range"),
    ("iot/devices/7", {**ORIGINAL_DEVICE, "metrics": {**ORIGINAL_DEVICE["metrics"],
                                                      "latency": -1}}, "out_of_range"),
    ("iot/devices/7", {**ORIGINAL_DEVICE, "metrics": {**ORIGINAL_DEVICE["metrics"],
                                                      "energy": "5"}}, "wrong_type"),
    ("iot/devices/7", {**ORIGINAL_DEVICE, "metrics": {"cpu_util": 0.1}}, "missing_field"),
    ("iot/devices/7", {**ORIGINAL_DEVICE, "device_id": 8}, "id_mismatch"),
    ("iot/devices/7", {**ORIGINAL_DEVICE, "timestamp": "yesterday"}, "bad_timestamp"),
    ("iot/other/7", ORIGINAL_DEVICE, "unknown_topic"),
    ("iot/devices/batch", {"devices": "all"}, "missing_field"),
    ("edge-allocator/topology", {"edges": [["a"]]}, "wrong_type"),
    ("edge-allocator/topology", {"nodes": {"a": {"capacity_gcps": 0}}}, "out_of_range"),
])
def test_bad_messages_are_refused_with_their_reason(topic, payload, reason):
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    with pytest.raises(BadMessage) as info:
        parse_message(topic, raw, TOPICS)
    assert info.value.reason == reason


def test_one_bad_device_of_a_batch_is_dropped_alone():
    bad = {**ORIGINAL_BATCH, "devices": [*ORIGINAL_BATCH["devices"],
                                         {**ORIGINAL_DEVICE, "device_id": 3,
                                          "metrics": {**ORIGINAL_DEVICE["metrics"],
                                                      "mem_util": float("nan")}}]}
    raw = orjson.dumps(bad, option=orjson.OPT_NON_STR_KEYS).replace(b"null", b"NaN")
    with pytest.raises(BadMessage):  # NaN is not JSON: the whole message
        parse_message("iot/devices/batch", raw, TOPICS)
    bad["devices"][-1]["metrics"]["mem_util"] = 2.0
    out = parse_message("iot/devices/batch", orjson.dumps(bad), TOPICS)
    assert [r.node_id for r in out.reports] == ["0", "7", "9"]
    assert [d.reason for d in out.dropped] == ["out_of_range"]


# --- the view ----------------------------------------------------------------------------


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _ingest(store=None, clock=None):
    clock = clock or Clock()
    store = store or LocalViewStore(ViewSettings(stale_after_s=10, forget_after_s=100))
    return TelemetryIngest(store, TOPICS, clock), store, clock


def test_view_keeps_the_latest_report_orders_ids_and_maps_topology():
    ingest, store, clock = _ingest()
    ingest.on_message("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH))
    newer = {**ORIGINAL_DEVICE, "metrics": {**ORIGINAL_DEVICE["metrics"], "cpu_util": 0.9}}
    ingest.on_message("iot/devices/7", orjson.dumps(newer))
    ingest.on_message("edge-allocator/topology", orjson.dumps(
        {"edges": [["0", "7"], [7, 9], ["9", "absent"]], "nodes": {"9": {"node_type": 1}}}))
    snap = store.snapshot(clock())
    assert snap.node_ids == ["0", "7", "9"]
    assert snap.values[1, NODE_FIELDS.index("cpu_util")] == 0.9
    assert snap.values[2, NODE_FIELDS.index("node_type")] == 1  # the topology's override
    assert snap.edges.tolist() == [[0, 1], [1, 2]]  # a link to an absent node waits
    body = snap.request_json({"compute_gcycles": 2.0})
    assert body["nodes"][1] == {"node_id": "7", "cpu_util": 0.9, "mem_util": 0.5512,
                                "energy": 55.74, "latency": 17.31, "bandwidth": 211.4,
                                "queue_len": 6.0, "node_type": 1}
    assert body["edges"] == [[0, 1], [1, 2]] and body["task"] == {"compute_gcycles": 2.0}
    ingest.on_message("edge-allocator/topology", b"")  # retained topology cleared
    assert store.snapshot(clock()).edges is None  # default topology again
    assert store.counts() == {"messages": 4, "reports": 4, "topology": 2}


def test_silent_nodes_are_masked_then_forgotten():
    ingest, store, clock = _ingest()
    ingest.on_message("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH))
    clock.t += 8
    ingest.on_message("iot/devices/7", orjson.dumps(ORIGINAL_DEVICE))
    clock.t += 5  # 0 and 9 silent 13 s > 10; 7 silent 5 s
    snap = store.snapshot(clock())
    assert sorted(snap.masked) == ["0", "9"]
    assert snap.masked["0"] == "stale: no telemetry for 13.0 s (stale_after_s = 10)"
    values = snap.decision_values()
    assert values[[0, 2], NODE_FIELDS.index("bandwidth")].tolist() == [0.0, 0.0]
    assert values[1, NODE_FIELDS.index("bandwidth")] == 211.4
    assert snap.values[0, NODE_FIELDS.index("bandwidth")] == 211.4  # as reported
    clock.t += 90  # 0 and 9 silent 103 s > 100: gone; 7 silent 95 s: masked
    assert store.snapshot(clock()).node_ids == ["7"]
    assert store.prune(clock()) == 2


def test_bad_messages_are_counted_and_never_reach_the_view(caplog):
    ingest, store, clock = _ingest()
    ingest.on_message("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH))
    before = store.snapshot(clock())
    for raw in (b"{oops", orjson.dumps({**ORIGINAL_DEVICE, "device_type": 4}),
                orjson.dumps({**ORIGINAL_DEVICE, "metrics": {**ORIGINAL_DEVICE["metrics"],
                                                             "queue_len": -3}})):
        ingest.on_message("iot/devices/7", raw)
    after = store.snapshot(clock())
    np.testing.assert_array_equal(before.values, after.values)
    assert store.counts() == {"messages": 4, "reports": 3, "topology": 0,
                              "rejected:malformed_json": 1, "rejected:unknown_type": 1,
                              "rejected:out_of_range": 1}
    assert [r.reason for r in ingest.recent] == ["malformed_json", "unknown_type",
                                                 "out_of_range"]
    assert all(r.topic == "iot/devices/7" for r in ingest.recent)
    logged = [r.getMessage() for r in caplog.records if "telemetry dropped" in r.getMessage()]
    assert any("iot/devices/7" in m and "unknown_type" in m for m in logged)


def test_a_store_outage_is_counted_not_raised():
    class Down(LocalViewStore):
        def apply(self, *a, **k):
            raise ViewUnavailable("down")

    ingest, store, clock = _ingest(Down())
    ingest.on_message("iot/devices/7", orjson.dumps(ORIGINAL_DEVICE))  # does not raise
    assert ingest.store_errors == 1


def test_env_url_wins_over_user_config(monkeypatch):
    import edge_allocator.config as config

    monkeypatch.setattr(config, "MQTT_URL", "mqtt://broker.example:1999")
    cfg = LiveNetworkConfig.model_validate({"mqtt": {"url": "mqtt://127.0.0.1:1883"}})
    assert cfg.mqtt.url == "mqtt://broker.example:1999"
    assert LiveNetworkConfig().mqtt.enabled  # the variable alone turns it on
    monkeypatch.setattr(config, "MQTT_URL", None)
    assert not LiveNetworkConfig().mqtt.enabled  # off by default
    with pytest.raises(ValueError, match="mqtt.bogus|bogus"):
        LiveNetworkConfig.model_validate({"mqtt": {"bogus": 1}})
    with pytest.raises(ValueError, match="forget_after_s"):
        LiveNetworkConfig(stale_after_s=60, forget_after_s=30)
    b = broker_of(MqttConfig(url="mqtts://u%40x:p%3Aw@h:8884"))
    assert (b.host, b.port, b.tls, b.username, b.password) == ("h", 8884, True, "u@x", "p:w")


# --- Redis --------------------------------------------------------------------------------


@pytest.fixture
def redis_store():
    import redis

    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_timeout=0.5).ping()
    except (redis.RedisError, OSError) as exc:
        missing("Redis on 127.0.0.1:6379", f"it does not answer ({exc})")
    store = RedisViewStore(url, ViewSettings(10, 100), prefix=f"{unique_prefix('view')}:")
    yield store
    store.clear()


def test_redis_view_equals_the_local_view(redis_store):
    clock = Clock()
    local = LocalViewStore(ViewSettings(10, 100))
    for store in (local, redis_store):
        ingest = TelemetryIngest(store, TOPICS, clock)
        ingest.on_message("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH))
        ingest.on_message("edge-allocator/topology", orjson.dumps({"edges": [["0", "9"]]}))
        ingest.on_message("iot/devices/7", b"nope")
    clock.t += 11
    a, b = local.snapshot(clock()), redis_store.snapshot(clock())
    assert a.request_json() == b.request_json() and a.masked == b.masked
    assert (a.source, b.source) == ("ingest", "redis")
    assert local.counts() == redis_store.counts()
    # a second reader (another replica) sees the same view: it lives in Redis
    other = RedisViewStore("redis://127.0.0.1:6379/0", ViewSettings(10, 100),
                           prefix=redis_store._nodes.removesuffix("nodes"))
    assert other.snapshot(clock()).request_json() == b.request_json()


def test_redis_down_is_view_unavailable():
    store = RedisViewStore("redis://127.0.0.1:1/0", socket_timeout_s=0.2)
    with pytest.raises(ViewUnavailable, match="127.0.0.1:1"):
        store.snapshot(time.time())


# --- a real broker -----------------------------------------------------------------------


def _network(url: str, prefix: str, **kw) -> LiveNetwork:
    cfg = LiveNetworkConfig.model_validate({"mqtt": {
        "url": url, "device_prefix": prefix, "topology_topic": f"{prefix}/topology"}, **kw})
    net = LiveNetwork(cfg).start()
    assert net.subscriber is not None and net.subscriber.wait_connected(10)
    return net


def test_simulated_devices_over_mosquitto_become_the_view():
    url, prefix = shared_broker_url(), unique_prefix("fleet")
    net = _network(url, prefix)
    fleet = DeviceFleet(12, seed=3)
    pub = Publisher(MqttConfig(url=url))
    try:
        publish_fleet(fleet, pub, Topics(prefix, f"{prefix}/topology"), 0.0, ticks=2)
        expected = fleet.devices()  # the last tick's values (timestamps aside)
        want = [[d["metrics"][f] for f in NODE_FIELDS[:6]] + [d["device_type"]]
                for d in expected]
        assert wait_for(lambda: net.snapshot().values.tolist() == want, 10), \
            (net.snapshot().values.tolist(), want)
        snap = net.snapshot()
        assert snap.node_ids == [str(i) for i in range(12)]
        assert snap.edges.tolist() == fleet.env.network.links.tolist()
        counts = net.store.counts()
        assert counts["reports"] == 2 * 2 * 12, (counts, list(net.ingest.recent))  # per-device
        assert not any(k.startswith("rejected") for k in counts), counts  # and batch, 2 ticks
    finally:
        pub.close()
        net.stop()
        _clear_retained(url, f"{prefix}/topology")


def _clear_retained(url: str, topic: str) -> None:
    pub = Publisher(MqttConfig(url=url))
    pub.publish(topic, b"", retain=True).wait_for_publish(5)
    pub.close()


def test_subscriber_reconnects_by_itself_after_a_broker_restart():
    broker = OwnBroker().start()
    try:
        net = _network(broker.url, "iot/devices")
        pub = Publisher(MqttConfig(url=broker.url))
        pub.publish("iot/devices/7", orjson.dumps(ORIGINAL_DEVICE)).wait_for_publish(5)
        assert wait_for(lambda: net.snapshot().node_ids == ["7"]), net.status()
        pub.close()
        broker.stop()
        assert wait_for(lambda: not net.subscriber.status().connected, 10), net.status()
        broker.start()  # same port, empty broker: no session, no retained messages
        assert wait_for(lambda: net.subscriber.status().connected, 20), net.status()
        assert net.subscriber.status().connections == 2
        pub = Publisher(MqttConfig(url=broker.url))
        pub.publish("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH)).wait_for_publish(5)
        assert wait_for(lambda: net.snapshot().node_ids == ["0", "7", "9"], 10), net.status()
        pub.close()
        net.stop()
    finally:
        broker.stop()


def _tls_files(tmp_path):
    """A CA and a server certificate for 127.0.0.1 (openssl), and a password file."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        missing("openssl and mosquitto_passwd", "they are not installed")

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, cwd=tmp_path)

    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test-ca")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.ext")
    run("mosquitto_passwd", "-b", "-c", "passwd", "device", "s3cret")
    (tmp_path / "password").write_text("s3cret\n")
    (tmp_path / "wrong").write_text("nope\n")
    for f in ("server.key", "passwd"):  # mosquitto reads them as whoever it runs as
        (tmp_path / f).chmod(0o644)
    return tmp_path


@pytest.fixture
def tls_dir():
    """Files mosquitto can read after it drops root for its own user (pytest's tmp_path
    is private to root)."""
    import shutil
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="ea-mqtt-tls-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_tls_and_credentials_from_the_config(tls_dir):
    d = _tls_files(tls_dir)
    broker = OwnBroker(config=(
        "listener {port} 127.0.0.1\n"
        f"cafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
        f"allow_anonymous false\npassword_file {d / 'passwd'}\n")).start()
    try:
        url = f"mqtts://127.0.0.1:{broker.port}"
        good = LiveNetworkConfig.model_validate({"mqtt": {
            "url": url, "username": "device", "password_file": str(d / "password"),
            "tls": {"ca_file": str(d / "ca.crt")}}})
        net = LiveNetwork(good).start()
        assert net.subscriber.wait_connected(10), net.status()
        pub = Publisher(good.mqtt)
        pub.publish("iot/devices/7", orjson.dumps(ORIGINAL_DEVICE)).wait_for_publish(5)
        assert wait_for(lambda: net.snapshot().node_ids == ["7"]), net.status()
        pub.close()
        net.stop()
        bad = LiveNetworkConfig.model_validate({"mqtt": {
            "url": url, "username": "device", "password_file": str(d / "wrong"),
            "tls": {"ca_file": str(d / "ca.crt")}}})
        net = LiveNetwork(bad).start()
        assert not net.subscriber.wait_connected(3)
        assert "refused" in (net.subscriber.status().last_error or ""), net.status()
        net.stop()
        untrusted = LiveNetworkConfig.model_validate({"mqtt": {  # the system CAs: no
            "url": url, "username": "device", "password_file": str(d / "password")}})
        net = LiveNetwork(untrusted).start()
        assert not net.subscriber.wait_connected(3)
        net.stop()
    finally:
        broker.stop()
