"""Group `logs`: thv with `--log-format json --debug` and tracing at 1.0. Every stderr line must be
one JSON object (log shippers parse line by line), request lines must carry method, path, status,
elapsed time and bytes, and the sampled request's line its `trace_id`, so that logs and traces can
be joined.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import otlp
from harness.checks import Runner, expect
from harness.http import request
from harness.processes import StartupError
from proxy import Thv, Upstream, section
from traffic import RawSession, new_trace


def log_checks(run: Runner, up: Upstream, logdir: Path) -> None:
    rec = otlp.Receiver()
    try:
        try:
            p = Thv("logs", up.url, ["--debug", "--log-format", "json", "--otel-endpoint", rec.url,
                                     "--otel-sampling-rate", "1.0", "--diagnostics-port", "0"], logdir, split_logs=True)
        except StartupError as error:
            run.fail("logs.thv_starts", str(error))
            return
        tid, _, tp = new_trace()
        try:
            with section(run, "logs.traffic"):
                raw = RawSession(p.url)
                expect(raw.call("log-1", "logged", traceparent=tp).status == 200, "call")
                expect(request("GET", f"{p.base}/plain/log").status == 200, "GET /plain/log")
                time.sleep(0.3)
        finally:
            code = p.stop()
        stderr = p.proc.log_text()
        lines = [line for line in stderr.splitlines() if line.strip()]
        objects: list[dict[str, Any]] = []
        bad: list[str] = []
        for line in lines:
            try:
                value = json.loads(line)
            except ValueError:
                bad.append(line)
                continue
            (objects if isinstance(value, dict) else bad).append(value if isinstance(value, dict) else line)

        def json_lines() -> str:
            expect(lines, f"no stderr at all (thv exited {code})")
            expect(not bad, f"{len(bad)} of {len(lines)} stderr lines are not JSON objects: {bad[:3]}")
            return f"{len(lines)} stderr lines, each a JSON object (keys of the first: {sorted(objects[0])})"

        run.check("logs.stderr_lines_are_json_objects", json_lines)

        requests_seen = [flat for flat in (_flatten(o) for o in objects) if _is_request_line(flat)]

        def fields() -> str:
            expect(requests_seen, f"no per-request line with method, path, status, elapsed and bytes among "
                                  f"{len(objects)} lines: {[sorted(_flatten(o)) for o in objects][:4]}")
            posts = [r for r in requests_seen if r.get("method") == "POST" and r.get("path") == "/mcp"
                     and str(r.get("status")) == "200"]
            expect(posts, f"no request line for POST /mcp 200: {requests_seen[:3]}")
            return f"{len(requests_seen)} request lines, e.g. {json.dumps(posts[0])[:300]}"

        run.check("logs.request_line_fields", fields)

        def trace_id() -> str:
            ids = [r.get("trace_id") for r in requests_seen if r.get("trace_id")]
            expect(tid in ids, f"no request line with trace_id {tid} (the sampled request's trace); trace ids: {ids}")
            malformed = [i for i in ids if not re.fullmatch(r"[0-9a-f]{32}", str(i))]
            expect(not malformed, f"malformed trace ids {malformed}")
            return f"the sampled tools/call's line has trace_id {tid}; {len(ids)} request lines carry a trace id"

        run.check("logs.request_line_trace_id", trace_id)
    finally:
        rec.stop()


def _flatten(obj: dict[str, Any]) -> dict[str, Any]:
    """A log object's fields at one level: its own keys, then those of `fields` and of `span`/`spans`."""
    flat = dict(obj)
    for nested in ("fields", "span"):
        if isinstance(obj.get(nested), dict):
            flat.update(obj[nested])
    for span in obj.get("spans") or []:
        if isinstance(span, dict):
            flat.update({k: v for k, v in span.items() if k not in flat})
    return flat


def _is_request_line(flat: dict[str, Any]) -> bool:
    has = set(flat)
    return {"method", "path", "status"} <= has and any(k.startswith(("elapsed", "duration")) for k in has) and \
        any(k.startswith("bytes") for k in has)
