#!/usr/bin/env bash
# Soak and load test of thv (issue 6, item 4): N clients mixing POSTs and SSE streams through
# the proxy with incoming JWT auth on, RSS/FD sampling, SIGTERM under load. See
# examples/soak.rs for what is checked.
#
#   soak/run.sh            the full soak: 1000 clients for 5 minutes (about 6 minutes)
#   soak/run.sh --quick    the CI version: 100 clients for 20 s (under a minute after the build)
#   soak/run.sh [--quick] -- --clients 500 --duration 2m   extra/overriding soak arguments
#
# Prints a table and `soak: N passed, M failed`; exits non-zero if any check failed.
# thv's stderr goes to target/soak-thv.log.
set -euo pipefail
cd "$(dirname "$0")/.."

args=(--clients 1000 --duration 5m)
budget=600 # seconds: hard cap on the whole soak run (duration + shutdown + margin)
quick=""
if [[ "${1:-}" == "--quick" ]]; then
  args=(--clients 100 --duration 20s)
  budget=120
  quick=1
  shift
fi
[[ "${1:-}" == "--" ]] && shift
args+=("$@")

# Two commands, not one: built in the same command as an example, thv's dependencies take the
# dev-dependencies' features too (tokio with full, test-util, parking_lot), so the soak would
# load a thv that is not the one users get, and bench/callgrind.sh's `cargo build --release
# --bin thv` would then build thv again (~2 min on 2 cores: fat LTO). Built alone, target/release/
# thv is the shipped binary, and the callgrind stage after this finds it fresh.
cargo build --release --bin thv
# The clients and the origin: the quick soak's 100 clients are paced (about 500 POSTs a second)
# and a dev build of them uses a quarter of one core, so it takes the dev build `cargo test`
# has already made (in CI, at the Rust test stage) instead of another fat-LTO build of every
# dependency (~4 min on 2 cores). The full soak's 1000 clients need the release build.
if [[ -n "$quick" ]]; then
  cargo build --example soak
  client=target/debug/examples/soak
else
  cargo build --release --example soak
  client=target/release/examples/soak
fi

# Every client holds a connection to thv, and thv one to the origin: both processes need
# far more than the usual 1024 descriptors. Raise the soft limit to the hard one.
hard=$(ulimit -Hn)
if [[ "$hard" == "unlimited" ]]; then hard=65536; fi
ulimit -n "$hard"
if (( $(ulimit -n) < 4096 )); then
  echo "soak: the open-file limit is $(ulimit -n) (hard $hard); the soak needs several thousand" >&2
  exit 2
fi

# Bounded: the soak enforces its own deadlines; timeout is the last resort.
exec timeout --kill-after=10 "$budget" "$client" --thv target/release/thv "${args[@]}"
