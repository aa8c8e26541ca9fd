"""Prometheus pieces of the telemetry suite: the text exposition read back (`parse_exposition`),
`promtool check metrics` on it (`promtool_check`), and a real `prometheus` server (`Prometheus`)
that scrapes given targets every second, queried over its HTTP API.

The binaries are Debian's `prometheus` package (2.42.0+ds-5+deb12u1, which brings `promtool`):
scripts/test.sh installs it when either is missing. PROMETHEUS_BIN / PROMTOOL_BIN override.
Standard library only (plus the shared harness).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.http import request
from harness.processes import LOOPBACK, Proc, free_port

PROMTOOL_TIMEOUT = 15
READY_TIMEOUT = 30


def prometheus_bin() -> str | None:
    return os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")


def promtool_bin() -> str | None:
    return os.environ.get("PROMTOOL_BIN") or shutil.which("promtool")


# ------------------------------------------------------------------------------------------------
# The text exposition

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+(-?\d+))?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Exposition:
    types: dict[str, str] = field(default_factory=dict)  # family -> counter, gauge, histogram...
    samples: list[Sample] = field(default_factory=list)

    def named(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def total(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.named(name, **labels))

    def names(self) -> set[str]:
        return {s.name for s in self.samples}

    def label_values(self) -> set[str]:
        return {v for s in self.samples for v in s.labels.values()}


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse_exposition(text: str) -> Exposition:
    """The samples and `# TYPE`s of a Prometheus text exposition (0.0.4). ValueError on a line it
    cannot read (promtool is the strict judge; this only reads values back)."""
    out = Exposition()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                out.types[parts[2]] = parts[3].strip()
            continue
        match = _SAMPLE.match(line.strip())
        if not match:
            raise ValueError(f"line {number} is not a sample: {line!r}")
        labels: dict[str, str] = {}
        body = (match.group(2) or "{}")[1:-1]
        pos = 0
        while pos < len(body):
            lm = _LABEL.match(body, pos)
            if not lm:
                raise ValueError(f"line {number}: cannot read labels at {body[pos:]!r}")
            labels[lm.group(1)] = _unescape(lm.group(2))
            pos = lm.end()
        out.samples.append(Sample(match.group(1), labels, float(match.group(3))))
    return out


def promtool_check(text: str) -> tuple[int, str]:
    """`promtool check metrics` with the exposition on stdin: (exit code, stdout + stderr)."""
    binary = promtool_bin()
    if binary is None:
        return 127, "promtool not found (Debian package prometheus)"
    r = subprocess.run([binary, "check", "metrics"], input=text.encode(), capture_output=True,  # noqa: S603
                       timeout=PROMTOOL_TIMEOUT)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


# ------------------------------------------------------------------------------------------------
# A real Prometheus server


class Prometheus:
    """`prometheus` on 127.0.0.1:<free port>, its config and TSDB in `workdir`, scraping each of
    `targets` ("127.0.0.1:PORT", path /metrics) every second as job `job`. Ready once /-/ready
    answers 200 (bounded). Stopped by its PID."""

    def __init__(self, workdir: Path, targets: list[str], log_dir: Path, job: str = "thv", name: str = "prometheus"):
        binary = prometheus_bin()
        if binary is None:
            raise RuntimeError("prometheus not found (Debian package prometheus)")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: {job}\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: {json.dumps(targets)}\n"
        )
        self.port = free_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.proc = Proc(name, [
            binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address={LOOPBACK}:{self.port}", "--log.level=info",
            "--storage.tsdb.retention.time=1h",
        ], log_dir, cwd=workdir)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RuntimeError(f"prometheus exited with {self.proc.exit_code()}: {self.proc.tail()}")
            try:
                if request("GET", f"{self.base}/-/ready", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.proc.stop()
        raise RuntimeError(f"prometheus not ready within {READY_TIMEOUT}s: {self.proc.tail()}")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        r = request("GET", url, timeout=5)
        if r.status != 200:
            raise RuntimeError(f"GET {url}: {r.status} {r.body[:200]!r}")
        doc = json.loads(r.body)
        if doc.get("status") != "success":
            raise RuntimeError(f"GET {url}: {doc}")
        return doc["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {labels}, "value": [t, "v"]}, ...]."""
        return self.api("query", query=promql)["result"]

    def targets(self) -> list[dict[str, Any]]:
        return self.api("targets")["activeTargets"]

    def stop(self) -> int | None:
        return self.proc.stop()
