"""The official MCP conformance suite (`conformance server`), run direct and through thv.

There is no registry package of the suite's own reference server, so the suite runs against
server-everything, which fails many scenarios by design (it lacks the suite's test tools). The
comparison is therefore differential: whatever passes direct must pass through the proxy too.

`conformance server --suite all -o DIR` writes one DIR/server-<scenario>-<ISO time>/checks.json per
scenario; each check has an `id` and a `status` (SUCCESS, FAILURE, WARNING or INFO).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.bootstrap import Toolchain
from harness.processes import child_env

SUITE_TIMEOUT_SECONDS = 240
CLI = "@modelcontextprotocol/conformance/dist/index.js"
# server-everything accepts `Host: evil.example.com`, so this scenario fails direct; thv's
# DNS-rebinding guard must make it pass.
DNS_REBINDING_SCENARIO = "dns-rebinding-protection"
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
_LISTED_SCENARIO = re.compile(r"^\s+-\s+(?P<scenario>\S+)")


class SuiteError(Exception):
    """The suite itself could not run (not a failed scenario)."""


@dataclass(frozen=True)
class ScenarioResult:
    passed_ids: frozenset[str]  # ids of checks with status SUCCESS
    failures: dict[str, str]  # check id -> errorMessage, for checks with status FAILURE
    passed: int
    total: int  # SUCCESS + FAILURE, as the suite's own summary counts

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total


NOT_RUN = ScenarioResult(frozenset(), {"(scenario)": "no checks.json was written"}, 0, 0)


def _cli(tools: Toolchain) -> list[str]:
    return [str(tools.node), str(tools.node_modules / CLI)]


def list_server_scenarios(tools: Toolchain) -> list[str]:
    """All server scenarios the installed suite knows (`conformance list --server`)."""
    argv = [*_cli(tools), "list", "--server"]
    try:
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=child_env())
    except subprocess.TimeoutExpired as timeout:
        raise SuiteError("`conformance list --server` did not finish within 60s") from timeout
    scenarios = [m.group("scenario") for line in result.stdout.splitlines() if (m := _LISTED_SCENARIO.match(line))]
    if result.returncode != 0 or not scenarios:
        raise SuiteError(f"`conformance list --server` exited {result.returncode}: {result.stderr.strip()}")
    return scenarios


def run_suite(tools: Toolchain, url: str, output_dir: Path, log_path: Path) -> dict[str, ScenarioResult]:
    """Run every server scenario against `url`; return results by scenario name.

    The suite exits non-zero whenever any check fails, which is expected here, so its exit code is
    not used: results come from the checks.json files.
    """
    argv = [*_cli(tools), "server", "--url", url, "--suite", "all", "--output-dir", str(output_dir)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            subprocess.run(
                argv,
                check=False,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=SUITE_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired as timeout:
            raise SuiteError(f"conformance suite did not finish within {SUITE_TIMEOUT_SECONDS}s") from timeout
    return read_results(output_dir)


def read_results(output_dir: Path) -> dict[str, ScenarioResult]:
    results: dict[str, ScenarioResult] = {}
    for checks_file in sorted(output_dir.glob("*/checks.json")):
        match = _RESULT_DIR.match(checks_file.parent.name)
        if match:
            results[match.group("scenario")] = _summarise(json.loads(checks_file.read_text()))
    return results


def _summarise(checks: list[dict[str, object]]) -> ScenarioResult:
    passed_ids = frozenset(str(c["id"]) for c in checks if c.get("status") == "SUCCESS")
    failures = {str(c["id"]): str(c.get("errorMessage", "")) for c in checks if c.get("status") == "FAILURE"}
    passed = sum(c.get("status") == "SUCCESS" for c in checks)
    failed = sum(c.get("status") == "FAILURE" for c in checks)
    return ScenarioResult(passed_ids, failures, passed, passed + failed)


def regressions(direct: ScenarioResult, proxied: ScenarioResult) -> list[str]:
    """Checks that pass direct but not through the proxy, with the proxied error message."""
    lost = sorted(direct.passed_ids - proxied.passed_ids)
    return [f"{check_id}: {proxied.failures.get(check_id, 'not reported through the proxy')}" for check_id in lost]


def format_table(
    scenarios: list[str], direct: dict[str, ScenarioResult], proxied: dict[str, ScenarioResult] | None
) -> str:
    def cell(result: ScenarioResult | None) -> str:
        return "not run" if result is None or result is NOT_RUN else f"{result.passed}/{result.total}"

    width = max(len(s) for s in [*scenarios, "scenario"])
    lines = [f"{'scenario':<{width}}  {'direct':>8}  {'via thv':>8}"]
    for scenario in scenarios:
        via = "-" if proxied is None else cell(proxied.get(scenario))
        lines.append(f"{scenario:<{width}}  {cell(direct.get(scenario)):>8}  {via:>8}")
    total_direct = _totals(direct, scenarios)
    total_via = "-" if proxied is None else _totals(proxied, scenarios)
    lines.append(f"{'TOTAL (checks)':<{width}}  {total_direct:>8}  {total_via:>8}")
    return "\n".join(lines)


def _totals(results: dict[str, ScenarioResult], scenarios: list[str]) -> str:
    picked = [results[s] for s in scenarios if s in results]
    return f"{sum(r.passed for r in picked)}/{sum(r.total for r in picked)}"
