#!/usr/bin/env bash
# Runs every test of the project, installing what it needs with pinned versions:
#   1. formatting and lints (cargo fmt --check, cargo clippy -D warnings), licences and
#      banned crates (cargo deny);
#   2. Rust unit tests and the integration-test binary (real `thv` processes, the official
#      Rust MCP SDK `rmcp`, scripted faults);
#   3. the cross-SDK interop suite (TypeScript SDK servers, Python SDK clients, the official
#      MCP conformance suite, direct vs through the proxy): interop/run.py;
#   4. the official conformance suite in client mode against the outgoing OAuth login:
#      interop/outbound/run.py;
#   5. the incoming-auth suite against a real OIDC provider (npm oidc-provider, the Python
#      SDK's OAuth client, a hostile-token corpus): interop/auth/run.py;
#   6. the real-browser login suite (oidc-provider, headless Chromium): interop/browser/run.py;
#   6b. the MCP policy suite: Cedar decisions cross-checked against cedarpy
#      (interop/policy/cedar_crosscheck.py, on the table `cargo test` wrote), and the Python,
#      TypeScript SDK clients through thv with policies, tool filtering and audit, against a
#      real OIDC provider (interop/authz/run.py);
#   7. fuzzing: every cargo-fuzz target for FUZZ_SECONDS (default 10 s) from its seeds;
#   8. the short soak (soak/run.sh --quick);
#   9. the per-request instruction-count regression guard (valgrind callgrind).
# Every stage prints its own "N passed, M failed" line; the script stops at the first
# failing stage and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n==> %s\n' "$*"; }

stage "formatting and lints"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

stage "dependency licences and bans (cargo deny; advisories need a network CI does not have)"
if ! cargo deny --version 2>/dev/null | grep -q "0.20.2"; then
  cargo install --locked cargo-deny --version 0.20.2
fi
cargo deny check licenses bans

stage "Rust unit and integration tests"
cargo test --locked

stage "interop suite (TypeScript and Python SDKs, MCP conformance)"
cargo build --locked --bin thv
python3 interop/run.py

stage "outgoing-auth conformance (official MCP conformance suite, client mode)"
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

stage "fuzzing (cargo-fuzz, every target for a bounded time from its seeds)"
FUZZ_SECONDS="${FUZZ_SECONDS:-10}" bash fuzz/run.sh

stage "soak, short version (100 clients mixing POSTs and SSE with incoming auth, then SIGTERM)"
bash soak/run.sh --quick

if [[ -f bench/callgrind.sh ]]; then
  stage "per-request instruction-count guard (callgrind)"
  bash bench/callgrind.sh
fi

stage "all test stages passed"
