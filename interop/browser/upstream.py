"""A real MCP server protected by the IdP's tokens: the upstream that `thv proxy` logs in to.

The Python SDK (`mcp`) in resource-server mode: `AuthSettings` + a token verifier. Without a
valid token it answers 401 with `WWW-Authenticate: Bearer … resource_metadata="…"` and serves
its RFC 9728 document at /.well-known/oauth-protected-resource/mcp (`authorization_servers`
= the IdP, `scopes_supported` = ["mcp:tools"]), exactly what `thv proxy --remote-auth`
discovers. The verifier checks the IdP's JWTs with `jwcrypto`: signature against the IdP's
JWKS, `iss` = the IdP, `aud` = this server's own URL, `exp` with no leeway at all, and the
`mcp:tools` scope (enforced by the SDK's middleware).

Every HTTP request is recorded - time, method, path, the response status and the
`Authorization` header verbatim - and served at GET /_log (POST /_log/clear empties it), so the
harness can prove which token reached the upstream, and that each was one of the IdP's.
POST /_test/reject?n=N makes the next N MCP requests that carry a token get a 401
`invalid_token` (with `resource_metadata`, as the SDK sends it), as if the token had been revoked.

Tools: `whoami` (the token's subject, client and expiry, and a SHA-256 of the token) and
`echo(text)`.

Usage: .venv/bin/python upstream.py --issuer http://127.0.0.1:IDP [--port 0]
Prints {"url": "http://127.0.0.1:PORT/mcp", "port": PORT} on stdout when it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn
from jwcrypto import jwk, jwt
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context

sys.path.append(str(Path(__file__).resolve().parent.parent))  # interop/: suite_common.py
from suite_common import (  # noqa: E402
    RequestRecorder,
    add_echo_tool,
    protected_mcp_server,
    sdk_access_token,
    send_json,
    serve_and_announce,
)

RECORD: list[dict[str, Any]] = []
REJECT = {"next": 0}  # how many of the next MCP requests that carry a token get a 401 anyway
VERIFIED: dict[str, dict[str, Any]] = {}  # sha256(token) -> claims of tokens that verified


class JwtVerifier:
    def __init__(self, issuer: str, resource: str) -> None:
        self.issuer = issuer
        self.resource = resource
        self.keys: jwk.JWKSet | None = None

    def _keyset(self) -> jwk.JWKSet:
        if self.keys is None:
            with urllib.request.urlopen(f"{self.issuer}/jwks", timeout=5) as response:  # noqa: S310 - loopback IdP
                self.keys = jwk.JWKSet.from_json(response.read())
        return self.keys

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            parsed = jwt.JWT(
                jwt=token,
                key=self._keyset(),
                algs=["RS256"],
                check_claims={"iss": self.issuer, "aud": self.resource, "exp": None},
                expected_type="JWS",
            )
            claims = json.loads(parsed.claims)
            # jwcrypto allows 60 s of skew; this upstream allows none.
            if float(claims["exp"]) <= time.time():
                return None
        except Exception:  # noqa: BLE001 - any failure means "not a valid token"
            return None
        VERIFIED[hashlib.sha256(token.encode()).hexdigest()] = claims
        return sdk_access_token(token, claims, self.resource)


class Recorder(RequestRecorder):
    """Records each HTTP request and its status; POST /_test/reject?n=N makes the next N MCP
    requests that carry a token fail with 401."""

    def __init__(self, app: Any, resource: str) -> None:
        super().__init__(app, RECORD)
        self.mcp_path = "/mcp"
        self.metadata_url = resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")

    def log_document(self) -> dict[str, Any]:
        return {**super().log_document(), "verified": VERIFIED}

    def control(self, path: str, scope: dict[str, Any]) -> bytes | None:
        if path == "/_test/reject":
            query = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode().split("&") if "=" in p)
            REJECT["next"] = int(query.get("n", "1"))
            return json.dumps(REJECT).encode()
        return super().control(path, scope)

    def describe(self, scope: dict[str, Any], headers: dict[str, list[str]], body: bytes) -> dict[str, Any]:
        return {"authorization": headers.get("authorization"), "status": None}

    async def forward(self, scope: dict[str, Any], receive: Any, send: Any, entry: dict[str, Any], body: bytes) -> None:
        if entry["path"] == self.mcp_path and entry["authorization"] and REJECT["next"] > 0:
            # As if the token had been revoked at the IdP: the SDK's own 401 shape.
            REJECT["next"] -= 1
            entry["status"] = 401
            entry["injected"] = True
            challenge = (
                'Bearer error="invalid_token", error_description="The token was revoked", '
                f'resource_metadata="{self.metadata_url}"'
            )
            body = b'{"error": "invalid_token", "error_description": "The token was revoked"}'
            await send_json(send, body, 401, [(b"www-authenticate", challenge.encode())])
            return

        async def send_and_record(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        await self.app(scope, receive, send_and_record)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    server, sock, resource = protected_mcp_server("thv-browser-upstream", args.issuer, args.port, JwtVerifier)

    @server.tool()
    def whoami(ctx: Context) -> str:
        """Who the upstream thinks is calling (from the bearer token this request carried)."""
        header = (ctx.headers or {}).get("authorization") or ""
        token = header[7:] if header.lower().startswith("bearer ") else ""
        digest = hashlib.sha256(token.encode()).hexdigest()
        claims = VERIFIED.get(digest, {})
        return json.dumps(
            {
                "token_sha256": digest,
                "sub": claims.get("sub"),
                "client_id": claims.get("client_id"),
                "aud": claims.get("aud"),
                "exp": claims.get("exp"),
                "scope": claims.get("scope"),
            },
            sort_keys=True,
        )

    add_echo_tool(server)

    app = Recorder(server.streamable_http_app(streamable_http_path="/mcp"), resource)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    asyncio.run(serve_and_announce(uv, sock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
