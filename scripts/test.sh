#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0
exec .venv/bin/pytest -q "$@"
