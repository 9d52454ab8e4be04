"""What a node can take: declared capacities, their defaults by node type, and why a node
is masked.

Why a module of its own: the request schema, the columnar decoder, the feature builder,
the feasibility mask and the error messages all need the same four optional node fields
and the same defaults. A client that declares nothing gets exactly the nominal values the
policies were trained on (``profiles.PROFILES`` and ``constants.QUEUE_CAPACITY``).

Shapes: T nodes (any number of states, stacked), L = len(LIMIT_FIELDS).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from edge_allocator.constants import QUEUE_CAPACITY
from edge_allocator.profiles import PROFILES

#: Optional per-node fields, in column order of ``StateBatch.limits``.
LIMIT_FIELDS: tuple[str, ...] = ("capacity_gcps", "memory_mb", "queue_capacity",
                                 "observed_speed")
LIMIT_INDEX: dict[str, int] = {name: i for i, name in enumerate(LIMIT_FIELDS)}
CAPACITY, MEMORY, QUEUE, SPEED = range(len(LIMIT_FIELDS))


class LimitRange(NamedTuple):
    """Valid values of one optional field: lower bound exclusive, upper inclusive."""

    above: float
    at_most: float
    integer: bool


#: Ranges, as the pydantic schema (``schema.Node``) declares them.
LIMIT_RANGES: dict[str, LimitRange] = {
    "capacity_gcps": LimitRange(0.0, 1e6, False),
    "memory_mb": LimitRange(0.0, 1e9, False),
    "queue_capacity": LimitRange(0.0, 1e6, True),
    "observed_speed": LimitRange(0.0, 100.0, False),
}

#: [3 node types, L] the value of each field a node of that type gets when it omits it.
LIMIT_DEFAULTS = np.array(
    [[p.capacity_gcps, p.memory_mb, float(QUEUE_CAPACITY), 1.0] for p in PROFILES],
    dtype=np.float64,
)


def default_text(field: str) -> str:
    """The defaults of ``field`` per node type, as documentation says them."""
    col = LIMIT_DEFAULTS[:, LIMIT_INDEX[field]]
    return ", ".join(f"{p.name} ({t}): {v:g}" for t, (p, v) in enumerate(zip(PROFILES, col)))


def resolve_limits(declared: np.ndarray | None, node_type: np.ndarray) -> np.ndarray:
    """[T, L] limits: what each node declared (NaN = omitted) or its type's default."""
    defaults: np.ndarray = LIMIT_DEFAULTS[node_type.astype(np.int64)]
    if declared is None:
        return defaults
    out: np.ndarray = np.where(np.isnan(declared), defaults, declared)
    return out


def nominal_limits(node_type: np.ndarray) -> np.ndarray:
    """[T, L] limits of nodes that declare nothing (the simulator's view, training)."""
    return resolve_limits(None, node_type)


def _g_texts(values: np.ndarray) -> list[str]:
    """``f"{v:g}"`` of each value, formatted once per distinct value: task memory repeats
    over a state's nodes and limits over a type's (a third of the reasons' cost)."""
    distinct, inverse = np.unique(values, return_inverse=True)
    texts = [f"{v:g}" for v in distinct.tolist()]
    return [texts[k] for k in inverse.ravel().tolist()]


def mask_reasons(mem_util: np.ndarray, bandwidth: np.ndarray, queue_len: np.ndarray,
                 task_memory_mb: np.ndarray, limits: np.ndarray) -> list[str]:
    """Why each of the given (masked) nodes is infeasible, as one string each.

    Called with the masked nodes only: the checks are array expressions over them, and
    only their strings are made, one list per combination of failing checks (no branch
    per node). Every failing check is named, in a fixed order."""
    mem_total = limits[:, MEMORY].astype(np.float32)  # the dtype of graph.feasible_mask
    free = np.maximum((1.0 - mem_util) * mem_total, 0.0)
    unreachable = ~(bandwidth > 0)
    full = ~(queue_len < limits[:, QUEUE])
    with np.errstate(divide="ignore", invalid="ignore"):  # as graph.feasible_mask
        short = ~(mem_util + task_memory_mb / mem_total <= 1.0)
    kind = unreachable.astype(np.int8) | (full.astype(np.int8) << 1) | (short.astype(np.int8) << 2)
    out = [""] * len(kind)
    for k in np.unique(kind).tolist():
        rows = np.flatnonzero(kind == k)
        parts: list[list[str]] = []
        if k & 1:
            parts.append(["unreachable (bandwidth 0)"] * len(rows))
        if k & 2:
            # plain Python values: indexing numpy arrays per element cost 3x the formatting
            parts.append([f"queue full ({q:g} of {c})" for q, c in zip(
                queue_len[rows].tolist(), _g_texts(limits[rows, QUEUE]))])
        if k & 4:
            parts.append([f"memory short (need {need} MB, free {fr:.6g} MB of {tot})"
                          for need, fr, tot in zip(_g_texts(task_memory_mb[rows]),
                                                   free[rows].tolist(),
                                                   _g_texts(mem_total[rows]))])
        texts = (["infeasible"] * len(rows) if not parts else parts[0] if len(parts) == 1
                 else ["; ".join(p) for p in zip(*parts)])
        for i, text in zip(rows.tolist(), texts):
            out[i] = text
    return out
