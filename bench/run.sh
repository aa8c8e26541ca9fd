#!/usr/bin/env bash
# The benchmark: one command, one run, every target interleaved (issue 5).
#
#   bench/run.sh            full run (5 rounds × 10 s, about 40–45 min with the telemetry rows); writes bench/RESULTS.md
#                           and bench/latency-added.svg; raw JSON in bench/run/results/
#   bench/run.sh --quick    smoke run (2 rounds × 3 s, ~5 min); writes only bench/run/results/
#   bench/run.sh --suite telemetry   only the telemetry rows (thv metrics/OTLP tracing beside
#                           HAProxy's Prometheus exporter and OpenTracing filter), ~17 min
#   bench/run.sh --help     every option (rounds, duration, rate, targets, skipped workloads)
#
# Installs what is missing (bench/setup.sh), builds the release binaries (thv, and the
# bench_origin / sse_client examples), raises the open-file limit to the hard limit, then runs
# bench/run.py. Set CARGO_TARGET_DIR to build elsewhere (default: the repo's target/).
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in *" --help "*|*" -h "*) exec python3 bench/run.py --help ;; esac

bench/setup.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
echo "bench: building release binaries"
cargo build --release --quiet --bin thv --example bench_origin --example sse_client
ulimit -n "$(ulimit -Hn)"
BENCH_VIA_RUNSH=1 exec python3 bench/run.py "$@"
