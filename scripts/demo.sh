#!/usr/bin/env bash
# Quick-start demo: a real MCP server, `thv proxy` in front of it, and a real MCP client
# talking to the server only through the proxy.
#
#   scripts/demo.sh           # SSE responses with sessions
#   scripts/demo.sh --json    # the server answers with plain JSON, statelessly
#   scripts/demo.sh --policy  # with Cedar policies (examples/policy/authz.yaml) and an
#                             # audit log: `echo` is hidden and refused, every call audited
#   scripts/demo.sh --telemetry  # with Prometheus metrics on the diagnostics listener and
#                                # JSON logs: the tool calls, counted, are printed
#
# Needs only the Rust toolchain. Everything listens on 127.0.0.1 (free ports picked by the
# OS), every wait is bounded, both background processes are stopped by their PIDs on exit,
# and the script exits non-zero if the client's calls fail.
set -euo pipefail

cd "$(dirname "$0")/.."

server_args=(--port 0)
policy=false
telemetry=false
if [[ "${1:-}" == "--json" ]]; then
  server_args+=(--json)
elif [[ "${1:-}" == "--policy" ]]; then
  policy=true
elif [[ "${1:-}" == "--telemetry" ]]; then
  telemetry=true
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--json | --policy | --telemetry]" >&2
  exit 2
fi

echo "==> Building thv and the demo programs"
# Only the two demo examples: the other examples (benchmarks) are not needed here.
cargo build --quiet --bin thv --example demo_server --example demo_client
bin="${CARGO_TARGET_DIR:-target}/debug"

work="$(mktemp -d)"
server_pid=""
thv_pid=""
cleanup() {
  local pid
  for pid in "$thv_pid" "$server_pid"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Waits up to 15 s for a line matching the regex $2 in file $1, while process $3 lives;
# prints the first match.
wait_for_line() {
  local file="$1" pattern="$2" pid="$3" what="$4" match
  for _ in $(seq 150); do
    if match="$(grep -Eo -m1 "$pattern" "$file" 2>/dev/null)"; then
      echo "$match"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: $what exited early; its output:" >&2
      cat "$work"/*.log >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "error: $what did not start within 15 s; its output:" >&2
  cat "$work"/*.log >&2 || true
  return 1
}

echo "==> Starting the demo MCP server"
"$bin/examples/demo_server" "${server_args[@]}" >"$work/server.log" 2>&1 &
server_pid=$!
target="$(wait_for_line "$work/server.log" 'http://127\.0\.0\.1:[0-9]+/mcp' "$server_pid" demo_server)"
sed -n 1p "$work/server.log"

thv_args=(--port 0 --debug)
client_args=()
if $policy; then
  printf '{"component": "demo", "logFile": "%s"}\n' "$work/audit.ndjson" >"$work/audit.json"
  thv_args+=(--authz-config examples/policy/authz.yaml --audit-config "$work/audit.json")
  client_args+=(--denied echo)
fi
if $telemetry; then
  thv_args+=(--otel-enable-prometheus-metrics-path --diagnostics-port 0 --log-format json)
fi
echo "==> Starting: thv proxy demo --target-uri $target ${thv_args[*]}"
"$bin/thv" proxy demo --target-uri "$target" "${thv_args[@]}" >"$work/thv.log" 2>"$work/thv-debug.log" &
thv_pid=$!
wait_for_line "$work/thv.log" 'Transparent proxy started' "$thv_pid" thv >/dev/null
sed -n 1p "$work/thv.log"
proxy_url="$(grep -Eo -m1 'MCP clients: http://[^ )]+' "$work/thv.log" | sed 's/^MCP clients: //')"
if [[ -z "$proxy_url" ]]; then
  port="$(grep -Eo -m1 'on port [0-9]+' "$work/thv.log" | grep -Eo '[0-9]+')"
  proxy_url="http://127.0.0.1:$port/mcp"
fi

echo "==> Running the demo MCP client against the proxy: $proxy_url"
echo
status=0
"$bin/examples/demo_client" "$proxy_url" "${client_args[@]}" || status=$?
echo

echo "==> Requests thv forwarded (its --debug log):"
# Give the last lines (the client's closing DELETE) a moment to reach the log file.
sleep 0.3
grep -E ' request method=|"message":"request"' "$work/thv-debug.log" | sed 's/^/    /' || echo "    (none logged)"

if $telemetry; then
  metrics_url="$(grep -Eo -m1 'http://127\.0\.0\.1:[0-9]+/metrics' "$work/thv-debug.log" || true)"
  echo "==> Prometheus metrics at $metrics_url (the MCP requests, by method and tool):"
  metrics="$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$metrics_url")"
  grep -E '^toolhive_mcp_(requests|tool_calls)_total' <<<"$metrics" | sed 's/^/    /'
  if ! grep -qE '^toolhive_mcp_tool_calls_total\{[^}]*tool="add"' <<<"$metrics"; then
    echo "==> FAILED: the tool calls are not in the metrics" >&2
    status=1
  fi
fi

if $policy; then
  echo "==> The audit log (one NDJSON line per MCP request):"
  sed 's/^/    /' "$work/audit.ndjson" 2>/dev/null || echo "    (empty)"
fi

if [[ $status -ne 0 ]]; then
  echo "==> FAILED: demo_client exited with status $status" >&2
  exit "$status"
fi
echo "==> Demo finished: the MCP client talked to the server through thv"
