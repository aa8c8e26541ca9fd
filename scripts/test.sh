#!/usr/bin/env bash
# Runs every test of the project, installing what it needs with pinned versions:
#   1. formatting and lints (cargo fmt --check, cargo clippy -D warnings), licences and
#      banned crates (cargo deny);
#   2. Rust unit tests and the integration-test binary (real `thv` processes, the official
#      Rust MCP SDK `rmcp`, scripted faults);
#   3. the cross-SDK interop suite (TypeScript SDK servers, Python SDK clients, the official
#      MCP conformance suite, direct vs through the proxy; stdio clients and the MCP Inspector
#      CLI through `thv proxy stdio`): interop/run.py;
#   4. the official conformance suite in client mode against the outgoing OAuth login, through
#      `thv proxy` and through `thv proxy stdio`: interop/outbound/run.py;
#   5. the incoming-auth suite against a real OIDC provider (npm oidc-provider, the Python
#      SDK's OAuth client, a hostile-token corpus): interop/auth/run.py;
#   6. the real-browser login suite (oidc-provider, headless Chromium): interop/browser/run.py;
#   6b. the MCP policy suite: Cedar decisions cross-checked against cedarpy
#      (interop/policy/cedar_crosscheck.py, on the table `cargo test` wrote), and the Python,
#      TypeScript SDK clients through thv with policies, tool filtering and audit, against a
#      real OIDC provider (interop/authz/run.py);
#   6c. the telemetry suite: a real Prometheus scraping thv's diagnostics /metrics (and promtool),
#      a loopback OTLP/HTTP receiver decoding with opentelemetry-proto (spans, attributes, trace
#      propagation, metrics, headers), JSON logs, and latency under a collector outage (wrk):
#      interop/telemetry/run.py;
#   7. fuzzing: every cargo-fuzz target for FUZZ_SECONDS (default 10 s) from its seeds;
#   8. the short soak (soak/run.sh --quick);
#   9. the per-request instruction-count regression guard (valgrind callgrind).
# Every stage prints its own "N passed, M failed" line; the script stops at the first
# failing stage and exits non-zero. The release builds of 7-9 run, niced, beside 3-6b.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n==> %s (at %d s)\n' "$*" "$SECONDS"; }

stage "formatting and lints"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

stage "dependency licences and bans (cargo deny; advisories need a network CI does not have)"
if ! cargo deny --version 2>/dev/null | grep -q "0.20.2"; then
  # --debug: the check reads Cargo.lock and the licences once (2 s in a dev build, against
  # 0.7 s optimised), and a dev build of cargo-deny takes a third of an optimised one's time
  # (55 s against ~3 min on 2 cores). Still the pinned version and its locked dependencies.
  cargo install --locked cargo-deny --version 0.20.2 --debug
fi
cargo deny check licenses bans

stage "Rust unit and integration tests"
cargo test --locked

stage "interop suite (TypeScript and Python SDKs, MCP Inspector CLI, MCP conformance)"
# The suites run target/debug/thv and target/debug/examples/bench_origin, which `cargo test`
# has just built (bins and examples, with the dev-dependencies' features). `cargo build` would
# build every dependency again without those features (~80 s) for the same code.
cargo test --locked --no-run
# The release builds the last stages need (the shipped thv for the soak and the callgrind
# guard, ~5.5 min on 2 cores; the fuzz targets, ~6 min) go on in the background from here,
# at the lowest CPU priority, while the suites up to the policy suite run: those mostly wait
# on their peers (SDK servers, an OIDC provider, Chromium; the browser suite used 30 s of
# CPU in 190 s), and a niced build takes only the CPU they leave. Nothing below calls cargo
# until the builds are waited for, before the telemetry suite, whose outage check measures
# latency on a quiet machine.
background_log=target/ci-background-builds.log
# In a process group of its own (job control on while it starts; not setsid, whose new
# session would be a scheduler autogroup of its own, taking half the CPU whatever its nice
# value), so that a failing stage, which ends the script, ends the builds and nothing else.
set -m
(
  nice -n 19 cargo build --locked --release --bin thv
  FUZZ_JOBS="${FUZZ_JOBS:-2}" nice -n 19 bash fuzz/run.sh --build-only
) >"$background_log" 2>&1 &
background_builds=$!
set +m
trap 'if [[ -n "$background_builds" ]]; then kill -- "-$background_builds" 2>/dev/null || true; fi' EXIT
background_started=$SECONDS
python3 interop/run.py

