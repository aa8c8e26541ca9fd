"""A real MCP server (Python SDK `mcp`, Streamable HTTP) used as thv's upstream by the auth harness.

It records every HTTP request it receives - method, path, the `Authorization` header (verbatim),
the harness's `X-Auth-Case` marker and the header names - so a test can prove that the proxy
never forwarded a client's token, and that refused requests never arrived at all.

    GET  /_log        -> {"requests": [...]}   (not itself recorded)
    POST /_log/clear  -> clears the record

Tools: `whoami` (JSON of the Authorization / X-Auth-Case headers this very request carried) and
`echo(text)`.

Prints one JSON line {"url": "http://127.0.0.1:PORT/mcp", "port": PORT} on stdout when it listens.

Usage: .venv/bin/python upstream.py [--port 0] [--log requests.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

sys.path.append(str(Path(__file__).resolve().parent.parent))  # interop/: suite_common.py
from suite_common import RequestRecorder, add_echo_tool, bind_loopback, serve_and_announce  # noqa: E402


def build_server() -> MCPServer:
    server = MCPServer(name="thv-auth-upstream", version="1.0.0")

    @server.tool()
    def whoami(ctx: Context) -> str:
        """Report the credentials this request reached the upstream with."""
        headers = ctx.headers or {}
        return json.dumps(
            {
                "authorization": headers.get("authorization"),
                "x_auth_case": headers.get("x-auth-case"),
            },
            sort_keys=True,
        )

    add_echo_tool(server)
    return server


class Recorder(RequestRecorder):
    """Records each HTTP request's query, Authorization headers, X-Auth-Case and header names."""

    def describe(self, scope: dict[str, Any], headers: dict[str, list[str]], body: bytes) -> dict[str, Any]:
        return {
            "query": scope.get("query_string", b"").decode("latin-1"),
            "authorization": headers.get("authorization"),
            "x_auth_case": (headers.get("x-auth-case") or [None])[0],
            "header_names": sorted(headers),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", default=None, help="append each recorded request as a JSON line")
    args = parser.parse_args()

    app = Recorder(build_server().streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1"), [], args.log)
    sock = bind_loopback(args.port)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    asyncio.run(serve_and_announce(server, sock))  # prints the URL line once it listens (bounded wait)
    return 0


if __name__ == "__main__":
    sys.exit(main())
