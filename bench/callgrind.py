#!/usr/bin/env python3
"""Deterministic regression guard: instructions per forwarded request, counted by callgrind.

Runs the release `thv proxy` under `valgrind --tool=callgrind` twice in front of a small
in-process origin: once with W warm-up requests only, once with W + N. The difference of the
two instruction counts, divided by N, is the cost of one steady-state forwarded request
(a ~300-byte MCP tools/call POST on a keep-alive connection), start-up and shutdown cancelled
out.

What is counted: every instruction run while a tokio task is polled (`--toggle-collect` on
the task poll), which is all of thv's own work on a request, with the parsing, allocation,
system-call wrappers and JWT checks it calls. The runtime's idle loop between polls
(epoll_wait and its events, the timer wheel) is left out: how many times it turns depends on
how the kernel interleaves thv, the client and the origin, and counting it moved the figure
by +5% under two busy loops beside the guard (+14% beside a test run). Counted this way the
figure moves by about 1% under the same load. Eight workloads, each with its own line in bench/callgrind-baseline.txt:

    plain          no incoming auth: the forwarding path
    jwt-same       incoming JWT auth, the same RS256 token every request (the validation cache)
    jwt-fresh      incoming JWT auth, a new token every request (decode and verify each one)
    authz-call     the tools/call through --authz-config bench/conf/authz-bench.json (10 Cedar
                   policies, one permits the called tool; anonymous principal)
    list-filtered  tools/list answered with 100 tools (JSON, ~47 KB), filtered by the same
                   policies down to 50
    audit          the plain tools/call with --audit-config: every event logged to a temp file
    metrics        the plain tools/call with Prometheus metrics on (--otel-enable-prometheus-
                   metrics-path): every request counted, its tool label vetted
    traced         the plain tools/call traced at rate 1.0 (two spans a request, queued for an
                   OTLP collector that refuses connections: the exporter's own work counts too)

The first three run thv exactly as before (no policy flags), so they keep measuring what an
unconfigured proxy costs.

The JWT workloads sign their own tokens (bench/jwt_mint.py, bench venv) for a JWKS the
origin serves. A workload fails when it is more than --tolerance (10%) above its baseline.

    bench/callgrind.sh                      # every workload against its baseline
    bench/callgrind.sh --workload jwt-fresh # one of them
    bench/callgrind.sh --quick              # a third of the requests (CI; see QUICK_DIVISOR)
    bench/callgrind.sh --update             # record the measured workloads as the new baselines
                                            # (commit it on its own, with the reason)
"""

import argparse
import datetime as dt
import http.client
import http.server
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
OUT = os.path.join(BENCH, "run", "callgrind")
BASELINE = os.path.join(BENCH, "callgrind-baseline.txt")
VENV_PY = os.path.join(BENCH, "run", "venv", "bin", "python")

# Workload -> (baseline key, forwarded requests measured). A fresh-token request costs ~25 plain
# ones under valgrind, so fewer of them keep the guard to about a minute; 1,000 still average
# the verification's data-dependent steps well below the 10% gate (about ±0.5% run to run).
WORKLOADS = {
    "plain": ("instructions_per_request", 5000),
    "jwt-same": ("instructions_per_request.jwt_same", 5000),
    "jwt-fresh": ("instructions_per_request.jwt_fresh", 1000),
    "authz-call": ("instructions_per_request.authz_call", 2000),
    "list-filtered": ("instructions_per_request.list_filtered", 200),
    "audit": ("instructions_per_request.audit", 3000),
    "metrics": ("instructions_per_request.metrics", 3000),
    "traced": ("instructions_per_request.traced", 2000),
}
# --quick (what scripts/test.sh runs): a third of each workload's requests, still the median of
# three runs. Most of a run's wall time is the two 1 ms paces per request (PACE_SECONDS), so the
# guard takes ~125 s instead of ~250 s on 2 cores. Measured on one binary (2026-12-07, three
# --quick and two or three full invocations, the machine shared with two compiling agents): every
# --quick median was within 2.4% of the mean full-length median (plain and jwt-same; the others
# within 1.9%, most within 0.5%), while the full-length medians themselves spread by up to 3.3%
# between invocations: the machine's load shifts plain and jwt-same for a whole invocation, at any
# length; the per-request part is averaged well before N/3 (jwt-fresh's tokens agree to 0.1%).
# That is far inside the 10% gate. Baselines (--update) are always recorded at full length.
QUICK_DIVISOR = 3
AUTHZ_CONFIG = os.path.join(BENCH, "conf", "authz-bench.json")
ISSUER = "http://127.0.0.1:18090"  # never contacted: the JWKS URL is given, so no discovery
AUDIENCE = "bench"

BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"message": "m" * 200}}}, separators=(",", ":")).encode()
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": "2025-06-18"}
ANSWER = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "x" * 200}],
                                                          "isError": False}}, separators=(",", ":")).encode()


JWKS = b'{"keys":[]}'


def tools_list():
    """The 100-tool tools/list result examples/bench_origin.rs serves (byte for byte)."""
    tools = []
    for i in range(100):
        name = "echo" if i == 0 else f"tool_{i:03}"
        ann = "" if i % 4 == 3 else (
            f',"annotations":{{"readOnlyHint":{str(i % 2 == 0).lower()},"destructiveHint":{str(i % 3 == 0).lower()},'
            '"idempotentHint":true,"openWorldHint":false}')
        tools.append(
            f'{{"name":"{name}","title":"Tool {i}","description":"Bench tool {i}: takes a message and a count '
            'and returns the message repeated; one of 100 that size a realistic tools/list answer.",'
            '"inputSchema":{"type":"object","properties":{"message":{"type":"string","description":'
            '"The text to echo"},"count":{"type":"integer","minimum":1,"maximum":10,"description":'
            f'"How many times"}}}},"required":["message"]}}{ann}}}')
    return '{"tools":[' + ",".join(tools) + "]}"


LIST_BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
                       separators=(",", ":")).encode()
LIST_ANSWER = ('{"jsonrpc":"2.0","id":1,"result":' + tools_list() + "}").encode()
# What the policy leaves of it: echo and tool_001 … tool_049.
LIST_KEPT = ["echo"] + [f"tool_{i:03}" for i in range(1, 50)]

# Both ends of thv wait this long before they send, so that every read thv makes finds its
# socket empty and parks until the bytes arrive: whether the client's next request or the
# origin's answer is already there would otherwise decide, by the machine's load, between a
# direct read and a park, a wake and a second poll. Paced, a late thv can only find data
# waiting, which takes fewer instructions, never more, so load cannot fail the guard.
PACE_SECONDS = 0.001


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # the JWKS, for --auth runs
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(JWKS)).encode() + b"\r\n\r\n" + JWKS)

    disable_nagle_algorithm = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        answer = LIST_ANSWER if body == LIST_BODY else ANSWER
        time.sleep(PACE_SECONDS)
        # One write for head and body: a split answer meets Nagle + delayed ACK (40 ms each).
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(answer)).encode() + b"\r\n\r\n" + answer)

    def log_message(self, *args):
        pass


def workload_args(workload):
    """thv's extra flags, the request body, and a check of the answer, for one workload."""
    if workload == "authz-call":
        return ["--authz-config", AUTHZ_CONFIG], BODY, lambda data: data == ANSWER
    if workload == "list-filtered":
        def kept(data):
            try:
                return [t["name"] for t in json.loads(data)["result"]["tools"]] == LIST_KEPT
            except (ValueError, KeyError, TypeError):
                return False
        return ["--authz-config", AUTHZ_CONFIG], LIST_BODY, kept
    if workload == "audit":
        log = os.path.join(OUT, "audit.log")
        cfg = os.path.join(OUT, "audit-config.json")
        with open(cfg, "w") as f:
            json.dump({"component": "callgrind", "logFile": log}, f)
        if os.path.exists(log):
            os.remove(log)
        return ["--audit-config", cfg], BODY, lambda data: data == ANSWER
    if workload == "metrics":
        return ["--otel-enable-prometheus-metrics-path", "--diagnostics-port", "0"], BODY, lambda data: data == ANSWER
    if workload == "traced":
        # Port 9 (discard) refuses on loopback: every export fails fast and is counted.
        traced = ["--otel-endpoint", "http://127.0.0.1:9", "--otel-sampling-rate", "1", "--otel-metrics-enabled=false"]
        return traced, BODY, lambda data: data == ANSWER
    return [], BODY, lambda data: data == ANSWER


