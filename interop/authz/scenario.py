"""The authz suite's scenario: users and their claims, Cedar policies, the plans the SDK clients run,
and what each user must and must not be able to do. Standard library only.

Users (their claims come from the IdP as JWT access-token claims):
    alice  role=reader  groups=[staff]       email=alice@example.com
    bob    role=admin   groups=[staff, ops]  email=bob@ops.example.org

Main policy set (ToolHive cedarv1; principal Client::"<sub>", claims as principal.claim_* and
context.claim_*, call arguments as context.arg_*, tool annotations as Tool attributes):
    a reader may call tools whose readOnlyHint is true               (annotation + claim)
    an admin may call any tool                                       (claim)
    forbid every tool whose destructiveHint is true                  (forbid beats permit)
    forbid echo when its `text` argument contains "classified"       (argument)
    greeting prompt: email ending in @example.com                    (context claim, `like`)
    ops_runbook prompt: groups contains "ops"                        (principal claim set)
    readme resource: everyone; every resource: admins
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

AUDIENCE = "urn:thv:authz-harness"

USERS: dict[str, dict[str, Any]] = {
    "alice": {"role": "reader", "groups": ["staff"], "email": "alice@example.com", "name": "Alice Reader"},
    "bob": {"role": "admin", "groups": ["staff", "ops"], "email": "bob@ops.example.org", "name": "Bob Admin"},
}

README = "file:///public/readme.txt"
SECRET = "file:///secret/keys.txt"
NOTES_TEMPLATE = "file:///notes/{name}"
ALL_TOOLS = ["echo", "get_weather", "write_note", "delete_everything", "admin_stats"]

MAIN_POLICIES = [
    'permit(principal, action == Action::"call_tool", resource) when { principal.claim_role == "reader" && '
    "resource has readOnlyHint && resource.readOnlyHint == true };",
    'permit(principal, action == Action::"call_tool", resource) when { principal.claim_role == "admin" };',
    'forbid(principal, action == Action::"call_tool", resource) when { resource has destructiveHint && '
    "resource.destructiveHint == true };",
    'forbid(principal, action == Action::"call_tool", resource == Tool::"echo") when { context has arg_text && '
    'context.arg_text like "*classified*" };',
    'permit(principal, action == Action::"get_prompt", resource == Prompt::"greeting") when { '
    'context.claim_email like "*@example.com" };',
    'permit(principal, action == Action::"get_prompt", resource == Prompt::"ops_runbook") when { '
    'principal.claim_groups.contains("ops") };',
    f'permit(principal, action == Action::"read_resource", resource == Resource::"{README}");',
    'permit(principal, action == Action::"read_resource", resource) when { principal.claim_role == "admin" };',
]

# thv without incoming authentication: the principal is Client::"anonymous".
ANONYMOUS_POLICIES = [
    'permit(principal == Client::"anonymous", action == Action::"call_tool", resource == Tool::"echo");',
    'permit(principal == Client::"anonymous", action == Action::"call_tool", resource == Tool::"get_weather");',
]

# --tools echo,write_note with write_note renamed to jot. Policy A names the ORIGINAL name (and
# get_weather, which --tools hides); policy B names only the NEW name.
TOOLS_ALLOW = "echo,write_note"
TOOLS_OVERRIDE = {"toolsOverride": {"write_note": {"name": "jot", "description": "Jot a note down (renamed by thv)"}}}
TOOLS_POLICIES_ORIGINAL = [
    'permit(principal, action == Action::"call_tool", resource == Tool::"echo");',
    'permit(principal, action == Action::"call_tool", resource == Tool::"write_note");',
    'permit(principal, action == Action::"call_tool", resource == Tool::"get_weather");',
]
TOOLS_POLICIES_NEW_NAME = [
    'permit(principal, action == Action::"call_tool", resource == Tool::"echo");',
    'permit(principal, action == Action::"call_tool", resource == Tool::"jot");',
]


def authz_config(policies: list[str]) -> dict[str, Any]:
    return {"version": "1.0", "type": "cedarv1", "cedar": {"policies": policies, "entities_json": "[]"}}


def authz_config_json(policies: list[str]) -> str:
    return json.dumps(authz_config(policies), indent=2) + "\n"


def authz_config_yaml(policies: list[str]) -> str:
    """The same document as YAML (single-quoted scalars; the policies hold no single quote)."""
    assert not any("'" in p for p in policies)
    lines = ["version: '1.0'", "type: cedarv1", "cedar:", "  policies:"]
    lines += [f"    - '{p}'" for p in policies]
    lines.append("  entities_json: '[]'")
    return "\n".join(lines) + "\n"


# ---- what each user may do under MAIN_POLICIES ---------------------------------------------------


@dataclass
class Attempt:
    label: str
    kind: str  # tool | prompt | resource
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    allowed: bool = True
    expect_text: str | None = None  # exact text of a permitted result (None: any)
    marker: str | None = None  # a string that reaches the upstream only if the request does
    progress: bool = False
    # Permitted by the policy but unknown to the server: the upstream's own "Unknown tool" answer.
    upstream_unknown: bool = False

    def plan_entry(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "name": self.name, "args": self.args, "progress": self.progress}


@dataclass
class Expectation:
    tools: set[str]
    prompts: set[str]
    resources: set[str]
    templates: set[str]
    attempts: list[Attempt]

    def plan(self) -> dict[str, Any]:
        return {"lists": True, "attempts": [a.plan_entry() for a in self.attempts]}


def main_expectation(user: str, m: str) -> Expectation:
    """Lists and attempts of `user` under MAIN_POLICIES. Every attempt carries its own marker
    (`m` + a suffix) in its arguments, so the upstream's record tells which attempts reached it."""

    def k(suffix: str) -> str:
        return f"{m}-{suffix}"

    common_denied = [
        Attempt("delete_everything (destructiveHint: forbid)", "tool", "delete_everything", {"confirm": k("delete")},
                allowed=False, marker=k("delete")),
        Attempt("echo classified (argument forbid)", "tool", "echo", {"text": f"classified {k('classified')}"},
                allowed=False, marker=k("classified")),
    ]
    # An unknown tool is one the server's list never named, so its annotations are unknown; the
    # policies read annotations (the destructiveHint forbid), so thv fails closed and denies it
    # for both users, looking exactly like any other denial (bob's admin permit included: a
    # tool the server never listed could be destructive).
    unknown = Attempt("unknown tool", "tool", "no_such_tool", {"text": k("unknown")}, allowed=False,
                      marker=k("unknown"))
    if user == "alice":
        return Expectation(
            tools={"echo", "get_weather"},
            prompts={"greeting"},
            resources={README},
            templates=set(),
            attempts=[
                Attempt("echo (readOnlyHint)", "tool", "echo", {"text": k("echo")}, expect_text=k("echo")),
                Attempt("get_weather (readOnlyHint, progress)", "tool", "get_weather", {"city": k("weather")},
                        expect_text=f"sunny in {k('weather')}", progress=True),
                Attempt("greeting prompt (email claim)", "prompt", "greeting", {"name": k("greeting")},
                        expect_text=f"Please greet {k('greeting')} warmly."),
                Attempt("readme resource", "resource", README, expect_text="public readme"),
                Attempt("write_note (not read-only)", "tool", "write_note", {"text": k("note")}, allowed=False,
                        marker=k("note")),
                Attempt("admin_stats (no annotations)", "tool", "admin_stats", {}, allowed=False),
                *common_denied,
                unknown,
                Attempt("ops_runbook prompt (groups claim)", "prompt", "ops_runbook", {"service": k("runbook")},
                        allowed=False, marker=k("runbook")),
                Attempt("secret resource", "resource", SECRET, allowed=False),
                Attempt("notes template resource", "resource", f"file:///notes/{k('tmpl')}", allowed=False,
                        marker=k("tmpl")),
            ],
        )
    return Expectation(
        tools={"echo", "get_weather", "write_note", "admin_stats"},
        prompts={"ops_runbook"},
        resources={README, SECRET},
        templates={NOTES_TEMPLATE},
        attempts=[
            Attempt("write_note (admin)", "tool", "write_note", {"text": k("note")}, expect_text=f"stored: {k('note')}"),
            Attempt("admin_stats (admin, no annotations)", "tool", "admin_stats", {}),
            Attempt("echo (admin)", "tool", "echo", {"text": k("echo")}, expect_text=k("echo")),
            Attempt("ops_runbook prompt (groups claim)", "prompt", "ops_runbook", {"service": k("runbook")},
                    expect_text=f"Runbook for {k('runbook')}: restart it."),
            Attempt("secret resource (admin)", "resource", SECRET, expect_text="secret keys"),
            Attempt("notes template resource (admin)", "resource", f"file:///notes/{k('tmpl')}",
                    expect_text=f"note {k('tmpl')}"),
            unknown,
            *common_denied,
            Attempt("greeting prompt (email claim does not match)", "prompt", "greeting", {"name": k("greeting")},
                    allowed=False, marker=k("greeting")),
        ],
    )


def everything_attempts(m: str) -> list[Attempt]:
    """Attempts that all succeed against the upstream directly (the harness's self-test)."""
    return [
        Attempt("echo", "tool", "echo", {"text": f"hello {m}"}, expect_text=f"hello {m}"),
        Attempt("get_weather", "tool", "get_weather", {"city": m}, expect_text=f"sunny in {m}", progress=True),
        Attempt("write_note", "tool", "write_note", {"text": m}, expect_text=f"stored: {m}"),
        Attempt("ops_runbook", "prompt", "ops_runbook", {"service": m}, expect_text=f"Runbook for {m}: restart it."),
        Attempt("notes", "resource", f"file:///notes/{m}", expect_text=f"note {m}"),
    ]
