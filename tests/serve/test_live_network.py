"""The live network on the Ray cluster: MqttIngest subscribed to a real Mosquitto, the
ingress deciding on its view (through the deployment's handle, or through Redis), and
the view kept in Redis while the ingest replica is killed and replaced."""

from __future__ import annotations

import queue
import time

import httpx
import orjson
import pytest

from edge_allocator.config import MqttConfig
from edge_allocator.live.devices import DeviceFleet, publish_fleet
from edge_allocator.live.mqtt import Publisher, TelemetrySubscriber
from edge_allocator.live.telemetry import Topics
from tests.conftest import missing
from tests.mqtt_broker import shared_broker_url, unique_prefix, wait_for
from tests.serve.test_openapi_conformance import _validate

pytestmark = pytest.mark.cluster
TASK = {"compute_gcycles": 2.0, "memory_mb": 256, "data_mb": 1.0, "deadline_ms": 900}
REDIS_URL = "redis://127.0.0.1:6379/0"


def _deploy(name: str, test_models, tmp_path, live: dict) -> str:
    from ray import serve

    from deployments.app import build_app
    from tests.serve.conftest import app_options

    args, options = app_options(test_models, tmp_path / f"{name}.db")
    options["MqttIngest"]["user_config"] = live
    serve.run(build_app(args, options), name=name, route_prefix=f"/{name}", blocking=False)
    deadline = time.time() + 120
    while time.time() < deadline:
        status = serve.status().applications.get(name)
        if status is not None and status.status == "RUNNING":
            return name
        time.sleep(0.5)
    raise TimeoutError(f"{name} not RUNNING: {serve.status()}")


def _live(prefix: str, **kw) -> dict:
    return {"mqtt": {"url": shared_broker_url(), "device_prefix": prefix,
                     "topology_topic": f"{prefix}/topology"}, "snapshot_reuse_s": 0, **kw}


def _publish(prefix: str, n: int = 20, seed: int = 5) -> DeviceFleet:
    fleet = DeviceFleet(n, seed=seed)
    pub = Publisher(MqttConfig(url=shared_broker_url()))
    try:
        publish_fleet(fleet, pub, Topics(prefix, f"{prefix}/topology"), 0.0, ticks=2,
                      mode="both")
    finally:
        pub.close()
    return fleet


def _clear(prefix: str) -> None:
    pub = Publisher(MqttConfig(url=shared_broker_url()))
    pub.publish(f"{prefix}/topology", b"", retain=True).wait_for_publish(5)
    pub.close()


def _full_state(fleet: DeviceFleet) -> dict:
    return {"nodes": [{"node_id": str(d["device_id"]), **d["metrics"],
                       "node_type": d["device_type"]} for d in fleet.devices()],
            "edges": fleet.env.network.links.tolist(), "task": TASK}


def _same(a: dict, b: dict) -> None:
    assert (a["node_id"], a["ranking"], a["model"]) == (b["node_id"], b["ranking"], b["model"])
    for k, v in b["scores"].items():
        assert a["scores"][k] == pytest.approx(v, abs=1e-6)


def _wait_view(client: httpx.Client, base: str, fleet: DeviceFleet) -> dict:
    want = [d["metrics"]["cpu_util"] for d in fleet.devices()]
    view: dict = {}

    def ready() -> bool:
        nonlocal view
        view = client.get(f"{base}/v1/network").json()
        return [n["metrics"]["cpu_util"] for n in view.get("nodes", [])] == want

    assert wait_for(ready, 30, 0.2), view
    return view