def run_once(thv, origin_port, warmup, n, out_file, timeout, tokens=None, workload="plain"):
    env = dict(os.environ, TOKIO_WORKER_THREADS="1", RUST_LOG="info")
    # Count only inside task polls (see the module docstring).
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", "--trace-children=no",
            "--toggle-collect=tokio::runtime::task::raw::poll*",
            thv, "proxy", "callgrind", "--target-uri", f"http://127.0.0.1:{origin_port}/mcp", "--port", "0"]
    if tokens:
        argv += ["--oidc-issuer", ISSUER, "--oidc-audience", AUDIENCE,
                 "--oidc-jwks-url", f"http://127.0.0.1:{origin_port}/jwks.json"]
    extra, body, answer_ok = workload_args(workload)
    argv += extra
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, start_new_session=True)
    try:
        # "Transparent proxy started for server callgrind on port P -> ..." (the first line that
        # names a port: the policy flags may print notices before it)
        m, line = None, ""
        for line in p.stdout:
            m = re.search(r"on port (\d+)", line)
            if m:
                break
        if not m:
            raise RuntimeError(f"thv did not start under valgrind: {line!r} {p.stderr.read()[-2000:]}")
        port = int(m.group(1))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        for i in range(warmup + n):
            hdr = HEADERS if not tokens else dict(HEADERS, Authorization="Bearer " + tokens[i % len(tokens)])
            time.sleep(PACE_SECONDS)
            c.request("POST", "/mcp", body, hdr)
            r = c.getresponse()
            data = r.read()
            if r.status != 200 or not answer_ok(data):
                raise RuntimeError(f"request {i}: HTTP {r.status} {data[:200]!r}")
        c.close()
        time.sleep(0.2)
        os.kill(p.pid, signal.SIGTERM)
        p.wait(timeout=timeout)
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    with open(out_file) as f:
        for ln in f:
            if ln.startswith("summary:") or ln.startswith("totals:"):
                total = int(ln.split()[1])
                # Nothing collected means the toggle matched no function (a tokio rename, another
                # demangler): a zero would pass every baseline, so it is an error instead.
                if total == 0:
                    raise RuntimeError(f"{out_file}: no instructions collected; does "
                                       "--toggle-collect still name tokio's task poll?")
                return total
    raise RuntimeError(f"no totals in {out_file}")


def read_baselines():
    """Every `key=value` line of the baseline file, in order."""
    lines = {}
    if os.path.exists(BASELINE):
        for ln in open(BASELINE):
            if "=" in ln and not ln.startswith("#"):
                key, value = ln.strip().split("=", 1)
                lines[key] = value
    return lines


def write_baselines(measured):
    lines = read_baselines()
    sha = subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    today = dt.date.today().isoformat()
    for workload, ipr in measured.items():
        key, requests = WORKLOADS[workload]
        lines[key] = f"{ipr:.0f}"
        lines[key.replace("instructions_per_request", "requests")] = str(requests)
        lines[key.replace("instructions_per_request", "recorded")] = f"{today} at {sha} with {rustc}"
    with open(BASELINE, "w") as f:
        f.write("# Instructions per forwarded request, counted by bench/callgrind.sh (release profile,\n"
                "# TOKIO_WORKER_THREADS=1, ~300-byte MCP tools/call POST on a keep-alive connection,\n"
                "# instructions inside tokio task polls only, client and origin paced):\n"
                "# no auth, then incoming JWT auth with the same token and with a new token each request;\n"
                "# then MCP policy: tools/call through 10 Cedar policies, a 100-tool tools/list filtered\n"
                "# by them (per list request), and the tools/call with an audit log; then telemetry:\n"
                "# the tools/call with Prometheus metrics, and traced at rate 1.0 (spans exported).\n"
                "# bench/callgrind.sh fails when a build is more than 10% above a figure.\n"
                "# Update it consciously, in its own commit, saying why (bench/callgrind.sh --update).\n")
        for key, value in lines.items():
            f.write(f"{key}={value}\n")


def mint_tokens(workload, count):
    """Keys, JWKS and `count` tokens signed for this run (one if the workload repeats a token)."""
    if not os.path.exists(VENV_PY):
        raise RuntimeError(f"{os.path.relpath(VENV_PY, REPO)} missing: bench/callgrind.sh creates it (bench/venv.sh)")
    jdir = os.path.join(OUT, "jwt")
    mint = os.path.join(BENCH, "jwt_mint.py")
    subprocess.run([VENV_PY, mint, "keys", jdir], check=True, timeout=120)
    pool = os.path.join(jdir, "tokens.txt")
    n = count if workload == "jwt-fresh" else 1
    # Minted anew every run: tokens live 24 h, and a reused pool would expire under a later run.
    subprocess.run([VENV_PY, mint, "tokens", jdir, str(n), ISSUER, AUDIENCE, pool], check=True, timeout=300)
    with open(pool) as f:
        tokens = [ln.strip() for ln in f if ln.strip()]
    if len(tokens) != n:
        raise RuntimeError(f"jwt_mint.py wrote {len(tokens)} tokens, not {n}")
    with open(os.path.join(jdir, "jwks.json"), "rb") as f:
        return f.read(), tokens


