"""Group `outage`: telemetry must never hurt the traffic it observes. thv (tracing at 1.0, metrics
to a collector, Prometheus path on) in front of `bench_origin` takes wrk load in three phases:
A collector up, B a black hole on the collector's port, C nothing listening there. p99 of B and C
stays within max(3 x p99_A, p99_A + 20 ms) with no request errors, the `thv_telemetry_*` loss
counters grow, VmRSS stays under 100 MiB, and trace exports resume once the collector is back. The
figures are printed on an `outage figures:` line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import load
import otlp
import prom
from harness.checks import Runner, expect
from harness.http import request
from harness.processes import StartupError
from proxy import BENCH_ORIGIN, SPAN_WAIT, BenchOrigin, Thv, section, wait_for

OUTAGE_SECONDS = 5
OUTAGE_CONNS = 8
RSS_LIMIT_KIB = 100 * 1024


def outage_checks(run: Runner, logdir: Path) -> None:
    if not Path(BENCH_ORIGIN).exists():
        run.fail("outage.bench_origin", f"{BENCH_ORIGIN} does not exist (cargo build --example bench_origin)")
        return
    if load.wrk_bin() is None:
        run.fail("outage.wrk", "wrk not found (Debian package wrk)")
        return
    origin = BenchOrigin(logdir)
    collector: dict[str, Any] = {"rec": otlp.Receiver(decode=False), "hole": None}
    port = collector["rec"].port
    p: Thv | None = None
    try:
        try:
            p = Thv("outage", origin.url, ["--otel-endpoint", collector["rec"].url, "--otel-sampling-rate", "1.0",
                                           "--otel-enable-prometheus-metrics-path", "--diagnostics-port", "0"], logdir)
        except StartupError as error:
            run.fail("outage.thv_starts", str(error))
            return
        outage_phases(run, p, collector, port, logdir)
    finally:
        if p is not None:
            p.stop()
        for key in ("hole", "rec"):
            if collector[key] is not None:
                collector[key].stop()
        origin.stop()


def outage_phases(run: Runner, p: Thv, collector: dict[str, Any], port: int, logdir: Path) -> None:
    """A: collector up; B: a black hole on its port; C: nothing listening there; then it returns."""
    lua = load.write_lua(logdir / "outage-tools-call.lua")
    wrk_log = logdir / "outage-wrk.log"
    phases: dict[str, dict[str, Any]] = {}
    losses: dict[str, dict[str, float]] = {}

    def phase(tag: str) -> None:
        sampler = load.RssSampler(p.proc.pid)
        try:
            result = load.run_wrk(p.url, lua, OUTAGE_SECONDS, OUTAGE_CONNS, wrk_log)
        finally:
            result_rss = sampler.stop()
        result["rss_peak_kib"] = result_rss
        phases[tag] = result
        losses[tag] = _loss_counters(p.metrics_text())

    with section(run, "outage.load"):
        p.diagnostics()
        load.run_wrk(p.url, lua, 1, OUTAGE_CONNS, wrk_log)  # warm-up, not counted
        phase("A")
        phases["A"]["exports"] = len(collector["rec"].snapshot())
        collector["rec"].stop()
        collector["rec"] = None
        collector["hole"] = otlp.BlackHole(port)
        phase("B")
        phases["B"]["connections_held"] = len(collector["hole"].accepted)
        collector["hole"].stop()
        collector["hole"] = None
        phase("C")
    if len(phases) < 3:
        return
    a, b, c = phases["A"], phases["B"], phases["C"]
    limit = max(3 * a["p99_us"], a["p99_us"] + 20_000)
    figures = "; ".join(
        f"{t}: p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms, {r['rps']:.0f} req/s, "
        f"{r['errors']} errors, RSS peak {r['rss_peak_kib'] / 1024:.1f} MiB" for t, r in phases.items())
    print(f"outage figures: {figures}; collector exports in A: {a.get('exports')}; connections held by the "
          f"black hole: {b.get('connections_held')}; loss counters after each phase: {losses}", flush=True)

    def latency() -> str:
        errors = {t: r["errors"] for t, r in phases.items() if r["errors"]}
        expect(not errors, f"request errors: {errors} ({figures})")
        slow = {t: r["p99_us"] for t, r in (("B", b), ("C", c)) if r["p99_us"] > limit}
        expect(not slow, f"p99 over max(3 x p99_A, p99_A + 20 ms) = {limit / 1000:.2f} ms: {slow} ({figures})")
        return (f"p99 A {a['p99_us'] / 1000:.2f} ms, B {b['p99_us'] / 1000:.2f} ms, C {c['p99_us'] / 1000:.2f} ms "
                f"(limit {limit / 1000:.2f} ms); no request errors")

    run.check("outage.latency_unaffected_no_errors", latency)

    def drops() -> str:
        expect(losses["C"], "no thv_telemetry_* dropped/failed counter on /metrics")
        after_a, after_c = sum(losses["A"].values()), sum(losses["C"].values())
        expect(after_c > after_a, f"the loss counters did not move during the outage: A {losses['A']}, "
                                  f"B {losses['B']}, C {losses['C']}")
        return f"after A {losses['A']}; after B {losses['B']}; after C {losses['C']}"

    run.check("outage.drops_or_export_failures_counted", drops)

    def rss() -> str:
        peak = max(r["rss_peak_kib"] for r in phases.values())
        expect(peak < RSS_LIMIT_KIB, f"VmRSS peak {peak / 1024:.1f} MiB >= {RSS_LIMIT_KIB // 1024} MiB")
        return f"VmRSS peak {peak / 1024:.1f} MiB (A/B/C: " + \
            "/".join(f"{r['rss_peak_kib'] / 1024:.1f}" for r in phases.values()) + ")"

    run.check("outage.rss_bounded", rss)

    def resume() -> str:
        collector["rec"] = rec = otlp.Receiver(port, decode=False)
        r = request("POST", p.url, {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
                    load.TOOL_CALL.encode())
        expect(r.status == 200, f"a call after the outage: {r.status}")
        wait_for("a trace export to the collector once it is back", lambda: rec.snapshot("/v1/traces"), SPAN_WAIT)
        return f"the collector is back on port {port}: trace exports resumed"

    run.check("outage.exports_resume_after_collector_returns", resume)


def _loss_counters(text: str) -> dict[str, float]:
    """Every thv_telemetry_* series whose name says dropped / failed / error, summed per name."""
    out: dict[str, float] = {}
    for sample in prom.parse_exposition(text).samples:
        if sample.name.startswith("thv_telemetry_") and re.search(r"drop|fail|error", sample.name):
            out[sample.name] = out.get(sample.name, 0) + sample.value
    return out
