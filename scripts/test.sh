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
exec .venv/bin/pytest -q "$@"