def measure(workload, thv, origin_port, warmup, requests, repeat):
    global JWKS
    tokens = None
    if workload.startswith("jwt-"):
        JWKS, tokens = mint_tokens(workload, warmup + requests)
    per = []
    started = time.monotonic()
    for k in range(repeat):
        t_run = time.monotonic()
        base = run_once(thv, origin_port, warmup, 0, os.path.join(OUT, f"base-{workload}-{k}.out"), 120, tokens,
                        workload)
        t_full_base = time.monotonic()
        full = run_once(thv, origin_port, warmup, requests, os.path.join(OUT, f"full-{workload}-{k}.out"), 600,
                        tokens, workload)
        t_full = time.monotonic()
        per.append((full - base) / requests)
        print(f"callgrind: {workload}: run {k + 1}: {base:,} Ir with {warmup} warm-up requests, {full:,} Ir "
              f"with {requests} more -> {per[-1]:,.0f} instructions per forwarded request "
              f"({t_full_base - t_run:.0f} s + {t_full - t_full_base:.0f} s)", flush=True)
    print(f"callgrind: {workload}: {time.monotonic() - started:.0f} s", flush=True)
    return statistics.median(per)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    ap.add_argument("--requests", type=int, help="forwarded requests measured (default: the workload's own)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3, help="measure this many times, keep the median")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--update", action="store_true", help="write the measured figures as the new baselines")
    ap.add_argument("--quick", action="store_true",
                    help=f"CI: 1/{QUICK_DIVISOR} of each workload's requests, still the median of --repeat runs "
                         "(not with --update: baselines are recorded at full length)")
    ap.add_argument("--thv", default=os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target"),
                                                  "release", "thv"))
    a = ap.parse_args()
    if a.update and a.quick:
        ap.error("--update records baselines at each workload's full request count: drop --quick")
    os.makedirs(OUT, exist_ok=True)
    workloads = list(WORKLOADS) if a.workload == "all" else [a.workload]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    origin_port = srv.server_address[1]
    t0 = time.monotonic()
    measured = {}
    try:
        for workload in workloads:
            requests = a.requests or WORKLOADS[workload][1]
            if a.quick:
                requests = -(-requests // QUICK_DIVISOR)
            measured[workload] = measure(workload, a.thv, origin_port, a.warmup, requests, a.repeat)
    finally:
        srv.shutdown()
    print(f"callgrind: measured in {time.monotonic() - t0:.0f} s; profiles in {os.path.relpath(OUT, REPO)}/, "
          "open with callgrind_annotate")
    if a.update:
        write_baselines(measured)
        for workload, ipr in measured.items():
            print(f"callgrind: {workload}: {ipr:,.0f} instructions per forwarded request, recorded")
        print(f"callgrind: baselines written to {os.path.relpath(BASELINE, REPO)}")
        print(f"callgrind: {len(measured)} passed, 0 failed")
        return 0
    baselines = read_baselines()
    passed = failed = 0
    for workload, ipr in measured.items():
        key = WORKLOADS[workload][0]
        if key not in baselines:
            print(f"callgrind: {workload}: {ipr:,.0f}, but {os.path.relpath(BASELINE, REPO)} has no {key} "
                  "(run bench/callgrind.sh --update)")
            failed += 1
            continue
        base = float(baselines[key])
        change = ipr / base - 1
        limit = base * (1 + a.tolerance)
        # Far below the baseline is as suspect as far above: a count that lost most of the
        # request's work (a toggle that matches less than it did) must not pass quietly.
        ok = base / 2 <= ipr <= limit
        if ipr < base / 2:
            print(f"callgrind: {workload}: {ipr:,.0f} is under half its baseline {base:,.0f}: the count no longer "
                  "covers the request's work (check --toggle-collect), or record a real gain with --update")
        print(f"callgrind: {workload}: baseline {base:,.0f}, now {ipr:,.0f} ({change:+.1%}; "
              f"limit +{a.tolerance:.0%} = {limit:,.0f}) -> {'ok' if ok else 'SUSPECT' if ipr < limit else 'REGRESSION'}")
        if change < -a.tolerance:
            print(f"callgrind: {workload}: more than {a.tolerance:.0%} better than its baseline: consider recording "
                  "it (--update) in its own commit")
        passed += ok
        failed += not ok
    print(f"callgrind: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
