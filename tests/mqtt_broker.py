"""Real Mosquitto brokers for the live-network tests.

``shared_broker_url`` is the one running on 127.0.0.1:1883 on development and CI
machines (tests use their own topic prefix on it); ``OwnBroker`` starts a private
``mosquitto -p <free port>`` for tests that stop or restart a broker, and stops it by
its PID. Absent components go through ``tests.conftest.missing`` (skip locally, fail
under CI=true).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid

from edge_allocator.runtime.raylocal import free_port
from tests.conftest import missing

SHARED_HOST, SHARED_PORT = "127.0.0.1", 1883


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def shared_broker_url() -> str:
    if not _port_open(SHARED_HOST, SHARED_PORT):
        missing("Mosquitto on 127.0.0.1:1883", "nothing listens there (apt-get install "
                "mosquitto; scripts/setup.sh does it as root)")
    return f"mqtt://{SHARED_HOST}:{SHARED_PORT}"


def unique_prefix(name: str) -> str:
    """A topic prefix no other test (or concurrent run) publishes on."""
    return f"test-{name}-{uuid.uuid4().hex[:8]}"


class OwnBroker:
    """``mosquitto -p PORT`` of our own; ``stop``/``start`` keep the port."""

    def __init__(self, port: int | None = None, config: str | None = None) -> None:
        """``config``: mosquitto.conf text (``{port}`` is replaced); None: ``-p PORT``."""
        binary = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
        if binary is None:
            missing("the mosquitto binary", "it is not installed (apt-get install mosquitto)")
        self.binary = str(binary)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = config
        self._conf: str | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> OwnBroker:
        args = [self.binary, "-p", str(self.port)]
        if self.config is not None:
            import tempfile

            with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
                f.write(self.config.replace("{port}", str(self.port)))
            self._conf = f.name
            args = [self.binary, "-c", f.name]
        self.proc = subprocess.Popen(args,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not _port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto -p {self.port} did not start "
                                   f"(exit {self.proc.poll()})")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # this PID only
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._conf is not None:
            import os

            os.unlink(self._conf)
            self._conf = None


def wait_for(predicate, timeout_s: float = 10.0, every_s: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return bool(predicate())
