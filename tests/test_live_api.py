"""Decisions on the live network without Ray: FrontDoor + AllocatorApi in this process,
the view fed by a LiveNetwork (messages handed to its ingest, or a real Mosquitto)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from edge_allocator.config import LiveNetworkConfig, ModelSpec, MqttConfig, ServiceConfig
from edge_allocator.live.devices import DeviceFleet, publish_fleet
from edge_allocator.live.mqtt import Publisher
from edge_allocator.live.network import LiveNetwork
from edge_allocator.live.telemetry import Topics
from edge_allocator.service.http import FrontDoor
from edge_allocator.service.inline import in_process_api
from edge_allocator.service.live_api import LiveApi, LocalIngest
from tests.mqtt_broker import shared_broker_url, unique_prefix, wait_for
from tests.test_live import ORIGINAL_BATCH, ORIGINAL_DEVICE

TASK = {"compute_gcycles": 2.0, "memory_mb": 256, "data_mb": 1.0, "deadline_ms": 900}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    db = tmp_path_factory.mktemp("live-db") / "decisions.db"
    cfg = ServiceConfig(database_url=f"sqlite:///{db}", cache="none",
                        spool_path=db.parent / "spool.jsonl",
                        models={"hybrid": ModelSpec(), "dqn": ModelSpec()})
    api = in_process_api(cfg)
    yield api
    api.close()


def _net(url: str = "mqtt://127.0.0.1:1883", prefix: str = "iot/devices",
         **kw) -> LiveNetwork:
    return LiveNetwork(LiveNetworkConfig.model_validate(
        {"mqtt": {"url": url, "device_prefix": prefix, "topology_topic": f"{prefix}/topo"},
         "snapshot_reuse_s": 0, **kw}))


def _door(api, net: LiveNetwork) -> FrontDoor:
    return FrontDoor(api, LiveApi(api, LocalIngest(net)))


def call(door: FrontDoor, method: str, path: str, body: object = None,
         query: dict | None = None) -> tuple[int, dict]:
    raw = orjson.dumps(body) if body is not None else b""

    async def read() -> bytes:
        return raw

    out = asyncio.run(door.handle(method, path, {"content-type": "application/json"},
                                  query or {}, read))
    return out.status, orjson.loads(out.body)


def _same(live: dict, full: dict) -> None:
    for k in ("node_id", "node_index", "ranking", "model"):
        assert live[k] == full[k], k
    for nid, s in full["scores"].items():
        assert live["scores"][nid] == pytest.approx(s, abs=1e-6)


def test_live_decisions_equal_the_same_state_sent_in_full(api):
    net = _net()
    net.ingest.on_message("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH))
    door = _door(api, net)
    snap = net.snapshot()
    for model in ("hybrid", "dqn"):
        st, live = call(door, "POST", "/v1/allocate",
                        {"network": "live", "task": TASK, "model": model})
        assert st == 200, live
        st, full = call(door, "POST", "/v1/allocate",
                        {**snap.request_json(TASK), "model": model})
        assert st == 200, full
        _same(live, full)
        ref = live["snapshot"]
        assert ref["node_count"] == 3 and ref["source"] == "ingest" and ref["masked"] == {}
        assert abs(ref["taken_at"] - time.time()) < 60
    st, batch = call(door, "POST", "/v1/allocate/batch",
                     {"network": "live", "tasks": [TASK, {"compute_gcycles": 9.0}]})
    assert st == 200, batch
    assert len(batch["decisions"]) == 2 and batch["snapshot"]["node_count"] == 3
    st, full = call(door, "POST", "/v1/allocate/batch",
                    {"states": [snap.request_json(TASK), snap.request_json(
                        {"compute_gcycles": 9.0})]})
    for a, b in zip(batch["decisions"], full["decisions"]):
        _same(a, b)
    st, trimmed = call(door, "POST", "/v1/allocate", {"network": "live", "task": TASK},
                       {"fields": "node_id,confidence"})
    assert st == 200 and set(trimmed) == {"node_id", "confidence", "snapshot"}


def test_simulator_telemetry_over_mosquitto_decides_like_the_full_state(api):
    url, prefix = shared_broker_url(), unique_prefix("decide")
    net = _net(url, prefix).start()
    assert net.subscriber.wait_connected(10)
    fleet = DeviceFleet(20, seed=11)
    pub = Publisher(MqttConfig(url=url))
    try:
        publish_fleet(fleet, pub, Topics(prefix, f"{prefix}/topo"), 0.0, ticks=3, mode="batch")
        want = fleet.devices()
        assert wait_for(lambda: [n["cpu_util"] for n in net.snapshot().request_json()["nodes"]]
                        == [d["metrics"]["cpu_util"] for d in want], 10)
        door = _door(api, net)
        st, live = call(door, "POST", "/v1/allocate", {"network": "live", "task": TASK})
        assert st == 200, live
        # the same state, written by hand from what the devices published
        full_state = {"nodes": [{"node_id": str(d["device_id"]), **d["metrics"],
                                 "node_type": d["device_type"]} for d in want],
                      "edges": fleet.env.network.links.tolist(), "task": TASK}
        st, full = call(door, "POST", "/v1/allocate", full_state)
        assert st == 200, full
        _same(live, full)
        assert live["snapshot"]["node_count"] == 20
    finally:
        pub.close()
        net.stop()
        clear = Publisher(MqttConfig(url=url))
        clear.publish(f"{prefix}/topo", b"", retain=True).wait_for_publish(5)
        clear.close()


def test_stale_nodes_are_never_chosen_and_the_response_says_why(api):
    net = _net(stale_after_s=5, forget_after_s=1000)
    net.ingest.on_message("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH))
    door = _door(api, net)
    st, first = call(door, "POST", "/v1/allocate", {"network": "live", "task": TASK})
    chosen = first["node_id"]
    # every node but the chosen one reports again; the chosen one goes silent
    records = net.store._records  # noqa: SLF001 - age it by hand
    old = records[chosen]
    records[chosen] = type(old)(old.metrics, old.node_type, old.seen_at - 60, old.device_time)
    st, second = call(door, "POST", "/v1/allocate", {"network": "live", "task": TASK})
    assert st == 200, second
    assert second["node_id"] != chosen and chosen not in second["ranking"]
    assert second["snapshot"]["masked"][chosen].startswith("stale: no telemetry for 6")
    st, view = call(door, "GET", "/v1/network")
    assert st == 200
    node = next(n for n in view["nodes"] if n["node_id"] == chosen)
    assert node["masked"] and node["reason"].startswith("stale") and node["age_s"] > 59
    assert view["masked_count"] == 1 and view["node_count"] == 3
    for nid in list(records):  # all silent: no feasible node, a 422 naming nodes
        r = records[nid]
        records[nid] = type(r)(r.metrics, r.node_type, r.seen_at - 60, r.device_time)
    st, none = call(door, "POST", "/v1/allocate", {"network": "live", "task": TASK})
    assert st == 422 and none["error"].startswith("nodes: no feasible node")


def test_network_view_shows_nodes_topology_and_counts(api):
    net = _net()
    net.ingest.on_message("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH))
    net.ingest.on_message("iot/devices/7", b"{broken")
    net.ingest.on_message("iot/devices/topo", orjson.dumps(
        {"edges": [["0", "7"], ["7", "9"]], "nodes": {"7": {"capacity_gcps": 6.5}}}))
    st, view = call(_door(api, net), "GET", "/v1/network")
    assert st == 200, view
    assert view["enabled"] and view["source"] == "ingest" and view["node_count"] == 3
    assert view["edges"] == [["0", "7"], ["7", "9"]]
    n7 = next(n for n in view["nodes"] if n["node_id"] == "7")
    assert n7["metrics"] == ORIGINAL_DEVICE["metrics"] and n7["node_type"] == 1
    assert n7["fields"] == {"capacity_gcps": 6.5} and not n7["masked"]
    assert view["counts"]["rejected"] == {"malformed_json": 1}
    assert view["counts"]["reports"] == 3
    assert view["ingest"]["recent_rejections"][0]["topic"] == "iot/devices/7"


@pytest.mark.parametrize("body,status,loc", [
    ({"network": "full", "task": TASK}, 422, "network"),
    ({"network": "live", "nodes": [], "task": TASK}, 422, "nodes"),
    ({"network": "live", "task": {"compute_gcycles": -1}}, 422, "task.compute_gcycles"),
    ({"network": "live", "task": "now"}, 422, "task"),
    ({"network": "live", "model": "nope"}, 404, ""),
])
def test_bad_live_requests_are_4xx_naming_the_field(api, body, status, loc):
    net = _net()
    net.ingest.on_message("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH))
    st, out = call(_door(api, net), "POST", "/v1/allocate", body)
    assert st == status, out
    if loc:
        assert out["error"].startswith(loc), out


def test_batch_tasks_are_validated_with_their_index(api):
    net = _net()
    net.ingest.on_message("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH))
    st, out = call(_door(api, net), "POST", "/v1/allocate/batch",
                   {"network": "live", "tasks": [TASK, {"deadline_ms": 0}]})
    assert st == 422 and out["error"].startswith("tasks.1.deadline_ms"), out


def test_off_empty_and_absent_are_clear_errors(api):
    off = LiveNetwork(LiveNetworkConfig())
    st, out = call(_door(api, off), "POST", "/v1/allocate", {"network": "live"})
    assert st == 422 and "off" in out["error"] and out["error"].startswith("network")
    st, view = call(_door(api, off), "GET", "/v1/network")
    assert st == 200 and view["enabled"] is False
    st, out = call(_door(api, _net()), "POST", "/v1/allocate", {"network": "live"})
    assert st == 503 and "no telemetry" in out["error"]
    st, out = call(FrontDoor(api), "POST", "/v1/allocate", {"network": "live"})
    assert st == 422 and out["error"].startswith("network")


def test_live_decisions_are_logged_and_take_feedback(api):
    net = _net()
    net.ingest.on_message("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH))
    door = _door(api, net)
    st, d = call(door, "POST", "/v1/allocate", {"network": "live", "task": TASK})
    assert st == 200
    api.decision_log.flush()
    st, fb = call(door, "POST", "/v1/feedback", {"decision_id": d["decision_id"],
                                                 "completion_ms": 120.0, "success": True})
    assert st == 200 and fb == {"decision_id": d["decision_id"], "recorded": True}


def test_requests_do_not_queue_behind_a_snapshot_refresh(api):
    """Past snapshot_reuse_s the old snapshot is served (up to twice that age) while one
    refresh runs in the background; only the first request waits for the ingest."""
    net = _net(snapshot_reuse_s=0.3)
    net.ingest.on_message("iot/devices/batch", orjson.dumps(ORIGINAL_BATCH))

    class SlowIngest(LocalIngest):
        calls = 0

        async def snapshot(self):
            SlowIngest.calls += 1
            await asyncio.sleep(0.2)
            return self.network.snapshot()

    live = LiveApi(api, SlowIngest(net))

    async def scenario():
        first = await live.snapshot()  # nothing to serve yet: waits
        await asyncio.sleep(0.35)
        t0 = time.perf_counter()
        again = await asyncio.gather(*(live.snapshot() for _ in range(8)))
        waited = time.perf_counter() - t0
        await asyncio.sleep(0.3)  # the background refresh lands
        return first, again, waited, await live.snapshot()

    first, again, waited, later = asyncio.run(scenario())
    assert all(s is first for s in again) and waited < 0.1, waited
    assert later is not first and later.taken_at > first.taken_at
    assert SlowIngest.calls == 2  # eight requests, one refresh
