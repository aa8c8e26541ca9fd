#!/usr/bin/env python3
"""Real-component harness for thv's telemetry: OpenTelemetry traces and metrics over OTLP/HTTP,
Prometheus `/metrics` on the diagnostics listener, JSON logs, and a collector outage under load.

Starts, on 127.0.0.1 only: a real MCP upstream (Python SDK `mcp` 2.3.0, upstream.py, recording
the `traceparent` it receives), a loopback OTLP/HTTP receiver decoding with the official PyPI
`opentelemetry-proto` classes (otlp.py), a real Prometheus server and `promtool` (Debian package
prometheus 2.42.0+ds-5+deb12u1, prom.py), `wrk` against thv in front of the Rust `bench_origin`
example (load.py), and several `thv proxy` processes with the `--otel-*`, `--diagnostics-*` and
`--log-format` flags. The MCP client is the Python SDK (`mcp.Client`, protocol 2025-11-25);
probes that need their own headers use http.client.

Each check prints `PASS name: detail` or `FAIL name: detail`; the last line is exactly
`telemetry: N passed, M failed`; the exit status is 1 when M > 0.

    python3 interop/telemetry/run.py              # everything (about a minute warm)
    python3 interop/telemetry/run.py --selftest   # only the harness's own components, no thv
    python3 interop/telemetry/run.py --only otlp,outage

Groups for --only: harness, startup, prometheus, otlp, logs, outage.
THV_BIN selects the proxy (default <repo>/target/debug/thv), BENCH_ORIGIN_BIN the origin of the
outage check (default <repo>/target/debug/examples/bench_origin). The first run creates .venv from
requirements.txt; later runs reuse it. Logs of every process go to a fresh
interop/telemetry/results/<stamp>/ (gitignored).

The check groups live in checks_<group>.py (harness, startup, prometheus, otlp, logs, outage); the
processes they start in proxy.py, the MCP traffic and trace selectors in traffic.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV_PY = HERE / ".venv" / "bin" / "python"

sys.path.append(str(HERE.parent))  # interop/: suite_common.py and harness/
import suite_common  # noqa: E402

if __name__ == "__main__" and os.environ.get("THV_TELEMETRY_IN_VENV") != "1":
    suite_common.ensure_venv(HERE, "telemetry")
    os.environ["THV_TELEMETRY_IN_VENV"] = "1"
    os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])

# ------------------------------------------------------------------------------------------------
# From here on: inside .venv.

for _key in [k for k in os.environ if k.lower().endswith("_proxy") or k.startswith("OTEL_") or k == "TOOLHIVE_DEBUG"]:
    del os.environ[_key]  # loopback only; no inherited OpenTelemetry settings in any child

import argparse  # noqa: E402
from typing import Any  # noqa: E402

from harness.checks import Runner, run_suite  # noqa: E402

sys.path.insert(0, str(HERE))
import checks_harness  # noqa: E402
import checks_logs  # noqa: E402
import checks_otlp  # noqa: E402
import checks_outage  # noqa: E402
import checks_prometheus  # noqa: E402
import checks_startup  # noqa: E402
import load  # noqa: E402
import prom  # noqa: E402
from proxy import THV, Upstream  # noqa: E402


def main() -> int:
    return run_suite("telemetry", __doc__, "harness,startup,prometheus,otlp,logs,outage", HERE,
                     f"thv={THV} prometheus={prom.prometheus_bin()} promtool={prom.promtool_bin()} wrk={load.wrk_bin()}",
                     execute, show_duration=True)


def execute(run: Runner, args: argparse.Namespace, logdir: Path) -> None:
    """The groups in order: harness (alone with --selftest), then, once thv exists and lists the
    telemetry flags, startup, prometheus, otlp, logs, outage."""
    procs: list[Any] = []
    with run.fixtures(procs):
        up = Upstream("upstream", logdir)
        procs.append(up)
        if args.selftest or run.selected("harness"):
            checks_harness.harness_checks(run, up, logdir)
        if args.selftest:
            return
        if not Path(THV).exists():
            run.fail("thv.binary", f"{THV} does not exist")
            return
        if not checks_startup.flags_present(run):
            return
        if run.selected("startup"):
            checks_startup.startup_checks(run, logdir)
        if run.selected("prometheus"):
            checks_prometheus.prometheus_checks(run, up, logdir)
        if run.selected("otlp"):
            checks_otlp.otlp_checks(run, up, logdir)
        if run.selected("logs"):
            checks_logs.log_checks(run, up, logdir)
        if run.selected("outage"):
            checks_outage.outage_checks(run, logdir)


if __name__ == "__main__":
    sys.exit(main())
