"""The telemetry suite's MCP upstream: a real Python SDK (`mcp`) Streamable HTTP server that
records, for every HTTP request it receives, the W3C trace headers and the body, so a check can
see the `traceparent` thv sent to its target (header and `params._meta.traceparent`).

    GET  /_log        -> {"requests": [...]}   (not itself recorded)
    POST /_log/clear  -> clears the record

Tools: echo(text), add(a, b). Answers every POST with one JSON body (`json_response=True`).

Marked requests, answered by the recorder itself (they never reach the SDK):
    tools/call whose arguments.text is "answer-status-NNN..." -> HTTP NNN (e.g. 502, 500) with a
        JSON-RPC error echoing the id: a target failing with a 5xx;
    GET /plain/...                                             -> 200 text/plain "ok": a non-MCP
        request through thv.

Prints one JSON line {"url": "http://127.0.0.1:PORT/mcp", "port": PORT} on stdout when it listens.

Usage: .venv/bin/python upstream.py [--port 0] [--log requests.jsonl]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer

sys.path.append(str(Path(__file__).resolve().parent.parent))  # interop/: suite_common.py, harness/
from suite_common import RequestRecorder, send_json, serve_asgi  # noqa: E402

SERVER_NAME = "thv-telemetry-upstream"
RECORD: list[dict[str, Any]] = []
MAX_RECORDED_BODY = 64 * 1024
STATUS_MARKER = re.compile(r"^answer-status-([1-5]\d\d)")


def build_server() -> MCPServer:
    server = MCPServer(name=SERVER_NAME, version="1.0.0")

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two integers."""
        return str(a + b)

    return server


def marked_status(raw: bytes) -> int | None:
    """NNN for a tools/call whose arguments.text starts with answer-status-NNN, else None."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not (isinstance(message, dict) and message.get("method") == "tools/call"):
        return None
    text = ((message.get("params") or {}).get("arguments") or {}).get("text")
    match = STATUS_MARKER.match(text) if isinstance(text, str) else None
    return int(match.group(1)) if match else None


class Recorder(RequestRecorder):
    """Records each request's trace headers and body; answers the marked requests itself."""

    read_body = True

    def describe(self, scope: dict[str, Any], headers: dict[str, list[str]], body: bytes) -> dict[str, Any]:
        return {
            "traceparent": headers.get("traceparent", []),
            "tracestate": headers.get("tracestate", []),
            "mcp_session_id": (headers.get("mcp-session-id") or [None])[0],
            "body": body[:MAX_RECORDED_BODY].decode("utf-8", errors="replace"),
        }

    async def forward(self, scope: dict[str, Any], receive: Any, send: Any, entry: dict[str, Any], body: bytes) -> None:
        if scope.get("method") == "GET" and scope.get("path", "").startswith("/plain/"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        status = marked_status(body)
        if status is not None:
            message = json.loads(body)
            answer = {"jsonrpc": "2.0", "id": message.get("id"),
                      "error": {"code": -32603, "message": f"upstream answered {status} on purpose"}}
            await send_json(send, json.dumps(answer).encode(), status=status)
            return
        await self.app(scope, receive, send)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", default=None, help="append each recorded request as a JSON line")
    args = parser.parse_args()
    mcp_app = build_server().streamable_http_app(streamable_http_path="/mcp", json_response=True, host="127.0.0.1")
    serve_asgi(Recorder(mcp_app, RECORD, args.log), args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
