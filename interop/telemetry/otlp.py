"""A loopback OTLP/HTTP receiver, decoding with the official `opentelemetry-proto` classes, and a
black hole (a collector that accepts connections and never reads or answers).

`Receiver(port=0)` serves on 127.0.0.1 in a thread: POST /v1/traces and /v1/metrics bodies
(`application/x-protobuf`, optionally gzip-encoded) are decoded as `ExportTraceServiceRequest` /
`ExportMetricsServiceRequest` and answered 200 with the matching empty `Export*ServiceResponse`;
a body that does not decode is answered 400 and recorded as an error. Every export is recorded
(`exports`: path, headers, decoded message, size) and flattened:

* `spans()`: one dict per span: trace_id / span_id / parent_span_id (lower-case hex, parent ""
  when none), name, kind (`SPAN_KIND_SERVER`...), attributes (plain Python values), status
  (`STATUS_CODE_ERROR`...), status_message, resource (its attributes), scope;
* `points()`: one dict per metric data point: metric name, data kind (sum, gauge, histogram...),
  attributes, value (a number's value, a histogram's count), resource.

`decode=False` keeps only the sizes and headers (the outage check's load makes many exports).
Standard library plus `opentelemetry-proto` (and its `protobuf`); runs inside the suite's venv.
"""

from __future__ import annotations

import gzip
import http.server
import socket
import threading
import time
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

LOOPBACK = "127.0.0.1"
MAX_BODY = 64 * 1024 * 1024
KINDS = {"/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
         "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse)}


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as a plain Python value."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which)


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def flatten_spans(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    out = []
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append({
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "trace_state": span.trace_state,
                    "name": span.name,
                    "kind": Span.SpanKind.Name(span.kind),
                    "attributes": attributes(span.attributes),
                    "status": Status.StatusCode.Name(span.status.code),
                    "status_message": span.status.message,
                    "start": span.start_time_unix_nano,
                    "end": span.end_time_unix_nano,
                    "resource": resource,
                    "scope": ss.scope.name,
                })
    return out


def flatten_points(request: ExportMetricsServiceRequest) -> list[dict[str, Any]]:
    out = []
    for rm in request.resource_metrics:
        resource = attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(metric, kind)
                for point in data.data_points:
                    if kind in ("sum", "gauge"):
                        which = point.WhichOneof("value")
                        value = getattr(point, which) if which else None
                    else:  # histogram, exponential_histogram, summary: the count
                        value = point.count
                    out.append({
                        "metric": metric.name,
                        "kind": kind,
                        "unit": metric.unit,
                        "monotonic": getattr(data, "is_monotonic", None),
                        "attributes": attributes(point.attributes),
                        "value": value,
                        "resource": resource,
                    })
    return out


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Receiver:
    """The OTLP/HTTP receiver (see the module docstring)."""

    def __init__(self, port: int = 0, decode: bool = True) -> None:
        self.decode = decode
        self.lock = threading.Lock()
        self.exports: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.connections: set[socket.socket] = set()  # open (keep-alive) connections, closed by stop()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:  # quiet
                pass

            def handle(self) -> None:
                with receiver.lock:
                    receiver.connections.add(self.connection)
                try:
                    super().handle()
                except OSError:  # closed by stop()
                    pass
                finally:
                    with receiver.lock:
                        receiver.connections.discard(self.connection)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, b"", "text/plain")
                    return
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer = receiver._accept(self.path, headers, raw)
                self._answer(status, answer, "application/x-protobuf" if status == 200 else "text/plain")

            def _answer(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server((LOOPBACK, port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def _accept(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes]:
        path = path.split("?", 1)[0]
        entry: dict[str, Any] = {"t": time.time(), "path": path, "headers": headers, "size": len(raw), "message": None}
        kind = KINDS.get(path)
        try:
            if kind is None:
                raise ValueError(f"unexpected path {path}")
            if not self.decode:
                with self.lock:
                    self.exports.append(entry)
                return 200, kind[1]().SerializeToString()
            body = gzip.decompress(raw) if headers.get("content-encoding", "").lower() == "gzip" else raw
            message = kind[0]()
            message.ParseFromString(body)
            entry["message"] = message
        except (DecodeError, ValueError, OSError, EOFError) as error:
            with self.lock:
                self.errors.append(f"{path}: {type(error).__name__}: {error} (content-type "
                                   f"{headers.get('content-type')!r}, {len(raw)} bytes)")
            return 400, str(error).encode()
        with self.lock:
            self.exports.append(entry)
        return 200, kind[1]().SerializeToString()

    def snapshot(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.exports if path is None or e["path"] == path]

    def spans(self) -> list[dict[str, Any]]:
        return [s for e in self.snapshot("/v1/traces") if e["message"] is not None for s in flatten_spans(e["message"])]

    def points(self) -> list[dict[str, Any]]:
        return [p for e in self.snapshot("/v1/metrics") if e["message"] is not None
                for p in flatten_points(e["message"])]

    def clear(self) -> None:
        with self.lock:
            self.exports.clear()
            self.errors.clear()

    def stop(self) -> None:
        """Stops listening and closes every open connection too: an exporter keeping a keep-alive
        connection must see the collector go away, not go on talking to a stopped receiver."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            open_connections = list(self.connections)
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(timeout=5)


class BlackHole:
    """A listener on 127.0.0.1:`port` that accepts every connection and never reads from it nor
    answers: an exporter's request hangs until its own timeout. `stop()` closes everything."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, port))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()
