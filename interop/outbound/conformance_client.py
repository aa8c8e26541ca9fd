#!/usr/bin/env python3
"""The `--command` of `conformance client` for the proxy's outgoing side.

The suite starts a mock MCP server and authorization server and appends the server URL as
the last argument. This wrapper starts `thv proxy --remote-auth` in front of it, with a
headless browser (browser.py) as $BROWSER, then drives a plain MCP client through the proxy
(initialize, tools/list, tools/call), and stops the proxy by its PID. Stdlib only; the proxy is
started and stopped by harness/processes.py (Thv), as in every other suite.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # interop/: the harness package
from harness.processes import StartupError, Thv, free_port  # noqa: E402
from mcp_client import McpClient, McpError  # noqa: E402

CIMD_URL = "https://conformance-test.local/client-metadata.json"
READY_TIMEOUT_SECONDS = 20
STOP_GRACE_SECONDS = 10


def main() -> int:
    target = sys.argv[-1]
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    flags = [
        "--debug", "--remote-auth", "--remote-auth-store=false", "--remote-auth-timeout", "20s",
        "--remote-auth-callback-port", str(free_port()),
        "--remote-auth-client-metadata-url", CIMD_URL,
    ]  # fmt: skip
    if context.get("client_id"):
        flags += ["--remote-auth-client-id", context["client_id"]]
    if context.get("client_secret"):
        flags += ["--remote-auth-client-secret", context["client_secret"]]
    # No log directory: thv's stderr is this script's, which the suite keeps with the scenario.
    try:
        proxy = Thv(
            "conformance", target, flags, None, ready_timeout=READY_TIMEOUT_SECONDS, cwd=HERE,
            env={"BROWSER": f"{sys.executable} {HERE / 'browser.py'}"}, stop_grace=STOP_GRACE_SECONDS,
        )  # fmt: skip
    except StartupError as err:
        print(f"thv did not start: {err}", file=sys.stderr)
        return 1
    try:
        client = McpClient(f"{proxy.base}{'/' + target.split('/', 3)[3] if target.count('/') >= 3 else '/'}")
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
        proxy.stop()


if __name__ == "__main__":
    sys.exit(main())
