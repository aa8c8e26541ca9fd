#!/usr/bin/env python3
"""The `--command` of `conformance client` for the proxy's outgoing side.

The suite starts a mock MCP server and authorization server and appends the server URL as
the last argument. This wrapper starts `thv proxy --remote-auth` in front of it, with a
headless browser (browser.py) as $BROWSER, then drives a plain MCP client through the proxy
(initialize, tools/list, tools/call), and stops the proxy by its PID. Stdlib only; the proxy is
started and stopped by harness/processes.py (Thv), as in every other suite.

The grants without a browser (GRANT_SCENARIOS) get their credentials from the scenario's
MCP_CONFORMANCE_CONTEXT, written to 0600 files that thv reads; their thv log is then searched for
every credential and every issued token (thv runs with --debug). The verdict goes to the file
$THV_LEAK_REPORT names (run.py sets it), since the suite's own verdict knows nothing of logs.

The wire revision is the suite's MCP_CONFORMANCE_PROTOCOL_VERSION (its --spec-version). At
2025-11-25 the client behind thv is mcp_client.py (stdlib); at 2026-07-28 it is the official
Python SDK (sdk_client.py, in interop/.venv), which speaks that revision's stateless wire with
its `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` headers. The SDK does not wait out thv's 503
while the login runs, so this wrapper first waits (bounded) for thv's /health to leave
`login-pending`. The header scenarios (HEADER_SCENARIOS) have no auth: thv is a plain proxy there.

Bridge mode (`conformance_client.py --stdio URL`, run.py's stdio set): the client is the official
Python SDK's stdio client (sdk_client.py --bridge: `stdio_client(StdioServerParameters(...))`),
whose server command is `thv proxy stdio conformance --target-uri URL` with the very flags
(`proxy_flags`, one place for both modes) and $BROWSER `thv proxy` gets here. The bridge's
stderr is its log (it runs with --debug); the log is checked for secrets as thv's is, copied
to this script's stderr, and must hold DEBUG lines (the check covers --debug's output) and
the bridge's own "stdio bridge stopped" (it ended by itself once the SDK closed its stdin).
"""

from __future__ import annotations

import json
import os
import re
import sys
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # interop/: the harness package
from harness.processes import StartupError, Thv, child_env, free_port, thv_binary  # noqa: E402
from mcp_client import McpClient, McpError  # noqa: E402

CIMD_URL = "https://conformance-test.local/client-metadata.json"
PROXY_NAME = "conformance"  # thv's SERVER_NAME; its log is logs/thv-conformance.log
# The headless browser thv opens the authorization URL with: the suite's authorization server
# approves at once and redirects to thv's loopback callback.
BROWSER = f"{sys.executable} {HERE / 'browser.py'}"
# `conformance_client.py --stdio URL` (run.py's bridge set): the stdio bridge instead of thv proxy.
BRIDGE_FLAG = "--stdio"
BRIDGE_STOPPED = "stdio bridge stopped"  # the bridge's last log line when it ended by itself
READY_TIMEOUT_SECONDS = 20
STOP_GRACE_SECONDS = 10
GRANT_SCENARIOS = (
    "auth/client-credentials-basic", "auth/client-credentials-jwt", "auth/wif-jwt-bearer",
    "auth/enterprise-managed-authorization",
)  # fmt: skip
# DPoP (RFC 9449) with the browser login: thv must bind its tokens (--remote-auth-dpop always),
# and its log is checked like the grants' (the issued tokens and the proofs are JWTs).
DPOP_SCENARIOS = ("auth/dpop", "auth/dpop-nonce")
HEADER_SCENARIOS = ("http-standard-headers", "http-custom-headers")
LEGACY_VERSION = "2025-11-25"
SDK_PYTHON = HERE.parent / ".venv" / "bin" / "python"  # interop/.venv, with the `mcp` SDK
SDK_TIMEOUT_SECONDS = 45
LOGIN_WAIT_SECONDS = 30
# Tokens the suite's authorization servers issue (cc-token-<ms>, test-token-<ms>), and any JWT
# (an ID-JAG, an assertion, a DPoP-bound token, a DPoP proof), and a P-256 PKCS#8 private key in
# base64 (thv's DPoP key as it stores it): none belongs in a log.
ISSUED_TOKEN = re.compile(r"(?:cc|test)-token-\d+|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+|MIGHAgEA[A-Za-z0-9+/]{16,}")


def secret_file(folder: Path, name: str, value: str) -> str:
    path = folder / name
    path.touch(mode=0o600)
    path.write_text(value)
    return str(path)


