"""A plain MCP client (Streamable HTTP, JSON or SSE answers) for driving requests through
`thv proxy`. Standard library only. Retries while the proxy answers 503 (login pending)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

PROTOCOL_VERSION = "2025-11-25"
STATELESS_VERSION = "2026-07-28"


class McpError(Exception):
    pass


class McpClient:
    def __init__(self, url: str, wait_seconds: float = 30.0):
        self.url = url
        self.session_id: str | None = None
        self.wait_seconds = wait_seconds
        self.next_id = 1
        # MCP 2026-07-28 is stateless: no initialize; every request names its revision.
        self.stateless = False

    def _post(self, message: dict) -> dict | None:
        body = json.dumps(message).encode()
        deadline = time.monotonic() + self.wait_seconds
        while True:
            request = urllib.request.Request(self.url, data=body, method="POST")
            request.add_header("Content-Type", "application/json")
            request.add_header("Accept", "application/json, text/event-stream")
            request.add_header("MCP-Protocol-Version", STATELESS_VERSION if self.stateless else PROTOCOL_VERSION)
            if self.stateless and "method" in message:
                request.add_header("Mcp-Method", message["method"])
            if self.session_id:
                request.add_header("Mcp-Session-Id", self.session_id)
            try:
                with urllib.request.urlopen(request, timeout=self.wait_seconds) as response:
                    self.session_id = response.headers.get("Mcp-Session-Id") or self.session_id
                    payload = response.read().decode()
                    content_type = response.headers.get("Content-Type", "")
                    break
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")
                # 503 "logging in" means wait; 503 "could not log in" is final.
                if err.code == 503 and "could not log in" not in detail and time.monotonic() < deadline:
                    time.sleep(0.25)
                    continue
                raise McpError(f"HTTP {err.code} for {message.get('method')}: {detail[:300]}") from None
        if "id" not in message:
            return None
        if content_type.startswith("text/event-stream"):
            for block in payload.replace("\r\n", "\n").split("\n\n"):
                data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
                if data:
                    parsed = json.loads(data)
                    if parsed.get("id") == message["id"]:
                        return parsed
            raise McpError(f"no answer to {message['method']} in the event stream")
        return json.loads(payload)

    def request(self, method: str, params: dict | None = None) -> dict:
        params = dict(params or {})
        if self.stateless:
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.next_id += 1
        answer = self._post(message)
        if answer is None or "error" in answer:
            raise McpError(f"{method} failed: {answer}")
        return answer["result"]

    def notify(self, method: str) -> None:
        self._post({"jsonrpc": "2.0", "method": method})

    def initialize(self) -> dict:
        try:
            return self._initialize()
        except McpError as err:
            # A 2026-07-28 server refuses initialize without per-request _meta: go stateless.
            if "HTTP 400" in str(err) and "_meta" in str(err):
                self.stateless = True
                return {}
            raise

    def _initialize(self) -> dict:
        result = self.request(
            "initialize",
            {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "thv-test-client", "version": "1"}},
        )
        self.notify("notifications/initialized")
        return result
