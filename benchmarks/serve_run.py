"""Run the README's command as a user would, and measure it: seconds until /readyz
answers 200, and the memory (RSS and PSS) of everything it started, Ray's processes
included. ``make run`` (``python -m deployments.launch``: Ray without its dashboard
head) beside plain ``serve run serve_config.yaml``, one after the other, in one run.

    python -m benchmarks.serve_run
Writes benchmarks/results/serve_run.{md,json}.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import psutil

from edge_allocator.runtime.serverun import COMMANDS, ServeRun

RESULTS = Path(__file__).parent / "results"
LABELS = {"launch": "`make run` (deployments.launch, no dashboard head)",
          "serve-run": "`serve run serve_config.yaml` (dashboard head)"}


def measure(command: str) -> tuple[dict[str, float], list[str]]:
    run = ServeRun(command=command)
    try:
        ready = run.start()
        time.sleep(3)  # let start-up work settle before reading memory
        rss, pss, n = run.memory()
        state = httpx.get(f"{run.url}/v1/sample").json()
        d = httpx.post(f"{run.url}/v1/allocate", json=state).json()
        metrics = httpx.get(f"{run.url}/v1/models").status_code
        top = []
        for p in run.tree():
            try:
                top.append((p.memory_full_info().pss, " ".join(p.cmdline())[:60]))
            except psutil.Error:
                pass
        lines = [f"| {pss_mb / 2**20:.0f} | `{c}` |" for pss_mb, c in sorted(top, reverse=True)[:8]]
        return ({"ready_s": ready, "rss_gib": rss / 2**30, "pss_gib": pss / 2**30,
                 "processes": n, "first_decision_ms": d["latency_ms"],
                 "models_status": metrics}, lines)
    finally:
        run.stop()


def main() -> None:
    results, tops = {}, {}
    for command in COMMANDS:
        results[command], tops[command] = measure(command)
        print(command, results[command], flush=True)
    lines = ["| command | ready | PSS | RSS | processes |", "|---|---|---|---|---|"]
    for c, r in results.items():
        lines.append(f"| {LABELS[c]} | {r['ready_s']:.1f} s | {r['pss_gib']:.2f} GiB | "
                     f"{r['rss_gib']:.2f} GiB | {r['processes']:.0f} |")
    for c in COMMANDS:
        lines += ["", f"Largest processes by PSS, {LABELS[c]}:", "", "| PSS MiB | process |",
                  "|---|---|", *tops[c]]
    md = "\n".join(lines) + "\n"
    print(md)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve_run.md").write_text(md)
    (RESULTS / "serve_run.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
