"""Telemetry messages -> validated node reports, or a ``BadMessage`` saying why not.

Topics and payloads (``prefix`` is ``iot/devices`` unless configured otherwise):

* ``{prefix}/{device_id}``: one device, the original AI Edge Allocator's shape::

    {"device_id": 7, "device_type": 1, "type_name": "fog_node",
     "timestamp": "2025-10-09T12:00:00.123456",
     "metrics": {"cpu_util", "mem_util", "energy", "latency", "bandwidth", "queue_len"}}

  ``device_id`` (int or string; the topic's id when absent, and it must match the
  topic's when present) becomes the node's ``node_id`` as a string. ``device_type`` is
  the ``node_type`` (0 sensor/gateway, 1 edge/fog, 2 cloud); without it ``type_name``
  decides (``sensor``/``gateway``, ``fog_node``/``edge``/``fog``, ``cloud_node``/``cloud``).
  ``timestamp`` is ISO 8601 (naive = local time, as the original simulator writes it)
  or Unix seconds; optional, shown, never used for staleness (device clocks drift: age
  counts from when the message arrived).
* ``{prefix}/batch``: ``{"timestamp", "num_devices", "devices": [<as above>]}``; each
  device is validated on its own, so one bad device is dropped and counted while the
  others are applied.
* ``edge-allocator/topology`` (ours; configurable, publish it retained)::

    {"edges": [["0", "5"], ["5", "12"], ...],
     "nodes": {"5": {"node_type": 1, "capacity_gcps": 6.0, "memory_mb": 8192,
                     "queue_capacity": 32}}}

  ``edges`` link node ids (strings or ints) and replace the topology (``null`` or
  absent: the default topology from the node types, as for a request without
  ``edges``); links to nodes not in the view are kept and apply once the node reports.
  ``nodes`` carries fields a device does not send: ``node_type`` overrides the device's
  own; the capacity fields are validated, stored and shown by ``GET /v1/network``, and
  not yet used by decisions (the request node schema has no capacity fields yet).

Every check matches the HTTP API's node checks (``columnar.NODE_RANGES``): numbers only
(no booleans, no strings), finite, in range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from edge_allocator.columnar import NODE_RANGES
from edge_allocator.constants import MAX_EDGES, MAX_NODES

#: The six metrics a device reports, in ``NODE_FIELDS`` order (node_type comes apart).
METRICS: tuple[str, ...] = ("cpu_util", "mem_util", "energy", "latency", "bandwidth",
                            "queue_len")
#: The original simulator's type names, and a few obvious synonyms.
TYPE_NAMES: dict[str, int] = {
    "sensor": 0, "gateway": 0, "fog_node": 1, "fog": 1, "edge": 1, "edge_node": 1,
    "cloud_node": 2, "cloud": 2,
}
#: Capacity fields of the topology topic: (lower bound, exclusive).
CAPACITY_FIELDS: dict[str, tuple[float, float]] = {
    "capacity_gcps": (0.0, 1e6), "memory_mb": (0.0, 1e9), "queue_capacity": (0.0, 1e6),
}
#: Messages larger than this are refused unread.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_ID_CHARS = 128
#: Why a message (or one device of a batch) was dropped: a small fixed set, so it can
#: tag a metric.
REASONS: tuple[str, ...] = (
    "too_large", "malformed_json", "not_an_object", "unknown_topic", "missing_field",
    "wrong_type", "out_of_range", "unknown_type", "id_mismatch", "bad_timestamp",
)


class BadMessage(ValueError):
    """A message, or one device of a batch, that must not reach the view."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One device's latest metrics, validated."""

    node_id: str
    metrics: tuple[float, ...]  # METRICS order
    node_type: int
    device_time: float | None  # Unix seconds the device stamped, if it did


