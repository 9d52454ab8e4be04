#!/usr/bin/env bash
# Create .venv with everything installed (torch's CPU build first). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
# Reinstall when anything is missing: the package and its heavy dependencies, or the dev
# tools scripts/test.sh runs first (an older .venv may predate ruff and mypy in [dev]).
# Also when pyproject.toml changed since the last install (a dependency was added).
stamp=".venv/.pyproject.sha256"
if ! .venv/bin/python -c "import edge_allocator, ray.train.torch, ray.tune, torch, grpc_tools, paho.mqtt" 2>/dev/null \
    || ! .venv/bin/ruff --version >/dev/null 2>&1 \
    || ! .venv/bin/mypy --version >/dev/null 2>&1 \
    || [ "$(cat "$stamp" 2>/dev/null)" != "$(sha256sum pyproject.toml | cut -d' ' -f1)" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e ".[dev]"
  sha256sum pyproject.toml | cut -d' ' -f1 > "$stamp"
fi
# Debian packages some tests need, installed only as root and only when missing;
# otherwise those tests skip (and fail under CI=true). apt_install PACKAGE WHAT-NEEDS-IT
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing $1 (apt-get install $1)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$1" \
      >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$1" >/dev/null; }
  else
    echo "setup: $1 not found and not root (or no apt-get): install Debian's '$1' package" \
         "(sudo apt-get install $1) for $2; without it they skip, and fail under CI=true" >&2
  fi
}
# Prometheus and promtool (Debian's `prometheus` package) for the monitoring tests: the
# alert rules and dashboard queries run against a real Prometheus.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  apt_install prometheus "the monitoring tests"
fi
# The live-network tests need a real MQTT broker (Debian's mosquitto): install it as root
# when absent. Development and CI machines run one on 127.0.0.1:1883; tests that restart a
# broker start their own `mosquitto -p <port>` from this package.
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto \
      mosquitto-clients >/dev/null
  else
    echo "setup: mosquitto is not installed; as root: apt-get install mosquitto" >&2
  fi
fi
# The decision explorer's browser tests (tests/serve/test_ui_browser.py) drive Debian's
# chromium through Playwright for Python (executable_path: Playwright's own browser
# download is not used).
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium "the decision explorer's browser tests"
fi
