"""The live network view: the latest report of every node, the topology, and snapshots.

A store keeps one ``NodeRecord`` per node (its latest metrics and when they arrived),
the latest ``TopologyReport`` and message counters. Two stores, one interface:

* ``LocalViewStore``: in this process (the MqttIngest replica; ingress replicas reach
  it through the deployment's handle);
* ``RedisViewStore``: in Redis, shared by every replica and kept across restarts of the
  ingest replica. Records are JSON (orjson), never pickle: a shared store must not be
  able to run code in a replica (as in ``edge_allocator.cache``).

``build_snapshot`` turns the records into a ``LiveSnapshot`` at one instant: nodes in a
fixed order (numeric ids numerically, then the rest by name), stale ones (silent for
more than ``stale_after_s``) masked as unreachable with the reason, forgotten ones
(silent for more than ``forget_after_s``) left out. A snapshot is exactly a state a
client could send in full: ``request_json`` is that body, and ``state`` the validated
columns the decision path takes.

Shapes: N nodes in the view, E links, B tasks decided on one snapshot.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from edge_allocator.columnar import StateBatch
from edge_allocator.live.telemetry import METRICS, NodeReport, TopologyReport
from edge_allocator.schema import NODE_FIELDS, TASK_FIELDS

BANDWIDTH_COLUMN = NODE_FIELDS.index("bandwidth")
#: Default Redis socket timeout for the view (connect and read).
REDIS_VIEW_TIMEOUT_S = 0.5


class ViewUnavailable(RuntimeError):
    """The store cannot be read or written (Redis down, ingest replica gone)."""


@dataclass(frozen=True, slots=True)
class ViewSettings:
    """How records age. Shared by the ingest (pruning) and every reader (masking)."""

    stale_after_s: float = 30.0
    """A node silent longer than this is masked as unreachable."""
    forget_after_s: float | None = 600.0
    """A node silent longer than this leaves the view (None: never)."""


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node's latest report and when it arrived (Unix seconds, the receiver's clock)."""

    metrics: tuple[float, ...]
    node_type: int
    seen_at: float
    device_time: float | None

    def to_json(self) -> bytes:
        return orjson.dumps({"m": self.metrics, "t": self.node_type, "s": self.seen_at,
                             "d": self.device_time})

    @classmethod
    def from_json(cls, blob: bytes) -> NodeRecord:
        d = orjson.loads(blob)
        return cls(tuple(float(x) for x in d["m"]), int(d["t"]), float(d["s"]),
                   None if d["d"] is None else float(d["d"]))

    @classmethod
    def of(cls, report: NodeReport, seen_at: float) -> NodeRecord:
        return cls(report.metrics, report.node_type, seen_at, report.device_time)


def _topology_json(t: TopologyReport, received_at: float) -> bytes:
    return orjson.dumps({"edges": t.edges, "nodes": t.nodes, "at": received_at})


def _topology_of(blob: bytes | None) -> TopologyReport | None:
    if blob is None:
        return None
    d = orjson.loads(blob)
    edges = None if d["edges"] is None else tuple((str(a), str(b)) for a, b in d["edges"])
    return TopologyReport(edges, {str(k): dict(v) for k, v in d["nodes"].items()})


def node_order(node_id: str) -> tuple[int, int, str]:
    """Numeric ids numerically (the original devices are 0..N-1), then the rest."""
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


