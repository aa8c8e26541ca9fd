"""A real MCP server (Python SDK `mcp`, Streamable HTTP) used as thv's upstream by the authz harness.

It offers tools WITH annotations (the facts Cedar policies read as `resource.readOnlyHint` etc.),
two prompts, two static resources and one resource template, and it records every HTTP request
it receives - method, path, the MCP routing headers and the full request body - so a check can
prove that a refused request never arrived, or which tool name a renamed call arrived under.

    GET  /_log        -> {"requests": [...]}   (not itself recorded)
    POST /_log/clear  -> clears the record

    --json   answer every POST with one JSON body (the SDK's `json_response=True`)
    (default) answer with server-sent events (legacy sessions always; a 2026-07-28 request as soon
              as the handler emits a notification - `get_weather` reports progress when asked)

Tools (name: annotations):
    echo(text)                readOnlyHint=true, destructiveHint=false
    get_weather(city)         readOnlyHint=true, openWorldHint=true   (reports progress)
    write_note(text)          readOnlyHint=false, destructiveHint=false
    delete_everything(confirm) readOnlyHint=false, destructiveHint=true
    admin_stats()             no annotations at all
Prompts: greeting(name), ops_runbook(service). Resources: file:///public/readme.txt,
file:///secret/keys.txt, template file:///notes/{name}.

Prints one JSON line {"url": "http://127.0.0.1:PORT/mcp", "port": PORT} on stdout when it listens.

Usage: .venv/bin/python upstream.py [--json] [--port 0] [--log requests.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

sys.path.append(str(Path(__file__).resolve().parent.parent))  # interop/: suite_common.py
from suite_common import RequestRecorder, send_json, serve_asgi  # noqa: E402

RECORD: list[dict[str, Any]] = []
MAX_RECORDED_BODY = 64 * 1024
# A tools/call of this name is answered by the recorder itself the way a policy proxy refuses a
# call (HTTP 403, JSON-RPC error echoing the id): the self-test proves with it that both SDK
# clients surface such a refusal, without thv. thv's checks never call it.
REFUSAL_PROBE_TOOL = "_harness_refusal_probe"


def build_server(name: str) -> MCPServer:
    server = MCPServer(name=name, version="1.0.0")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False))
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=True))
    async def get_weather(city: str, ctx: Context) -> str:
        """Report the weather of a city (reports progress, so an SSE answer carries a notification)."""
        await ctx.report_progress(0.5, 1.0, "looking outside")
        return f"sunny in {city}"

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False))
    def write_note(text: str) -> str:
        """Store a note."""
        return f"stored: {text}"

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    def delete_everything(confirm: str) -> str:
        """Delete everything (it does not really)."""
        return f"deleted everything ({confirm})"

    @server.tool()
    def admin_stats() -> str:
        """Server statistics; this tool carries no annotations."""
        return json.dumps({"requests": len(RECORD)})

    @server.prompt()
    def greeting(name: str) -> str:
        """A friendly greeting."""
        return f"Please greet {name} warmly."

    @server.prompt()
    def ops_runbook(service: str) -> str:
        """The operations runbook of a service."""
        return f"Runbook for {service}: restart it."

    @server.resource("file:///public/readme.txt", mime_type="text/plain")
    def readme() -> str:
        """Public readme."""
        return "public readme"

    @server.resource("file:///secret/keys.txt", mime_type="text/plain")
    def secret_keys() -> str:
        """Secret keys."""
        return "secret keys"

    @server.resource("file:///notes/{name}", mime_type="text/plain")
    def note(name: str) -> str:
        """A note by name."""
        return f"note {name}"

    return server


class Recorder(RequestRecorder):
    """Records each HTTP request with its MCP routing headers and its body."""

    read_body = True

    def describe(self, scope: dict[str, Any], headers: dict[str, list[str]], body: bytes) -> dict[str, Any]:
        def first(name: str) -> str | None:
            return (headers.get(name) or [None])[0]

        return {
            "content_type": first("content-type"),
            "accept": first("accept"),
            "mcp_method": first("mcp-method"),
            "mcp_name": first("mcp-name"),
            "mcp_protocol_version": first("mcp-protocol-version"),
            "has_authorization": "authorization" in headers,
            "body": body[:MAX_RECORDED_BODY].decode("utf-8", errors="replace"),
        }

    async def forward(self, scope: dict[str, Any], receive: Any, send: Any, entry: dict[str, Any], body: bytes) -> None:
        refusal = refusal_for(body)
        if refusal is not None:
            await send_json(send, refusal, status=403)
            return
        await self.app(scope, receive, send)


def refusal_for(raw: bytes) -> bytes | None:
    """The 403 answer to a tools/call of REFUSAL_PROBE_TOOL, else None."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not (isinstance(message, dict) and message.get("method") == "tools/call"):
        return None
    if (message.get("params") or {}).get("name") != REFUSAL_PROBE_TOOL:
        return None
    return json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "error": {"code": 403, "message": "Unauthorized"}}).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="answer with JSON bodies instead of SSE")
    parser.add_argument("--log", default=None, help="append each recorded request as a JSON line")
    args = parser.parse_args()

    name = "thv-authz-upstream-json" if args.json else "thv-authz-upstream-sse"
    mcp_app = build_server(name).streamable_http_app(
        streamable_http_path="/mcp", json_response=args.json, host="127.0.0.1"
    )
    serve_asgi(Recorder(mcp_app, RECORD, args.log), args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
