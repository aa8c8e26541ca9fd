#!/usr/bin/env bash
# Builds the fuzz targets and runs each one for a bounded time, one after the other.
#
#   fuzz/run.sh                      every target, FUZZ_SECONDS (default 30) each
#   fuzz/run.sh jwt sse_endpoint     just these
#   FUZZ_SECONDS=0 fuzz/run.sh       replay the seeds (regression inputs) only, no fuzzing
#   fuzz/run.sh --build-only         build every target and stop (scripts/test.sh builds them
#                                    ahead, while other stages run)
#
# Each run starts from fuzz/seeds/<target> (committed: realistic inputs and every past
# crash) plus the scratch corpus fuzz/corpus/<target> (gitignored, grows between runs).
# Prints per target the executions and any crash; exits 1 if any target crashed.
#
# Environment:
#   FUZZ_SECONDS     fuzzing time per target (default 30; 0 = seeds only)
#   FUZZ_JOBS        parallel rustc jobs for the build (default 1: the machine is shared)
#   FUZZ_SANITIZER   none (default: thv forbids unsafe code) or address
#   FUZZ_MAX_LEN     largest input libFuzzer generates (default 4096)
#   CARGO_FUZZ_VERSION  the cargo-fuzz installed when missing (default 0.13.2)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

seconds="${FUZZ_SECONDS:-30}"
jobs="${FUZZ_JOBS:-1}"
sanitizer="${FUZZ_SANITIZER:-none}"
max_len="${FUZZ_MAX_LEN:-4096}"
cargo_fuzz_version="${CARGO_FUZZ_VERSION:-0.13.2}"
all_targets=(www_authenticate jwt jwks sse_endpoint jsonrpc_id metadata config_values config_cli h1 h1_conn list_rewrite mcp_request trace_context)
build_only=""
if [[ "${1:-}" == "--build-only" ]]; then
  build_only=1
  shift
fi
targets=("${@:-${all_targets[@]}}")

log() { printf '[fuzz] %s\n' "$*"; }
start=$SECONDS

if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  log "installing cargo-fuzz $cargo_fuzz_version"
  # --debug: cargo-fuzz only reads its arguments and the manifest and then runs cargo, so an
  # optimised build of it buys nothing; the dev profile builds in about half the time (46 s ->
  # 25 s at one job on 2 cores). Still the pinned version, its locked dependencies, crates.io.
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked --debug -j "$jobs"
fi

# cargo-fuzz needs a few unstable rustc flags; the stable toolchain accepts them with
# RUSTC_BOOTSTRAP, so CI needs no second toolchain.
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="$jobs"
log "building ${#targets[@]} target(s) (sanitizer $sanitizer, $jobs job(s))"
build_start=$SECONDS
for t in "${targets[@]}"; do
  [[ -d "seeds/$t" ]] || { echo "unknown target $t (known: ${all_targets[*]})" >&2; exit 2; }
done
if [[ ${#targets[@]} -eq ${#all_targets[@]} ]]; then
  cargo fuzz build --sanitizer "$sanitizer"
else
  for t in "${targets[@]}"; do cargo fuzz build --sanitizer "$sanitizer" "$t"; done
fi
log "build took $((SECONDS - build_start)) s"
[[ -n "$build_only" ]] && exit 0

triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="target/$triple/release"
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  rm -f "artifacts/$t"/crash-* "artifacts/$t"/leak-* "artifacts/$t"/timeout-* "artifacts/$t"/oom-* "artifacts/$t"/slow-unit-*
  out="artifacts/$t/last-run.log"
  args=(-artifact_prefix="artifacts/$t/" -max_len="$max_len" -timeout=20 -rss_limit_mb=2048
        -print_final_stats=1 -close_fd_mask=1)
  [[ -f "dicts/$t.dict" ]] && args+=(-dict="dicts/$t.dict")
  if [[ "$seconds" -gt 0 ]]; then
    args+=(-max_total_time="$seconds")
  else
    args+=(-runs=0)
  fi
  log "$t: ${seconds}s"
  set +e
  "$bin_dir/$t" "${args[@]}" "corpus/$t" "seeds/$t" >"$out" 2>&1
  rc=$?
  set -e
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)"
  corpus_size="$(find "corpus/$t" -type f | wc -l)"
  crash="$(find "artifacts/$t" -maxdepth 1 -type f ! -name '*.log' | head -1)"
  if [[ $rc -ne 0 || -n "$crash" ]]; then
    failed+=("$t")
    summary+=("$(printf '%-17s CRASH  (exit %s) %s' "$t" "$rc" "${crash:-no artifact}")")
    log "$t CRASHED (exit $rc); the panic and stack:"
    grep -m1 -A40 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$out" | sed 's/^/    /' || tail -40 "$out"
    if [[ -n "$crash" ]]; then
      log "reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $sanitizer $t $crash)"
      log "input (base64): $(base64 -w0 "$crash")"
    fi
  else
    summary+=("$(printf '%-17s ok     %10s execs  corpus %s' "$t" "${execs:-?}" "$corpus_size")")
  fi
done

log "summary (${seconds}s per target, total $((SECONDS - start)) s):"
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  log "crashed: ${failed[*]} (artifacts in fuzz/artifacts/<target>/; see fuzz/README.md)"
  exit 1
fi
