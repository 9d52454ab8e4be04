"""Nominal hardware profiles per node type, shared by the simulator and the features.

The simulator draws each node's real capacity around these nominal values; policies and
heuristics only ever see the nominal values through the node type, exactly as an
operator who knows the hardware class but not the live clock rate would.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class NodeProfile(NamedTuple):
    """One hardware class. Units are in the field names."""

    name: str
    capacity_gcps: float  # compute, giga-cycles per second
    memory_mb: float  # RAM available to tasks
    busy_power_w: float  # draw while executing, watts
    idle_power_w: float  # draw while idle, watts


#: node_type -> profile (0 sensor/gateway, 1 edge/fog, 2 cloud).
PROFILES: tuple[NodeProfile, ...] = (
    NodeProfile("gateway", capacity_gcps=1.5, memory_mb=1024.0, busy_power_w=6.0, idle_power_w=2.0),
    NodeProfile("edge", capacity_gcps=6.0, memory_mb=8192.0, busy_power_w=40.0, idle_power_w=12.0),
    NodeProfile("cloud", capacity_gcps=40.0, memory_mb=65536.0, busy_power_w=160.0,
                idle_power_w=60.0),
)

NOMINAL_CAPACITY_GCPS = np.array([p.capacity_gcps for p in PROFILES], dtype=np.float32)
NOMINAL_MEMORY_MB = np.array([p.memory_mb for p in PROFILES], dtype=np.float32)
#: Energy to execute one giga-cycle at nominal speed, joules (busy power / capacity).
NOMINAL_J_PER_GCYCLE = np.array(
    [p.busy_power_w / p.capacity_gcps for p in PROFILES], dtype=np.float32
)
#: Radio/network energy to move one megabyte off the source, joules.
TRANSFER_J_PER_MB = 0.8
#: Mean compute demand of a task, giga-cycles (used by heuristics to turn queue length
#: into expected waiting time).
MEAN_TASK_GCYCLES = 1.5
