"""Stand-in resource server for the harness's self-test (no thv involved).

The Python SDK's own resource-server mode (`AuthSettings` + a token verifier) protecting an MCP
server with the same tools as upstream.py. The verifier checks the IdP's JWTs with `jwcrypto`
(signature from the IdP's JWKS, iss, aud = this server's URL, exp). `run.py --selftest` points
sdk_login.py at it to prove that the IdP, the headless login and the client script work on their
own, so a failure of the same script against thv is thv's.

Usage: .venv/bin/python selftest_rs.py --issuer http://127.0.0.1:IDP [--port 0]
Prints {"url": "http://127.0.0.1:PORT/mcp", "port": PORT} when it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from pathlib import Path

import uvicorn
from jwcrypto import jwk, jwt
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context

sys.path.append(str(Path(__file__).resolve().parent.parent))  # interop/: suite_common.py
from suite_common import add_echo_tool, protected_mcp_server, sdk_access_token, serve_and_announce  # noqa: E402


class JwtVerifier:
    def __init__(self, issuer: str, resource: str) -> None:
        self.issuer = issuer
        self.resource = resource
        with urllib.request.urlopen(f"{issuer}/jwks", timeout=5) as response:  # noqa: S310 - loopback IdP
            self.keys = jwk.JWKSet.from_json(response.read())

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            parsed = jwt.JWT(
                jwt=token,
                key=self.keys,
                algs=["RS256", "ES256"],
                check_claims={"iss": self.issuer, "aud": self.resource, "exp": None},
            )
            claims = json.loads(parsed.claims)
        except Exception:  # noqa: BLE001 - any failure means "not a valid token"
            return None
        return sdk_access_token(token, claims, self.resource)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    server, sock, _ = protected_mcp_server("thv-auth-selftest-rs", args.issuer, args.port, JwtVerifier)

    @server.tool()
    def whoami(ctx: Context) -> str:
        headers = ctx.headers or {}
        return json.dumps({"authorization": headers.get("authorization"), "x_auth_case": headers.get("x-auth-case")})

    add_echo_tool(server)

    uv = uvicorn.Server(
        uvicorn.Config(server.streamable_http_app(streamable_http_path="/mcp"), log_level="warning", lifespan="on")
    )
    asyncio.run(serve_and_announce(uv, sock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