stage "outgoing-auth conformance (official MCP conformance suite, client mode; also through thv proxy stdio)"
python3 interop/outbound/run.py

if [[ -f interop/auth/run.py ]]; then
  stage "incoming-auth suite (oidc-provider, Python SDK OAuth client, hostile tokens)"
  python3 interop/auth/run.py
fi

if [[ -f interop/browser/run.py ]]; then
  stage "real-browser login suite (oidc-provider, headless Chromium)"
  python3 interop/browser/run.py
fi

stage "MCP policy suite (cedarpy cross-check; SDK clients through Cedar policies, tool filtering, audit)"
python3 interop/policy/cedar_crosscheck.py
python3 interop/authz/run.py

stage "release builds (thv, fuzz targets), started in the background after the Rust tests"
if ! wait "$background_builds"; then
  background_builds=""
  tail -60 "$background_log" >&2
  echo "the background release builds failed (whole log: $background_log)" >&2
  exit 1
fi
background_builds=""
grep -E '^\s+Finished|^\[fuzz\] build took' "$background_log" || true
echo "release builds: done $((SECONDS - background_started)) s after they started"

stage "telemetry suite (real Prometheus, OTLP receiver with opentelemetry-proto, collector outage)"
# Debian's prometheus (which brings promtool) at the pinned version, and wrk, when missing. A
# package's maintainer scripts would start its service (on every interface): while installing,
# a policy-rc.d that refuses service starts is put in place unless the machine already has one.
PROMETHEUS_DEB_VERSION=2.42.0+ds-5+deb12u1
telemetry_apt=()
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  telemetry_apt+=("prometheus=$PROMETHEUS_DEB_VERSION")
fi
command -v wrk >/dev/null 2>&1 || telemetry_apt+=(wrk)
if [[ ${#telemetry_apt[@]} -gt 0 ]]; then
  echo "telemetry: apt-get install ${telemetry_apt[*]}"
  own_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  telemetry_install_ok=1
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${telemetry_apt[@]}" >/dev/null || telemetry_install_ok=""
  if [[ -n "$own_policy" ]]; then rm -f /usr/sbin/policy-rc.d; fi
  if [[ -z "$telemetry_install_ok" ]]; then echo "telemetry: apt-get install failed" >&2; exit 1; fi
fi
python3 interop/telemetry/run.py

stage "fuzzing (cargo-fuzz, every target for a bounded time from its seeds)"
# Built already (above); two rustc jobs in case anything is left to build (fuzz/run.sh's own
# default is one job, for a machine shared with other work).
FUZZ_SECONDS="${FUZZ_SECONDS:-10}" FUZZ_JOBS="${FUZZ_JOBS:-2}" bash fuzz/run.sh

stage "soak, short version (100 clients mixing POSTs and SSE with incoming auth, then SIGTERM)"
bash soak/run.sh --quick

if [[ -f bench/callgrind.sh ]]; then
  stage "per-request instruction-count guard (callgrind)"
  # --quick: a third of each workload's requests, still the median of three runs; within ~2.5% of
  # the full-length figures (bench/callgrind.py, QUICK_DIVISOR) against a 10% gate, in half the
  # time. Baselines are recorded at full length (bench/callgrind.sh --update).
  bash bench/callgrind.sh --quick
fi

stage "all test stages passed"
