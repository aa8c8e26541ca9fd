"""One MCP session over stdio, driven by the official Python SDK (`mcp`), with `thv proxy stdio`
as the server command: the interop runner's stdio checks (harness/stdio.py).

Runs inside interop/.venv. `stdio_client(StdioServerParameters(...))` launches
lib/exit-recorder.sh, which runs the bridge and records its exit code and time. The session
starts with the `initialize` handshake (--era handshake, 2025-11-25) or `server/discover`
(--era modern, 2026-07-28), then lists tools, calls one, reads a resource and gets a prompt,
checking each answer against --case (JSON). After the session the SDK closes the bridge's
stdin; the bridge must then exit 0 before the SDK's own escalation to SIGTERM. Every step
prints `ok ...` or `FAIL ...`; the exit status is 0 only if all held. Any non-JSON-RPC line on
the bridge's stdout would fail the session itself (the SDK's reader rejects it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import PROCESS_TERMINATION_TIMEOUT, StdioServerParameters, stdio_client
from mcp.types import TextContent

SESSION_TIMEOUT_SECONDS = 30
# The SDK closes stdin, waits PROCESS_TERMINATION_TIMEOUT (2 s), then signals the process group;
# a bridge still running by then would be stopped by the signal, not by the end of its input.
EXIT_BOUND_SECONDS = PROCESS_TERMINATION_TIMEOUT


class ExpectationFailed(Exception):
    """An answer arrived but was not the one the server should have sent."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ExpectationFailed(message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thv", required=True, help="the thv binary")
    parser.add_argument("--name", required=True, help="SERVER_NAME for thv proxy stdio")
    parser.add_argument("--target-uri", required=True)
    parser.add_argument("--recorder", required=True, help="lib/exit-recorder.sh")
    parser.add_argument("--exit-file", required=True, help="where the recorder writes the exit code")
    parser.add_argument("--stderr-log", required=True, help="the bridge's stderr")
    parser.add_argument("--era", choices=["handshake", "modern"], default="handshake")
    parser.add_argument("--case", required=True, help="expected answers, JSON (see harness/stdio.py)")
    return parser.parse_args(argv)


def only_text(blocks: list[Any], what: str) -> str:
    texts = [block.text for block in blocks if isinstance(block, TextContent)]
    expect(len(texts) == 1, f"{what}: expected one text block, got {blocks!r}")
    return texts[0]


async def run_session(session: ClientSession, era: str, case: dict[str, Any]) -> None:
    if era == "modern":
        await session.discover()
        expect(session.protocol_version == "2026-07-28", f"negotiated {session.protocol_version!r}, not 2026-07-28")
    else:
        await session.initialize()
        expect(session.protocol_version == "2025-11-25", f"negotiated {session.protocol_version!r}, not 2025-11-25")
    name = session.server_info.name if session.server_info else None
    expect(name == case["expect_server"], f"serverInfo.name {name!r}, expected {case['expect_server']!r}")
    print(f"ok   {era}: {session.protocol_version}, server {name}")

    tools = await session.list_tools()
    names = [tool.name for tool in tools.tools]
    expect(case["tool"] in names, f"tools/list lacks {case['tool']!r}: {names}")
    print(f"ok   tools/list: {len(names)} tools")

    result = await session.call_tool(case["tool"], case["arguments"])
    expect(not result.is_error, f"tools/call {case['tool']} is an error: {result!r}")
    text = only_text(result.content, "tools/call")
    expect(text == case["expect_text"], f"tools/call {case['tool']}: {text!r}, expected {case['expect_text']!r}")
    print(f"ok   tools/call {case['tool']}: {text!r}")

    read = await session.read_resource(case["resource"])
    expect(len(read.contents) == 1, f"resources/read: expected one content, got {read.contents!r}")
    content = read.contents[0]
    expect(str(content.uri) == case["resource"], f"resources/read: uri {content.uri!r}")
    body = getattr(content, "text", None)
    expect(body is not None and case["expect_resource_text"] in body, f"resources/read: text {body!r:.200}")
    print(f"ok   resources/read {case['resource']}: {len(body)} chars")

    prompt = await session.get_prompt(case["prompt"], case.get("prompt_arguments") or None)
    expect(len(prompt.messages) == 1, f"prompts/get: expected one message, got {prompt.messages!r}")
    said = only_text([prompt.messages[0].content], "prompts/get")
    expect(said == case["expect_prompt_text"], f"prompts/get {case['prompt']}: {said!r}")
    print(f"ok   prompts/get {case['prompt']}: {said!r}")


def check_exit(exit_file: Path, closed_at: float) -> None:
    """The recorder's line: the bridge's exit code and when it exited, after stdin was closed."""
    expect(exit_file.exists(), "the bridge did not exit by itself after stdin closed (the SDK had to signal it)")
    code, at = exit_file.read_text().split()
    took = float(at) - closed_at
    expect(code == "0", f"the bridge exited with {code} after stdin closed")
    expect(took < EXIT_BOUND_SECONDS, f"the bridge took {took:.2f}s to exit after stdin closed")
    print(f"ok   bridge exited 0, {took:.2f}s after stdin closed")


async def main_async(args: argparse.Namespace) -> None:
    case = json.loads(args.case)
    # The SDK hands a stdout line that is not a JSON-RPC message to the message handler as an
    # exception and carries on; collected here, so such a line fails the check.
    bad_lines: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            bad_lines.append(message)

    params = StdioServerParameters(
        command=args.recorder,
        args=[args.exit_file, args.thv, "proxy", "stdio", args.name, "--target-uri", args.target_uri, "--debug"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    with open(args.stderr_log, "w") as errlog, anyio.fail_after(SESSION_TIMEOUT_SECONDS):
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                await run_session(session, args.era, case)
            closed_at = time.time()  # leaving stdio_client closes the bridge's stdin
    if bad_lines:
        raise ExpectationFailed(f"stdout carried {len(bad_lines)} line(s) that are not JSON-RPC: {bad_lines[0]!r:.300}")
    print("ok   stdout carried JSON-RPC messages only")
    check_exit(Path(args.exit_file), closed_at)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        anyio.run(main_async, args)
    except ExpectationFailed as failure:
        print(f"FAIL {failure}")
        return 1
    except BaseException as error:  # noqa: BLE001 - any other failure is this check's failure
        root = error
        while isinstance(root, BaseExceptionGroup) and len(root.exceptions) == 1:
            root = root.exceptions[0]  # anyio's task groups wrap the one error that matters
        print(f"FAIL {type(root).__name__}: {root}")
        traceback.print_exc(file=sys.stdout)
        return 1
    print("ok   all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
