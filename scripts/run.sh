#!/usr/bin/env bash
# Bring the service up on embedded defaults: SQLite decision log, in-process cache,
# shipped models. Listens on http://127.0.0.1:8000 (serve_config.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0
echo "Edge Allocator: starting Ray Serve; it listens on http://127.0.0.1:8000 (Ctrl-C stops it)"
exec .venv/bin/serve run serve_config.yaml
