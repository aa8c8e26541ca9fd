"""Child processes the suites own: start with a log, wait until ready, stop by PID; `thv proxy`.

Shared by every interop suite (run.py, outbound/, auth/, browser/); standard library only, so a
suite can import it under any python3 before it enters its own venv.

* `Proc`: one child. Its stdout is read line by line (the first line is the usual readiness
  signal, `wait_ready`); readiness by TCP port is `wait_for_port`. Its output goes to log files
  under the suite's log directory: by default one `<name>.log` holding the command line (`$ ...`),
  stderr, and stdout lines prefixed `[stdout] `; with `split_logs` three files (`<name>.cmd`,
  `<name>.stderr.log`, `<name>.stdout.log`), so the output files hold only what the child wrote;
  with no log directory stderr is the runner's own. Values after the flags in SECRET_FLAGS are
  masked in the logged command line.
* `Thv`: `thv proxy NAME --target-uri URL --port 0 FLAGS...` as a `Proc`, ready once it prints
  its start line, whose port it reads. `thv_binary()` is THV_BIN or <repo>/target/debug/thv.
* `child_env`: the environment of every child: the runner's, minus HTTP proxy settings and the
  credentials thv would read from it, plus what the caller adds.

Every process is stopped by its own PID (SIGTERM, then SIGKILL after a bounded wait), never by
name, and only by the runner that started it. All waits are bounded in time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable

LOOPBACK = "127.0.0.1"
POLL_INTERVAL_SECONDS = 0.05
STOP_GRACE_SECONDS = 5.0
KILL_WAIT_SECONDS = 5.0
READER_JOIN_SECONDS = 3.0
REPO_DIR = Path(__file__).resolve().parent.parent.parent
# Flags whose next argument is a secret: masked wherever a command line is logged.
SECRET_FLAGS = frozenset({
    "--remote-auth-client-secret", "--remote-auth-bearer-token", "--oidc-client-secret",
    "--password", "--oidc-secret", "--plain-secret", "--minter-secret", "--otel-headers",
    "--token-exchange-client-secret",
})  # fmt: skip
# Variables thv (or its login) would read credentials or a browser from: a suite sets them itself.
DROPPED_ENV = (
    "TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET",
    "TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN",
    "TOOLHIVE_OIDC_CLIENT_SECRET",
    "TOOLHIVE_TOKEN_EXCHANGE_CLIENT_SECRET",
    "BROWSER",
)
# "Transparent proxy started for server NAME on port 41234 -> TARGET (MCP clients: URL)" on stdout.
THV_READY_LINE = re.compile(r"Transparent proxy started for server (\S+) on port (\d+) -> (\S+)")


class StartupError(RuntimeError):
    """A process did not become ready; the message says why."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for every child: the runner's, minus HTTP proxy settings and DROPPED_ENV.

    An inherited HTTP(S)_PROXY would route the clients' loopback traffic somewhere else (httpx and
    undici honour it), so it is dropped and loopback is excluded explicitly.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.lower().endswith("_proxy") and key not in DROPPED_ENV
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env.update(extra or {})
    return env


def thv_binary() -> Path:
    """THV_BIN, or <repo>/target/debug/thv; absolute, as children run in other directories."""
    return Path(os.environ.get("THV_BIN") or str(REPO_DIR / "target" / "debug" / "thv")).absolute()


