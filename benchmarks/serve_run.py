"""Run the README's command, ``serve run serve_config.yaml``, as a user would, and
measure it: seconds until /readyz answers 200, and the resident memory of everything
it started (Ray's processes included).

    python -m benchmarks.serve_run
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import psutil
import yaml

from benchmarks.cluster import SERVE_CONFIG
from edge_allocator.constants import PROJECT_ROOT
from edge_allocator.runtime.raylocal import FAST_PATH_ENV, free_port, haproxy_env, reap


class StartupResult(NamedTuple):
    ready_s: float
    rss_bytes: int
    processes: int


class ServeRun:
    """``serve run`` on a copy of serve_config.yaml that listens on a free port."""

    def __init__(self, config: Path = SERVE_CONFIG):
        raw = yaml.safe_load(config.read_text())
        self.port = free_port()
        raw["http_options"]["port"] = self.port
        self._tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump(raw, self._tmp)
        self._tmp.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen: list[psutil.Process] = []

    def start(self) -> float:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own Ray, always
        env.update({"RAY_USAGE_STATS_ENABLED": "0", **FAST_PATH_ENV, **haproxy_env()})
        serve_bin = str(Path(sys.executable).with_name("serve"))
        t0 = time.perf_counter()
        self.log = Path(self._tmp.name).with_suffix(".log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([serve_bin, "run", self._tmp.name], cwd=PROJECT_ROOT,
                                         env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = t0 + 180
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"serve run exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    ready = time.perf_counter() - t0
                    self._seen = self.tree()  # children may be re-parented later: remember
                    return ready
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("serve run did not become ready in 180 s")

    def tree(self) -> list[psutil.Process]:
        """The `serve run` process and every descendant (Ray's processes included)."""
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
        procs = self.tree()
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total, len(procs)

    def stop(self) -> None:
        """Ctrl-C as a user would; then make sure every process we started is gone
        (by PID: never `ray stop`, which would kill other people's Ray)."""
        if self.proc is None:
            return
        procs = list({p.pid: p for p in [*self._seen, *self.tree()]}.values())
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        reap(procs, timeout_s=10)
        os.unlink(self._tmp.name)
        self.log.unlink(missing_ok=True)


def main() -> None:
    run = ServeRun()
    try:
        ready = run.start()
        time.sleep(2)
        rss, n = run.rss()
        r = httpx.get(f"{run.url}/v1/sample").json()
        d = httpx.post(f"{run.url}/v1/allocate", json=r).json()
        lines = [f"| ready after `serve run` | {ready:.1f} s |",
                 f"| RSS of all {n} processes | {rss / 2**30:.2f} GiB |",
                 f"| first decision | node {d['node_id']} ({d['latency_ms']:.1f} ms) |", "",
                 "| RSS MiB | process |", "|---|---|"]
        by_rss = []
        for p in run.tree():
            try:
                by_rss.append((p.memory_info().rss, " ".join(p.cmdline())[:70]))
            except psutil.Error:
                pass
        lines += [f"| {r / 2**20:.0f} | `{c}` |" for r, c in sorted(by_rss, reverse=True)[:12]]
        print("\n".join(lines))
    finally:
        run.stop()


if __name__ == "__main__":
    main()


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
