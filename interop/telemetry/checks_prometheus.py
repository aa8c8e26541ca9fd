"""Group `prometheus`: thv with `--otel-enable-prometheus-metrics-path --diagnostics-port 0`, after
one SDK session (echo, add, and a tool never listed). The diagnostics listener's `/metrics` must be
valid for `promtool check metrics`, carry the ToolHive families and labels dashboards rely on, never
turn an unlisted tool name into a label value (unbounded cardinality), stay off the MCP port, and be
scraped by a real Prometheus server.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import prom
from harness.checks import CheckFailed, Runner, expect
from harness.http import request
from harness.processes import StartupError
from proxy import PROMETHEUS_WAIT, Thv, Upstream, section, wait_for
from traffic import expect_text, sdk_session


def prometheus_checks(run: Runner, up: Upstream, logdir: Path) -> None:
    name = "prom"
    try:
        p = Thv(name, up.url, ["--otel-enable-prometheus-metrics-path", "--diagnostics-port", "0"], logdir)
    except StartupError as error:
        run.fail("prometheus.thv_starts", str(error))
        return
    unlisted = f"never_listed_{secrets.token_hex(4)}"
    marker = f"prom-{secrets.token_hex(4)}"
    try:
        with section(run, "prometheus.session"):
            session = sdk_session(p.url, [("echo", {"text": marker}), ("add", {"a": 2, "b": 3}),
                                          (unlisted, {"text": marker})])
            expect_text(session, 0, marker)
            expect_text(session, 1, "5")
            deadline = time.monotonic() + 5  # the counts are written as the answers finish
            while 'tool="echo"' not in p.metrics_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            text = p.metrics_text()
            (logdir / "prom-metrics.txt").write_text(text)
            expo = prom.parse_exposition(text)

            def promtool() -> str:
                code, output = prom.promtool_check(text)
                expect(code == 0 and not output.strip(), f"promtool check metrics: exit {code}: {output.strip()[:600]}")
                return f"`promtool check metrics` on the {len(text)}-byte body: exit 0, no output"

            run.check("prometheus.promtool_check_metrics_clean", promtool)

            def families() -> str:
                calls = expo.named("toolhive_mcp_requests_total", mcp_method="tools/call", mcp_resource_id="echo")
                expect(calls, "no toolhive_mcp_requests_total{mcp_method=\"tools/call\",mcp_resource_id=\"echo\"}; "
                              f"series: {[s.labels for s in expo.named('toolhive_mcp_requests_total')][:6]}")
                want = {"method", "status_code", "status", "mcp_method", "mcp_resource_id", "server", "transport"}
                missing = want - set(calls[0].labels)
                expect(not missing, f"toolhive_mcp_requests_total lacks labels {sorted(missing)}: {calls[0].labels}")
                expect(calls[0].labels["server"] == name, f"server={calls[0].labels['server']!r}, want {name!r}")
                expect(sum(s.value for s in calls) >= 1, "tools/call echo counted 0 times")
                expect(expo.named("toolhive_mcp_request_duration_seconds_bucket")
                       and expo.named("toolhive_mcp_request_duration_seconds_count"), "no request duration histogram")
                tool = expo.named("toolhive_mcp_tool_calls_total", tool="echo")
                expect(tool and {"server", "tool", "status"} <= set(tool[0].labels),
                       f"toolhive_mcp_tool_calls_total{{tool=echo}}: {[s.labels for s in tool]}")
                expect(expo.named("toolhive_mcp_tool_calls_total", tool="add"), "no tool_calls series for add")
                expect("toolhive_mcp_active_connections" in expo.types
                       and expo.types["toolhive_mcp_active_connections"] == "gauge",
                       f"toolhive_mcp_active_connections TYPE {expo.types.get('toolhive_mcp_active_connections')}")
                op = expo.named("mcp_server_operation_duration_seconds_count", gen_ai_tool_name="echo")
                expect(op and op[0].labels.get("mcp_method_name") == "tools/call",
                       f"mcp_server_operation_duration_seconds_count{{gen_ai_tool_name=echo}}: {[s.labels for s in op]}")
                thv_families = sorted(f for f in expo.types if f.startswith("thv_"))
                expect(thv_families, "no thv_* family")
                return (f"tools/call echo series {calls[0].labels}; tool_calls {tool[0].labels}; duration histograms; "
                        f"active connections gauge; thv_* families {thv_families}")

            run.check("prometheus.exposition_names_and_labels", families)

            def unlisted_label() -> str:
                expect(unlisted not in expo.label_values(), f"{unlisted!r} (never in tools/list) is a label value")
                expect(unlisted not in text, f"{unlisted!r} appears in /metrics")
                got = session["results"][2]
                return (f"a tools/call of {unlisted} (answered {got['error'] or ('isError' if got['is_error'] else 'ok')}) "
                        f"left no label value naming it; tool label values: "
                        f"{sorted({s.labels.get('tool') for s in expo.named('toolhive_mcp_tool_calls_total')})}")

            run.check("prometheus.unlisted_tool_not_a_label", unlisted_label)

            def mcp_port_404() -> str:
                r = request("GET", f"{p.base}/metrics")
                expect(r.status == 404, f"GET /metrics on the MCP port: {r.status} {r.body[:120]!r}")
                return "GET /metrics on the MCP port: 404"

            run.check("prometheus.mcp_port_metrics_404", mcp_port_404)

            def real_prometheus() -> str:
                diag = p.diagnostics().split("//", 1)[1]
                instance = prom.Prometheus(logdir / "prometheus", [diag], logdir)
                try:
                    def scraped() -> Any:
                        calls = instance.query('toolhive_mcp_requests_total{mcp_method="tools/call"}')
                        tools = instance.query("toolhive_mcp_tool_calls_total")
                        ok = any(r["metric"].get("mcp_resource_id") == "echo" for r in calls) and \
                            any(r["metric"].get("tool") == "echo" for r in tools)
                        return (calls, tools) if ok else None

                    try:
                        calls, tools = wait_for("Prometheus to hold the tools/call series", scraped, PROMETHEUS_WAIT, 0.5)
                    except CheckFailed as error:
                        held = [r["metric"] for r in instance.query('toolhive_mcp_requests_total{mcp_method="tools/call"}')]
                        raise CheckFailed(f"{error}; targets (health, last error): "
                                          f"{[(t.get('health'), t.get('lastError')) for t in instance.targets()]}; "
                                          f"tools/call series held: {held[:4]}") from error
                    health = [(t.get("health"), t.get("lastError")) for t in instance.targets()]
                    expect(health and all(h == "up" and not e for h, e in health), f"targets {health}")
                    echo = next(r for r in calls if r["metric"].get("mcp_resource_id") == "echo")
                    return (f"Prometheus scraped {diag} (target up, no error): toolhive_mcp_requests_total"
                            f"{{mcp_method=tools/call,mcp_resource_id=echo}} = {echo['value'][1]}, "
                            f"{len(tools)} toolhive_mcp_tool_calls_total series")
                finally:
                    code = instance.stop()
                    if code not in (0, -15):
                        print(f"note: prometheus exited {code}", flush=True)

            run.check("prometheus.real_prometheus_scrapes_series", real_prometheus)
    finally:
        p.stop()