@dataclass(slots=True)
class LiveSnapshot:
    """The view at ``taken_at`` (Unix seconds). ``values`` are as reported;
    ``decision_values`` masks the stale nodes."""

    taken_at: float
    node_ids: list[str]
    values: np.ndarray  # [N, 7] float64, NODE_FIELDS order
    edges: np.ndarray | None  # [E, 2] int64 indices; None: default topology
    last_seen: np.ndarray  # [N] Unix seconds
    device_time: list[float | None]
    masked: dict[str, str]  # node_id -> why it is unreachable
    extra: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = "ingest"

    def __len__(self) -> int:
        return len(self.node_ids)

    def decision_values(self) -> np.ndarray:
        """[N, 7]: masked nodes get bandwidth 0 (unreachable), which the decision path
        never chooses."""
        out: np.ndarray = self.values.copy()
        if self.masked:
            rows = [i for i, nid in enumerate(self.node_ids) if nid in self.masked]
            out[rows, BANDWIDTH_COLUMN] = 0.0
        return out

    def state(self, tasks: np.ndarray, models: Sequence[str | None]) -> StateBatch:
        """B states, one per task row ([B, 4], TASK_FIELDS order), all on this network."""
        b, n = tasks.shape[0], len(self.node_ids)
        return StateBatch(
            values=np.tile(self.decision_values(), (b, 1)),
            offsets=np.arange(b + 1, dtype=np.int64) * n,
            node_ids=[self.node_ids] * b,
            edges=[self.edges] * b,
            tasks=tasks.astype(np.float64),
            models=list(models),
        )

    def request_json(self, task: Mapping[str, float] | None = None) -> dict[str, Any]:
        """The same state as a full POST /v1/allocate body."""
        values = self.decision_values()
        body: dict[str, Any] = {"nodes": [
            {"node_id": nid, **{f: (int(v) if f == "node_type" else float(v))
                                for f, v in zip(NODE_FIELDS, row)}}
            for nid, row in zip(self.node_ids, values.tolist())]}
        if self.edges is not None:
            body["edges"] = self.edges.tolist()
        if task is not None:
            body["task"] = {k: task[k] for k in TASK_FIELDS if k in task}
        return body


def build_snapshot(records: Mapping[str, NodeRecord], topology: TopologyReport | None,
                   now: float, settings: ViewSettings, source: str) -> LiveSnapshot:
    """The records at ``now``: forgotten nodes dropped, stale ones masked with the
    reason, topology links between present nodes as indices."""
    forget = settings.forget_after_s
    ids = sorted((nid for nid, r in records.items()
                  if forget is None or now - r.seen_at <= forget), key=node_order)
    extra = topology.nodes if topology is not None else {}
    n = len(ids)
    values = np.zeros((n, len(NODE_FIELDS)), np.float64)
    last_seen = np.zeros(n, np.float64)
    device_time: list[float | None] = []
    masked: dict[str, str] = {}
    for i, nid in enumerate(ids):
        r = records[nid]
        values[i, :len(METRICS)] = r.metrics
        node_type = extra.get(nid, {}).get("node_type", r.node_type)
        values[i, len(METRICS)] = node_type
        last_seen[i] = r.seen_at
        device_time.append(r.device_time)
        silent = now - r.seen_at
        if silent > settings.stale_after_s:
            masked[nid] = (f"stale: no telemetry for {silent:.1f} s "
                           f"(stale_after_s = {settings.stale_after_s:g})")
        elif r.metrics[BANDWIDTH_COLUMN] == 0.0:
            masked[nid] = "unreachable: reported bandwidth 0"
    edges = None
    if topology is not None and topology.edges is not None:
        index = {nid: i for i, nid in enumerate(ids)}
        pairs = [(index[a], index[b]) for a, b in topology.edges if a in index and b in index]
        edges = np.array(pairs, np.int64).reshape(-1, 2)
    return LiveSnapshot(now, ids, values, edges, last_seen, device_time, masked,
                        {k: v for k, v in extra.items() if k in set(ids)}, source)


class ViewStore(Protocol):
    """Where the view lives. Methods raise ``ViewUnavailable`` when it cannot be used."""

    settings: ViewSettings

    def apply(self, reports: Sequence[NodeReport], received_at: float,
              counts: Mapping[str, int]) -> None: ...

    def apply_topology(self, topology: TopologyReport, received_at: float) -> None: ...

    def add_counts(self, counts: Mapping[str, int]) -> None: ...

    def counts(self) -> dict[str, int]: ...

    def snapshot(self, now: float) -> LiveSnapshot: ...

    def prune(self, now: float) -> int: ...


