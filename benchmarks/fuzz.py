"""Conformance fuzzing with Schemathesis (pinned in the dev extra) against the served
/openapi.json: every operation, every check, as a user would run it
(``schemathesis run URL/openapi.json --checks all``). Passes when no check fails: no
5xx, every response's status code, body, content type and headers as documented, and
the service healthy afterwards.

    python -m benchmarks.fuzz [--examples 900] [--url http://127.0.0.1:8000]
Without ``--url`` it starts the README's run command (``ServeRun``: serve_config.yaml on
its own Ray and free ports) and stops it afterwards. Writes benchmarks/results/fuzz.md
(case counts per operation, failures found).

Checks switched off: none (``EXCLUDED_CHECKS``; the README lists any, with its reason).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
#: Check settings: statuses this API documents where a check's defaults do not fit.
CONFIG = Path(__file__).parent / "schemathesis.toml"
#: Schemathesis checks switched off, each with the reason (also in the README).
EXCLUDED_CHECKS: dict[str, str] = {}


@dataclass
class FuzzResult:
    """One Schemathesis run: cases generated per operation, failures by check."""

    total: int = 0
    cases: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    healthy_after: bool = False
    output_tail: str = ""
    details: list[str] = field(default_factory=list)
    returncode: int = 0


def _parse_report(path: Path) -> tuple[int, dict[str, int], list[dict[str, Any]]]:
    """Total cases, fuzzing-phase cases per operation and the failures, from
    Schemathesis' JSON run report."""
    report = json.loads(path.read_text())
    per_op = {op: sum(sum(v for k, v in phase.items() if k != "unreachable")
                      for phase in rates.values())
              for op, rates in (report.get("valid_rates") or {}).items()}
    failures = [{"code": f["code"], "title": f["title"], "count": f["count"],
                 "operations": f["operations"]} for f in report.get("failures") or []]
    failures += [{"code": "error", "title": str(e)[:200], "count": 1, "operations": []}
                 for e in report.get("errors") or []]
    return int(report["test_cases"]["generated"]), per_op, failures


def _failure_details(stdout: str, max_lines: int = 400) -> list[str]:
    """The FAILURES section of Schemathesis' output, each line cut to 300 characters and
    without the curl reproductions (bodies can be megabytes)."""
    lines: list[str] = []
    inside = False
    for line in stdout.splitlines():
        if "FAILURES" in line and line.startswith("="):
            inside = True
            continue
        if inside and "SUMMARY" in line and line.startswith("="):
            break
        if inside and line.strip() and not line.lstrip().startswith(("curl ", "⚠")):
            lines.append(line[:300])
    return lines[:max_lines]


def run_fuzz(url: str, *, examples: int, seed: int = 0, workers: int = 1,
             max_time_s: float | None = None, token: str | None = None) -> FuzzResult:
    """Schemathesis against ``url``/openapi.json: every operation, ``--checks all``,
    every phase (examples, coverage, fuzzing, stateful), ``examples`` per operation in
    the fuzzing phase.

    One worker by default: with two, Schemathesis' threads race in CPython 3.11's AST
    recursion counter (python/cpython#106905, per interpreter, not per thread) when
    Hypothesis parses a lambda's source for a strategy's repr, and the run ends in
    "SystemError: AST constructor recursion depth mismatch" (CI, twice in one run).
    The server is the bottleneck on two cores, so a second worker bought little."""
    import httpx

    out = Path(tempfile.mkdtemp(prefix="ea-fuzz-"))
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG),
           "run", f"{url}/openapi.json",
           "--checks", "all", "--max-examples", str(examples), "--seed", str(seed),
           "--workers", str(workers), "--no-shrink", "--continue-on-failure",
           "--request-timeout", "30", "--max-response-time", "30",
           "--report", "json", "--report-json-path", str(out / "run.json"),
           "--no-color", "--warnings", "off"]
    if EXCLUDED_CHECKS:
        cmd += ["--exclude-checks", ",".join(EXCLUDED_CHECKS)]
    if max_time_s is not None:
        cmd += ["--max-time", str(int(max_time_s))]
    if token is not None:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=out)
    result = FuzzResult(seconds=time.perf_counter() - t0, returncode=proc.returncode,
                        output_tail=(proc.stdout + proc.stderr)[-6000:])
    result.total, result.cases, result.failures = _parse_report(out / "run.json")
    result.details = _failure_details(proc.stdout)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        ready = httpx.get(f"{url}/readyz", headers=headers, timeout=30)
        live = httpx.get(f"{url}/healthz", headers=headers, timeout=30)
        result.healthy_after = ready.status_code == 200 and live.status_code == 200
    except httpx.HTTPError:
        result.healthy_after = False
    return result


def write_report(result: FuzzResult, examples: int, path: Path = RESULTS / "fuzz.md") -> None:
    lines = [
        "# Conformance fuzzing (Schemathesis)", "",
        f"`python -m benchmarks.fuzz --examples {examples}`: Schemathesis "
        f"{_version()} against `/openapi.json` of `serve_config.yaml` run as the README "
        "runs it, `--checks all`, every phase, seed 0.", "",
        f"* test cases: **{result.total:,}** over {len(result.cases)} operations "
        f"in {result.seconds:.0f} s",
        f"* failures: **{len(result.failures)}**",
        f"* healthy afterwards (`/readyz` and `/healthz` 200): {result.healthy_after}",
        f"* checks switched off: {', '.join(EXCLUDED_CHECKS) or 'none'}", "",
        "Fuzzing-phase cases per operation (accepted + rejected by the service; the total "
        "also counts the coverage and stateful phases):", "",
        "| operation | cases |", "|---|---|",
        *(f"| `{op}` | {n:,} |" for op, n in sorted(result.cases.items())), "",
    ]
    if result.failures:
        lines += ["## Failures", "", "| code | title | count | operations |",
                  "|---|---|---|---|",
                  *(f"| {f['code']} | {f['title']} | {f['count']} | "
                    f"{', '.join(f['operations'][:8])} |" for f in result.failures), "",
                  "Schemathesis' report of each (curl reproductions left out):", "",
                  "```", *result.details, "```", ""]
    path.write_text("\n".join(lines))


def _version() -> str:
    from importlib.metadata import version

    return version("schemathesis")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=900,
                    help="examples per operation in the fuzzing phase")
    ap.add_argument("--url", default=None, help="a running app (default: start ServeRun)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    run = None
    url = args.url
    if url is None:
        from edge_allocator.runtime.serverun import ServeRun

        run = ServeRun()
        run.start()
        url = run.url
    try:
        result = run_fuzz(url, examples=args.examples, seed=args.seed)
    finally:
        if run is not None:
            run.stop()
    write_report(result, args.examples)
    print(f"{result.total} cases, {len(result.failures)} failures, "
          f"healthy after: {result.healthy_after}, {result.seconds:.0f} s")
    print(result.output_tail[-3000:])
    sys.exit(0 if not result.failures and result.healthy_after else 1)


if __name__ == "__main__":
    main()
