"""Run the README's command, ``serve run serve_config.yaml``, as a user would, and
measure it: seconds until /readyz answers 200, and the resident memory of everything
it started (Ray's processes included).

    python -m benchmarks.serve_run
"""

from __future__ import annotations

import time
from typing import NamedTuple

import httpx
import psutil

from edge_allocator.runtime.serverun import ServeRun


class StartupResult(NamedTuple):
    ready_s: float
    rss_bytes: int
    processes: int


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

