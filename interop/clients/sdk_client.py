"""One MCP session driven by the official Python SDK (`mcp`), for the interop runner.

Runs inside interop/.venv. It connects over Streamable HTTP or legacy HTTP+SSE, then
initialize -> tools/list -> tools/call, and checks what came back. Every step prints one line
(`ok ...` or `FAIL ...`); the exit status is 0 only if every expectation held, so the runner can
treat this process as one named check.

Example:
    .venv/bin/python clients/sdk_client.py --transport streamable-http \
        --url http://127.0.0.1:41234/mcp --expect-server simple-streamable-http-server \
        --tool greet --arguments '{"name": "thv"}' --expect-text 'Hello, thv!'
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import LoggingMessageNotificationParams, TextContent

# Bounds the whole session, so a proxy that stalls a stream fails the check instead of hanging it.
SESSION_TIMEOUT_SECONDS = 30
# Logging notifications ride the same stream as the result but are delivered to the callback
# independently; give stragglers this long to arrive after the result before counting them.
NOTIFICATION_GRACE_SECONDS = 2


class ExpectationFailed(Exception):
    """A response arrived but was not the one the server should have sent."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=["streamable-http", "sse"], required=True)
    parser.add_argument("--url", required=True, help="MCP endpoint (streamable) or SSE endpoint (legacy)")
    parser.add_argument("--expect-server", required=True, help="serverInfo.name the upstream announces")
    parser.add_argument("--tool", required=True, help="tool to list and call")
    parser.add_argument("--arguments", default="{}", help="tool arguments as a JSON object")
    parser.add_argument("--expect-text", required=True, help="exact text of the tool result")
    parser.add_argument(
        "--min-log-messages",
        type=int,
        default=0,
        help="notifications/message the tool must emit on the session's stream before its result",
    )
    return parser.parse_args(argv)


def open_transport(transport: str, url: str) -> AbstractAsyncContextManager[Any]:
    if transport == "streamable-http":
        return streamable_http_client(url)
    return sse_client(url)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ExpectationFailed(message)


def result_text(result: Any) -> str:
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    expect(len(texts) == 1, f"expected exactly one text block, got content={result.content!r}")
    return texts[0]


async def wait_for_log_messages(received: list[str], minimum: int) -> None:
    with anyio.move_on_after(NOTIFICATION_GRACE_SECONDS):
        while len(received) < minimum:
            await anyio.sleep(0.05)


async def run_session(args: argparse.Namespace) -> None:
    log_messages: list[str] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        log_messages.append(str(params.data))

    async with (
        open_transport(args.transport, args.url) as (read_stream, write_stream),
        ClientSession(read_stream, write_stream, logging_callback=on_log) as session,
    ):
        init = await session.initialize()
        server_name = init.server_info.name
        expect(server_name == args.expect_server, f"initialize: server {server_name!r} != {args.expect_server!r}")
        print(f"ok initialize: server={server_name} protocol={init.protocol_version}")

        listed = await session.list_tools()
        names = sorted(tool.name for tool in listed.tools)
        expect(args.tool in names, f"tools/list: {args.tool!r} not in {names}")
        print(f"ok tools/list: {len(names)} tools, includes {args.tool}")

        result = await session.call_tool(args.tool, json.loads(args.arguments))
        expect(not result.is_error, f"tools/call {args.tool}: isError=true, content={result.content!r}")
        text = result_text(result)
        expect(text == args.expect_text, f"tools/call {args.tool}: text {text!r} != {args.expect_text!r}")
        print(f"ok tools/call {args.tool}: {text!r}")

        if args.min_log_messages:
            await wait_for_log_messages(log_messages, args.min_log_messages)
            count = len(log_messages)
            expect(
                count >= args.min_log_messages,
                f"notifications: got {count} log messages, want >= {args.min_log_messages}: {log_messages}",
            )
            print(f"ok notifications: {count} log messages streamed")


def root_cause(error: BaseException) -> BaseException:
    """Unwrap the single-member exception groups that anyio task groups add around errors."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def main_async(args: argparse.Namespace) -> int:
    try:
        with anyio.fail_after(SESSION_TIMEOUT_SECONDS):
            await run_session(args)
    except Exception as error:  # noqa: BLE001 - any transport or protocol error fails this check
        cause = root_cause(error)
        if isinstance(cause, ExpectationFailed):
            print(f"FAIL {cause}")
        elif isinstance(cause, TimeoutError):
            print(f"FAIL session did not finish within {SESSION_TIMEOUT_SECONDS}s")
        else:
            print(f"FAIL {type(cause).__name__}: {cause}")
            traceback.print_exception(error, file=sys.stderr)
        return 1
    return 0


def main() -> int:
    return anyio.run(main_async, parse_args(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
