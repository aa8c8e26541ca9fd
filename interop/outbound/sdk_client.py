"""The MCP client behind `thv proxy` for the 2026-07-28 wire: the official Python SDK (`mcp`).

Runs inside interop/.venv (conformance_client.py starts it there). It speaks the revision the
conformance suite asks for (MCP_CONFORMANCE_PROTOCOL_VERSION, pinned with the SDK's
`Client(url, mode=VERSION)`: no initialize, `_meta` on every request, `Mcp-Method`, `Mcp-Name`
and the `Mcp-Param-*` headers that a tool's `x-mcp-header` annotations designate), so the
suite's server sees exactly what the SDK sent, after thv.

    .venv/bin/python sdk_client.py URL [--exercise-all]

Default: tools/list, then tools/call of the first tool (what the auth scenarios need).
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

import anyio
from mcp.client.client import Client

SESSION_TIMEOUT_SECONDS = 30


async def run(url: str, version: str, exercise_all: bool) -> None:
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    arguments = {call["name"]: call.get("arguments") or {} for call in context.get("toolCalls", [])}
    # cache=None: every request goes to the server, so the suite observes each one.
    async with Client(url, mode=version, cache=None) as client:
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
    args = parser.parse_args()
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION", "2026-07-28")
    try:
        anyio.run(_bounded, args.url, version, args.exercise_all)
        return 0
    except Exception:  # noqa: BLE001 - any failure is this client's failure, printed in full
        traceback.print_exc()
        return 1


async def _bounded(url: str, version: str, exercise_all: bool) -> None:
    with anyio.fail_after(SESSION_TIMEOUT_SECONDS):
        await run(url, version, exercise_all)


if __name__ == "__main__":
    sys.exit(main())
