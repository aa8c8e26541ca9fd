"""The MCP client behind `thv proxy` for the 2026-07-28 wire, and the stdio client in front of
`thv proxy stdio` (bridge mode): the official Python SDK (`mcp`).

Runs inside interop/.venv (conformance_client.py starts it there). It speaks the revision the
conformance suite asks for (MCP_CONFORMANCE_PROTOCOL_VERSION, pinned with the SDK's
`Client(url, mode=VERSION)`: no initialize, `_meta` on every request, `Mcp-Method`, `Mcp-Name`
and the `Mcp-Param-*` headers that a tool's `x-mcp-header` annotations designate), so the
suite's server sees exactly what the SDK sent, after thv.

    .venv/bin/python sdk_client.py URL [--exercise-all]
    .venv/bin/python sdk_client.py URL --bridge THV --bridge-name NAME --bridge-flags JSON --bridge-log FILE

Default: tools/list, then tools/call of the first tool (what the auth scenarios need).
`--bridge`: the SDK does not connect to URL itself but launches `THV proxy stdio NAME
--target-uri URL FLAGS...` (FLAGS: the JSON list) with its stdio client
(`stdio_client(StdioServerParameters(...))`, the bridge's stderr to FILE, this process's
environment) and runs the same session over stdio. A handshake-era revision (2025-11-25, the
default revision of the stable suite) is spoken with the SDK's legacy mode (`initialize`).
`--exercise-all` (the header scenarios): every tool is called (with the arguments the
scenario's MCP_CONFORMANCE_CONTEXT gives under `toolCalls`, else none), and every resource and
prompt is listed and read/got, so each request type carries its headers once. Exit status 0
only when every request got a result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any, TextIO

import anyio
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

SESSION_TIMEOUT_SECONDS = 30


def bridge_transport(url: str, args: argparse.Namespace, errlog: TextIO) -> Any:
    """The SDK's stdio client with the bridge in front of `url` as its server command."""
    params = StdioServerParameters(
        command=args.bridge,
        args=["proxy", "stdio", args.bridge_name, "--target-uri", url, *json.loads(args.bridge_flags)],
        env=dict(os.environ),
    )
    return stdio_client(params, errlog=errlog)


async def run(server: Any, version: str, exercise_all: bool) -> None:
    """One session with `server` (a URL, or a transport) at `version`."""
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    arguments = {call["name"]: call.get("arguments") or {} for call in context.get("toolCalls", [])}
    mode = "legacy" if version in HANDSHAKE_PROTOCOL_VERSIONS else version
    # cache=None: every request goes to the server, so the suite observes each one.
    async with Client(server, mode=mode, cache=None) as client:
        print(f"protocol version: {client.protocol_version}", file=sys.stderr)
        tools = (await client.list_tools()).tools
        print(f"tools: {[t.name for t in tools]}", file=sys.stderr)
        for tool in tools if exercise_all else tools[:1]:
            result = await client.call_tool(tool.name, arguments.get(tool.name, {}))
            print(f"tools/call {tool.name}: {result.model_dump_json()[:200]}", file=sys.stderr)
        if not exercise_all:
            return
        for resource in (await client.list_resources()).resources:
            await client.read_resource(resource.uri)
            print(f"resources/read {resource.uri}: ok", file=sys.stderr)
        for prompt in (await client.list_prompts()).prompts:
            await client.get_prompt(prompt.name)
            print(f"prompts/get {prompt.name}: ok", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--exercise-all", action="store_true")
    parser.add_argument("--bridge", metavar="THV", help="reach URL through `THV proxy stdio` over stdio")
    parser.add_argument("--bridge-name", default="conformance", help="the bridge's SERVER_NAME")
    parser.add_argument("--bridge-flags", default="[]", help="the bridge's other flags, a JSON list")
    parser.add_argument("--bridge-log", default="/dev/stderr", help="the file for the bridge's stderr")
    args = parser.parse_args()
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION", "2026-07-28")
    try:
        if args.bridge is None:
            anyio.run(_bounded, args.url, version, args.exercise_all)
            return 0
        with open(args.bridge_log, "a") as errlog:
            anyio.run(_bounded, bridge_transport(args.url, args, errlog), version, args.exercise_all)
        return 0
    except Exception:  # noqa: BLE001 - any failure is this client's failure, printed in full
        traceback.print_exc()
        return 1


async def _bounded(server: Any, version: str, exercise_all: bool) -> None:
    with anyio.fail_after(SESSION_TIMEOUT_SECONDS):
        await run(server, version, exercise_all)


if __name__ == "__main__":
    sys.exit(main())
