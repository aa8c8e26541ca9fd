"""One MCP client session with the official Python SDK (`mcp.Client`), driven by a plan.

    .venv/bin/python py_client.py --url URL --mode legacy|2026-07-28 --plan plan.json

The bearer token, if any, comes from the environment variable AUTHZ_TOKEN (never argv, which
other processes can read). The session lists tools, prompts, resources and resource templates
(when the plan asks for lists), then makes each attempt of the plan in order: a tool call, a
prompt get or a resource read. An attempt that the server (or thv) refuses is recorded with the
JSON-RPC error the SDK surfaced and the HTTP status of that exchange; the session goes on.

Prints one JSON report as its last stdout line:
    {"ok": bool, "error": str|null, "protocol_version": str, "server_name": str,
     "lists": {"tools": [{"name", "description", "annotations"}], "prompts": [...], "resources": [...],
               "templates": [...]}, "list_errors": {...},
     "attempts": [{"label", "kind", "name", "ok", "text", "is_error", "error": {"code", "message"}|null,
                   "http_status", "content_type"}],
     "http": [{"rpc_method", "status", "content_type"}]}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import Implementation

SESSION_TIMEOUT_SECONDS = 60


def text_of(contents: Any) -> str:
    parts = []
    for item in contents or []:
        text = getattr(item, "text", None)
        if text is None:
            inner = getattr(item, "content", None)  # prompt messages
            text = getattr(inner, "text", None)
        if text is not None:
            parts.append(text)
    return "\n".join(parts)


async def run(url: str, mode: str, plan: dict[str, Any], token: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {"ok": False, "error": None, "lists": {}, "list_errors": {}, "attempts": [], "http": []}
    exchanges: list[dict[str, Any]] = report["http"]

    async def on_response(response: httpx2.Response) -> None:
        rpc_method = None
        if response.request.method == "POST":
            try:
                body = json.loads(response.request.content or b"null")
                rpc_method = body.get("method") if isinstance(body, dict) else "batch"
            except (ValueError, httpx2.RequestNotRead):
                rpc_method = "?"
        exchanges.append({
            "http_method": response.request.method,
            "rpc_method": rpc_method,
            "status": response.status_code,
            "content_type": (response.headers.get("content-type") or "").split(";")[0],
        })

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30, event_hooks={"response": [on_response]}) as http:
        transport = streamable_http_client(url, http_client=http)
        client = Client(
            transport,
            mode=mode,
            cache=None,
            client_info=Implementation(name=f"authz-py-{mode}", version="1.0.0"),
            read_timeout_seconds=30,
        )
        async with client:
            report["protocol_version"] = client.protocol_version
            info = client.server_info
            report["server_name"] = info.name if info else None
            if plan.get("lists", True):
                for key, call in (
                    ("tools", client.list_tools),
                    ("prompts", client.list_prompts),
                    ("resources", client.list_resources),
                    ("templates", client.list_resource_templates),
                ):
                    try:
                        result = await call()
                    except MCPError as error:
                        report["list_errors"][key] = {"code": error.code, "message": error.message}
                        continue
                    if key == "tools":
                        report["lists"][key] = [
                            {
                                "name": t.name,
                                "description": t.description,
                                "annotations": t.annotations.model_dump(by_alias=True, exclude_none=True)
                                if t.annotations
                                else None,
                            }
                            for t in result.tools
                        ]
                    elif key == "prompts":
                        report["lists"][key] = [p.name for p in result.prompts]
                    elif key == "resources":
                        report["lists"][key] = [str(r.uri) for r in result.resources]
                    else:
                        report["lists"][key] = [t.uri_template for t in result.resource_templates]
            for attempt in plan.get("attempts", []):
                report["attempts"].append(await make_attempt(client, attempt, exchanges))
    report["ok"] = True
    return report


async def make_attempt(client: Client, attempt: dict[str, Any], exchanges: list[dict[str, Any]]) -> dict[str, Any]:
    kind, name, args = attempt["kind"], attempt["name"], attempt.get("args") or {}
    out: dict[str, Any] = {"label": attempt.get("label", name), "kind": kind, "name": name, "ok": False,
                           "text": None, "is_error": None, "error": None}
    before = len(exchanges)
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    try:
        if kind == "tool":
            result = await client.call_tool(name, args, progress_callback=on_progress if attempt.get("progress") else None)
            out["is_error"] = bool(result.is_error)
            out["text"] = text_of(result.content)
            out["ok"] = not result.is_error
        elif kind == "prompt":
            result = await client.get_prompt(name, args)
            out["text"] = text_of(result.messages)
            out["ok"] = True
        elif kind == "resource":
            result = await client.read_resource(name)
            out["text"] = "\n".join(getattr(c, "text", "") or "" for c in result.contents)
            out["ok"] = True
        else:
            raise ValueError(f"unknown attempt kind {kind}")
    except MCPError as error:
        out["error"] = {"code": error.code, "message": error.message}
    except Exception as error:  # noqa: BLE001 - recorded, the session goes on
        out["error"] = {"code": None, "message": f"{type(error).__name__}: {error}"}
    mine = [x for x in exchanges[before:] if x["http_method"] == "POST"]
    if mine:
        out["http_status"] = mine[-1]["status"]
        out["content_type"] = mine[-1]["content_type"]
    out["progress_notifications"] = len(progress)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", default="legacy")
    parser.add_argument("--plan", required=True, help="JSON file with the plan")
    args = parser.parse_args()
    with open(args.plan, encoding="utf-8") as handle:
        plan = json.load(handle)
    return emit(args, plan, os.environ.get("AUTHZ_TOKEN") or None)


def emit(args: argparse.Namespace, plan: dict[str, Any], token: str | None) -> int:
    async def bounded() -> dict[str, Any]:
        with anyio.fail_after(SESSION_TIMEOUT_SECONDS):
            return await run(args.url, args.mode, plan, token)

    try:
        report = anyio.run(bounded)
    except BaseException as error:  # noqa: BLE001 - the runner reads the report, never a traceback alone
        traceback.print_exc(file=sys.stderr)
        report = {"ok": False, "error": describe(error)}
    print(json.dumps(report), flush=True)
    return 0 if report.get("ok") else 1


def describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(e) for e in error.exceptions)
    return f"{type(error).__name__}: {error}"


if __name__ == "__main__":
    sys.exit(main())
