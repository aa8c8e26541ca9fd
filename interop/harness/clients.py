"""Python SDK client sessions (clients/sdk_client.py) as named checks."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.bootstrap import Toolchain
from harness.fixtures import SIMPLE_SSE, SIMPLE_STREAMABLE, SSE_AND_STREAMABLE, Upstream
from harness.processes import child_env

# The client bounds its own session at 30 s; this outer bound only catches a wedged interpreter.
CLIENT_TIMEOUT_SECONDS = 60
CLIENT_NAME = "thv-interop"


@dataclass(frozen=True)
class ClientCase:
    """One SDK session: connect to `path` on the server, list tools, call `tool`, check the text."""

    name: str
    transport: str  # "streamable-http" or "sse" (the legacy 2024-11-05 HTTP+SSE transport)
    path: str
    expect_server: str
    tool: str
    arguments: dict[str, object]
    expect_text: str
    # Logging notifications the tool emits on the session's stream before its result. Only set
    # where they are guaranteed to share the result's stream (legacy SSE has just one stream).
    min_log_messages: int = 0


@dataclass(frozen=True)
class ClientFixture:
    upstream: Upstream
    cases: tuple[ClientCase, ...] = field(default_factory=tuple)


_NOTIFY = "start-notification-stream"
_NOTIFY_ARGS: dict[str, object] = {"interval": 10, "count": 3}

CLIENT_FIXTURES = (
    ClientFixture(
        SIMPLE_STREAMABLE,
        (
            ClientCase(
                "streamable-http greet",
                "streamable-http",
                "/mcp",
                "simple-streamable-http-server",
                "greet",
                {"name": CLIENT_NAME},
                f"Hello, {CLIENT_NAME}!",
            ),
            # multi-greet holds its SSE response open ~2 s before the result: catches a proxy that
            # buffers or times out streamed responses.
            ClientCase(
                "streamable-http multi-greet (SSE response held 2s)",
                "streamable-http",
                "/mcp",
                "simple-streamable-http-server",
                "multi-greet",
                {"name": CLIENT_NAME},
                f"Good morning, {CLIENT_NAME}!",
            ),
        ),
    ),
    ClientFixture(
        SIMPLE_SSE,
        (
            ClientCase(
                "legacy-sse start-notification-stream",
                "sse",
                "/mcp",
                "simple-sse-server",
                _NOTIFY,
                _NOTIFY_ARGS,
                "Completed sending 3 notifications every 10ms",
                min_log_messages=4,  # one "Starting ..." message, then one per count
            ),
        ),
    ),
    ClientFixture(
        SSE_AND_STREAMABLE,
        (
            ClientCase(
                "streamable-http start-notification-stream",
                "streamable-http",
                "/mcp",
                "backwards-compatible-server",
                _NOTIFY,
                _NOTIFY_ARGS,
                "Started sending periodic notifications every 10ms",
            ),
            ClientCase(
                "legacy-sse start-notification-stream",
                "sse",
                "/sse",
                "backwards-compatible-server",
                _NOTIFY,
                _NOTIFY_ARGS,
                "Started sending periodic notifications every 10ms",
                min_log_messages=3,
            ),
        ),
    ),
)


def run_client_case(
    case: ClientCase, base_url: str, tools: Toolchain, interop_dir: Path, log_path: Path
) -> tuple[bool, str]:
    """Run one SDK session against `base_url`; return (passed, its output) and keep it in `log_path`."""
    argv = [
        str(tools.python),
        str(interop_dir / "clients" / "sdk_client.py"),
        "--transport", case.transport,
        "--url", base_url + case.path,
        "--expect-server", case.expect_server,
        "--tool", case.tool,
        "--arguments", json.dumps(case.arguments),
        "--expect-text", case.expect_text,
        "--min-log-messages", str(case.min_log_messages),
    ]  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            argv,
            check=False,
            cwd=interop_dir,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as timeout:
        output = f"client killed after {CLIENT_TIMEOUT_SECONDS}s\n{_text(timeout.stdout)}{_text(timeout.stderr)}"
        log_path.write_text(f"$ {' '.join(argv)}\n{output}")
        return False, output
    output = result.stdout + result.stderr
    log_path.write_text(f"$ {' '.join(argv)}\n{output}\n(exit {result.returncode})\n")
    return result.returncode == 0, output


def _text(partial: str | bytes | None) -> str:
    """Output captured before a timeout, which subprocess may hand back as bytes."""
    if isinstance(partial, bytes):
        return partial.decode(errors="replace")
    return partial or ""
