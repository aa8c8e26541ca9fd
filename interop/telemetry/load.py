"""Load for the collector-outage check: `wrk` (Debian package) POSTing a small JSON-RPC
`tools/call`, and thv's resident memory read from /proc.

`run_wrk` writes a Lua script whose `done()` prints one line `TELEMETRYJSON {...}` with the
request count, the error counts wrk keeps (connect, read, write, status = non-2xx/3xx answers,
timeout) and the latency percentiles in microseconds; wrk runs `-t1 -cN -dSs --latency` with a
bounded subprocess timeout. `RssSampler` reads VmRSS of one PID every 0.2 s in a thread.
Standard library only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

TOOL_CALL = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"message": "telemetry-load"}}})

_DONE = r'''
function done(summary, latency, requests)
  io.write(string.format('TELEMETRYJSON {"requests":%d,"duration_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
'''


def lua_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for ASCII text


def write_lua(path: Path, body: str = TOOL_CALL) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_str(body)}",
             'wrk.headers["Content-Type"] = "application/json"',
             'wrk.headers["Accept"] = "application/json, text/event-stream"']
    path.write_text("\n".join(lines) + "\n" + _DONE)
    return path


def wrk_bin() -> str | None:
    return shutil.which("wrk")


def run_wrk(url: str, lua: Path, seconds: int, conns: int = 8, log: Path | None = None) -> dict[str, Any]:
    """One wrk run; its summary (see the module docstring) plus `errors` (their sum) and `rps`."""
    binary = wrk_bin()
    if binary is None:
        raise RuntimeError("wrk not found (Debian package wrk)")
    argv = [binary, "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "--latency", "-s", str(lua), url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)  # noqa: S603
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ {' '.join(argv)}\n{r.stdout}{r.stderr}\n")
    for line in r.stdout.splitlines():
        if line.startswith("TELEMETRYJSON "):
            out = json.loads(line[len("TELEMETRYJSON "):])
            out["errors"] = sum(out[k] for k in ("connect", "read", "write", "status", "timeout"))
            out["rps"] = out["requests"] / max(out["duration_us"] / 1e6, 1e-9)
            return out
    raise RuntimeError(f"wrk gave no result (exit {r.returncode}): {r.stdout[-400:]} {r.stderr[-400:]}")


def rss_kib(pid: int) -> int | None:
    """VmRSS of `pid` in KiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """The largest VmRSS of `pid` seen since start (sampled every `interval` s, in a thread)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = rss_kib(pid) or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            value = rss_kib(self.pid)
            if value is None:
                return
            self.peak_kib = max(self.peak_kib, value)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=2)
        return self.peak_kib
