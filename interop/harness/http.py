"""A small HTTP/1.1 client for the suites' probes (standard library only).

`request` sends exactly the headers it is given (a dict, or a list of pairs, so a name may repeat)
and never follows redirects; every status comes back as a `Resp`, none raises. Bounded by
`timeout` seconds (HTTP_TIMEOUT_SECONDS unless given).
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

HTTP_TIMEOUT_SECONDS = 15.0


@dataclass
class Resp:
    status: int
    headers: list[tuple[str, str]]  # as received, in order
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def headers_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)

    def summary(self) -> str:
        """Status, WWW-Authenticate and the start of the body, for failure messages."""
        challenges = self.headers_all("www-authenticate")
        body = self.body[:160].decode(errors="replace")
        if self.status == 200:
            body = body[:40] + "…"
        return f"{self.status} WWW-Authenticate={challenges} body={body!r}"


def request(
    method: str,
    url: str,
    headers: list[tuple[str, str]] | dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = HTTP_TIMEOUT_SECONDS,
) -> Resp:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        path = parsed.path or "/"
        if parsed.query:
            path += "?" + parsed.query
        conn.putrequest(method, path)
        for key, value in (headers.items() if isinstance(headers, dict) else headers or []):
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return Resp(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def get_json(url: str, headers: dict[str, str] | None = None, timeout: float = HTTP_TIMEOUT_SECONDS) -> Any:
    """GET `url` and decode its JSON body; RuntimeError unless the status is 200."""
    r = request("GET", url, headers, timeout=timeout)
    if r.status != 200:
        raise RuntimeError(f"GET {url}: {r.summary()}")
    return r.json()


def basic_auth(user: str, password: str) -> str:
    """An `Authorization: Basic` value, each part form-encoded first as RFC 6749 §2.3.1 says."""
    raw = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def form_post(
    url: str, fields: dict[str, str], basic: tuple[str, str] | None = None, timeout: float = HTTP_TIMEOUT_SECONDS
) -> Resp:
    """POST `fields` form-encoded, with HTTP Basic client authentication when `basic` is given."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if basic:
        headers["Authorization"] = basic_auth(*basic)
    return request("POST", url, headers, urllib.parse.urlencode(fields).encode(), timeout)
