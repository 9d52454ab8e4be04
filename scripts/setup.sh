#!/usr/bin/env bash
# Create .venv with everything installed (torch's CPU build first). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
# Reinstall when anything is missing: the package and its heavy dependencies, or the dev
# tools scripts/test.sh runs first (an older .venv may predate ruff and mypy in [dev]).
if ! .venv/bin/python -c "import edge_allocator, ray.train.torch, ray.tune, torch, grpc_tools" 2>/dev/null \
    || ! .venv/bin/ruff --version >/dev/null 2>&1 \
    || ! .venv/bin/mypy --version >/dev/null 2>&1; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e ".[dev]"
fi