class LocalViewStore:
    """The view in this process, safe to share between the MQTT thread and the loop."""

    def __init__(self, settings: ViewSettings | None = None) -> None:
        self.settings = settings or ViewSettings()
        self._records: dict[str, NodeRecord] = {}
        self._topology: TopologyReport | None = None
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def apply(self, reports: Sequence[NodeReport], received_at: float,
              counts: Mapping[str, int]) -> None:
        with self._lock:
            for r in reports:
                self._records[r.node_id] = NodeRecord.of(r, received_at)
            self._counts.update(counts)

    def apply_topology(self, topology: TopologyReport, received_at: float) -> None:
        with self._lock:
            self._topology = topology

    def add_counts(self, counts: Mapping[str, int]) -> None:
        with self._lock:
            self._counts.update(counts)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def snapshot(self, now: float) -> LiveSnapshot:
        with self._lock:
            records, topology = dict(self._records), self._topology
        return build_snapshot(records, topology, now, self.settings, "ingest")

    def prune(self, now: float) -> int:
        forget = self.settings.forget_after_s
        if forget is None:
            return 0
        with self._lock:
            gone = [k for k, r in self._records.items() if now - r.seen_at > forget]
            for k in gone:
                del self._records[k]
        return len(gone)


class RedisViewStore:
    """The view in Redis under ``prefix``: a hash of node records (node_id -> JSON), the
    topology (JSON) and a hash of counters. Any Redis failure is ``ViewUnavailable``."""

    def __init__(self, url: str, settings: ViewSettings | None = None,
                 prefix: str = "edge-allocator:live:",
                 socket_timeout_s: float = REDIS_VIEW_TIMEOUT_S) -> None:
        import redis

        from edge_allocator.cache import redact_url

        self.settings = settings or ViewSettings()
        self.url = redact_url(url)
        self._nodes, self._topology, self._counts = (f"{prefix}nodes", f"{prefix}topology",
                                                     f"{prefix}counts")
        self._errors = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(url, socket_timeout=socket_timeout_s,
                                            socket_connect_timeout=socket_timeout_s,
                                            decode_responses=False)

    def _run(self, op: str, commands: Iterable[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        try:
            pipe = self._client.pipeline(transaction=False)
            for name, args in commands:
                getattr(pipe, name)(*args)
            return list(pipe.execute())
        except self._errors as exc:
            raise ViewUnavailable(f"live view in Redis at {self.url}: {op} failed "
                                  f"({type(exc).__name__}: {exc})") from None

    def apply(self, reports: Sequence[NodeReport], received_at: float,
              counts: Mapping[str, int]) -> None:
        cmds: list[tuple[str, tuple[Any, ...]]] = []
        if reports:
            mapping = {r.node_id: NodeRecord.of(r, received_at).to_json() for r in reports}
            cmds.append(("hset", (self._nodes, None, None, mapping)))
        cmds += [("hincrby", (self._counts, k, v)) for k, v in counts.items()]
        self._run("write", cmds)

    def apply_topology(self, topology: TopologyReport, received_at: float) -> None:
        self._run("write", [("set", (self._topology, _topology_json(topology, received_at)))])

    def add_counts(self, counts: Mapping[str, int]) -> None:
        self._run("write", [("hincrby", (self._counts, k, v)) for k, v in counts.items()])

    def counts(self) -> dict[str, int]:
        (raw,) = self._run("read", [("hgetall", (self._counts,))])
        return {k.decode(): int(v) for k, v in raw.items()}

    def _read(self) -> tuple[dict[str, NodeRecord], TopologyReport | None]:
        raw, topo = self._run("read", [("hgetall", (self._nodes,)), ("get", (self._topology,))])
        return ({k.decode(): NodeRecord.from_json(v) for k, v in raw.items()},
                _topology_of(topo))

    def snapshot(self, now: float) -> LiveSnapshot:
        records, topology = self._read()
        return build_snapshot(records, topology, now, self.settings, "redis")

    def prune(self, now: float) -> int:
        forget = self.settings.forget_after_s
        if forget is None:
            return 0
        records, _ = self._read()
        gone = [k for k, r in records.items() if now - r.seen_at > forget]
        if gone:
            self._run("write", [("hdel", (self._nodes, *gone))])
        return len(gone)

    def clear(self) -> None:
        """Delete the view's keys (tests, and an operator starting over)."""
        self._run("write", [("delete", (self._nodes, self._topology, self._counts))])
