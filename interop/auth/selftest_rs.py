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
import socket
import sys
import time
import urllib.request

import uvicorn
from jwcrypto import jwk, jwt
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer


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
        return AccessToken(
            token=token,
            client_id=claims.get("client_id", ""),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=self.resource,
            subject=claims.get("sub"),
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    resource = f"http://127.0.0.1:{port}/mcp"

    server = MCPServer(
        name="thv-auth-selftest-rs",
        token_verifier=JwtVerifier(args.issuer, resource),
        auth=AuthSettings(
            issuer_url=args.issuer,
            resource_server_url=resource,
            required_scopes=["mcp:tools"],
            validate_token_resource=False,  # the verifier checks aud itself
        ),
    )

    @server.tool()
    def whoami(ctx: Context) -> str:
        headers = ctx.headers or {}
        return json.dumps({"authorization": headers.get("authorization"), "x_auth_case": headers.get("x-auth-case")})

    @server.tool()
    def echo(text: str) -> str:
        return text

    uv = uvicorn.Server(
        uvicorn.Config(server.streamable_http_app(streamable_http_path="/mcp"), log_level="warning", lifespan="on")
    )

    async def serve() -> None:
        task = asyncio.create_task(uv.serve(sockets=[sock]))
        deadline = time.monotonic() + 10
        while not uv.started and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if uv.started:
            print(json.dumps({"url": resource, "port": port}), flush=True)
        await task

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
