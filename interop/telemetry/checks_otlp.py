"""Group `otlp`: thv exporting traces and metrics over OTLP/HTTP to the loopback receiver
(otlp.py). With sampling at 1.0 and `--otel-headers`/`--otel-custom-attributes`: SERVER spans per
request with the semantic-convention attributes, a CLIENT child whose id the target receives in
`traceparent`, resource attributes, export headers and protobuf, request counts, continuation of
an incoming `traceparent` and `params._meta.traceparent` winning over the header, 5xx as span
errors, non-MCP requests as spans, and the header value never in thv's output. Then sampling 0 with
the OTEL_* environment variables (no unsampled spans, metrics still counted, flag over variable),
`OTEL_EXPORTER_OTLP_ENDPOINT` alone, and `OTEL_EXPORTER_OTLP_COMPRESSION=gzip` (every export
`Content-Encoding: gzip`, decoded after gunzip; without the variable none is compressed).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import otlp
from harness.checks import CheckFailed, Runner, expect
from harness.http import request
from harness.processes import StartupError
from proxy import SPAN_WAIT, Thv, Upstream, section, wait_for
from traffic import (RawSession, expect_text, latest_total, new_trace, parse_traceparent, request_points, sdk_session,
                     server_spans, short, span_by_trace, upstream_traceparent)


def otlp_checks(run: Runner, up: Upstream, logdir: Path) -> None:
    rec = otlp.Receiver()
    secret = f"sekrit-{secrets.token_hex(8)}"
    name = "otlp"
    try:
        try:
            p = Thv(name, up.url, ["--debug", "--otel-endpoint", rec.url, "--otel-sampling-rate", "1.0",
                                   "--otel-headers", f"x-test-key={secret}", "--otel-custom-attributes",
                                   "deployment=ci", "--diagnostics-port", "0"], logdir, split_logs=True)
        except StartupError as error:
            run.fail("otlp.thv_starts", str(error))
            return
        try:
            otlp_main(run, p, rec, up, name, secret)
        finally:
            p.stop()
        run.check("otlp.header_value_never_logged", lambda: _secret_absent(p, secret))
    finally:
        rec.stop()
    otlp_sampling_zero(run, up, logdir)
    otlp_env_only(run, up, logdir)
    otlp_gzip(run, up, logdir)


def _secret_absent(p: Thv, secret: str) -> str:
    text = p.proc.output_text()
    expect(text, "thv wrote nothing")
    expect(secret not in text, "the --otel-headers value appears in thv's output")
    return f"the x-test-key value is in none of thv's {len(text)} bytes of stderr/stdout (--debug)"


def otlp_main(run: Runner, p: Thv, rec: otlp.Receiver, up: Upstream, name: str, secret: str) -> None:
    m = secrets.token_hex(4)
    with section(run, "otlp.traffic"):
        up.clear()
        session = sdk_session(p.url, [("echo", {"text": f"sdk-{m}"})])
        expect_text(session, 0, f"sdk-{m}")
        raw = RawSession(p.url)
        t1, p1, tp1 = new_trace()
        r = raw.call("cont-1", f"cont-{m}", traceparent=tp1)
        expect(r.status == 200, f"call with a traceparent header: {r.status}")
        t2, p2, tp2 = new_trace()
        t3, p3, tp3 = new_trace()
        r = raw.call("meta-1", f"meta-{m}", traceparent=tp2, meta={"traceparent": tp3})
        expect(r.status == 200, f"call with header and _meta traceparents: {r.status}")
        statuses = {}
        for code in (502, 500):
            statuses[code] = raw.call(f"fail-{code}", f"answer-status-{code}-{m}").status
        plain = request("GET", f"{p.base}/plain/ping-{m}")
        markers = [f"sdk-{m}", f"cont-{m}", f"meta-{m}", f"answer-status-502-{m}", f"answer-status-500-{m}"]

        def all_spans() -> Any:
            traces = set()
            for marker in markers:
                seen = up.containing(marker)
                if not seen or not seen[0]["traceparent"]:
                    return None
                parsed = parse_traceparent(seen[0]["traceparent"][0])
                if parsed:
                    traces.add(parsed[0])
            spans = rec.spans()
            have = {s["trace_id"] for s in server_spans(spans)}
            plain_seen = any(s["name"].startswith("GET /plain/") for s in spans)
            return spans if traces <= have and plain_seen else None

        try:
            spans = wait_for("a server span for every request", all_spans, SPAN_WAIT)
        except CheckFailed as error:
            got = rec.spans()
            raise CheckFailed(f"{error}; {len(got)} spans arrived: {[short(s) for s in got][:12]}; receiver errors "
                              f"{rec.errors[:2]}; requests seen by the upstream: "
                              f"{[(x['path'], x['traceparent']) for x in up.requests()][:8]}") from error
        points = wait_for("OTLP metrics with toolhive_mcp_requests{mcp_method=tools/call}",
                          lambda: request_points(rec.points(), mcp_method="tools/call") and rec.points(), SPAN_WAIT)

        def server_span_per_request() -> str:
            names = [s["name"] for s in server_spans(spans)]
            for want in ("initialize", "tools/list", "tools/call echo"):
                expect(want in names, f"no SERVER span named {want!r}; server spans: {sorted(set(names))}")
            return f"SERVER spans: {sorted(set(names))}"

        run.check("otlp.server_span_names", server_span_per_request)

        _, sdk_tp = upstream_traceparent(up, f"sdk-{m}")
        sdk_server = span_by_trace(spans, sdk_tp[0])

        def attributes() -> str:
            expect(sdk_server is not None, f"no SERVER span in trace {sdk_tp[0]} (the target's traceparent)")
            a = sdk_server["attributes"]
            want: dict[str, Any] = {
                "http.request.method": "POST", "url.path": "/mcp", "mcp.method.name": "tools/call",
                "rpc.system.name": "jsonrpc", "gen_ai.tool.name": "echo", "mcp.session.id": session["session_id"],
                "mcp.protocol.version": session["protocol_version"], "client.address": "127.0.0.1",
            }
            wrong = {k: (a.get(k), v) for k, v in want.items() if a.get(k) != v}
            if str(a.get("http.response.status_code")) != "200":
                wrong["http.response.status_code"] = (a.get("http.response.status_code"), 200)
            if str(a.get("jsonrpc.request.id")) != str(session["ids"].get("echo")):
                wrong["jsonrpc.request.id"] = (a.get("jsonrpc.request.id"), session["ids"].get("echo"))
            if a.get("mcp.server.name") not in (name, session.get("server_name")):
                wrong["mcp.server.name"] = (a.get("mcp.server.name"), f"{name} or {session.get('server_name')}")
            expect(sdk_server["name"] == "tools/call echo", f"span name {sdk_server['name']!r}")
            expect(not wrong, "attribute (got, want): " + "; ".join(f"{k}: {v}" for k, v in wrong.items()))
            return "tools/call echo: " + ", ".join(f"{k}={a.get(k)!r}" for k in sorted(a))

        run.check("otlp.server_span_attributes", attributes)

        def client_child() -> str:
            expect(sdk_server is not None, "no server span")
            client = next((s for s in spans if s["kind"] == "SPAN_KIND_CLIENT" and s["trace_id"] == sdk_tp[0]), None)
            expect(client is not None, f"no CLIENT span in trace {sdk_tp[0]}: "
                                       f"{[short(s) for s in spans if s['trace_id'] == sdk_tp[0]]}")
            expect(client["parent_span_id"] == sdk_server["span_id"],
                   f"CLIENT span's parent {client['parent_span_id']}, want the server span {sdk_server['span_id']}")
            expect(sdk_tp[1] == client["span_id"], f"the target's traceparent names parent {sdk_tp[1]}, want the "
                                                   f"CLIENT span {client['span_id']}")
            expect(sdk_tp[2] == "01", f"the target's traceparent flags {sdk_tp[2]}, want 01 (sampled)")
            return (f"server {sdk_server['span_id']} -> client {client['span_id']} ({client['name']!r}); the target "
                    f"received traceparent 00-{sdk_tp[0]}-{sdk_tp[1]}-01")

        run.check("otlp.client_child_span_and_target_traceparent", client_child)

        def resource() -> str:
            problems = []
            for kind, resources in (("spans", [s["resource"] for s in spans]), ("metrics", [x["resource"] for x in points])):
                for res in resources:
                    if res.get("service.name") != f"thv-{name}" or res.get("deployment") != "ci":
                        problems.append(f"{kind}: {res}")
                        break
            expect(not problems, "resource: " + "; ".join(problems))
            return f"service.name=thv-{name}, deployment=ci on every span and metric export ({spans[0]['resource']})"

        run.check("otlp.resource_service_name_and_custom_attribute", resource)

        def headers() -> str:
            exports = rec.snapshot()
            paths = {e["path"] for e in exports}
            expect({"/v1/traces", "/v1/metrics"} <= paths, f"exports to {paths}")
            bad = [e["path"] for e in exports if e["headers"].get("x-test-key") != secret]
            expect(not bad, f"{len(bad)} exports without x-test-key (paths {sorted(set(bad))})")
            ctypes = {e["headers"].get("content-type") for e in exports}
            expect(ctypes == {"application/x-protobuf"}, f"content types {ctypes}")
            encodings = {e["headers"].get("content-encoding") for e in exports}
            expect(encodings == {None}, f"content encodings {encodings}: uncompressed unless asked (the spec's default)")
            expect(not rec.errors, f"receiver errors: {rec.errors[:3]}")
            return (f"{len(exports)} exports (traces and metrics), each with x-test-key and application/x-protobuf, "
                    f"none with a Content-Encoding")

        run.check("otlp.export_headers_and_protobuf", headers)

        def metrics() -> str:
            calls = request_points(points, mcp_method="tools/call")
            total = latest_total(calls)
            expect(total >= 5, f"tools/call counted {total}, want >= 5 (one SDK call, four raw)")
            names = sorted({x["metric"] for x in points})
            return f"tools/call counted {total:.0f} times in toolhive_mcp_requests; metrics exported: {names}"

        run.check("otlp.metrics_exported", metrics)

        def continuation() -> str:
            server = span_by_trace(spans, t1)
            expect(server is not None, f"no SERVER span in the client's trace {t1}")
            expect(server["parent_span_id"] == p1, f"server span parent {server['parent_span_id']}, want {p1}")
            _, got = upstream_traceparent(up, f"cont-{m}")
            client = span_by_trace(spans, t1, "SPAN_KIND_CLIENT")
            expect(got[0] == t1, f"the target got trace {got[0]}, want {t1}")
            expect(client is not None and got[1] == client["span_id"],
                   f"the target's parent {got[1]}, want the CLIENT span {client and client['span_id']}")
            return f"incoming {tp1} -> server span parent {p1}; target got 00-{t1}-{got[1]}-{got[2]}"

        run.check("otlp.incoming_traceparent_continued", continuation)

        def meta_wins() -> str:
            server = span_by_trace(spans, t3)
            expect(server is not None, f"no SERVER span in the _meta trace {t3}; in the header's trace: "
                                       f"{short(span_by_trace(spans, t2))}")
            expect(server["parent_span_id"] == p3, f"server span parent {server['parent_span_id']}, want {p3}")
            expect(not [s for s in spans if s["trace_id"] == t2], "a span in the header's trace too")
            entry, got = upstream_traceparent(up, f"meta-{m}")
            client = span_by_trace(spans, t3, "SPAN_KIND_CLIENT")
            expect(client is not None and got[:2] == (t3, client["span_id"]),
                   f"the target's traceparent header {got}, want trace {t3} and the CLIENT span")
            body = json.loads(entry["body"])
            meta_tp = ((body.get("params") or {}).get("_meta") or {}).get("traceparent")
            expect(meta_tp == entry["traceparent"][0],
                   f"the forwarded body's _meta.traceparent {meta_tp!r} differs from the header {entry['traceparent'][0]!r}")
            return (f"header {tp2} and _meta {tp3}: the server span continues _meta's trace; the target got header and "
                    f"_meta.traceparent both {meta_tp}")

        run.check("otlp.meta_traceparent_wins_and_is_rewritten", meta_wins)

        def five_xx() -> str:
            out = []
            for code in (502, 500):
                expect(statuses[code] == code, f"the client got {statuses[code]} for the target's {code}")
                _, got = upstream_traceparent(up, f"answer-status-{code}-{m}")
                server = span_by_trace(spans, got[0])
                expect(server is not None, f"no SERVER span for the {code} answer")
                expect(server["status"] == "STATUS_CODE_ERROR", f"{code}: span status {server['status']}")
                expect(str(server["attributes"].get("http.response.status_code")) == str(code),
                       f"{code}: http.response.status_code {server['attributes'].get('http.response.status_code')}")
                out.append(f"{code} -> {server['status']} ({server['status_message'] or 'no message'})")
            return "; ".join(out)

        run.check("otlp.target_5xx_span_status_error", five_xx)

        def non_mcp() -> str:
            expect(plain.status == 200, f"GET /plain/ping through thv: {plain.status}")
            span = next((s for s in server_spans(spans) if s["name"] == f"GET /plain/ping-{m}"), None)
            expect(span is not None, f"no SERVER span named 'GET /plain/ping-{m}': "
                                     f"{[s['name'] for s in server_spans(spans) if 'plain' in s['name']]}")
            a = span["attributes"]
            expect(a.get("http.request.method") == "GET" and a.get("url.path") == f"/plain/ping-{m}",
                   f"attributes {a}")
            expect("mcp.method.name" not in a, f"a non-MCP request has mcp.method.name={a.get('mcp.method.name')}")
            expect(span["status"] != "STATUS_CODE_ERROR", f"a 200 answer left status {span['status']}")
            return f"{span['name']!r}, status {span['status']}, attributes {sorted(a)}"

        run.check("otlp.non_mcp_request_span", non_mcp)


def otlp_sampling_zero(run: Runner, up: Upstream, logdir: Path) -> None:
    rec = otlp.Receiver()
    env = {"OTEL_SERVICE_NAME": "svc-from-env", "OTEL_RESOURCE_ATTRIBUTES": "team=from-env",
           "OTEL_EXPORTER_OTLP_HEADERS": "x-env-key=envval"}
    try:
        try:
            p = Thv("otlp-s0", up.url, ["--otel-endpoint", rec.url, "--otel-sampling-rate", "0",
                                        "--otel-service-name", "svc-from-flag", "--diagnostics-port", "0"], logdir, env)
        except StartupError as error:
            run.fail("otlp.sampling_zero_thv_starts", str(error))
            return
        try:
            with section(run, "otlp.sampling_zero_traffic"):
                m = secrets.token_hex(4)
                raw = RawSession(p.url)
                for i in range(3):
                    expect(raw.call(f"s0-{i}", f"s0-{m}-{i}").status == 200, "call")
                t5, _, tp5 = new_trace()
                tp5 = tp5[:-2] + "00"  # a parent that was not sampled
                expect(raw.call("s0-unsampled", f"s0-{m}-u", traceparent=tp5).status == 200, "call")
                t4, p4, tp4 = new_trace()
                expect(raw.call("s0-parent", f"s0-{m}-p", traceparent=tp4).status == 200, "call")
                kept = wait_for("the span of the request with a sampled parent",
                                lambda: span_by_trace(rec.spans(), t4), SPAN_WAIT)
                wait_for("metrics counting the five tools/call",
                         lambda: latest_total(request_points(rec.points(), mcp_method="tools/call")) >= 5, SPAN_WAIT)
                spans = rec.spans()

                def no_spans() -> str:
                    others = [short(s) for s in spans if s["trace_id"] != t4]
                    expect(not others, f"rate 0 exported spans of unsampled requests: {others[:5]}")
                    total = latest_total(request_points(rec.points(), mcp_method="tools/call"))
                    return (f"rate 0: 4 requests without a sampled parent (one with flags 00) left no span; metrics "
                            f"still count {total:.0f} tools/call")

                run.check("otlp.sampling_zero_no_spans_metrics_counted", no_spans)

                def parent_kept() -> str:
                    expect(kept["parent_span_id"] == p4, f"parent {kept['parent_span_id']}, want {p4}")
                    return f"a sampled incoming traceparent is kept at rate 0: {short(kept)}"

                run.check("otlp.sampled_parent_kept_at_rate_zero", parent_kept)

                def precedence() -> str:
                    res = (spans or [{}])[0].get("resource") or {}
                    expect(res.get("service.name") == "svc-from-flag",
                           f"service.name {res.get('service.name')!r}: --otel-service-name must win over OTEL_SERVICE_NAME")
                    expect(res.get("team") == "from-env", f"OTEL_RESOURCE_ATTRIBUTES not applied: {res}")
                    values = {e["headers"].get("x-env-key") for e in rec.snapshot()}
                    expect(values == {"envval"}, f"OTEL_EXPORTER_OTLP_HEADERS: x-env-key values {values}")
                    return "service.name from the flag over OTEL_SERVICE_NAME; team=from-env; x-env-key header sent"

                run.check("otlp.env_variables_and_flag_precedence", precedence)
        finally:
            p.stop()
    finally:
        rec.stop()


def otlp_env_only(run: Runner, up: Upstream, logdir: Path) -> None:
    rec = otlp.Receiver()
    try:
        try:
            p = Thv("otlp-env", up.url, ["--diagnostics-port", "0"], logdir, {"OTEL_EXPORTER_OTLP_ENDPOINT": rec.url})
        except StartupError as error:
            run.fail("otlp.env_endpoint_thv_starts", str(error))
            return
        try:
            def env_endpoint() -> str:
                raw = RawSession(p.url)
                expect(raw.call("env-1", "env").status == 200, "call")
                wait_for("metrics at the OTEL_EXPORTER_OTLP_ENDPOINT receiver",
                         lambda: request_points(rec.points(), mcp_method="tools/call"), SPAN_WAIT)
                res = rec.points()[0]["resource"]
                expect(res.get("service.name") == "thv-otlp-env", f"resource {res}")
                return f"OTEL_EXPORTER_OTLP_ENDPOINT alone: metrics arrive at {rec.url}/v1/metrics, service.name thv-otlp-env"

            run.check("otlp.env_endpoint_alone", env_endpoint)
        finally:
            p.stop()
    finally:
        rec.stop()


def otlp_gzip(run: Runner, up: Upstream, logdir: Path) -> None:
    """`OTEL_EXPORTER_OTLP_COMPRESSION=gzip`: every trace and metric export says
    `Content-Encoding: gzip` and its body is gzip (the receiver gunzips with Python's gzip module
    before decoding; a plain body would fail there and be answered 400), and what it decodes is
    the usual tools/call span. Would fail with compression off: the header is asserted."""
    rec = otlp.Receiver()
    name = "otlp-gzip"
    try:
        try:
            flags = ["--otel-endpoint", rec.url, "--otel-sampling-rate", "1.0", "--diagnostics-port", "0"]
            p = Thv(name, up.url, flags, logdir, {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"})
        except StartupError as error:
            run.fail("otlp.gzip_thv_starts", str(error))
            return
        try:
            def gzip_exports() -> str:
                m = secrets.token_hex(4)
                session = sdk_session(p.url, [("echo", {"text": f"gz-{m}"})])
                expect_text(session, 0, f"gz-{m}")
                _, tp = upstream_traceparent(up, f"gz-{m}")

                def arrived() -> Any:
                    span = span_by_trace(rec.spans(), tp[0])
                    calls = request_points(rec.points(), mcp_method="tools/call")
                    return span if span is not None and calls else None

                try:
                    span = wait_for("the tools/call span and metrics, gzipped", arrived, SPAN_WAIT)
                except CheckFailed as error:
                    seen = [(e["path"], e["headers"].get("content-encoding")) for e in rec.snapshot()]
                    raise CheckFailed(f"{error}; receiver errors {rec.errors[:2]}; exports {seen[:6]}") from error
                exports = rec.snapshot()
                paths = {e["path"] for e in exports}
                expect({"/v1/traces", "/v1/metrics"} <= paths, f"exports to {paths}")
                plain = [(e["path"], e["headers"].get("content-encoding")) for e in exports
                         if e["headers"].get("content-encoding") != "gzip"]
                expect(not plain, f"{len(plain)} of {len(exports)} exports not gzip-encoded: {plain[:4]}")
                expect(not rec.errors, f"receiver errors: {rec.errors[:3]}")
                a = span["attributes"]
                want = {"mcp.method.name": "tools/call", "gen_ai.tool.name": "echo", "http.request.method": "POST",
                        "mcp.session.id": session["session_id"]}
                wrong = {k: (a.get(k), v) for k, v in want.items() if a.get(k) != v}
                expect(span["name"] == "tools/call echo", f"span name {span['name']!r}")
                expect(not wrong, "attribute (got, want): " + "; ".join(f"{k}: {v}" for k, v in wrong.items()))
                expect(span["resource"].get("service.name") == f"thv-{name}", f"resource {span['resource']}")
                sizes = sorted({e["path"]: e["size"] for e in exports}.items())
                return (f"{len(exports)} exports, every one Content-Encoding: gzip and decoded after gunzip "
                        f"(compressed sizes {sizes}); span {span['name']!r} with {sorted(want)}")

            run.check("otlp.gzip_compression_env", gzip_exports)
        finally:
            p.stop()
    finally:
        rec.stop()
