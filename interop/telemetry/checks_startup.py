"""Group `startup` and the gate before every thv group: `thv proxy --help` must list the telemetry
flags the suite drives (otherwise nothing else can be meaningful), and a bad telemetry flag value
(`--otel-sampling-rate 2`, `--diagnostics-port 70000`, `--otel-endpoint not-a-url://x`) or variable
(`OTEL_EXPORTER_OTLP_COMPRESSION=zstd`) must stop thv at startup, non-zero within 5 s and naming
the flag or variable on stderr, rather than run without telemetry.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from harness import processes
from harness.checks import CheckFailed, Runner, expect
from harness.processes import LOOPBACK
from proxy import FAST, HERE, THV

STARTUP_ERROR_WAIT = 5  # s: a bad flag value stops thv within this
REQUIRED_FLAGS = ("--otel-endpoint", "--otel-headers", "--otel-sampling-rate", "--otel-custom-attributes",
                  "--otel-enable-prometheus-metrics-path", "--diagnostics-port", "--log-format")


def thv_help() -> str:
    r = subprocess.run([THV, "proxy", "--help"], capture_output=True, timeout=15, stdin=subprocess.DEVNULL)  # noqa: S603
    return (r.stdout + r.stderr).decode(errors="replace")


def flags_present(run: Runner) -> bool:
    """The check `thv.telemetry_flags_present`; False (recorded as failed) when a flag is missing."""
    help_text = thv_help()
    missing = [f for f in REQUIRED_FLAGS if f not in help_text]
    if missing:
        run.fail("thv.telemetry_flags_present", f"`thv proxy --help` lacks {missing}")
        return False
    run.check("thv.telemetry_flags_present", lambda: f"{', '.join(REQUIRED_FLAGS)} in `thv proxy --help`")
    return True


def startup_checks(run: Runner, logdir: Path) -> None:
    dead = f"http://{LOOPBACK}:{processes.free_port()}"
    cases: list[tuple[str, str, list[str], dict[str, str]]] = [
        ("sampling_rate_2", "--otel-sampling-rate", ["--otel-endpoint", dead, "--otel-sampling-rate", "2"], {}),
        ("diagnostics_port_70000", "--diagnostics-port",
         ["--otel-enable-prometheus-metrics-path", "--diagnostics-port", "70000"], {}),
        ("endpoint_not_a_url", "--otel-endpoint", ["--otel-endpoint", "not-a-url://x"], {}),
        ("compression_zstd", "OTEL_EXPORTER_OTLP_COMPRESSION", ["--otel-endpoint", dead],
         {"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}),
    ]
    for tag, flag, flags, env in cases:
        def check(flag: str = flag, flags: list[str] = flags, tag: str = tag, env: dict[str, str] = env) -> str:
            argv = [THV, "proxy", f"bad-{tag}", "--target-uri", f"{dead}/mcp", "--port", "0", *flags]
            started = time.monotonic()
            try:
                r = subprocess.run(argv, capture_output=True, timeout=STARTUP_ERROR_WAIT, stdin=subprocess.DEVNULL,  # noqa: S603
                                   env=processes.child_env({**FAST, **env}), cwd=HERE)
            except subprocess.TimeoutExpired as error:  # subprocess.run has killed it (its own child)
                raise CheckFailed(f"`{' '.join(flags)}`: still running after {STARTUP_ERROR_WAIT}s") from error
            took = time.monotonic() - started
            stderr = r.stderr.decode(errors="replace")
            (logdir / f"startup-{tag}.log").write_text(f"$ {' '.join(argv)}\nexit {r.returncode}\n{stderr}")
            expect(r.returncode != 0, f"`{' '.join(flags)}`: exit 0")
            expect(flag in stderr, f"`{' '.join(flags)}`: exit {r.returncode} but stderr does not name {flag}: "
                                   f"{stderr.strip()[:300]!r}")
            return f"exit {r.returncode} in {took:.2f}s: {stderr.strip().splitlines()[-1][:160]}"

        run.check(f"startup.{tag}_refused", check)
