#!/usr/bin/env python3
"""A loopback sink for the telemetry rows of bench/run.py: answers 200 to every POST/PUT
(OTLP/HTTP /v1/traces and /v1/metrics, or a Datadog agent's /v0.4/traces) after reading the
whole body, without decoding it. So an exporter pays its real cost (encoding, the HTTP request,
the round trip) and nothing more. GET /stats answers the counters as JSON:
{"/v1/traces": {"posts": N, "bytes": B}, ...}.

    python3 bench/otlp_sink.py PORT        (127.0.0.1 only; stops on SIGTERM)
"""

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATS = {}
LOCK = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` answered

    def body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            n = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return n
                n += len(self.rfile.read(size))
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        n = 0
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            n += len(chunk)
            left -= len(chunk)
        return n

    def answer(self, code, payload, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        n = self.body()
        path = self.path.split("?", 1)[0]
        with LOCK:
            s = STATS.setdefault(path, {"posts": 0, "bytes": 0})
            s["posts"] += 1
            s["bytes"] += n
        # OTLP/HTTP: an empty protobuf Export*ServiceResponse is a valid success answer.
        if self.headers.get("Content-Type", "").startswith("application/x-protobuf"):
            self.answer(200, b"", "application/x-protobuf")
        else:
            self.answer(200, b"{}")

    do_PUT = do_POST

    def do_GET(self):
        with LOCK:
            payload = json.dumps(STATS).encode()
        self.answer(200, payload)

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1])
    srv = ThreadingHTTPServer(("127.0.0.1", port), Sink)
    srv.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    srv.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
