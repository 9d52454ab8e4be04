"""Helpers for a private Ray instance on one machine (tests, benchmarks, local runs).

Several Ray instances may share a machine (other people's, a test session's, a
benchmark's), so each gets its own ports and HAProxy files, and whatever one starts is
stopped by process id, never with ``ray stop``. Nothing here imports Ray; ``reap`` and
``alive`` need psutil (a dev dependency) and import it when called.
"""

from __future__ import annotations

import random
import signal
import socket
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edge_allocator.constants import SERVE_LOCAL_ENV

if TYPE_CHECKING:
    import psutil

#: The environment of a local Ray that serves as the shipped app does (scripts/run.sh):
#: HAProxy, direct ingress, gRPC between deployments, short drain on one machine.
FAST_PATH_ENV = SERVE_LOCAL_ENV


#: Where ``free_port`` draws from: below the kernel's ephemeral range (Linux's default
#: starts at 32768), so no outgoing connection's local port can land on a port between
#: the moment it is chosen and the moment its server binds it, and above Ray's worker
#: ports (10002-19999 by default).
PORT_RANGE = (20000, 32768)
_random = random.Random()  # its own: a seeded global ``random`` must not repeat picks


def free_port() -> int:
    """A TCP port on 127.0.0.1, free at the time of the call, that no outgoing connection
    can take before its server binds it.

    Why not port 0 (the kernel's pick): that is a port of the ephemeral range, which every
    outgoing connection on the machine draws its local port from, and a test session's
    Ray opens hundreds of them. In one CI run HAProxy could not bind the gRPC port
    chosen that way seconds earlier ("Address already in use"), and 58 tests of the
    worker failed with it."""
    lo, hi = PORT_RANGE
    for _ in range(200):
        port = _random.randrange(lo, hi)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken: someone's server
            return port
    raise RuntimeError(f"no free TCP port in {lo}..{hi - 1} after 200 tries")


def haproxy_env() -> dict[str, str]:
    """HAProxy's files default to fixed /tmp paths and its stats/metrics (and the
    fallback proxy) to fixed ports: give each Ray instance its own so two on one
    machine never collide. Paths short,
    because Ray nests a 56-character hash under them and HAProxy caps socket paths at 97
    bytes."""
    d = tempfile.mkdtemp(prefix="hp", dir="/tmp")
    return {"RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{d}/haproxy.cfg",
            "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{d}/admin.sock",
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": d,
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{d}/server-state",
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
            # the head node's fallback Serve proxy (HAProxy's backup server) defaults
            # to fixed ports 8500 (HTTP) and 9500 (gRPC)
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port())}


def reap(procs: Sequence[Any], timeout_s: float = 10, terminate: bool = False) -> None:
    """Wait for processes we started (``psutil.Process`` objects) to exit, then kill the
    stragglers: by PID, never `ray stop`, which would also kill other people's Ray on
    the machine."""
    import psutil

    if terminate:
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)  # SIGKILL is delivered, not instant: see them go


def alive(p: psutil.Process) -> bool:
    """Whether a process is still running (a zombie is not)."""
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
