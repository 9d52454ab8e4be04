"""Devices that publish telemetry from our simulator, in the original project's format.

``DeviceFleet`` runs a synthetic network of the simulator (``sim.env``) with tasks
arriving and placed by the greedy earliest-finish heuristic, so load, queues and memory
move the way the environment's dynamics make them move (not random noise). Every tick
advances the network by ``tasks_per_tick`` placements, then reports each node as a
device: ``device_id`` is the node index, ``device_type`` its tier, ``type_name`` the
original simulator's name (``sensor``, ``fog_node``, ``cloud_node``), ``metrics`` the
node fields. The links of the network go to our topology topic, retained, so a
subscriber that joins later still has them.

``edge-allocator simulate-devices`` (cli.py) publishes a fleet to a broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from edge_allocator.live.mqtt import Publisher
from edge_allocator.live.telemetry import METRICS, Topics
from edge_allocator.policies.heuristics import EarliestFinishPolicy

#: The original simulator's names of the three tiers.
ORIGINAL_TYPE_NAMES = ("sensor", "fog_node", "cloud_node")
MODES = ("both", "device", "batch")


class DeviceFleet:
    """``n`` devices (n >= 5) of a synthetic network drawn from ``seed``."""

    def __init__(self, n: int, seed: int = 0, tasks_per_tick: int = 5) -> None:
        from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig

        if n < 5:
            raise ValueError(f"DeviceFleet: n={n} devices; the simulator's networks have "
                             "at least 5 nodes")
        self.env = EdgeAllocationEnv(EnvConfig("synthetic", min_nodes=n, max_nodes=n,
                                               tasks_per_episode=10**9,
                                               include_adjacency=False))
        self.env.reset(seed=seed)
        self.tasks_per_tick = tasks_per_tick
        self._placer = EarliestFinishPolicy()

    @property
    def n(self) -> int:
        assert self.env.network is not None
        return self.env.network.n

    def tick(self) -> None:
        """Tasks arrive and are placed; load and queues move on."""
        for _ in range(self.tasks_per_tick):
            self.env.step(int(np.argmax(self._placer.scores(self.env.graph()))))

    def devices(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every node as an original-format device payload."""
        stamp = (now or datetime.now()).isoformat()
        rows = self.env.node_fields().astype(np.float64).tolist()
        out = []
        for i, row in enumerate(rows):
            node_type = int(row[len(METRICS)])
            metrics: dict[str, Any] = {k: round(v, 4) for k, v in zip(METRICS, row)}
            metrics["queue_len"] = int(row[METRICS.index("queue_len")])
            out.append({"device_id": i, "device_type": node_type,
                        "type_name": ORIGINAL_TYPE_NAMES[node_type], "timestamp": stamp,
                        "metrics": metrics})
        return out

    def batch(self, devices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"timestamp": devices[0]["timestamp"] if devices else datetime.now().isoformat(),
                "num_devices": len(devices), "devices": devices}

    def topology(self) -> dict[str, Any]:
        """The network's links by device id, for our topology topic."""
        assert self.env.network is not None
        return {"edges": [[str(a), str(b)] for a, b in self.env.network.links.tolist()]}


def publish_fleet(fleet: DeviceFleet, publisher: Publisher, topics: Topics, interval_s: float,
                  ticks: int | None = None, mode: str = "both", qos: int = 1,
                  on_tick: Callable[[int, int], None] | None = None) -> int:
    """Publish the topology (retained) once, then every ``interval_s`` one tick of
    telemetry: per-device topics, the batch topic, or both (the original publishes both).
    ``ticks`` None: until interrupted. Returns the messages published."""
    if mode not in MODES:
        raise ValueError(f"publish_fleet: mode={mode!r}; use one of {MODES}")
    publisher.publish(topics.topology, orjson.dumps(fleet.topology()), qos=qos,
                      retain=True).wait_for_publish(10)
    sent, k = 1, 0
    next_at = time.monotonic()
    while ticks is None or k < ticks:
        fleet.tick()
        devices = fleet.devices()
        infos = []
        if mode in ("both", "device"):
            for d in devices:
                infos.append(publisher.publish(f"{topics.prefix}/{d['device_id']}",
                                               orjson.dumps(d), qos=qos))
        if mode in ("both", "batch"):
            infos.append(publisher.publish(topics.batch, orjson.dumps(fleet.batch(devices)),
                                           qos=qos))
        for info in infos:
            info.wait_for_publish(10)
        sent += len(infos)
        k += 1
        if on_tick is not None:
            on_tick(k, sent)
        if ticks is not None and k >= ticks:
            break
        next_at += interval_s
        time.sleep(max(0.0, next_at - time.monotonic()))
    return sent