def masked(argv: list[str]) -> str:
    """The command line with the value after each of SECRET_FLAGS replaced by ***."""
    return " ".join("***" if i > 0 and argv[i - 1] in SECRET_FLAGS else arg for i, arg in enumerate(argv))


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


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy (returned); AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Proc:
    """One child process (see the module docstring for its logs); only ever signalled by its PID."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path | None,
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        split_logs: bool = False,
        stop_grace: float = STOP_GRACE_SECONDS,
        track: list[Proc] | None = None,
    ) -> None:
        """Start `argv`. `env`: variables added to `child_env()`; `stop_grace`: seconds between
        SIGTERM and SIGKILL in `stop`; `track`: a list the started process is appended to at once."""
        self.name = name
        self.argv = argv
        self.stop_grace = stop_grace
        self.first_line: str | None = None
        self._split = split_logs
        self._files: list[IO[bytes]] = []
        stderr: IO[bytes] | None = None
        self.log_path: Path | None = None
        self.out_path: Path | None = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            if split_logs:
                (log_dir / f"{name}.cmd").write_text(masked(argv) + "\n")
                self.log_path, self.out_path = log_dir / f"{name}.stderr.log", log_dir / f"{name}.stdout.log"
            else:
                self.log_path = self.out_path = log_dir / f"{name}.log"
            stderr = self._open(self.log_path)
            if not split_logs:
                stderr.write(f"$ {masked(argv)}\n".encode())
                stderr.flush()
        self._out = (self._open(self.out_path) if split_logs else stderr) if self.out_path else None
        self._popen = subprocess.Popen(  # noqa: S603 - the suites' own programs
            argv, cwd=cwd, env=child_env(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
        )
        if track is not None:
            track.append(self)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _open(self, path: Path) -> IO[bytes]:
        handle = path.open("ab")  # appended to, also by the child (stderr): closed in stop()
        self._files.append(handle)
        return handle

    def _drain(self) -> None:
        """Hands every stdout line to the log; the first one also sets `first_line`."""
        assert self._popen.stdout is not None
        for raw in self._popen.stdout:
            if self.first_line is None:
                self.first_line = raw.decode(errors="replace").strip()
                self._ready.set()
            if self._out is not None:
                try:
                    self._out.write(raw if self._split else b"[stdout] " + raw)
                    self._out.flush()
                except ValueError:  # closed by stop() while the child still wrote
                    pass
        self._ready.set()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def alive(self) -> bool:
        return self._popen.poll() is None

    def exit_code(self) -> int | None:
        return self._popen.poll()

    def wait_first_line(self, timeout: float) -> str | None:
        """The first stdout line; None when none came within `timeout` seconds (or it exited)."""
        self._ready.wait(timeout)
        return self.first_line

    def wait_ready(self, timeout: float) -> str:
        """The first stdout line, the readiness signal; StartupError if none came within `timeout` s."""
        line = self.wait_first_line(timeout)
        if line is None:
            code = self.exit_code()
            why = f"not ready within {timeout}s" if code is None else f"exited with code {code} before it was ready"
            raise StartupError(f"{self.name} {why}; log: {self.tail()}")
        return line

    def wait_for_port(self, port: int, timeout_seconds: float) -> None:
        """Wait until 127.0.0.1:`port` accepts TCP connections; fail early if the process exits."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                raise StartupError(f"{self.name} exited with code {code} before listening on {LOOPBACK}:{port}")
            try:
                with socket.create_connection((LOOPBACK, port), timeout=1):
                    return
            except OSError:
                time.sleep(POLL_INTERVAL_SECONDS)
        raise StartupError(f"{self.name}: {LOOPBACK}:{port} not accepting connections within {timeout_seconds:.0f}s")

    def log_text(self) -> str:
        """The log file: stderr (with the command line and stdout lines unless `split_logs`)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes().decode(errors="replace")

    def output_text(self) -> str:
        """Everything the child wrote (stderr, then stdout when split), without the command line."""
        if not self._split:
            return "\n".join(line for line in self.log_text().splitlines() if not line.startswith("$ "))
        out = self.out_path.read_bytes().decode(errors="replace") if self.out_path and self.out_path.exists() else ""
        return self.log_text() + out

    def tail(self, chars: int = 800) -> str:
        """The log's last `chars` characters on one line (newlines shown as ` | `)."""
        return self.log_text()[-chars:].replace("\n", " | ")

    def stop(self) -> int | None:
        """SIGTERM, wait up to `stop_grace` s, then SIGKILL; let the reader finish; close the logs.
        Returns the exit code. Stopping again only returns it."""
        code = stop_process(self._popen, self.stop_grace, kill_wait_seconds=KILL_WAIT_SECONDS)
        self._reader.join(timeout=READER_JOIN_SECONDS)
        for handle in self._files:
            handle.close()
        return code


class Thv:
    """One `thv proxy` in front of `target_uri`, on a port of its own choosing (`--port 0`).

    Started as the `Proc` "thv-NAME" (the keyword arguments are `Proc`'s); ready once its first
    stdout line, the start line, names the port. StartupError (after stopping it) if not within
    `ready_timeout` seconds.
    """

    def __init__(
        self,
        name: str,
        target_uri: str,
        flags: list[str],
        log_dir: Path | None,
        *,
        ready_timeout: float,
        binary: Path | str | None = None,
        **proc_options: Any,
    ) -> None:
        self.name = name
        argv = [str(binary or thv_binary()), "proxy", name, "--target-uri", target_uri, "--port", "0", *flags]
        self.proc = Proc(f"thv-{name}", argv, log_dir, **proc_options)
        try:
            line = self.proc.wait_ready(ready_timeout)
            match = THV_READY_LINE.search(line)
            if not match:
                raise StartupError(f"unexpected thv startup line {line!r}; log: {self.proc.tail()}")
        except StartupError:
            self.proc.stop()
            raise
        self.port = int(match.group(2))
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.url = f"{self.base}/mcp"  # the MCP endpoint when the target's path is /mcp
        self.prm_url = f"{self.base}/.well-known/oauth-protected-resource/mcp"

    def stop(self) -> int | None:
        return self.proc.stop()


def log_tail(path: Path, lines: int) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
