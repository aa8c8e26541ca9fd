"""Code shared by the standalone suites interop/auth, interop/authz, interop/browser and interop/telemetry and their
fixtures.

Stdlib only at import time: each run.py imports it under any python3, before it re-executes itself
inside its own .venv, and the fixture servers (auth/upstream.py, auth/selftest_rs.py,
authz/upstream.py, browser/upstream.py) import it inside the venv. The helpers that build MCP SDK objects import the
SDK when they are called.

Scripts find it by appending their parent folder (interop/) to sys.path. The suites' processes
(`Proc`, `Thv`) and HTTP probes (`request`, `Resp`) are in harness/processes.py and
harness/http.py, shared with interop/run.py and interop/outbound.

* bootstrap: `npm ci` and the .venv, each redone only when the lock file / requirements.txt
  changed (hash stamps; the stamp names are each suite's own, as before);
* loopback: a listening socket on 127.0.0.1, and a uvicorn server that announces its
  URL on stdout once it has started (bounded wait);
* fixture servers: the SDK's resource-server mode, the `echo` tool, an ASGI request's headers and
  body, a JSON response, the request recorder the upstreams serve at /_log;
* MCP: the headers and the `initialize` body the suites probe with.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from harness.http import request
from harness.processes import LOOPBACK, Proc

# ------------------------------------------------------------------------------------------------
# Bootstrap (runs under any python3)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stamp_is_current(stamp: Path, source: Path) -> bool:
    return stamp.exists() and stamp.read_text().strip() == file_digest(source)


def ensure_node_modules(here: Path, suite: str, sentinel_package: str) -> None:
    """`npm ci` in interop/<suite> unless node_modules/<sentinel_package> is installed and
    package-lock.json has not changed since the last install."""
    lock = here / "package-lock.json"
    stamp = here / "node_modules" / f".thv-{suite}-lock-sha256"
    installed = (here / "node_modules" / sentinel_package / "package.json").exists()
    if not installed or not _stamp_is_current(stamp, lock):
        print(f"bootstrap: npm ci (interop/{suite})", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=here, check=True, timeout=600)
        stamp.write_text(file_digest(lock))


def ensure_venv(here: Path, suite: str) -> Path:
    """interop/<suite>/.venv with requirements.txt installed (again only when it changed).
    Returns the venv's python."""
    venv = here / ".venv"
    python = venv / "bin" / "python"
    reqs = here / "requirements.txt"
    stamp = venv / f".thv-{suite}-requirements-sha256"
    if not python.exists():
        print(f"bootstrap: python3 -m venv interop/{suite}/.venv", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    if not _stamp_is_current(stamp, reqs):
        print(f"bootstrap: pip install -r interop/{suite}/requirements.txt", flush=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(reqs)],
            check=True,
            timeout=900,
        )
        stamp.write_text(file_digest(reqs))
    return python


# ------------------------------------------------------------------------------------------------
# Loopback servers


def bind_loopback(port: int = 0) -> socket.socket:
    """A TCP socket bound to 127.0.0.1:`port` (0: the OS picks), for uvicorn to serve on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, port))
    return sock


def mcp_url(sock: socket.socket) -> str:
    """The MCP endpoint URL of a fixture server listening on `sock`."""
    return f"http://{LOOPBACK}:{sock.getsockname()[1]}/mcp"


async def serve_and_announce(server: Any, sock: socket.socket, startup_timeout: float = 10) -> None:
    """Run a `uvicorn.Server` on `sock`; once it has started (waiting at most `startup_timeout`
    seconds), print {"url": <its MCP URL>, "port": <its port>} as one JSON line on stdout - the
    runner's readiness signal."""
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + startup_timeout
    while not server.started and not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if server.started:
        print(json.dumps({"url": mcp_url(sock), "port": sock.getsockname()[1]}), flush=True)
    await task


