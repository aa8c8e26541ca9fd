"""A Python SDK (`mcp`) MCPServer over Streamable HTTP, for the interop stdio checks.

Runs inside interop/.venv: `python servers/python_server.py PORT`. It listens on 127.0.0.1:PORT
at /mcp and serves both protocol revisions the SDK speaks (the 2025-11-25 `initialize` handshake
and 2026-07-28's `server/discover`), with one tool, one resource and one prompt whose answers
the clients check exactly.
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("thv-interop-python-server")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@server.resource("greeting://thv", mime_type="text/plain")
def greeting() -> str:
    """A fixed greeting."""
    return "Hello from the Python SDK server"


@server.prompt()
def review(code: str) -> str:
    """Ask for a review of `code`."""
    return f"Please review this code: {code}"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