def test_live_network_through_the_ingest_handle(ray_cluster, test_models, tmp_path, client):
    prefix = unique_prefix("serve")
    live_cfg = _live(prefix)
    live_cfg["mqtt"]["request_topic"] = f"{prefix}/requests"
    name = _deploy("live-handle", test_models, tmp_path, live_cfg)
    base = f"http://127.0.0.1:{ray_cluster['port']}/{name}"
    try:
        fleet = _publish(prefix)
        view = _wait_view(client, base, fleet)
        assert view["source"] == "ingest" and view["ingest"]["connected"] is True
        doc = client.get(f"{base}/openapi.json").json()
        _validate(doc, "/v1/network", "GET", client.get(f"{base}/v1/network"))
        assert view["node_count"] == 20 and len(view["edges"]) == len(fleet.env.network.links)
        live = client.post(f"{base}/v1/allocate", json={"network": "live", "task": TASK})
        assert live.status_code == 200, live.text
        full = client.post(f"{base}/v1/allocate", json=_full_state(fleet))
        assert full.status_code == 200, full.text
        _same(live.json(), full.json())
        assert live.json()["snapshot"]["node_count"] == 20
        _validate(doc, "/v1/allocate", "POST", live)
        batch = client.post(f"{base}/v1/allocate/batch",
                            json={"network": "live", "tasks": [TASK, TASK]})
        assert batch.status_code == 200 and len(batch.json()["decisions"]) == 2
        _validate(doc, "/v1/allocate/batch", "POST", batch)
        bad = client.post(f"{base}/v1/allocate", json={"network": "live", "task": {"data_mb": -1}})
        assert bad.status_code == 422 and bad.json()["error"].startswith("task.data_mb")
        # MQTT request/response: MqttIngest -> Ingress.mqtt_request -> the reply topic
        replies: queue.Queue = queue.Queue()
        sub = TelemetrySubscriber(MqttConfig(url=shared_broker_url()),
                                  (f"{prefix}/replies/#",),
                                  lambda t, p: replies.put((t, orjson.loads(p))))
        sub.start()
        assert sub.wait_connected(10)
        pub = Publisher(MqttConfig(url=shared_broker_url()))
        pub.publish(f"{prefix}/requests", orjson.dumps(
            {"task": TASK, "reply_to": f"{prefix}/replies/7", "correlation_id": 7}
        )).wait_for_publish(5)
        topic, reply = replies.get(timeout=30)
        sub.stop()
        assert topic == f"{prefix}/replies/7" and reply["correlation_id"] == 7, reply
        _same(reply, live.json())
        pub.publish(f"{prefix}/3", b"{nope").wait_for_publish(5)
        pub.close()
        assert wait_for(lambda: client.get(f"{base}/v1/network").json()["counts"]
                        .get("rejected", {}).get("malformed_json") == 1, 10)
    finally:
        from ray import serve

        serve.delete(name)
        _clear(prefix)


def test_view_in_redis_outlives_the_ingest_replica(ray_cluster, test_models, tmp_path,
                                                   client):
    import ray
    import redis
    from ray import serve

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=0.5).ping()
    except (redis.RedisError, OSError) as exc:
        missing("Redis on 127.0.0.1:6379", f"it does not answer ({exc})")
    prefix = unique_prefix("redis")
    live = _live(prefix, redis_url=REDIS_URL, redis_prefix=f"{prefix}:")
    name = _deploy("live-redis", test_models, tmp_path, live)
    base = f"http://127.0.0.1:{ray_cluster['port']}/{name}"
    try:
        fleet = _publish(prefix)
        view = _wait_view(client, base, fleet)
        assert view["source"] == "redis"
        before = client.post(f"{base}/v1/allocate", json={"network": "live", "task": TASK})
        assert before.status_code == 200
        (actor,) = [a for a in ray.util.list_named_actors(all_namespaces=True)
                    if name in a["name"] and "MqttIngest" in a["name"]]
        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
        # while the ingest replica is gone and replaced, decisions keep coming from Redis
        codes = []
        for _ in range(20):
            r = client.post(f"{base}/v1/allocate", json={"network": "live", "task": TASK})
            codes.append(r.status_code)
            if r.status_code == 200:
                _same(r.json(), before.json())
            time.sleep(0.1)
        assert codes.count(200) == len(codes), codes
        assert wait_for(lambda: client.get(f"{base}/v1/network").json()["ingest"]
                        .get("connected") is True, 60, 0.5)
    finally:
        serve.delete(name)
        _clear(prefix)
        redis.Redis.from_url(REDIS_URL).delete(*(f"{prefix}:{k}" for k in
                                                 ("nodes", "topology", "counts")))

