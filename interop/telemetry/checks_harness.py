"""Group `harness` (also all of `--selftest`): the suite's own components, checked without thv, so
that a failure elsewhere is thv's and not the harness's. The OTLP receiver decodes what
opentelemetry-proto builds (gzip too), answers garbage 400 and closes keep-alive connections when
stopped; the black hole accepts and never answers; promtool tells a clean exposition from a bad one
and a real Prometheus scrapes a static target; the upstream records `traceparent` and answers
marked calls 502; wrk runs cleanly straight at bench_origin.
"""

from __future__ import annotations

import gzip
import http.client
import http.server
import secrets
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import load
import otlp
import prom
from checks_outage import OUTAGE_CONNS
from harness.checks import CheckFailed, Runner, expect
from harness.http import request
from harness.processes import LOOPBACK
from proxy import BENCH_ORIGIN, PROMETHEUS_WAIT, BenchOrigin, Upstream, wait_for
from traffic import RawSession, expect_text, new_trace, rpc_result, sdk_session, upstream_traceparent


def harness_checks(run: Runner, up: Upstream, logdir: Path) -> None:
    def receiver_decodes() -> str:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
        from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

        rec = otlp.Receiver()
        try:
            tid, sid = bytes.fromhex(secrets.token_hex(16)), bytes.fromhex(secrets.token_hex(8))
            req = ExportTraceServiceRequest()
            rs = req.resource_spans.add()
            rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="selftest")))
            span = rs.scope_spans.add().spans.add(trace_id=tid, span_id=sid, name="tools/call echo", kind=2)
            span.attributes.append(KeyValue(key="http.response.status_code", value=AnyValue(int_value=502)))
            span.status.code = 2
            r = request("POST", f"{rec.url}/v1/traces", {"Content-Type": "application/x-protobuf", "x-test-key": "k"},
                        req.SerializeToString())
            expect(r.status == 200, f"/v1/traces answered {r.status}")
            m = ExportMetricsServiceRequest()
            metric = m.resource_metrics.add().scope_metrics.add().metrics.add(name="toolhive_mcp_requests")
            metric.sum.is_monotonic = True
            point = metric.sum.data_points.add(as_int=7)
            point.attributes.append(KeyValue(key="mcp_method", value=AnyValue(string_value="tools/call")))
            r = request("POST", f"{rec.url}/v1/metrics", {"Content-Type": "application/x-protobuf",
                                                          "Content-Encoding": "gzip"},
                        gzip.compress(m.SerializeToString()))
            expect(r.status == 200, f"gzip /v1/metrics answered {r.status}")
            bad = request("POST", f"{rec.url}/v1/traces", {"Content-Type": "application/x-protobuf"}, b"\xff\xff\xff")
            expect(bad.status == 400 and rec.errors, f"a garbage body: {bad.status}, errors {rec.errors}")
            [got] = rec.spans()
            expect(got["trace_id"] == tid.hex() and got["span_id"] == sid.hex() and got["kind"] == "SPAN_KIND_SERVER"
                   and got["status"] == "STATUS_CODE_ERROR" and got["attributes"] == {"http.response.status_code": 502}
                   and got["resource"] == {"service.name": "selftest"}, f"decoded span {got}")
            [pt] = rec.points()
            expect(pt["metric"] == "toolhive_mcp_requests" and pt["value"] == 7 and pt["kind"] == "sum"
                   and pt["attributes"] == {"mcp_method": "tools/call"}, f"decoded point {pt}")
            expect(rec.snapshot("/v1/traces")[0]["headers"].get("x-test-key") == "k", "headers not recorded")
            keep_alive = http.client.HTTPConnection(LOOPBACK, rec.port, timeout=5)
            keep_alive.request("POST", "/v1/traces", req.SerializeToString(), {"Content-Type": "application/x-protobuf"})
            expect(keep_alive.getresponse().read() == b"", "keep-alive export")
            rec.stop()
            try:
                keep_alive.request("POST", "/v1/traces", req.SerializeToString())
                late = keep_alive.getresponse().status
            except (OSError, http.client.HTTPException):
                late = None
            keep_alive.close()
            expect(late is None, f"an export on a keep-alive connection after stop() was answered {late}")
            return ("ExportTraceServiceRequest and (gzip) ExportMetricsServiceRequest built with opentelemetry-proto "
                    "decode back to the same span/point and headers; garbage is answered 400; stop() also closes "
                    "keep-alive connections")
        finally:
            rec.stop()

    run.check("harness.otlp_receiver_decodes", receiver_decodes)

    def black_hole() -> str:
        hole = otlp.BlackHole()
        try:
            with socket.create_connection((LOOPBACK, hole.port), timeout=2) as conn:
                conn.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
                conn.settimeout(0.5)
                try:
                    data = conn.recv(1)
                    raise CheckFailed(f"the black hole answered {data!r}")
                except (TimeoutError, socket.timeout):
                    pass
            return "accepts, never answers (0.5 s wait)"
        finally:
            hole.stop()

    run.check("harness.black_hole_never_answers", black_hole)

    def promtool_and_prometheus() -> str:
        good = ("# HELP telemetry_selftest_total A self-test counter.\n# TYPE telemetry_selftest_total counter\n"
                'telemetry_selftest_total{tool="echo"} 3\n')
        code, output = prom.promtool_check(good)
        expect(code == 0 and not output.strip(), f"promtool on a clean exposition: exit {code}, {output!r}")
        bad_code, bad_output = prom.promtool_check("# TYPE telemetry_selftest counter\ntelemetry_selftest 1\n")
        expect(bad_code != 0 and bad_output.strip(), f"promtool accepted a counter without _total: {bad_code}")
        expected = prom.parse_exposition(good)
        expect(expected.total("telemetry_selftest_total", tool="echo") == 3, "parse_exposition")
        server = _static_metrics_server(good)
        instance = None
        try:
            instance = prom.Prometheus(logdir / "prometheus-selftest", [f"{LOOPBACK}:{server.server_address[1]}"],
                                       logdir, job="selftest", name="prometheus-selftest")
            result = wait_for("Prometheus to scrape the static exposition",
                              lambda: instance.query('telemetry_selftest_total{tool="echo"}'), PROMETHEUS_WAIT, 0.5)
            expect(result[0]["value"][1] == "3", f"query result {result}")
            version = subprocess.run([prom.prometheus_bin() or "prometheus", "--version"], capture_output=True,
                                     text=True, timeout=10).stdout.splitlines()[0]
            return (f"promtool: clean text -> exit 0, no output; a counter without _total -> exit {bad_code} "
                    f"({bad_output.strip().splitlines()[0][:80]}); {version} scraped a static target every 1 s and answered the query")
        finally:
            if instance is not None:
                instance.stop()
            server.shutdown()
            server.server_close()

    run.check("harness.promtool_and_prometheus", promtool_and_prometheus)

    def upstream_records() -> str:
        marker = f"self-{secrets.token_hex(4)}"
        session = sdk_session(up.url, [("echo", {"text": marker})])
        expect(session["tools"] == ["add", "echo"], f"tools {session['tools']}")
        expect_text(session, 0, marker)
        raw = RawSession(up.url)
        tid, pid, tp = new_trace()
        r = raw.call("self-1", f"tp-{marker}", traceparent=tp)
        expect(r.status == 200, f"a call with a traceparent: {r.status}")
        _, parsed = upstream_traceparent(up, f"tp-{marker}")
        expect(parsed == (tid, pid, "01"), f"recorded {parsed}")
        failed = raw.call("self-2", f"answer-status-502-{marker}")
        expect(failed.status == 502 and (rpc_result(failed) or {}).get("id") == "self-2", f"marked call: {failed.status}")
        plain = request("GET", f"{up.base}/plain/ping")
        expect(plain.status == 200 and plain.body == b"ok", f"GET /plain/ping: {plain.status}")
        return ("SDK session direct: tools [add, echo], echo answered; the recorder keeps the traceparent; a marked call "
                "is answered 502 with the id echoed; GET /plain/ping answers 200")

    run.check("harness.upstream_records_traceparent", upstream_records)

    def wrk_direct() -> str:
        if not Path(BENCH_ORIGIN).exists():
            raise CheckFailed(f"{BENCH_ORIGIN} does not exist (cargo build --example bench_origin)")
        origin = BenchOrigin(logdir)
        try:
            lua = load.write_lua(logdir / "tools-call.lua")
            r = load.run_wrk(origin.url, lua, 1, OUTAGE_CONNS, logdir / "wrk.log")
            expect(r["requests"] > 0 and r["errors"] == 0, f"wrk straight at bench_origin: {r}")
            return f"wrk 1 s straight at bench_origin: {r['requests']} requests, p99 {r['p99_us']} µs, no errors"
        finally:
            origin.stop()

    run.check("harness.wrk_against_bench_origin", wrk_direct)


def _static_metrics_server(text: str) -> http.server.ThreadingHTTPServer:
    body = text.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server
