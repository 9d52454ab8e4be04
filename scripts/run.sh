#!/usr/bin/env bash
# Bring the service up on embedded defaults: in-process cache, shipped models, no
# external services. Listens on http://127.0.0.1:8000 (serve_config.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0
# Ray Serve's fast path (measured in benchmarks/serve_bench.py): HAProxy on the HTTP port
# forwarding straight to the ingress replicas, gRPC between deployments. These are
# process-level settings, so they must be set before Ray starts.
export RAY_SERVE_THROUGHPUT_OPTIMIZED=1 RAY_SERVE_ENABLE_HA_PROXY=1
# nothing external balances onto the replicas here: no need for the 30 s drain on stop
export RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S=2
hp=$(mktemp -d /tmp/hpXXXXXX)  # HAProxy's files: short, private paths
export RAY_SERVE_HAPROXY_CONFIG_FILE_LOC="$hp/haproxy.cfg" RAY_SERVE_HAPROXY_SOCKET_PATH="$hp/admin.sock"
export RAY_SERVE_HAPROXY_SERVER_STATE_BASE="$hp" RAY_SERVE_HAPROXY_SERVER_STATE_FILE="$hp/server-state"
# Ray without its dashboard head (measured in benchmarks/serve_run.py: 8.7 s to ready and
# 1.75 GiB RSS against 10.0 s and 2.72 GiB for `serve run serve_config.yaml`, which also works);
# metrics on :8080 (EDGE_ALLOCATOR_METRICS_PORT).
echo "Edge Allocator: starting Ray Serve; it listens on http://127.0.0.1:8000 (Ctrl-C stops it)"
exec .venv/bin/python -m deployments.launch serve_config.yaml
