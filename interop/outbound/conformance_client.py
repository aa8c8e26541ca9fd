#!/usr/bin/env python3
"""The `--command` of `conformance client` for the proxy's outgoing side.

The suite starts a mock MCP server and authorization server and appends the server URL as
the last argument. This wrapper starts `thv proxy --remote-auth` in front of it, with a
headless browser (browser.py) as $BROWSER, then drives a plain MCP client through the proxy
(initialize, tools/list, tools/call), and stops the proxy by its PID. Stdlib only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from mcp_client import McpClient, McpError  # noqa: E402

THV = os.environ.get("THV_BIN", str(HERE.parent.parent / "target" / "debug" / "thv"))
CIMD_URL = "https://conformance-test.local/client-metadata.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    target = sys.argv[-1]
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    args = [
        THV, "proxy", "conformance", "--target-uri", target, "--port", "0", "--debug",
        "--remote-auth", "--remote-auth-store=false", "--remote-auth-timeout", "20s",
        "--remote-auth-callback-port", str(free_port()),
        "--remote-auth-client-metadata-url", CIMD_URL,
    ]
    if context.get("client_id"):
        args += ["--remote-auth-client-id", context["client_id"]]
    if context.get("client_secret"):
        args += ["--remote-auth-client-secret", context["client_secret"]]
    env = dict(os.environ, BROWSER=f"{sys.executable} {HERE / 'browser.py'}")
    proxy = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env)
    try:
        line = proxy.stdout.readline() if proxy.stdout else ""
        port = re.search(r"on port (\d+)", line)
        if not port:
            print(f"thv did not start: {line!r}", file=sys.stderr)
            return 1
        client = McpClient(f"http://127.0.0.1:{port.group(1)}{'/' + target.split('/', 3)[3] if target.count('/') >= 3 else '/'}")
        client.initialize()
        tools = client.request("tools/list").get("tools", [])
        print(f"tools: {[t.get('name') for t in tools]}", file=sys.stderr)
        if tools:
            result = client.request("tools/call", {"name": tools[0]["name"], "arguments": {}})
            print(f"tools/call: {json.dumps(result)[:200]}", file=sys.stderr)
        return 0
    except McpError as err:
        print(f"MCP client error: {err}", file=sys.stderr)
        return 1
    finally:
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()


if __name__ == "__main__":
    sys.exit(main())
