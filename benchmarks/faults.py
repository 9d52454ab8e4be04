"""Faults we can inject on a shared machine without touching anyone else's services.

Used by the reliability tests and by ``benchmarks.soak``:

- :class:`TcpProxy`: a loopback forwarder between the service and PostgreSQL that we can
  cut and restore. The machine's PostgreSQL serves other people's tests, so the outage is
  made on a proxy of our own, never by stopping the server.
- :class:`RedisServer`: a redis-server of our own on a free port, stopped and restarted
  at will (the machine's Redis at 6379 is shared).
- :func:`replica_processes` / :func:`kill_replica`: Serve replicas of one application,
  found among *this* process's descendants only (the Ray instance we started), so a
  kill can never reach another engineer's Ray.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from edge_allocator.runtime.raylocal import free_port


class TcpProxy:
    """A loopback TCP forwarder we can cut: a real network failure between the service
    and PostgreSQL without touching the shared server.

    :meth:`cut` closes the listener and every open connection (clients see resets and
    refused connections); :meth:`resume` listens again on the same port."""

    def __init__(self, target_port: int, port: int | None = None):
        self.target_port = target_port
        self.port = port or free_port()
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.up = threading.Event()

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.up.set()
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    resume = start

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not self.up.is_set():  # accepted while being cut: refuse it
                client.close()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.up.clear()
        if self.listener is not None:
            # close() alone leaves a socket that another thread blocks in accept() on
            # listening (Linux): shutdown() wakes that accept() and stops the listening
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self.conns = []


class RedisServer:
    """A redis-server of our own (no persistence, loopback only) that can be restarted on
    the same port, as a crashed and restarted Redis would be: the data is gone."""

    def __init__(self, port: int | None = None):
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install "
                                    "redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server did not listen on {self.port} in {timeout_s} s")

    def stop(self) -> None:
        """SIGKILL, as a crash: no shutdown save, connections reset."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def replica_processes(app: str, deployment: str) -> list[psutil.Process]:
    """Live Serve replica processes of ``app``'s ``deployment`` among this process's
    descendants (Ray titles them ``ray::ServeReplica:<app>:<deployment>``)."""
    title = f"ServeReplica:{app}:{deployment}"
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = p.cmdline()
            if cmd and title in cmd[0] and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


def kill_replica(app: str, deployment: str) -> int:
    """SIGKILL one replica of ``deployment`` (a crash: no graceful shutdown) and return
    its PID once it is gone: until then its sockets are open, and a request sent in the
    meantime is still in flight when it dies."""
    procs = replica_processes(app, deployment)
    if not procs:
        raise RuntimeError(f"no live {deployment} replica of {app!r} among this process's "
                           "descendants")
    victim = min(procs, key=lambda p: p.pid)
    os.kill(victim.pid, signal.SIGKILL)
    try:
        victim.wait(timeout=10)  # polls: the raylet, its parent, reaps it
    except psutil.TimeoutExpired:
        pass
    return victim.pid


#: The machine's PostgreSQL (trust auth), shared by everyone: we only ever create and
#: drop databases of our own on it.
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_database(prefix: str = "ea_test") -> Iterator[str]:
    """A database of its own (``<prefix>_<random>``) on the machine's PostgreSQL, dropped
    afterwards; raises ``psycopg.OperationalError`` when PostgreSQL is not reachable."""
    import psycopg  # a pinned dev dependency

    admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=2)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin.execute(f"CREATE DATABASE {name}")
        yield name
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
