#!/usr/bin/env bash
# Set up (if needed), then the gates in order: lint, types, the whole test suite.
# Each gate prints a header first, so a CI log shows which one failed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0
echo "== lint: ruff check ."
.venv/bin/ruff check .
echo "== types: mypy (files from [tool.mypy] in pyproject.toml)"
.venv/bin/mypy
echo "== tests: pytest"
# Two worker processes (pytest-xdist): most of the suite waits on Ray, HTTP and
# subprocesses rather than computing, so two overlap well on two cores; the files that
# need a Ray cluster in the test process stay together in two groups (tests/conftest.py).
# Pass -n 0 to run in one process.
exec .venv/bin/pytest -q -n 2 --dist loadgroup "$@"
