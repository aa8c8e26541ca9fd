#!/usr/bin/env python3
"""Deterministic regression guard: instructions per forwarded request, counted by callgrind.

Runs the release `thv proxy` under `valgrind --tool=callgrind` twice in front of a small
in-process origin: once with W warm-up requests only, once with W + N. The difference of the
two instruction totals, divided by N, is the cost of one steady-state forwarded request
(a ~300-byte MCP tools/call POST on a keep-alive connection), start-up and shutdown cancelled
out. It fails when that is more than --tolerance (10%) above bench/callgrind-baseline.txt.

    bench/callgrind.sh                 # check against the baseline
    bench/callgrind.sh --update        # record a new baseline (commit it on its own, with the reason)
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

BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"message": "m" * 200}}}, separators=(",", ":")).encode()
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": "2025-06-18"}
ANSWER = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "x" * 200}],
                                                          "isError": False}}, separators=(",", ":")).encode()


JWKS = b'{"keys":[]}'


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # the JWKS, for --auth runs
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(JWKS)).encode() + b"\r\n\r\n" + JWKS)

    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # One write for head and body: a split answer meets Nagle + delayed ACK (40 ms each).
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER)

    def log_message(self, *args):
        pass


def run_once(thv, origin_port, warmup, n, out_file, timeout, tokens=None):
    env = dict(os.environ, TOKIO_WORKER_THREADS="1", RUST_LOG="info")
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", "--trace-children=no",
            thv, "proxy", "callgrind", "--target-uri", f"http://127.0.0.1:{origin_port}/mcp", "--port", "0"]
    if tokens:
        iss = "http://127.0.0.1:18090"  # what bench/run.py mints for
        argv += ["--oidc-issuer", iss, "--oidc-audience", "bench",
                 "--oidc-jwks-url", f"http://127.0.0.1:{origin_port}/jwks.json"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, start_new_session=True)
    try:
        line = p.stdout.readline()  # "Transparent proxy started for server callgrind on port P -> ..."
        m = re.search(r"on port (\d+)", line)
        if not m:
            raise RuntimeError(f"thv did not start under valgrind: {line!r} {p.stderr.read()[-2000:]}")
        port = int(m.group(1))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        for i in range(warmup + n):
            hdr = HEADERS if not tokens else dict(HEADERS, Authorization="Bearer " + tokens[i % len(tokens)])
            c.request("POST", "/mcp", BODY, hdr)
            r = c.getresponse()
            data = r.read()
            if r.status != 200 or data != ANSWER:
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
                return int(ln.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def read_baseline():
    if not os.path.exists(BASELINE):
        return None
    for ln in open(BASELINE):
        if ln.startswith("instructions_per_request="):
            return float(ln.split("=", 1)[1])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3, help="measure this many times, keep the median")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--update", action="store_true", help="write the measured figure as the new baseline")
    ap.add_argument("--thv", default=os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target"),
                                                  "release", "thv"))
    ap.add_argument("--auth", choices=["same", "fresh"],
                    help="profile incoming JWT validation (keys and tokens from a bench/run.sh run in "
                         "bench/run/jwt): the same token every request, or a new one each; no baseline check")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    tokens = None
    if a.auth:
        global JWKS
        jdir = os.path.join(BENCH, "run", "jwt")
        JWKS = open(os.path.join(jdir, "jwks.json"), "rb").read()
        pool = sorted((f for f in os.listdir(jdir) if f.startswith("tokens-")), key=lambda f: os.path.getsize(
            os.path.join(jdir, f)))[-1]
        with open(os.path.join(jdir, pool)) as f:
            tokens = [next(f).strip() for _ in range(a.warmup + a.requests if a.auth == "fresh" else 1)]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    origin_port = srv.server_address[1]
    t0 = time.monotonic()
    per = []
    try:
        for k in range(a.repeat):
            tag = f"-{a.auth}" if a.auth else ""
            base = run_once(a.thv, origin_port, a.warmup, 0, os.path.join(OUT, f"base{tag}-{k}.out"), 120, tokens)
            full = run_once(a.thv, origin_port, a.warmup, a.requests, os.path.join(OUT, f"full{tag}-{k}.out"), 600,
                            tokens)
            per.append((full - base) / a.requests)
            print(f"callgrind: run {k + 1}: {base:,} Ir with {a.warmup} warm-up requests, {full:,} Ir with "
                  f"{a.requests} more -> {per[-1]:,.0f} instructions per forwarded request", flush=True)
    finally:
        srv.shutdown()
    ipr = statistics.median(per)
    print(f"callgrind: {ipr:,.0f} instructions per forwarded request ({time.monotonic() - t0:.0f} s; "
          f"profiles in {os.path.relpath(OUT, REPO)}/, open with callgrind_annotate)")
    if a.auth:
        print(f"callgrind: (--auth {a.auth}: a profiling run, not compared with the baseline)")
        return 0
    if a.update:
        sha = subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
        with open(BASELINE, "w") as f:
            f.write("# Instructions per forwarded request, counted by bench/callgrind.sh (release profile,\n"
                    "# TOKIO_WORKER_THREADS=1, ~300-byte MCP tools/call POST on a keep-alive connection).\n"
                    "# bench/callgrind.sh fails when a build is more than 10% above this figure.\n"
                    "# Update it consciously, in its own commit, saying why (bench/callgrind.sh --update).\n"
                    f"instructions_per_request={ipr:.0f}\n"
                    f"requests={a.requests}\n"
                    f"recorded={dt.date.today().isoformat()} at {sha} with {rustc}\n")
        print(f"callgrind: baseline written to {os.path.relpath(BASELINE, REPO)}")
        print("callgrind: 1 passed, 0 failed")
        return 0
    base = read_baseline()
    if base is None:
        print(f"callgrind: no baseline in {os.path.relpath(BASELINE, REPO)} (run bench/callgrind.sh --update)")
        print("callgrind: 0 passed, 1 failed")
        return 1
    change = ipr / base - 1
    limit = base * (1 + a.tolerance)
    ok = ipr <= limit
    print(f"callgrind: baseline {base:,.0f}, now {ipr:,.0f} ({change:+.1%}; limit +{a.tolerance:.0%} = {limit:,.0f}) "
          f"-> {'ok' if ok else 'REGRESSION'}")
    if change < -a.tolerance:
        print("callgrind: more than 10% better than the baseline: consider recording it (--update) in its own commit")
    print(f"callgrind: {1 if ok else 0} passed, {0 if ok else 1} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
