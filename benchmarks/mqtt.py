"""The live network, measured: telemetry ingested, task -> decision over MQTT, and
/v1/allocate on the live network against the same state sent in full.

1. Ingest (no Ray): ``DeviceFleet`` telemetry published to the broker as fast as paho
   sends it, per-device topics, QoS 1; a ``LiveNetwork`` subscribed in the same process
   applies it to the view in this process, then to the view in Redis. Messages/s from the
   first publish to the last message applied (counted by the store), with at most
   ``WINDOW`` messages not yet applied (an unbounded burst overflows the broker's queue
   for the subscriber, and Mosquitto drops what does not fit).
2. The app (``make run``'s launcher on a copy of serve_config.yaml, the broker given by
   ``EDGE_ALLOCATOR_MQTT_URL`` as in the README, topics and a request topic of its own):
   after the fleet has reported,
   * ``/v1/allocate`` with ``{"network": "live", "task"}`` against the full state of the
     same snapshot with the same task (closed loop, ``benchmarks.load``; distinct tasks,
     so no answer comes from the decision cache);
   * task -> decision over MQTT: one request at a time on the request topic with an
     MQTT 5 response topic, timed from publish to reply received, at QoS 0 and QoS 1.

    python -m benchmarks.mqtt [--broker mqtt://127.0.0.1:1883] [--devices 20]

Writes benchmarks/results/mqtt.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from benchmarks.load import LoadResult, run_load, table
from edge_allocator.config import LiveNetworkConfig, MqttConfig
from edge_allocator.constants import PROJECT_ROOT
from edge_allocator.live.devices import DeviceFleet, publish_fleet
from edge_allocator.live.mqtt import Publisher, TelemetrySubscriber
from edge_allocator.live.network import LiveNetwork
from edge_allocator.live.telemetry import Topics

OUT = PROJECT_ROOT / "benchmarks" / "results"
REDIS_URL = "redis://127.0.0.1:6379/0"
#: Messages in flight at most: below Mosquitto's default max_queued_messages (1000), past
#: which the broker drops QoS 1 messages for a slow subscriber (seen: 7% lost unbounded).
WINDOW = 800


def ingest_rate(broker: str, devices: int, messages: int, redis_url: str | None) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    extra: dict[str, Any] = {"redis_url": redis_url, "redis_prefix": f"{prefix}:"} \
        if redis_url else {}
    net = LiveNetwork(LiveNetworkConfig.model_validate({"mqtt": {
        "url": broker, "device_prefix": prefix, "topology_topic": f"{prefix}/topology"},
        **extra})).start()
    assert net.subscriber is not None and net.subscriber.wait_connected(10)
    fleet = DeviceFleet(devices, seed=0)
    payloads = []
    while len(payloads) < messages:  # the simulator's telemetry, made before the clock runs
        fleet.tick()
        payloads += [(f"{prefix}/{d['device_id']}", orjson.dumps(d)) for d in fleet.devices()]
    payloads = payloads[:messages]
    pub = Publisher(MqttConfig(url=broker))

    def applied() -> int:
        return net.store.counts().get("reports", 0)

    t0 = time.perf_counter()
    for k in range(0, messages, WINDOW // 2):  # at most WINDOW not yet applied
        while k - applied() > WINDOW // 2:
            time.sleep(0.0005)
        for t, payload in payloads[k:k + WINDOW // 2]:
            pub.publish(t, payload, qos=1)
    published = time.perf_counter() - t0
    deadline = time.monotonic() + 60
    while applied() < messages and time.monotonic() < deadline:
        time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    got = applied()
    pub.close()
    net.stop()
    if redis_url:
        from edge_allocator.live.view import RedisViewStore

        RedisViewStore(redis_url, prefix=f"{prefix}:").clear()
    return {"store": "redis" if redis_url else "in-process", "messages": messages,
            "applied": got, "seconds": elapsed, "publish_seconds": published,
            "msgs_per_s": got / elapsed}


def _app_config(broker: str, prefix: str) -> Path:
    raw = yaml.safe_load((PROJECT_ROOT / "serve_config.yaml").read_text())
    for d in raw["applications"][0]["deployments"]:
        if d["name"] == "MqttIngest":
            d["user_config"]["mqtt"].update(device_prefix=prefix,  # url: from the env
                                            topology_topic=f"{prefix}/topology",
                                            request_topic=f"{prefix}/requests")
        if d["name"] == "Ingress":  # a benchmark's decisions need no log on disk
            d["user_config"]["database_url"] = None
    tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump(raw, tmp)
    tmp.close()
    return Path(tmp.name)


def _tasks(n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    return [{"compute_gcycles": float(rng.uniform(0.2, 6)),
             "memory_mb": float(rng.uniform(64, 1024)),
             "data_mb": float(rng.uniform(0.1, 8)),
             "deadline_ms": float(rng.uniform(300, 3000))} for _ in range(n)]


def mqtt_latency(broker: str, prefix: str, n: int, qos: int) -> dict[str, Any]:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    replies: queue.Queue[bytes] = queue.Queue()
    sub = TelemetrySubscriber(MqttConfig(url=broker), (f"{prefix}/replies",),
                              lambda t, p: replies.put(p))
    sub.start()
    assert sub.wait_connected(10)
    pub = Publisher(MqttConfig(url=broker))
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = f"{prefix}/replies"
    lat, errors, inside = [], 0, []  # inside: the ingress's own latency_ms of each decision
    for k, task in enumerate(_tasks(n + 10, seed=1)):
        t0 = time.perf_counter()
        pub.publish(f"{prefix}/requests", orjson.dumps({"task": task, "correlation_id": k}),
                    qos=qos, properties=props)
        reply = orjson.loads(replies.get(timeout=30))
        if k >= 10:  # after a warm-up
            lat.append((time.perf_counter() - t0) * 1000)
            errors += "error" in reply or reply.get("correlation_id") != k
            inside.append(float(reply.get("latency_ms", np.nan)))
    pub.close()
    sub.stop()
    a = np.array(lat)
    return {"qos": qos, "requests": n, "errors": int(errors), "p50_ms": float(np.percentile(a, 50)),
            "p90_ms": float(np.percentile(a, 90)), "p99_ms": float(np.percentile(a, 99)),
            "ingress_p50_ms": float(np.nanpercentile(inside, 50)) if inside else None}


def _report(fleet: DeviceFleet, pub: Publisher, topics: Topics, stop: threading.Event) -> None:
    publish_fleet(fleet, pub, topics, 0.0, ticks=1, mode="batch")  # topology + a first batch
    while not stop.wait(1.0):
        fleet.tick()
        pub.publish(topics.batch, orjson.dumps(fleet.batch(fleet.devices())), qos=1)


def app_numbers(broker: str, devices: int, seconds: float, concurrency: int,
                latency_requests: int) -> dict[str, Any]:
    import httpx

    from edge_allocator.runtime.serverun import ServeRun

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    cfg = _app_config(broker, prefix)
    run = ServeRun(cfg)
    os.environ["EDGE_ALLOCATOR_MQTT_URL"] = broker  # as the README starts it: the variable
    stop = threading.Event()
    pub = Publisher(MqttConfig(url=broker))
    try:
        ready_s = run.start()
        fleet = DeviceFleet(devices, seed=2)
        # the devices keep reporting (one batch a second) while the load runs: a view
        # whose devices went silent is all masked after stale_after_s
        reporter = threading.Thread(target=_report, daemon=True,
                                    args=(fleet, pub, Topics(prefix, f"{prefix}/topology"), stop))
        reporter.start()
        deadline = time.monotonic() + 30
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            view = httpx.get(f"{run.url}/v1/network", timeout=10).json()
            if view.get("node_count") == devices:
                break
            time.sleep(0.2)
        assert view.get("node_count") == devices, view
        state = {"nodes": [{"node_id": n["node_id"], **n["metrics"], "node_type": n["node_type"]}
                           for n in view["nodes"]],
                 "edges": [[int(a), int(b)] for a, b in view["edges"]]}
        tasks = _tasks(4000)
        live = [orjson.dumps({"network": "live", "task": t}) for t in tasks]
        full = [orjson.dumps({**state, "task": t}) for t in tasks]
        url = f"{run.url}/v1/allocate"
        rows: list[tuple[str, LoadResult]] = []
        for name, bodies in (("full state", full), ("network: live", live)) * 2:
            rows.append((name, asyncio.run(run_load(url, bodies, concurrency, 10**6, seconds))))
        rows = rows[2:]  # the first round warms up (autoscaling, caches)
        latency = [mqtt_latency(broker, prefix, latency_requests, qos) for qos in (0, 1)]
        ingest = httpx.get(f"{run.url}/v1/network", timeout=10).json()["ingest"]
        return {"ready_s": ready_s, "devices": devices, "load": rows, "mqtt": latency,
                "requests": ingest.get("requests", {})}
    finally:
        stop.set()
        run.stop()
        pub.close()
        cfg.unlink(missing_ok=True)
        clear = Publisher(MqttConfig(url=broker))
        clear.publish(f"{prefix}/topology", b"", retain=True).wait_for_publish(5)
        clear.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--latency-requests", type=int, default=300)
    p.add_argument("--no-app", action="store_true", help="only the ingest numbers")
    args = p.parse_args()
    ingest = [ingest_rate(args.broker, args.devices, args.messages, None)]
    try:
        ingest.append(ingest_rate(args.broker, args.devices, args.messages, REDIS_URL))
    except Exception as exc:  # noqa: BLE001 - no Redis here: say so, keep the rest
        print(f"Redis ingest skipped: {exc}")
    app = None if args.no_app else app_numbers(args.broker, args.devices, args.seconds,
                                                args.concurrency, args.latency_requests)
    lines = ["# benchmarks.mqtt", "", f"Broker {args.broker} (Mosquitto), {args.devices} "
             "simulated devices; one run on this 2-CPU machine.", "",
             "## Telemetry ingested (per-device messages, QoS 1, publisher and subscriber "
             "in one process)", "", "| view | messages | applied | seconds | msgs/s |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['store']} | {r['messages']} | {r['applied']} | {r['seconds']:.2f} | "
              f"{r['msgs_per_s']:,.0f} |" for r in ingest]
    if app is not None:
        lines += ["", f"## /v1/allocate, {args.devices}-node network, concurrency "
                  f"{args.concurrency}, {args.seconds:g} s each (second round of two)", "",
                  table(app["load"]).rstrip(), "",
                  "## Task -> decision over MQTT (request topic -> response topic, one at a "
                  "time; the reply at the request's QoS)", "",
                  "| QoS | requests | p50 ms | p90 ms | p99 ms | errors | ingress latency_ms p50 |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {m['qos']} | {m['requests']} | {m['p50_ms']:.2f} | {m['p90_ms']:.2f} | "
                  f"{m['p99_ms']:.2f} | {m['errors']} | {m['ingress_p50_ms']:.2f} |"
                  for m in app["mqtt"]]
        lines += ["",
                  f"Request counters of MqttIngest: {app['requests']}"]
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "mqtt.md").write_text(text)
    js = {"ingest": ingest, "app": None if app is None else {
        **app, "load": [(n, r._asdict()) for n, r in app["load"]]}}
    (OUT / "mqtt.json").write_text(json.dumps(js, indent=1))


if __name__ == "__main__":
    main()