def grant_flags(scenario: str, context: dict, folder: Path) -> tuple[list[str], list[str]]:
    """thv's flags for a grant scenario, and the secrets that must never reach its log."""
    flags = ["--remote-auth-client-id", context["client_id"]]
    if scenario == "auth/client-credentials-basic":
        secret = context["client_secret"]
        flags += ["--remote-auth-grant-type", "client_credentials",
                  "--remote-auth-client-secret-file", secret_file(folder, "secret", secret)]  # fmt: skip
        return flags, [secret]
    if scenario == "auth/client-credentials-jwt":
        pem = context["private_key_pem"]
        flags += ["--remote-auth-grant-type", "client_credentials",
                  "--remote-auth-client-assertion-key-file", secret_file(folder, "key.pem", pem),
                  "--remote-auth-client-assertion-alg", context["signing_algorithm"]]  # fmt: skip
        return flags, [line for line in pem.splitlines() if len(line) >= 16 and "-----" not in line]
    if scenario == "auth/enterprise-managed-authorization":
        secret, id_token = context["client_secret"], context["idp_id_token"]
        flags += ["--remote-auth-grant-type", "id-jag",
                  "--remote-auth-client-secret-file", secret_file(folder, "secret", secret),
                  "--remote-auth-idp-token-url", context["idp_token_endpoint"],
                  "--remote-auth-idp-client-id", context["idp_client_id"],
                  "--remote-auth-subject-token-file", secret_file(folder, "id-token.jwt", id_token)]  # fmt: skip
        return flags, [secret, id_token, id_token.rsplit(".", 1)[-1]]
    jwt = context["valid_jwt"]
    flags += ["--remote-auth-grant-type", "jwt-bearer",
              "--remote-auth-assertion-file", secret_file(folder, "assertion.jwt", jwt)]  # fmt: skip
    return flags, [jwt, jwt.rsplit(".", 1)[-1]]


def leak_check(log: Path, secrets: list[str]) -> dict:
    """What of `secrets` (and of the issued tokens) appears in thv's log."""
    text = log.read_text(errors="replace") if log.exists() else ""
    leaked = [f"secret #{i}" for i, value in enumerate(secrets) if value and value in text]
    leaked += sorted(set(ISSUED_TOKEN.findall(text)))
    return {"checked": bool(text), "log_bytes": len(text), "leaked": leaked}


def proxy_flags(scenario: str, context: dict, folder: Path) -> tuple[list[str], list[str] | None]:
    """thv's flags for `scenario`, the same for `thv proxy` and for the stdio bridge (`thv proxy
    stdio`), and the secrets its --debug log must not hold (None: the scenario's log is not
    checked). Secret files go under `folder`."""
    if scenario in HEADER_SCENARIOS:
        return ["--debug"], None  # no auth: what is checked is that the headers pass unchanged
    flags = ["--debug", "--remote-auth", "--remote-auth-store=false", "--remote-auth-timeout", "20s"]
    if scenario in GRANT_SCENARIOS:
        extra, secrets = grant_flags(scenario, context, folder)
        return flags + extra, secrets
    flags += ["--remote-auth-callback-port", str(free_port()), "--remote-auth-client-metadata-url", CIMD_URL]
    if context.get("client_id"):
        flags += ["--remote-auth-client-id", context["client_id"]]
    if context.get("client_secret"):
        flags += ["--remote-auth-client-secret", context["client_secret"]]
    if scenario in DPOP_SCENARIOS:
        return flags + ["--remote-auth-dpop", "always"], []
    return flags, None


def main() -> int:
    target = sys.argv[-1]
    bridge = BRIDGE_FLAG in sys.argv[1:-1]
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    # The context is given only to scenarios that have one (not DPoP's, nor
    # http-standard-headers'); the name always is.
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO") or context.get("name", "")
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION", LEGACY_VERSION)
    with tempfile.TemporaryDirectory(prefix="thv-grant-") as tmp:
        folder = Path(tmp)
        flags, secrets = proxy_flags(scenario, context, folder)
        # thv's stderr goes to a log when it is checked for secrets, and always for the bridge
        # (whose stderr the stdio client would otherwise share); the log is then copied to this
        # script's stderr. Otherwise thv's stderr is this script's, which the suite keeps.
        log_dir = folder / "logs" if secrets is not None or bridge else None
        log = folder / "logs" / f"thv-{PROXY_NAME}.log"
        if bridge:
            code = run_bridge(target, flags, log, version)
        else:
            code = run(target, flags, log_dir, version, exercise_all=scenario in HEADER_SCENARIOS)
        if log_dir is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            sys.stderr.write(text or "(no thv log)\n")
            if bridge and BRIDGE_STOPPED not in text:
                print(f"the bridge did not log {BRIDGE_STOPPED!r}: it did not end by itself", file=sys.stderr)
                code = code or 1
            if bridge and " DEBUG " not in text:  # the log check covers what --debug logs
                print("the bridge's log has no DEBUG line: it did not run with --debug", file=sys.stderr)
                code = code or 1
        if secrets is not None:
            report = leak_check(log, secrets)
            print(f"secret check: {json.dumps(report)}", file=sys.stderr)
            if os.environ.get("THV_LEAK_REPORT"):
                Path(os.environ["THV_LEAK_REPORT"]).write_text(json.dumps(report))
        return code


