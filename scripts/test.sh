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
# Two worker processes (pytest-xdist), each taking whole files: most of the suite waits
# on Ray, HTTP and subprocesses rather than computing, so two overlap on two cores. Whole
# files keep a module's fixtures (a serve run, a browser) in one process; each worker
# starts its own session Ray cluster when its first file needs one. (--dist loadgroup
# does not group with pytest 9: xdist 3.8 renames items through a field pytest 9 no
# longer reads.) Pass -n 0 to run in one process.
exec .venv/bin/pytest -q -n 2 --dist loadfile "$@"
