"""The README's run command (``make run``: ``python -m deployments.launch``, Ray without
its dashboard head) or plain ``serve run serve_config.yaml``, started as a user would:
its own Ray, on free ports, stopped with Ctrl-C and then by process id (never
``ray stop``). Used by tests/serve/test_serve_run.py and benchmarks/serve_run.py.

Nothing here imports Ray; httpx and psutil (dev dependencies) are imported when used.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from edge_allocator.constants import PROJECT_ROOT
from edge_allocator.runtime.raylocal import FAST_PATH_ENV, free_port, haproxy_env, reap

if TYPE_CHECKING:
    import psutil

#: The configuration the README runs.
SERVE_CONFIG = PROJECT_ROOT / "serve_config.yaml"
#: "launch": what ``make run`` runs; "serve-run": Serve's own CLI, dashboard included.
COMMANDS = ("launch", "serve-run")


#: What Ray prints when its raylet did not register within its fixed 30 s.
RAY_NODE_START_TIMEOUT = "The current node timed out during startup"
#: What ``serve.start`` raises when Serve gave up on its HAProxy manager actor (killed
#: it) before it reported ready: seen on a loaded machine, like the node timeout.
HAPROXY_NOT_READY = ("class_name: HAProxyManager", "killed by `ray.kill`")
#: Starts of the command in all when Ray's node start times out or Serve killed its
#: HAProxy manager before it was ready (``ServeRun.start``).
NODE_START_TRIES = 3


def load_failure(output: str) -> bool:
    """Whether a start that exited failed the way a loaded machine makes Ray and Serve
    fail (``output``: the end of what it printed), rather than over our code."""
    return RAY_NODE_START_TIMEOUT in output or all(m in output for m in HAPROXY_NOT_READY)


class _NodeStartTimeout(RuntimeError):
    """The command exited because Ray's node did not start in time (a loaded machine)."""


class ServeRun:
    """The run command on a copy of serve_config.yaml that listens on free ports (HTTP, and
    gRPC when the config enables it)."""

    def __init__(self, config: Path = SERVE_CONFIG, command: str = "launch",
                 token: str | None = None):
        """``token``: the bearer token readiness is polled with, when the service
        requires one (``EDGE_ALLOCATOR_TOKENS`` in the environment it inherits)."""
        if command not in COMMANDS:
            raise ValueError(f"ServeRun: command={command!r}; use one of {COMMANDS}")
        self.command = command
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        raw = yaml.safe_load(config.read_text())
        self.port = free_port()
        raw["http_options"]["port"] = self.port
        self.grpc_port: int | None = None
        if raw.get("grpc_options", {}).get("grpc_servicer_functions"):  # the gRPC API too
            self.grpc_port = raw["grpc_options"]["port"] = free_port()
        self._tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump(raw, self._tmp)
        self._tmp.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen: list[psutil.Process] = []

    def start(self) -> float:
        """Start the command; the seconds until /readyz answers 200 (of the last try).

        Ray gives its raylet a fixed 30 s to register (``ray._private.node``, not
        configurable); on a loaded machine, with other Ray instances starting beside it,
        that can run out; so can Serve's wait for its HAProxy manager actor, which it then
        kills. Then, and only then, the command is started again, up to
        ``NODE_START_TRIES`` times in all (a CI run once saw the node time out twice in a
        row)."""
        for _ in range(NODE_START_TRIES - 1):
            try:
                return self._start_once()
            except _NodeStartTimeout:
                self._reap_tree()
        return self._start_once()

    def _start_once(self) -> float:
        import httpx

        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own Ray, always
        env.update({"RAY_USAGE_STATS_ENABLED": "0", **FAST_PATH_ENV, **haproxy_env()})
        if self.command == "launch":
            cmd = [sys.executable, "-m", "deployments.launch", self._tmp.name,
                   "--metrics-port", str(free_port())]
        else:
            cmd = [str(Path(sys.executable).with_name("serve")), "run", self._tmp.name]
        t0 = time.perf_counter()
        self.log = Path(self._tmp.name).with_suffix(".log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT,
                                         env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = t0 + 180
        while time.perf_counter() < deadline:
            self._seen = self.tree() or self._seen
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                error = _NodeStartTimeout if load_failure(tail) else RuntimeError
                raise error(f"{self.command} exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/readyz", headers=self.headers,
                             timeout=2).status_code == 200:
                    ready = time.perf_counter() - t0
                    self._seen = self.tree()  # children may be re-parented later: remember
                    return ready
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.command} did not become ready in 180 s")

    def _reap_tree(self) -> None:
        """Stop what a failed start left (by PID, never `ray stop`)."""
        reap(self._seen, timeout_s=5, terminate=True)
        self._seen = []

    def tree(self) -> list[psutil.Process]:
        """The `serve run` process and every descendant (Ray's processes included)."""
        import psutil

        assert self.proc is not None
        for _ in range(10):  # a process may exit while the tree is walked: walk again
            try:
                root = psutil.Process(self.proc.pid)
                return [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                if self.proc.poll() is not None:
                    return []
        return []

    def rss(self) -> tuple[int, int]:
        """Resident memory of the whole tree, in bytes, and how many processes it has."""
        rss, _, n = self.memory()
        return rss, n

    def memory(self) -> tuple[int, int, int]:
        """(RSS, PSS) of the whole tree in bytes, and how many processes it has. PSS
        shares pages between the processes that map them, so it sums to what the tree
        really holds (RSS counts shared libraries once per process)."""
        import psutil

        procs = self.tree()
        rss = pss = 0
        for p in procs:
            try:
                full = p.memory_full_info()
                rss += full.rss
                pss += getattr(full, "pss", full.rss)
            except psutil.Error:
                pass
        return rss, pss, len(procs)

    def stop(self) -> None:
        """Ctrl-C as a user would; then make sure every process we started is gone
        (by PID: never `ray stop`, which would kill other people's Ray)."""
        if self.proc is None:
            return
        procs = list({p.pid: p for p in [*self._seen, *self.tree()]}.values())
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)  # make run shuts Serve down gracefully first
        except subprocess.TimeoutExpired:
            self.proc.kill()
        reap(procs, timeout_s=10)
        os.unlink(self._tmp.name)
        self.log.unlink(missing_ok=True)