def wait_for_login(base: str) -> str:
    """thv's outgoing-auth status once it is no longer `login-pending` (bounded wait)."""
    deadline = time.monotonic() + LOGIN_WAIT_SECONDS
    while True:
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            status = json.loads(response.read()).get("outgoing_auth", "")
        if status != "login-pending" or time.monotonic() >= deadline:
            return status
        time.sleep(0.2)


def run_sdk_client(url: str, args: list[str], env: dict[str, str] | None = None) -> int:
    """sdk_client.py in interop/.venv against `url` with its `args`, in `env` (None: this
    script's); its output goes to this script's stderr."""
    if not SDK_PYTHON.exists():
        print(f"{SDK_PYTHON} is missing: interop/run.py installs it (scripts/test.sh runs it first)", file=sys.stderr)
        return 1
    argv = [str(SDK_PYTHON), str(HERE / "sdk_client.py"), url, *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SDK_TIMEOUT_SECONDS, env=env)
    except subprocess.TimeoutExpired:
        print(f"sdk_client.py timed out after {SDK_TIMEOUT_SECONDS}s", file=sys.stderr)
        return 1
    sys.stderr.write(done.stdout + done.stderr)
    return done.returncode


def run_bridge(target: str, flags: list[str], log: Path, version: str) -> int:
    """The official Python SDK's stdio client (sdk_client.py --bridge) with `thv proxy stdio`
    as its server command, in front of `target`, with the `flags` `thv proxy` would get, in the
    environment `thv proxy` gets here (child_env and BROWSER); the bridge's stderr (its --debug
    log) goes to `log`. The SDK speaks `version` (the stable suite sets no
    MCP_CONFORMANCE_PROTOCOL_VERSION, so it is passed on explicitly). The bridge waits out its
    own login (bounded by --remote-auth-timeout), so nothing is polled here."""
    log.parent.mkdir(parents=True, exist_ok=True)
    args = ["--bridge", str(thv_binary()), "--bridge-name", PROXY_NAME,
            "--bridge-flags", json.dumps(flags), "--bridge-log", str(log)]  # fmt: skip
    env = child_env({"BROWSER": BROWSER, "MCP_CONFORMANCE_PROTOCOL_VERSION": version})
    return run_sdk_client(target, args, env)


def run(target: str, flags: list[str], log_dir: Path | None, version: str, exercise_all: bool) -> int:
    try:
        proxy = Thv(
            PROXY_NAME, target, flags, log_dir, ready_timeout=READY_TIMEOUT_SECONDS, cwd=HERE,
            env={"BROWSER": BROWSER}, stop_grace=STOP_GRACE_SECONDS,
        )  # fmt: skip
    except StartupError as err:
        print(f"thv did not start: {err}", file=sys.stderr)
        return 1
    url = f"{proxy.base}{'/' + target.split('/', 3)[3] if target.count('/') >= 3 else '/'}"
    try:
        if version != LEGACY_VERSION:
            print(f"thv outgoing auth: {wait_for_login(proxy.base)}", file=sys.stderr)
            return run_sdk_client(url, ["--exercise-all"] if exercise_all else [])
        client = McpClient(url)
        client.initialize()
        tools = client.request("tools/list").get("tools", [])
        print(f"tools: {[t.get('name') for t in tools]}", file=sys.stderr)
        if tools:
            result = client.request("tools/call", {"name": tools[0]["name"], "arguments": {}})
            print(f"tools/call: {json.dumps(result)[:200]}", file=sys.stderr)
        return 0
    except McpError as err:
        print(f"MCP client error: {err}", file=sys.stderr)
        return 1
    finally:
        proxy.stop()


if __name__ == "__main__":
    sys.exit(main())
