"""ToolHive's audit event format, as a validator for the NDJSON lines of an audit log file.

Two JSON spellings of the same event exist in ToolHive (stacklok/toolhive pkg/audit, with the
types in stacklok/toolhive-core audit):

* "wire": what ToolHive actually writes to `logFile` - `AuditEvent.LogTo` through toolhive-core's
  `NewAuditLogger` (slog's JSON handler, level rendered "AUDIT"):
      {"time", "level": "AUDIT", "msg": "audit_event", "audit_id", "type", "logged_at", "outcome",
       "component", "source": {"type", "value", "extra"}, "subjects": {...},
       ["delegation"], ["target": {...}], ["metadata": {"extra": {...}}], ["data": ...]}
* "struct": the `AuditEvent` struct's own JSON tags (pkg/audit/event.go):
      {"metadata": {"auditId", ["extra"]}, "type", "loggedAt", "source": {"type", "value", ["extra"]},
       "outcome", "subjects": {...}, ["delegation"], "component", ["target"], ["data"]}

`normalize` accepts either (every line of one file must use the same one) and returns the fields
under common names, or a list of problems. Standard library only.
"""

from __future__ import annotations

import re
from typing import Any

OUTCOMES = {"success", "failure", "error", "denied", "application_error"}
EVENT_TYPES = {
    "mcp_initialize", "sse_connection", "mcp_tool_call", "mcp_tools_list", "mcp_resource_read",
    "mcp_resources_list", "mcp_prompt_get", "mcp_prompts_list", "mcp_notification", "mcp_ping",
    "mcp_logging", "mcp_completion", "mcp_roots_list_changed", "mcp_request", "http_request",
}  # fmt: skip
SOURCE_TYPES = {"network", "local"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


def shape_of(event: dict[str, Any]) -> str:
    if "audit_id" in event or "msg" in event or "logged_at" in event:
        return "wire"
    return "struct"


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def normalize(event: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """(common fields, problems) of one decoded line."""
    problems: list[str] = []
    if not isinstance(event, dict):
        return None, [f"line is a JSON {type(event).__name__}, not an object"]
    shape = shape_of(event)

    def need(key: str, kind: type | tuple[type, ...], where: dict[str, Any] = event, label: str = "") -> Any:
        name = label or key
        if key not in where:
            problems.append(f"missing {name}")
            return None
        value = where[key]
        if not isinstance(value, kind):
            problems.append(f"{name} is {type(value).__name__} {value!r:.60}")
            return None
        return value

    if shape == "wire":
        need("time", str)
        level = need("level", str)
        if level is not None and level != "AUDIT":
            problems.append(f"level {level!r} (ToolHive writes \"AUDIT\")")
        msg = need("msg", str)
        if msg is not None and msg != "audit_event":
            problems.append(f"msg {msg!r} (ToolHive writes \"audit_event\")")
        audit_id = need("audit_id", str)
        logged_at = need("logged_at", str)
        metadata = event.get("metadata")
        extra = metadata.get("extra") if isinstance(metadata, dict) else None
        if metadata is not None and not isinstance(metadata, dict):
            problems.append(f"metadata is {type(metadata).__name__}")
    else:
        metadata = need("metadata", dict)
        audit_id = need("auditId", str, metadata, "metadata.auditId") if metadata is not None else None
        extra = metadata.get("extra") if isinstance(metadata, dict) else None
        logged_at = need("loggedAt", str)
    if extra is not None and not isinstance(extra, dict):
        problems.append(f"metadata.extra is {type(extra).__name__}")
    if audit_id is not None and not audit_id.strip():
        problems.append("empty audit id")
    if logged_at is not None and not RFC3339.match(logged_at):
        problems.append(f"logged-at time {logged_at!r} is not RFC 3339")

    etype = need("type", str)
    if etype is not None and etype not in EVENT_TYPES:
        problems.append(f"type {etype!r} is not one of ToolHive's event types")
    outcome = need("outcome", str)
    if outcome is not None and outcome not in OUTCOMES:
        problems.append(f"outcome {outcome!r} not in {sorted(OUTCOMES)}")
    component = need("component", str)
    source = need("source", dict)
    if source is not None:
        stype = need("type", str, source, "source.type")
        if stype is not None and stype not in SOURCE_TYPES:
            problems.append(f"source.type {stype!r}")
        need("value", str, source, "source.value")
        if source.get("extra") is not None and not isinstance(source["extra"], dict):
            problems.append("source.extra is not an object")
    subjects = need("subjects", dict)
    if subjects is not None and not _str_map(subjects):
        problems.append(f"subjects is not a string map: {subjects!r:.80}")
    target = event.get("target")
    if target is not None and not _str_map(target):
        problems.append(f"target is not a string map: {target!r:.80}")
    common = {
        "shape": shape,
        "audit_id": audit_id,
        "type": etype,
        "logged_at": logged_at,
        "outcome": outcome,
        "component": component,
        "source": source,
        "subjects": subjects or {},
        "target": target or {},
        "extra": extra or {},
        "data": event.get("data"),
    }
    return common, problems