def serve_asgi(app: Any, port: int = 0) -> None:
    """Serves a fixture's ASGI app with uvicorn on 127.0.0.1:`port` until stopped; prints the
    URL line once it listens (bounded wait). uvicorn is imported here: it is in the venvs only."""
    import uvicorn

    sock = bind_loopback(port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    asyncio.run(serve_and_announce(server, sock))


class RecordingUpstream:
    """A suite's upstream.py process (an SDK server behind `RequestRecorder`): its URL, read from
    the line it prints once it listens, and what it recorded at /_log."""

    def __init__(self, proc: Proc, startup_timeout: float) -> None:
        self.proc = proc
        self.url: str = json.loads(proc.wait_ready(startup_timeout))["url"]
        self.base = self.url.rsplit("/mcp", 1)[0]

    def clear(self) -> None:
        request("POST", f"{self.base}/_log/clear")

    def requests(self) -> list[dict[str, Any]]:
        return json.loads(request("GET", f"{self.base}/_log").body)["requests"]

    def containing(self, needle: str) -> list[dict[str, Any]]:
        return [r for r in self.requests() if needle in r.get("body", "")]

    def stop(self) -> None:
        self.proc.stop()


def request_headers(scope: dict[str, Any]) -> dict[str, list[str]]:
    """An ASGI HTTP request's headers: lower-cased name -> every value, in order."""
    headers: dict[str, list[str]] = {}
    for raw_name, raw_value in scope.get("headers", []):
        headers.setdefault(raw_name.decode("latin-1").lower(), []).append(raw_value.decode("latin-1"))
    return headers


async def send_json(
    send: Any, body: bytes, status: int = 200, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """An ASGI response with a JSON body."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any) -> bytes:
    """The whole body of an ASGI HTTP request."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def replay_body(raw: bytes, receive: Any) -> Callable[[], Any]:
    """An ASGI `receive` that hands the app `raw` (a body read before) first, then passes on."""
    replayed = False

    async def replay() -> dict[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay


class RequestRecorder:
    """ASGI middleware of the fixture upstreams: records each HTTP request as a dict in `record`
    (and appends it to the file `log_path` as a JSON line, when given), and serves the record:
    GET /_log -> {"requests": [...]}, POST /_log/clear empties it (neither is recorded).

    An entry holds `t`, `method` and `path`, then what `describe` adds. A subclass may answer
    more control paths (`control`), add to the /_log document (`log_document`), and answer or
    pass on a recorded request its own way (`forward`). With `read_body`, `describe` and
    `forward` get the request's body, and the app still receives it."""

    read_body = False

    def __init__(self, app: Any, record: list[dict[str, Any]], log_path: str | None = None) -> None:
        self.app = app
        self.record = record
        self.log_path = log_path

    def log_document(self) -> dict[str, Any]:
        return {"requests": self.record}

    def control(self, path: str, scope: dict[str, Any]) -> bytes | None:
        """The JSON answer to a control path (not recorded), or None for any other path."""
        if path == "/_log/clear":
            self.record.clear()
            return b'{"cleared": true}'
        if path == "/_log":
            return json.dumps(self.log_document()).encode()
        return None

    def describe(self, scope: dict[str, Any], headers: dict[str, list[str]], body: bytes) -> dict[str, Any]:
        return {}

    async def forward(self, scope: dict[str, Any], receive: Any, send: Any, entry: dict[str, Any], body: bytes) -> None:
        await self.app(scope, receive, send)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        answer = self.control(path, scope)
        if answer is not None:
            await send_json(send, answer)
            return
        body = await read_body(receive) if self.read_body else b""
        entry = {
            "t": time.time(),
            "method": scope.get("method"),
            "path": path,
            **self.describe(scope, request_headers(scope), body),
        }
        self.record.append(entry)
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(entry) + "\n")
        await self.forward(scope, replay_body(body, receive) if self.read_body else receive, send, entry, body)


def protected_mcp_server(
    name: str, issuer: str, port: int, verifier: Callable[[str, str], Any]
) -> tuple[Any, socket.socket, str]:
    """An MCP server (Python SDK) in resource-server mode on a new 127.0.0.1 socket: tokens from
    `issuer` with scope mcp:tools, each checked by `verifier(issuer, resource)` (which checks
    `aud` itself). Returns (server, socket, resource = its MCP URL)."""
    from mcp.server.auth.settings import AuthSettings  # the venv's SDK; not needed at import time
    from mcp.server.mcpserver import MCPServer

    sock = bind_loopback(port)
    resource = mcp_url(sock)
    server = MCPServer(
        name=name,
        token_verifier=verifier(issuer, resource),
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=resource,
            required_scopes=["mcp:tools"],
            validate_token_resource=False,  # the verifier checks aud itself
        ),
    )
    return server, sock, resource


def add_echo_tool(server: Any) -> None:
    """Tool `echo(text)`, which every fixture server offers."""

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text


def sdk_access_token(token: str, claims: dict[str, Any], resource: str) -> Any:
    """What a fixture's token verifier hands the SDK for a JWT whose claims it has verified."""
    from mcp.server.auth.provider import AccessToken  # the venv's SDK; not needed at import time

    return AccessToken(
        token=token,
        client_id=str(claims.get("client_id", "")),
        scopes=str(claims.get("scope", "")).split(),
        expires_at=int(claims["exp"]),
        resource=resource,
        subject=claims.get("sub"),
    )


# ------------------------------------------------------------------------------------------------
# MCP probes

MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def initialize_body(request_id: int | str, client_name: str) -> bytes:
    """A JSON-RPC `initialize` request (protocol 2025-11-25) from client `client_name`."""
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": client_name, "version": "1"},
            },
        }
    ).encode()
