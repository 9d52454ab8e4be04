"""Measuring two checkouts side by side: a benchmark's ``--child`` run with another code
tree first on the import path, and the check that it really imported that tree.

Shared by the benchmarks that compare "before" and "after" in one run
(``benchmarks.log_bench``, ``benchmarks.handler_cost``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_in(tree: Path, script: str, argv: list[str], timeout_s: float = 600) -> dict[str, Any]:
    """``python <script> --child <argv>`` with ``tree``'s code first on the path; the
    child's last line of output is its JSON result, whose ``"code"`` (the directory it
    imported ``edge_allocator`` from) must be ``tree``. The script is the caller's own
    file, so the measurement is the same for both trees and only the code measured
    differs. Children must not import this module: an older tree does not have it."""
    env = {**os.environ, "PYTHONPATH": str(tree), "RAY_USAGE_STATS_ENABLED": "0"}
    out = subprocess.run([sys.executable, str(Path(script).resolve()), "--child", *argv],
                         cwd=tree, env=env, capture_output=True, text=True, timeout=timeout_s)
    if out.returncode:
        raise RuntimeError(f"measuring {tree} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(result["code"]).resolve() != tree.resolve():
        raise RuntimeError(f"imported edge_allocator from {result['code']}, not {tree}")
    return result


def alternate(before: str | None, here: Path, rounds: int,
              measure: Callable[[Path], dict[str, float]]) -> dict[str, list[dict[str, float]]]:
    """``rounds`` rounds of ``measure(tree)``: this tree alone ("now"), or with
    ``before`` given, that checkout ("before") and this one ("after") in turn each
    round, so both see the same machine. Each round is printed as it ends."""
    checkouts = {"before": Path(before), "after": here} if before else {"now": here}
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in checkouts}
    for r in range(rounds):
        for name, tree in checkouts.items():
            runs[name].append(measure(tree))
            print(f"round {r + 1} {name}: {runs[name][-1]}", flush=True)
    return runs


def write_results(results: Path, name: str, text: str, runs: Any, args: Any) -> None:
    """``<results>/<name>.md`` (the table) and ``<name>.json`` (arguments and raw runs)."""
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.md").write_text(text)
    (results / f"{name}.json").write_text(json.dumps(
        {"args": {k: v for k, v in vars(args).items() if k != "child"}, "runs": runs},
        indent=2) + "\n")
