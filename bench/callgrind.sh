#!/usr/bin/env bash
# CI regression guard: instructions per forwarded request under callgrind vs
# bench/callgrind-baseline.txt, without auth and with incoming JWT auth (same token, new token),
# and with MCP policy (tools/call through 10 Cedar policies, a 100-tool tools/list filtered by
# them, tools/call with an audit log) and with telemetry (Prometheus metrics; traced at rate 1.0);
# exits 1 when any is more than 10% above its baseline.
# A few minutes on 2 cores.
#
#   bench/callgrind.sh                      build the release thv, measure, compare
#   bench/callgrind.sh --workload plain     one workload (plain, jwt-same, jwt-fresh, authz-call,
#                                           list-filtered, audit, metrics, traced)
#   bench/callgrind.sh --quick              a third of each workload's requests (what CI runs)
#   bench/callgrind.sh --update             record new baselines (commit them on their own, with the reason)
#
# Set CARGO_TARGET_DIR to build elsewhere, or THV_BIN to measure a binary already built.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null 2>&1; then
  echo "callgrind: installing valgrind (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
bash bench/venv.sh # the JWT workloads sign their tokens with it
if [ -z "${THV_BIN:-}" ]; then
  cargo build --release --quiet --bin thv
  THV_BIN="${CARGO_TARGET_DIR:-target}/release/thv"
fi
exec python3 bench/callgrind.py --thv "$THV_BIN" "$@"