@dataclass(frozen=True, slots=True)
class TopologyReport:
    """Our own topic: links by node id (None: default topology) and extra node fields."""

    edges: tuple[tuple[str, str], ...] | None
    nodes: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Parsed:
    """What one message carried: node reports and the devices of it that were dropped."""

    reports: tuple[NodeReport, ...] = ()
    topology: TopologyReport | None = None
    dropped: tuple[BadMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class Topics:
    """Where telemetry arrives. ``prefix`` + ``/+`` covers devices and the batch."""

    prefix: str = "iot/devices"
    topology: str = "edge-allocator/topology"

    @property
    def batch(self) -> str:
        return f"{self.prefix}/batch"

    def subscriptions(self) -> tuple[str, ...]:
        return (f"{self.prefix}/+", self.topology)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadMessage("wrong_type", f"{where}: expected a number, got "
                         f"{type(value).__name__}")
    try:
        x = float(value)
    except OverflowError:
        raise BadMessage("out_of_range", f"{where}: {value} is beyond float range") from None
    if not math.isfinite(x):
        raise BadMessage("out_of_range", f"{where}: {value} is not finite")
    return x


def _node_id(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadMessage("wrong_type", f"{where}: expected an int or a string, got "
                         f"{type(value).__name__}")
    out = str(value)
    if not out or len(out) > MAX_ID_CHARS:
        raise BadMessage("out_of_range", f"{where}: ids are 1..{MAX_ID_CHARS} characters")
    return out


def _node_type(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in (0, 1, 2):
        raise BadMessage("unknown_type", f"{where}: {value!r} is not 0 (sensor/gateway), "
                         "1 (edge/fog) or 2 (cloud)")
    return int(value)


def _timestamp(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()  # naive: local time
        except (ValueError, OverflowError, OSError):
            raise BadMessage("bad_timestamp", f"{where}: {value[:64]!r} is not ISO 8601"
                             ) from None
    x = _number(value, where)
    if not 0 <= x < 1e11:
        raise BadMessage("bad_timestamp", f"{where}: expected ISO 8601 or Unix seconds")
    return x


def parse_device(data: Any, where: str, topic_id: str | None = None) -> NodeReport:
    """One device object (of a device topic or a batch) -> a report, or BadMessage."""
    if not isinstance(data, dict):
        raise BadMessage("not_an_object", f"{where}: expected an object, got "
                         f"{type(data).__name__}")
    raw_id = data.get("device_id", topic_id)
    if raw_id is None:
        raise BadMessage("missing_field", f"{where}.device_id: required")
    node_id = _node_id(raw_id, f"{where}.device_id")
    if topic_id is not None and node_id != topic_id:
        raise BadMessage("id_mismatch", f"{where}.device_id: {node_id!r} differs from the "
                         f"topic's {topic_id!r}")
    if "device_type" in data:
        node_type = _node_type(data["device_type"], f"{where}.device_type")
    elif "type_name" in data:
        name = data["type_name"]
        if not isinstance(name, str) or name.lower() not in TYPE_NAMES:
            raise BadMessage("unknown_type", f"{where}.type_name: {str(name)[:64]!r} is not "
                             f"one of {sorted(TYPE_NAMES)}")
        node_type = TYPE_NAMES[name.lower()]
    else:
        raise BadMessage("missing_field", f"{where}.device_type: required (or type_name)")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        raise BadMessage("missing_field" if metrics is None else "not_an_object",
                         f"{where}.metrics: expected an object of {', '.join(METRICS)}")
    values = []
    for name in METRICS:
        if name not in metrics:
            raise BadMessage("missing_field", f"{where}.metrics.{name}: required")
        x = _number(metrics[name], f"{where}.metrics.{name}")
        lo, hi = NODE_RANGES[name]
        if not lo <= x <= hi:
            raise BadMessage("out_of_range", f"{where}.metrics.{name}: {x} is outside "
                             f"[{lo}, {hi}]")
        values.append(x)
    return NodeReport(node_id, tuple(values), node_type,
                      _timestamp(data.get("timestamp"), f"{where}.timestamp"))


def parse_topology(data: Any) -> TopologyReport:
    if not isinstance(data, dict):
        raise BadMessage("not_an_object", f"expected an object, got {type(data).__name__}")
    raw_edges = data.get("edges")
    edges: tuple[tuple[str, str], ...] | None = None
    if raw_edges is not None:
        if not isinstance(raw_edges, list) or len(raw_edges) > MAX_EDGES:
            raise BadMessage("wrong_type", f"edges: a list of at most {MAX_EDGES} "
                             "[node_id, node_id] pairs")
        pairs = []
        for k, pair in enumerate(raw_edges):
            if not isinstance(pair, list) or len(pair) != 2:
                raise BadMessage("wrong_type", f"edges.{k}: expected [node_id, node_id]")
            pairs.append((_node_id(pair[0], f"edges.{k}.0"), _node_id(pair[1], f"edges.{k}.1")))
        edges = tuple(pairs)
    raw_nodes = data.get("nodes", {})
    if not isinstance(raw_nodes, dict) or len(raw_nodes) > MAX_NODES:
        raise BadMessage("wrong_type", f"nodes: an object of at most {MAX_NODES} node ids")
    nodes: dict[str, dict[str, float]] = {}
    for nid, fields in raw_nodes.items():
        node_id = _node_id(nid, f"nodes.{str(nid)[:32]}")
        if not isinstance(fields, dict):
            raise BadMessage("not_an_object", f"nodes.{node_id}: expected an object")
        out: dict[str, float] = {}
        if "node_type" in fields:
            out["node_type"] = float(_node_type(fields["node_type"], f"nodes.{node_id}"
                                                                     ".node_type"))
        for name, (lo, hi) in CAPACITY_FIELDS.items():
            if name in fields:
                x = _number(fields[name], f"nodes.{node_id}.{name}")
                if not lo < x <= hi:
                    raise BadMessage("out_of_range", f"nodes.{node_id}.{name}: {x} is outside"
                                     f" ({lo}, {hi}]")
                out[name] = x
        nodes[node_id] = out
    return TopologyReport(edges, nodes)


def parse_message(topic: str, payload: bytes, topics: Topics) -> Parsed:
    """One MQTT message. Raises ``BadMessage`` when nothing of it may be applied; a
    batch with some bad devices returns the good ones and the dropped ones' reasons."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise BadMessage("too_large", f"{len(payload)} bytes exceeds {MAX_MESSAGE_BYTES}")
    if topic == topics.topology:  # empty: the retained topology was cleared
        return Parsed(topology=parse_topology(_json(payload)) if payload
                      else TopologyReport(None))
    head, _, device = topic.rpartition("/")
    if head != topics.prefix or not device:
        raise BadMessage("unknown_topic", f"no telemetry is expected on {topic[:200]!r}")
    data = _json(payload)
    if topic != topics.batch:
        return Parsed(reports=(parse_device(data, "device", device),))
    if not isinstance(data, dict):
        raise BadMessage("not_an_object", f"expected an object, got {type(data).__name__}")
    devices = data.get("devices")
    if not isinstance(devices, list):
        raise BadMessage("missing_field", "devices: expected a list of device objects")
    if len(devices) > MAX_NODES:
        raise BadMessage("too_large", f"devices: {len(devices)} exceeds {MAX_NODES}")
    reports, dropped = [], []
    for i, d in enumerate(devices):
        try:
            reports.append(parse_device(d, f"devices.{i}"))
        except BadMessage as exc:
            dropped.append(exc)
    return Parsed(reports=tuple(reports), dropped=tuple(dropped))


def _json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BadMessage("malformed_json", str(exc)[:200]) from None
