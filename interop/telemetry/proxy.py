"""The processes every check group starts, and the waits they share: `thv proxy` with telemetry
flags (fast export intervals, the diagnostics listener's port read from its startup line, its
`/metrics` body), the recording MCP upstream (upstream.py), the Rust `bench_origin` example, plus
`wait_for` (poll until true) and `section` (a block of checks sharing one setup fails under its own
name while the suite goes on).

Imported inside the suite's .venv only (run.py re-executes itself there first); run.py has already
removed proxy and OTEL_* variables from the environment the children inherit.
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from harness import processes
from harness.checks import CheckFailed, Runner, expect
from harness.http import request
from harness.processes import LOOPBACK, Proc, StartupError, thv_binary
from suite_common import RecordingUpstream

HERE = Path(__file__).resolve().parent
VENV_PY = HERE / ".venv" / "bin" / "python"
THV = str(thv_binary())
BENCH_ORIGIN = os.environ.get("BENCH_ORIGIN_BIN") or str(processes.REPO_DIR / "target" / "debug" / "examples" / "bench_origin")
STARTUP_TIMEOUT = 20
STOP_GRACE = 8
SPAN_WAIT = 15  # s: spans and metric exports arrive (batch delay 200 ms, metric interval 1 s)
PROMETHEUS_WAIT = 30  # s: the real Prometheus has scraped what the checks query
FAST = {"OTEL_METRIC_EXPORT_INTERVAL": "1000", "OTEL_BSP_SCHEDULE_DELAY": "200"}
DIAG_LINE = re.compile(r"diagnostics listener on http://127\.0\.0\.1:(\d+)/metrics")


def start_proc(name: str, cmd: list[str], logdir: Path, **options: Any) -> Proc:
    return Proc(name, cmd, logdir, cwd=HERE, stop_grace=STOP_GRACE, **options)


class Upstream(RecordingUpstream):
    """upstream.py: the recording MCP server (tools echo, add; answers marked calls with a 5xx)."""

    def __init__(self, name: str, logdir: Path) -> None:
        cmd = [str(VENV_PY), str(HERE / "upstream.py"), "--port", "0", "--log", str(logdir / f"{name}-requests.jsonl")]
        super().__init__(start_proc(name, cmd, logdir), STARTUP_TIMEOUT)


class BenchOrigin:
    """examples/bench_origin on a free loopback port (`bench_origin listening on 127.0.0.1:PORT`)."""

    def __init__(self, logdir: Path) -> None:
        port = processes.free_port()
        self.proc = start_proc("bench-origin", [BENCH_ORIGIN, "--port", str(port)], logdir)
        line = self.proc.wait_ready(STARTUP_TIMEOUT)
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not match:
            self.proc.stop()
            raise StartupError(f"bench_origin: unexpected first line {line!r}")
        self.url = f"http://{LOOPBACK}:{match.group(1)}/mcp"

    def stop(self) -> None:
        self.proc.stop()


class Thv(processes.Thv):
    """One `thv proxy` (log thv-NAME.log, or with split_logs .stderr.log / .stdout.log / .cmd) with
    the fast export intervals in its environment (plus `env`)."""

    def __init__(self, name: str, target: str, flags: list[str], logdir: Path, env: dict[str, str] | None = None,
                 split_logs: bool = False) -> None:
        super().__init__(name, target, flags, logdir, ready_timeout=STARTUP_TIMEOUT, cwd=HERE, stop_grace=STOP_GRACE,
                         env={**FAST, **(env or {})}, split_logs=split_logs)
        self._diag: str | None = None

    def stderr_text(self) -> str:
        return self.proc.log_text()

    def diagnostics(self, timeout: float = 10) -> str:
        """http://127.0.0.1:PORT of the diagnostics listener, read from the startup line on stderr."""
        if self._diag is None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                match = DIAG_LINE.search(self.stderr_text())
                if match:
                    self._diag = f"http://{LOOPBACK}:{match.group(1)}"
                    break
                time.sleep(0.05)
            else:
                raise CheckFailed(f"no 'diagnostics listener on http://127.0.0.1:PORT/metrics' line on stderr within "
                                  f"{timeout}s: {self.proc.tail(400)}")
        return self._diag

    def metrics_text(self) -> str:
        r = request("GET", f"{self.diagnostics()}/metrics", timeout=5)
        expect(r.status == 200, f"GET diagnostics /metrics: {r.status} {r.body[:200]!r}")
        return r.body.decode()



def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """The harness's `wait_until`, failing the check (CheckFailed) rather than asserting."""
    try:
        return processes.wait_until(what, predicate, timeout, interval)
    except AssertionError as error:
        raise CheckFailed(str(error)) from None


@contextmanager
def section(run: Runner, name: str) -> Iterator[None]:
    """A block of checks sharing one setup: anything escaping it is the failed check `name` (the
    traceback goes to stderr), and the suite goes on."""
    try:
        yield
    except CheckFailed as error:
        run.fail(name, str(error))
    except Exception as error:  # noqa: BLE001 - a broken block fails its own name, not the whole run
        traceback.print_exc(file=sys.stderr)
        run.fail(name, f"{type(error).__name__}: {error}")
