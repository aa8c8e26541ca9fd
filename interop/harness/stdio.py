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

Against server-everything (Streamable HTTP) the MCP Inspector's CLI (`mcp-inspector --cli`,
pinned in interop/inspector, see harness/bootstrap.py) is a client too: one run per request,
`tools/list` (must list the echo tool) and `tools/call` echo (must answer the exact echo text),
with `thv proxy stdio ... --debug` as its stdio command; the Inspector passes the bridge's stderr
on to its own, which must show that the bridge ended by itself at the end of its input.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.bootstrap import Toolchain, node_first
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
# One Inspector CLI run: its own connect timeout is 15 s (--connect-timeout), the request is quick.
INSPECTOR_TIMEOUT_SECONDS = 30
# The bridge's log lines (--debug) when it ends because its client closed stdin.
BRIDGE_ENDED_BY_ITSELF = ("end of input; ending the session", "stdio bridge stopped")
CLIENT_NAME = "thv-interop"
PYTHON_SERVER = "python-sdk-server"
EVERYTHING_DOC = "features.md"  # a static document server-everything serves as a resource


@dataclass(frozen=True)
class StdioServer:
    """An upstream for the bridge: a Node fixture from the pool, or (upstream None) the Python server."""

    label: str
    upstream: Upstream | None
    eras: tuple[str, ...]  # what the Python client tries: "handshake" (2025-11-25), "modern" (2026-07-28)
    inspector: bool = False  # the MCP Inspector CLI is a client too


SERVERS = (
    StdioServer("server-everything", EVERYTHING, ("handshake",), inspector=True),
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
        if server.inspector:
            run_inspector(server.label, target, case, tools, log_dir, thv, report, upstream_log)
    finally:
        process.stop()


def run_inspector(
    label: str, target: str, case: dict, tools: Toolchain, log_dir: Path, thv: Path, report: Report,
    upstream_log: Path,
) -> None:  # fmt: skip
    """The MCP Inspector CLI, `thv proxy stdio` its stdio command: tools/list, then tools/call."""
    requests = (
        ("tools/list", ["--method", "tools/list"]),
        (f"tools/call {case['tool']}",
         ["--method", "tools/call", "--tool-name", case["tool"], "--tool-args-json", json.dumps(case["arguments"])]),
    )  # fmt: skip
    # The Inspector keeps a catalog and client settings under $HOME/.mcp-inspector: a home of its own.
    home = log_dir / "inspector-home"
    home.mkdir(exist_ok=True)
    env = child_env({**node_first(tools), "HOME": str(home)})
    for request, method_args in requests:
        name = f"stdio: mcp-inspector --cli {request} -> thv proxy stdio -> {label}"
        log = log_dir / f"client-stdio-inspector-{request.split()[0].replace('/', '-')}-{label}.log"
        argv = [
            str(tools.node), str(tools.inspector), "--cli", *method_args, "--format", "json",
            "--", str(thv), "proxy", "stdio", label, "--target-uri", target, "--debug",
        ]  # fmt: skip
        failure = inspector_failure(argv, env, log, request, case)
        report.record(name, failure is None, failure or "", (log, upstream_log))


def inspector_failure(argv: list[str], env: dict[str, str], log: Path, request: str, case: dict) -> str | None:
    """Runs the Inspector CLI once; what was wrong with its answer, or None. Its stdout (the
    result, `--format json`) and stderr (its own and the bridge's) go to `log`."""
    try:
        done = subprocess.run(
            argv, check=False, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=INSPECTOR_TIMEOUT_SECONDS,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        log.write_text(f"$ {' '.join(argv)}\nkilled after {INSPECTOR_TIMEOUT_SECONDS}s\n")
        return f"the Inspector CLI did not finish within {INSPECTOR_TIMEOUT_SECONDS}s"
    log.write_text(f"$ {' '.join(argv)}\n[stdout]\n{done.stdout}\n[stderr]\n{done.stderr}\n(exit {done.returncode})\n")
    if done.returncode != 0:
        return f"the Inspector CLI exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
    try:
        result = json.loads(done.stdout)["result"]
    except (ValueError, KeyError, TypeError):
        return f"no JSON result on stdout: {done.stdout[:300]!r}"
    if request == "tools/list":
        names = [tool.get("name") for tool in result.get("tools", [])]
        if case["tool"] not in names:
            return f"tools/list lacks {case['tool']!r}: {names}"
    else:
        texts = [block.get("text") for block in result.get("content", []) if block.get("type") == "text"]
        if result.get("isError") or texts != [case["expect_text"]]:
            return f"{request}: {result!r:.300}, expected the one text {case['expect_text']!r}"
    missing = [line for line in BRIDGE_ENDED_BY_ITSELF if line not in done.stderr]
    if missing:
        return f"the bridge's log (the Inspector's stderr) lacks {missing}: it did not end at the end of its input"
    return None


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
