"""The MCP traffic the checks send through thv and the trace data they read back: a Python SDK
session (`sdk_session`), a hand-made session whose POSTs carry chosen `traceparent` headers and
`_meta` (`RawSession`), W3C trace-context helpers, and selectors over the spans and metric data
points the OTLP receiver (otlp.py) decoded.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import Implementation

from harness.checks import CheckFailed, expect
from harness.http import Resp, request
from proxy import Upstream

SESSION_TIMEOUT = 60
LEGACY = "2025-11-25"
REQUEST_METRIC_NAMES = ("toolhive_mcp_requests", "toolhive_mcp_requests_total")


def new_trace() -> tuple[str, str, str]:
    """(trace id, parent span id, traceparent with the sampled flag)."""
    tid, pid = secrets.token_hex(16), secrets.token_hex(8)
    return tid, pid, f"00-{tid}-{pid}-01"


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", (value or "").strip())
    return (match.group(1), match.group(2), match.group(3)) if match else None


# ---- MCP clients ---------------------------------------------------------------------------------


def sdk_session(url: str, calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One Python SDK session (legacy mode, 2025-11-25): initialize, tools/list, then each call.
    Returns {"session_id", "protocol_version", "server_name", "tools", "results": [{name, text,
    is_error, error}], "ids": {tool name: JSON-RPC id of its tools/call}}."""
    out: dict[str, Any] = {"session_id": None, "results": [], "ids": {}}

    async def on_request(req: httpx2.Request) -> None:
        if req.method != "POST":
            return
        try:
            body = json.loads(req.content or b"null")
        except (ValueError, httpx2.RequestNotRead):
            return
        if isinstance(body, dict) and body.get("method") == "tools/call":
            out["ids"].setdefault(body["params"]["name"], body.get("id"))

    async def on_response(resp: httpx2.Response) -> None:
        sid = resp.headers.get("mcp-session-id")
        if sid:
            out["session_id"] = sid

    async def go() -> None:
        hooks = {"request": [on_request], "response": [on_response]}
        async with httpx2.AsyncClient(timeout=30, event_hooks=hooks) as http:
            client = Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None,
                            client_info=Implementation(name="thv-telemetry-suite", version="1.0.0"),
                            read_timeout_seconds=30)
            async with client:
                out["protocol_version"] = client.protocol_version
                out["server_name"] = client.server_info.name if client.server_info else None
                out["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
                for name, args in calls:
                    entry: dict[str, Any] = {"name": name, "text": None, "is_error": None, "error": None}
                    try:
                        result = await client.call_tool(name, args)
                        entry["is_error"] = bool(result.is_error)
                        entry["text"] = "\n".join(getattr(c, "text", "") or "" for c in result.content)
                    except MCPError as error:
                        entry["error"] = f"{error.code}: {error.message}"
                    out["results"].append(entry)

    async def bounded() -> None:
        with anyio.fail_after(SESSION_TIMEOUT):
            await go()

    try:
        anyio.run(bounded)
    except BaseException as error:  # noqa: BLE001 - reported as the check's failure
        raise CheckFailed(f"SDK session through {url} failed: {describe(error)}") from error
    return out


def describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(e) for e in error.exceptions)
    return f"{type(error).__name__}: {error}"


def expect_text(session: dict[str, Any], index: int, text: str) -> None:
    got = session["results"][index]
    expect(got["text"] == text and not got["is_error"] and not got["error"], f"{got['name']}: {got}, want {text!r}")


class RawSession:
    """A 2025-11-25 session by hand (initialize, notifications/initialized), then single POSTs
    with the headers a check chooses."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session_id: str | None = None
        r = self.post({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "telemetry-raw", "version": "1"}}})
        expect(r.status == 200, f"initialize through thv: {r.status} {r.body[:200]!r}")
        self.session_id = r.header("mcp-session-id")
        n = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        expect(n.status in (200, 202), f"notifications/initialized: {n.status}")

    def post(self, body: Any, extra: list[tuple[str, str]] | None = None) -> Resp:
        h = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")]
        if self.session_id:
            h += [("Mcp-Session-Id", self.session_id), ("MCP-Protocol-Version", LEGACY)]
        return request("POST", self.url, h + (extra or []), json.dumps(body).encode())

    def call(self, rid: str, text: str, traceparent: str | None = None, meta: dict[str, Any] | None = None) -> Resp:
        params: dict[str, Any] = {"name": "echo", "arguments": {"text": text}}
        if meta is not None:
            params["_meta"] = meta
        extra = [("traceparent", traceparent)] if traceparent else []
        return self.post({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}, extra)


# ---- telemetry data ------------------------------------------------------------------------------


def server_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in spans if s["kind"] == "SPAN_KIND_SERVER"]


def span_by_trace(spans: list[dict[str, Any]], trace_id: str, kind: str = "SPAN_KIND_SERVER") -> dict[str, Any] | None:
    return next((s for s in spans if s["trace_id"] == trace_id and s["kind"] == kind), None)


def short(span: dict[str, Any] | None) -> str:
    if span is None:
        return "None"
    return (f"{span['name']!r} {span['kind']} trace={span['trace_id'][:8]}… span={span['span_id']} "
            f"parent={span['parent_span_id'] or '-'} status={span['status']}")


def upstream_traceparent(up: Upstream, marker: str) -> tuple[dict[str, Any], tuple[str, str, str]]:
    """The request the upstream received carrying `marker`, and its (single) traceparent."""
    seen = up.containing(marker)
    expect(len(seen) == 1, f"the upstream received {len(seen)} requests carrying {marker!r}")
    values = seen[0]["traceparent"]
    expect(len(values) == 1, f"the target received traceparent headers {values} (want exactly one)")
    parsed = parse_traceparent(values[0])
    expect(parsed is not None, f"the target received an invalid traceparent {values[0]!r}")
    return seen[0], parsed  # type: ignore[return-value]


def request_points(points: list[dict[str, Any]], **attrs: Any) -> list[dict[str, Any]]:
    return [p for p in points if p["metric"] in REQUEST_METRIC_NAMES
            and all(p["attributes"].get(k) == v for k, v in attrs.items())]


def latest_total(points: list[dict[str, Any]]) -> float:
    """The cumulative count of the last export among `points`, summed over its series (a series
    appears once per export; the largest value of each attribute set is its latest)."""
    best: dict[str, float] = {}
    for p in points:
        key = json.dumps(p["attributes"], sort_keys=True)
        best[key] = max(best.get(key, 0), float(p["value"] or 0))
    return sum(best.values())


def rpc_result(resp: Resp) -> Any:
    try:
        return json.loads(resp.body)
    except ValueError:
        return None
