"""Child processes the runner owns: start with a log file, wait until ready, stop by PID.

Every process the suite needs is started here and stopped here, by its own PID (SIGTERM, then
SIGKILL after a bounded wait). Nothing is ever stopped by name. All waits are bounded in time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
POLL_INTERVAL_SECONDS = 0.05
STOP_GRACE_SECONDS = 5.0


class StartupError(Exception):
    """A process did not become ready; the message says why."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for every child: the runner's, minus HTTP proxy settings.

    An inherited HTTP(S)_PROXY would route the clients' loopback traffic somewhere else (httpx and
    undici honour it), so it is dropped and loopback is excluded explicitly.
    """
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env.update(extra or {})
    return env


def stop_process(popen: subprocess.Popen, grace_seconds: float, kill_wait_seconds: float) -> int:
    """Stops a child this runner started, by its own PID: SIGTERM, wait up to `grace_seconds`,
    then SIGKILL and wait up to `kill_wait_seconds`. Returns the exit code.

    A process killed by a signal reports a negative code (-9 for SIGKILL).
    """
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=kill_wait_seconds)
    return popen.returncode


class ManagedProcess:
    """One child process with stdout and stderr captured in one log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self._popen.pid

    def exit_code(self) -> int | None:
        return self._popen.poll()

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> int:
        """SIGTERM, wait up to `grace_seconds`, then SIGKILL. Returns the exit code."""
        return stop_process(self._popen, grace_seconds, kill_wait_seconds=grace_seconds)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: re.Pattern[str], timeout_seconds: float) -> re.Match[str]:
        """Wait until the log matches `pattern`; fail early if the process exits first."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            match = pattern.search(self.log_text())
            if match:
                return match
            self._fail_if_exited(f"before printing /{pattern.pattern}/")
            time.sleep(POLL_INTERVAL_SECONDS)
        raise StartupError(f"{self.name}: no /{pattern.pattern}/ in its output within {timeout_seconds:.0f}s")

    def wait_for_port(self, port: int, timeout_seconds: float) -> None:
        """Wait until 127.0.0.1:`port` accepts TCP connections; fail early if the process exits."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            self._fail_if_exited(f"before listening on {LOOPBACK}:{port}")
            try:
                with socket.create_connection((LOOPBACK, port), timeout=1):
                    return
            except OSError:
                time.sleep(POLL_INTERVAL_SECONDS)
        raise StartupError(f"{self.name}: {LOOPBACK}:{port} not accepting connections within {timeout_seconds:.0f}s")

    def _fail_if_exited(self, when: str) -> None:
        code = self._popen.poll()
        if code is not None:
            raise StartupError(f"{self.name} exited with code {code} {when}")


def log_tail(path: Path, lines: int) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
