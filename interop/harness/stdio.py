"""`thv proxy stdio` driven by real stdio clients: the stdio group of the cross-SDK suite.

Each check is one session of a real MCP client that launches the bridge as its server command
(through lib/exit-recorder.sh, which records the bridge's exit code and time):

* the Python SDK's `stdio_client(StdioServerParameters(...))` (clients/stdio_client.py), and
* the TypeScript SDK's `StdioClientTransport` (clients/stdio_client.mjs),

against server-everything (Streamable HTTP, and the legacy HTTP+SSE transport on /sse) and the
TypeScript SDK's simpleStreamableHttp example (started by fixtures.ProcessPool) and a Python SDK MCPServer (servers/python_server.py), the
latter also with the Python client at 2026-07-28 (`server/discover`, no session). A session
initializes, lists tools, calls one, reads a resource and gets a prompt, checking each answer
exactly; then the client closes the bridge's stdin and the bridge must exit 0 before the client
escalates to a signal (2 s in both SDKs). A stray line on the bridge's stdout fails the session
in the client's own reader. The bridge's stderr is kept as logs/stdio-<client>-<server>.stderr.log.
The MCP Inspector CLI is not installed in interop/node_modules, so it is not among the clients.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.bootstrap import Toolchain
from harness.fixtures import (
    EVERYTHING,
    EVERYTHING_SSE,
    READY_TIMEOUT_SECONDS,
    SIMPLE_STREAMABLE,
    ProcessPool,
    Upstream,
)
from harness.processes import LOOPBACK, Proc, StartupError, child_env, free_port
from harness.report import Report

# Each client bounds its own session at 30 s; this only catches a wedged interpreter.
CLIENT_TIMEOUT_SECONDS = 60
CLIENT_NAME = "thv-interop"
PYTHON_SERVER = "python-sdk-server"
EVERYTHING_DOC = "features.md"  # a static document server-everything serves as a resource


@dataclass(frozen=True)
class StdioServer:
    """An upstream for the bridge: a Node fixture from the pool, or (upstream None) the Python server."""

    label: str
    upstream: Upstream | None
    eras: tuple[str, ...]  # what the Python client tries: "handshake" (2025-11-25), "modern" (2026-07-28)


SERVERS = (
    StdioServer("server-everything", EVERYTHING, ("handshake",)),
    # The legacy HTTP+SSE transport: a target URL ending in /sse is legacy from the start.
    StdioServer("server-everything-sse", EVERYTHING_SSE, ("handshake",)),
    StdioServer("simple-streamable-http", SIMPLE_STREAMABLE, ("handshake",)),
    StdioServer(PYTHON_SERVER, None, ("handshake", "modern")),
)


def expected_answers(label: str, tools: Toolchain) -> dict[str, object]:
    """What each server must answer: the same for every client."""
    if label.startswith("server-everything"):
        docs = tools.node_modules / "@modelcontextprotocol/server-everything/dist/docs"
        return {
            "expect_server": "mcp-servers/everything",
            "tool": "echo", "arguments": {"message": CLIENT_NAME}, "expect_text": f"Echo: {CLIENT_NAME}",
            "resource": f"demo://resource/static/document/{EVERYTHING_DOC}",
            "expect_resource_text": (docs / EVERYTHING_DOC).read_text(),
            "prompt": "simple-prompt", "expect_prompt_text": "This is a simple prompt without arguments.",
        }  # fmt: skip
    if label == "simple-streamable-http":
        return {
            "expect_server": "simple-streamable-http-server",
            "tool": "greet", "arguments": {"name": CLIENT_NAME}, "expect_text": f"Hello, {CLIENT_NAME}!",
            "resource": "https://example.com/greetings/default", "expect_resource_text": "Hello, world!",
            "prompt": "greeting-template", "prompt_arguments": {"name": CLIENT_NAME},
            "expect_prompt_text": f"Please greet {CLIENT_NAME} in a friendly manner.",
        }  # fmt: skip
    return {
        "expect_server": "thv-interop-python-server",
        "tool": "add", "arguments": {"a": 2, "b": 3}, "expect_text": "5",
        "resource": "greeting://thv", "expect_resource_text": "Hello from the Python SDK server",
        "prompt": "review", "prompt_arguments": {"code": "x = 1"},
        "expect_prompt_text": "Please review this code: x = 1",
    }  # fmt: skip


def run_stdio_group(
    pool: ProcessPool, tools: Toolchain, interop_dir: Path, log_dir: Path, thv: Path, report: Report
) -> None:
    """Every client against every server, each session one named check."""
    for server in SERVERS:
        run_server(server, pool, tools, interop_dir, log_dir, thv, report)


def run_server(
    server: StdioServer, pool: ProcessPool, tools: Toolchain, interop_dir: Path, log_dir: Path, thv: Path,
    report: Report,
) -> None:  # fmt: skip
    sessions = [("python-sdk", era) for era in server.eras] + [("typescript-sdk", "handshake")]
    upstream_log = log_dir / (f"{server.upstream.name}.log" if server.upstream else f"{PYTHON_SERVER}.log")
    process: Proc | None = None
    try:
        if server.upstream is not None:
            process, base = pool.start_upstream(server.upstream)
            target = base + server.upstream.endpoint
        else:
            process, target = start_python_server(tools, interop_dir, log_dir)
        case = expected_answers(server.label, tools)
    except (StartupError, OSError) as error:
        for client, era in sessions:
            report.record(check_name(client, era, server.label), False, f"not run: {error}", (upstream_log,))
        return
    try:
        for client, era in sessions:
            stem = f"stdio-{client}-{era}-{server.label}"
            bridge_log, client_log = log_dir / f"{stem}.stderr.log", log_dir / f"client-{stem}.log"
            exit_file = log_dir / f"{stem}.exit"
            options = {
                "thv": str(thv), "name": server.label, "targetUri": target,
                "recorder": str(interop_dir / "lib" / "exit-recorder.sh"), "exitFile": str(exit_file),
                "stderrLog": str(bridge_log), "case": case,
            }  # fmt: skip
            argv = client_argv(client, era, options, tools, interop_dir)
            passed, output = run_client(argv, interop_dir, client_log)
            failure = next((line[5:] for line in output.splitlines() if line.startswith("FAIL ")), output[-500:])
            report.record(
                check_name(client, era, server.label), passed, "" if passed else failure,
                (client_log, bridge_log, upstream_log),
            )  # fmt: skip
    finally:
        process.stop()


def check_name(client: str, era: str, server: str) -> str:
    revision = "2026-07-28" if era == "modern" else "2025-11-25"
    return f"stdio: {client} ({revision}) -> thv proxy stdio -> {server}"


def start_python_server(tools: Toolchain, interop_dir: Path, log_dir: Path) -> tuple[Proc, str]:
    port = free_port()
    argv = [str(tools.python), str(interop_dir / "servers" / "python_server.py"), str(port)]
    process = Proc(PYTHON_SERVER, argv, log_dir, cwd=interop_dir)
    try:
        process.wait_for_port(port, READY_TIMEOUT_SECONDS)
    except StartupError:
        process.stop()
        raise
    return process, f"http://{LOOPBACK}:{port}/mcp"


def client_argv(client: str, era: str, options: dict[str, object], tools: Toolchain, interop_dir: Path) -> list[str]:
    if client == "typescript-sdk":
        return [str(tools.node), str(interop_dir / "clients" / "stdio_client.mjs"), json.dumps(options)]
    return [
        str(tools.python), str(interop_dir / "clients" / "stdio_client.py"),
        "--thv", str(options["thv"]), "--name", str(options["name"]), "--target-uri", str(options["targetUri"]),
        "--recorder", str(options["recorder"]), "--exit-file", str(options["exitFile"]),
        "--stderr-log", str(options["stderrLog"]), "--era", era, "--case", json.dumps(options["case"]),
    ]  # fmt: skip


def run_client(argv: list[str], interop_dir: Path, log_path: Path) -> tuple[bool, str]:
    """Run one client session; (passed, its output), also kept in `log_path`."""
    try:
        result = subprocess.run(
            argv, check=False, cwd=interop_dir, env=child_env(), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT_SECONDS,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        output = f"client killed after {CLIENT_TIMEOUT_SECONDS}s"
        log_path.write_text(f"$ {argv[:2]}\n{output}\n")
        return False, output
    output = result.stdout + result.stderr
    log_path.write_text(f"$ {' '.join(argv)}\n{output}\n(exit {result.returncode})\n")
    return result.returncode == 0, output
