#!/usr/bin/env python3
"""The floor under the added-latency target (issue 5): what one extra loopback hop costs
on this machine whatever the proxy does, measured beside thv in one interleaved run.

    python3 bench/latency_floor.py [--rounds 3] [--seconds 8] [--rate 2000]

Needs what bench/run.sh installs and builds (oha, haproxy, target/release/thv and the
bench_origin example). Topology as in run.py: oha on CPU 0; origin and the relay under test
on CPU 1. Targets: direct; HAProxy in `mode tcp` (a layer-4 relay: it copies bytes and
parses nothing, the least any proxy can do); HAProxy in `mode http`; thv. Prints added
latency (target − direct of the same round) p50/p99 per target, medians over rounds.
Only processes this script started are stopped, by PID. Everything stays on 127.0.0.1.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import socket

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target"), "release")
PORTS = {"direct": 19201, "tcp-relay": 19202, "haproxy": 19203, "thv": 19204}
BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"message": "m" * 200}}}, separators=(",", ":"))
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "MCP-Protocol-Version": "2025-11-25"}


def on_cpu(cpu, argv):
    return ["nice", "-n", "-10", "taskset", "-c", str(cpu)] + argv


def wait_port(port, limit=10.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def oha(port, rate, seconds):
    argv = ["oha", "--no-tui", "--output-format", "json", "-q", str(rate), "--latency-correction",
            "-c", "16", "-z", f"{seconds}s", "-m", "POST", "-d", BODY]
    for k, v in HEADERS.items():
        argv += ["-H", f"{k}: {v}"]
    out = subprocess.run(on_cpu(0, argv + [f"http://127.0.0.1:{port}/mcp"]), capture_output=True, text=True,
                         timeout=seconds + 60)
    pct = json.loads(out.stdout)["latencyPercentiles"]
    return pct["p50"] * 1e6, pct["p99"] * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rate", type=int, default=2000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="thv-floor-")
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(f"""global
  nbthread 1
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend tcp_relay
  mode tcp
  bind 127.0.0.1:{PORTS['tcp-relay']}
  default_backend be_tcp
backend be_tcp
  mode tcp
  server origin 127.0.0.1:{PORTS['direct']}
frontend http_proxy
  mode http
  option http-keep-alive
  bind 127.0.0.1:{PORTS['haproxy']}
  default_backend be_http
backend be_http
  mode http
  http-reuse always
  server origin 127.0.0.1:{PORTS['direct']}
""")
    procs = []
    try:
        env = dict(os.environ, TOKIO_WORKER_THREADS="1")
        procs.append(subprocess.Popen(on_cpu(1, [os.path.join(REL, "examples", "bench_origin"), "--port",
                                                 str(PORTS["direct"])]), env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(on_cpu(1, ["haproxy", "-f", cfg, "-db"]), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(on_cpu(1, [os.path.join(REL, "thv"), "proxy", "floor", "--target-uri",
                                                 f"http://127.0.0.1:{PORTS['direct']}/mcp", "--port",
                                                 str(PORTS["thv"])]), env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        for port in PORTS.values():
            wait_port(port)
        added = {t: ([], []) for t in PORTS if t != "direct"}
        for r in range(a.rounds):
            order = list(PORTS)
            random.shuffle(order)
            got = {}
            for t in order:
                oha(PORTS[t], a.rate, 2)  # warm-up
                got[t] = oha(PORTS[t], a.rate, a.seconds)
                print(f"round {r + 1} {t:10} p50 {got[t][0]:7.1f} us  p99 {got[t][1]:7.1f} us", flush=True)
            for t in added:
                added[t][0].append(got[t][0] - got["direct"][0])
                added[t][1].append(got[t][1] - got["direct"][1])
        print(f"added latency over direct at {a.rate} req/s, median of {a.rounds} rounds:")
        for t, (p50, p99) in added.items():
            print(f"  {t:10} p50 {statistics.median(p50):6.1f} us   p99 {statistics.median(p99):6.1f} us")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
