"""End-to-end login by the official Python MCP SDK client, headless.

The client knows only the MCP URL. `mcp.client.auth.OAuthClientProvider` must:
  1. get 401 + `WWW-Authenticate: Bearer … resource_metadata="…"` from the protected endpoint,
  2. fetch the RFC 9728 document, find the authorization server,
  3. discover it (RFC 8414 / OIDC), register dynamically (RFC 7591, public client, PKCE),
  4. run the authorization-code flow with `resource` (RFC 8707) - the "browser" here is an
     HTTP client with a cookie jar that follows the IdP's redirects (oidc-provider approves
     login and consent itself) until the redirect to our loopback redirect URI,
  5. exchange the code, then initialize, list tools and call `whoami` and `echo`.

Every HTTP exchange the SDK makes is recorded; the script prints one JSON object on stdout:
  {"ok": bool, "error": str|None, "exchanges": [[method, url, status], ...],
   "whoami": {...}, "echo": "...", "token_claims": {...}}
Exit status 0 only if the session completed and both tool results came back.

Usage: .venv/bin/python sdk_login.py --url http://127.0.0.1:P/mcp [--scope "mcp:tools"]
       SDK_LOGIN_TOKEN=TOKEN .venv/bin/python sdk_login.py --url …   (no OAuth: a fixed bearer token)

The fixed token comes from the environment, not argv: an opaque token may start with "-", which
argparse takes for an option (CI failed once on exactly that), and argv is readable in the process
list by every user of the machine.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import traceback
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import anyio
import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.types import TextContent

REDIRECT_URI = "http://127.0.0.1:53682/callback"  # never listened on: the headless browser stops at it
SESSION_TIMEOUT_SECONDS = 45
MAX_REDIRECTS = 20


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class HeadlessBrowser:
    """Follows the authorization server's redirects with a cookie jar, like a browser would."""

    def __init__(self, exchanges: list[list[Any]]) -> None:
        self.exchanges = exchanges
        self.result: AuthorizationCodeResult | None = None

    async def open(self, authorization_url: str) -> None:
        url = authorization_url
        async with httpx2.AsyncClient(follow_redirects=False, timeout=10) as browser:
            for _ in range(MAX_REDIRECTS):
                if url.startswith(REDIRECT_URI):
                    query = parse_qs(urlparse(url).query)
                    if "error" in query:
                        raise RuntimeError(f"authorization error redirect: {query}")
                    self.result = AuthorizationCodeResult(
                        code=query["code"][0],
                        state=(query.get("state") or [None])[0],
                        iss=(query.get("iss") or [None])[0],
                    )
                    return
                response = await browser.get(url)
                self.exchanges.append(["BROWSER GET", url.split("?")[0], response.status_code])
                location = response.headers.get("location")
                if response.status_code not in (302, 303, 307) or not location:
                    body = (await response.aread())[:300]
                    raise RuntimeError(f"browser stuck at {url}: {response.status_code} {body!r}")
                url = urljoin(url, location)
        raise RuntimeError("too many redirects in the authorization flow")

    async def callback(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("authorization flow produced no code")
        return self.result


def jwt_claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None


def only_text(result: Any) -> str:
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if result.is_error or len(texts) != 1:
        raise RuntimeError(f"tool call failed: {result.content!r}")
    return texts[0]


async def run(args: argparse.Namespace, report: dict[str, Any]) -> None:
    exchanges: list[list[Any]] = report["exchanges"]
    browser = HeadlessBrowser(exchanges)
    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            client_name="thv-auth-harness",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            scope=args.scope or None,
        ),
        storage=storage,
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )

    async def on_response(response: httpx2.Response) -> None:
        request = response.request
        exchanges.append([request.method, str(request.url).split("?")[0], response.status_code])

    if args.token:
        # Static-bearer mode: the same session with a token the harness minted itself.
        client_args: dict[str, Any] = {"headers": {"Authorization": f"Bearer {args.token}"}}
    else:
        client_args = {"auth": provider}
    async with httpx2.AsyncClient(timeout=15, event_hooks={"response": [on_response]}, **client_args) as http:
        async with streamable_http_client(args.url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = sorted(tool.name for tool in (await session.list_tools()).tools)
                report["tools"] = tools
                report["whoami"] = json.loads(only_text(await session.call_tool("whoami", {})))
                report["echo"] = only_text(await session.call_tool("echo", {"text": "through thv"}))
    if storage.tokens is not None:
        report["token_claims"] = jwt_claims(storage.tokens.access_token)
        report["token_scope"] = storage.tokens.scope
        # Lets the harness check that thv never logs the token (test-only token, loopback IdP).
        report["token_signature"] = storage.tokens.access_token.rsplit(".", 1)[-1]
    if storage.client_info is not None:
        report["client_id"] = storage.client_info.client_id


def root_cause(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def main_async(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"ok": False, "error": None, "exchanges": []}
    try:
        with anyio.fail_after(SESSION_TIMEOUT_SECONDS):
            await run(args, report)
        report["ok"] = report.get("echo") == "through thv" and isinstance(report.get("whoami"), dict)
    except Exception as error:  # noqa: BLE001 - the report names whatever went wrong
        cause = root_cause(error)
        report["error"] = f"{type(cause).__name__}: {cause}"
        traceback.print_exception(error, file=sys.stderr)
    print(json.dumps(report))
    return 0 if report["ok"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--scope", default="")
    args = parser.parse_args()
    # Static-bearer mode; see the module docstring for why this is not a flag.
    args.token = os.environ.get("SDK_LOGIN_TOKEN", "")
    return anyio.run(main_async, args)


if __name__ == "__main__":
    sys.exit(main())
