"""How fast each node really is, learned from realised completion times.

The features predict a task's queueing wait plus execution on a node from its declared
(or nominal) capacity. Feedback says what really happened. Per node id we keep a
decayed, weighted mean of ``log(realised / predicted)`` with a prior of 0 (speed 1.0)
worth ``prior_weight`` observations:

    speed = exp(-S / (prior_weight + W))      confidence = W / (prior_weight + W)

where S and W are the sums of ``w * log ratio`` and of ``w`` over observations, every
weight halving each ``half_life_s`` and their total capped at ``max_weight`` (so the
estimate keeps following a node that changes: an exponentially weighted mean). Logs,
because ratios multiply: 2x slower and 2x faster average to 1.

Pure: the same ``observe``/``speed`` serve the service (``service.node_speeds`` keeps the
estimates in process or in Redis) and the simulator (``sim.env``), so a policy trains on
the signal it will see in service. A node never heard from has speed 1.0, confidence 0.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

#: Ratios outside this range are clipped (a clock glitch must not zero a node's speed).
MIN_RATIO, MAX_RATIO = 0.01, 100.0
#: Predicted times below this are not learned from (the ratio would be noise).
MIN_EXPECTED_MS = 1.0


#: Estimates within this factor of 1.0 are not applied to a policy (``applied_speeds``):
#: the ones served were trained on nominal capacities and misread the estimator's
#: small deviations, which mix a node's speed with the features' queueing error. In
#: the simulator every estimate applied cost hybrid v2 (the default) 23.8 +- 8.0 reward
#: on synthetic 10-50, and estimates beyond 3x nothing within noise in any scenario
#: (benchmarks.speed_threshold).
APPLY_BEYOND = 3.0


def is_applied(speed: Any, beyond: float) -> Any:
    """Whether a node at ``speed`` (a float, or an array: elementwise) is at least
    ``beyond`` times slower or faster than predicted (``beyond`` 1.0: always)."""
    return (speed <= 1.0 / beyond) | (speed >= beyond)


def applied_speeds(speed: np.ndarray, beyond: float) -> np.ndarray:
    """``speed`` where ``is_applied``, 1.0 elsewhere."""
    out: np.ndarray = np.where(is_applied(speed, beyond), speed, 1.0)
    return out


class SpeedParams(NamedTuple):
    """How fast the estimate moves; the defaults suit minutes-to-hours drifts."""

    prior_weight: float = 2.0
    half_life_s: float = 3600.0
    max_weight: float = 50.0


@dataclass(frozen=True, slots=True)
class SpeedEstimate:
    """One node's evidence: decayed sums as of ``updated_at`` (Unix seconds)."""

    log_ratio_sum: float = 0.0
    weight: float = 0.0
    count: int = 0
    updated_at: float = 0.0

    def decayed(self, now: float, params: SpeedParams) -> tuple[float, float]:
        """(S, W) decayed to ``now``."""
        age = max(now - self.updated_at, 0.0)
        f = 0.5 ** (age / params.half_life_s) if params.half_life_s > 0 else 1.0
        return self.log_ratio_sum * f, self.weight * f

    def speed(self, now: float, params: SpeedParams) -> float:
        s, w = self.decayed(now, params)
        return math.exp(-s / (params.prior_weight + w))

    def confidence(self, now: float, params: SpeedParams) -> float:
        _, w = self.decayed(now, params)
        return w / (params.prior_weight + w)

    def to_json(self) -> dict[str, float | int]:
        return {"s": self.log_ratio_sum, "w": self.weight, "n": self.count,
                "t": self.updated_at}

    @classmethod
    def from_json(cls, data: dict[str, float | int]) -> SpeedEstimate:
        return cls(float(data["s"]), float(data["w"]), int(data["n"]), float(data["t"]))


def observed_ratio(completion_ms: float, transfer_ms: float, expected_ms: float
                   ) -> float | None:
    """realised / predicted (wait + execution), or None when it says nothing: only the
    part after the data arrived depends on the node's speed."""
    if not (math.isfinite(expected_ms) and expected_ms >= MIN_EXPECTED_MS):
        return None
    realised = max(completion_ms - max(transfer_ms, 0.0), 0.0)
    return min(max(realised / expected_ms, MIN_RATIO), MAX_RATIO)


def observe(prev: SpeedEstimate | None, ratio: float, now: float,
            params: SpeedParams) -> SpeedEstimate:
    """``prev`` with one more observation of realised / predicted = ``ratio``."""
    s, w = prev.decayed(now, params) if prev is not None else (0.0, 0.0)
    s, w = s + math.log(min(max(ratio, MIN_RATIO), MAX_RATIO)), w + 1.0
    if w > params.max_weight:  # older evidence fades: exponential weighting
        s, w = s * params.max_weight / w, params.max_weight
    return SpeedEstimate(s, w, (prev.count if prev is not None else 0) + 1, now)


DEFAULT_PARAMS = SpeedParams()


class LocalSpeeds:
    """Estimates in this process (no Redis configured; and the simulator): an LRU of at
    most ``max_nodes`` node ids, so ids a client invents cannot grow it without bound."""

    def __init__(self, params: SpeedParams = DEFAULT_PARAMS, max_nodes: int = 100_000):
        self.params = params
        self.max_nodes = max_nodes
        self._items: OrderedDict[str, SpeedEstimate] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __getstate__(self) -> dict[str, object]:
        # A copied simulator (the planner's rollouts) learns on its own copy of the
        # estimates; the lock is the one thing that cannot be copied, so it is remade.
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def get(self, node_id: str) -> SpeedEstimate | None:
        return self._items.get(node_id)

    def observe(self, node_id: str, ratio: float, now: float) -> SpeedEstimate:
        with self._lock:
            est = observe(self._items.get(node_id), ratio, now, self.params)
            self._items[node_id] = est
            self._items.move_to_end(node_id)
            while len(self._items) > self.max_nodes:
                self._items.popitem(last=False)
        return est

    def put(self, node_id: str, est: SpeedEstimate) -> None:
        with self._lock:
            self._items[node_id] = est

    def reset(self, node_id: str) -> bool:
        with self._lock:
            return self._items.pop(node_id, None) is not None

    def replace_all(self, items: dict[str, SpeedEstimate]) -> None:
        with self._lock:
            self._items = OrderedDict(items)

    def speeds(self, node_ids: list[str], now: float) -> np.ndarray | None:
        """[N] speed of each id (1.0 if never heard from), or None when no id has an
        estimate (the common case costs one dict lookup per id, no array)."""
        items = self._items
        if not items:
            return None
        found = [items.get(i) for i in node_ids]
        if all(e is None for e in found):
            return None
        return np.array([1.0 if e is None else e.speed(now, self.params) for e in found])
