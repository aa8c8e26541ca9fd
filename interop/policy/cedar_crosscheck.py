#!/usr/bin/env python3
"""Cross-checks thv's Cedar authorizer (`--authz-config`) against cedarpy.

    cargo test --test it authz_table          # decides the table, writes target/cedar-crosscheck.json
    python3 interop/policy/cedar_crosscheck.py

Each row of the table holds a policy set, the exact Cedar request thv evaluated for one MCP
call (principal, action and resource uids, context, and the entity list: entities_json plus
the principal, action and resource entities thv built in ToolHive's model), and thv's decision.
cedarpy (Cedar's Python binding, a separate build of Cedar) evaluates the same request, and the
row passes when it gives the same decision under ToolHive's rule: allowed only if Cedar says
Allow and no policy failed to evaluate. The determining policies and the presence of
evaluation errors must agree too. A row that thv refused to build (an empty subject) must be a
denial.

Bootstraps interop/policy/.venv from requirements.txt (again only when that file changed),
then re-runs itself inside it. Ends with `cedar cross-check: N passed, M failed`; exits 1 when
M > 0 or the table is missing or has fewer than 150 rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV = HERE / ".venv"
VENV_PY = VENV / "bin" / "python"
REQUIREMENTS = HERE / "requirements.txt"
STAMP = VENV / ".thv-policy-requirements-sha256"
MIN_ROWS = 150


def table_path() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    base = (REPO / target) if target else (REPO / "target")
    return base / "cedar-crosscheck.json"


# ------------------------------------------------------------------------------------------------
# Bootstrap (stdlib only, under any python3): the venv, then re-exec inside it.


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bootstrap() -> None:
    if not VENV_PY.exists():
        print("bootstrap: python3 -m venv interop/policy/.venv", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    if not (STAMP.exists() and STAMP.read_text().strip() == digest(REQUIREMENTS)):
        print("bootstrap: pip install -r interop/policy/requirements.txt", flush=True)
        subprocess.run(
            [str(VENV_PY), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(REQUIREMENTS)],
            check=True,
            timeout=900,
        )
        STAMP.write_text(digest(REQUIREMENTS))


# ------------------------------------------------------------------------------------------------
# The check (inside the venv).


def check_row(cedarpy, row: dict) -> str | None:
    """None when cedarpy agrees with thv on this row, else why not."""
    request = row["request"]
    ours = row["decision"]
    if "unbuildable" in request:
        return None if ours is False else f"thv allowed a request it could not build: {request['unbuildable']}"
    uids = request["uids"]
    query = {
        # The {"type", "id"} form: ids may hold characters Cedar's uid syntax would need escaped.
        "principal": uids["principal"],
        "action": uids["action"],
        "resource": uids["resource"],
        "context": request["context"],
    }
    result = cedarpy.is_authorized(query, "\n".join(row["policies"]), request["entities"])
    errors = list(result.diagnostics.errors)
    theirs = result.decision == cedarpy.Decision.Allow and not errors
    problems = []
    if theirs != ours:
        problems.append(f"thv {'allowed' if ours else 'denied'}, cedarpy {result.decision.value} with errors {errors}")
    if sorted(result.diagnostics.reasons) != sorted(request["reasons"]):
        problems.append(f"determining policies: thv {request['reasons']}, cedarpy {result.diagnostics.reasons}")
    if bool(errors) != bool(request["errors"]):
        problems.append(f"evaluation errors: thv {request['errors']}, cedarpy {errors}")
    return "; ".join(problems) or None


def main() -> int:
    import cedarpy

    path = table_path()
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"cedar cross-check: cannot read {path} ({error}); run `cargo test --test it authz_table` first")
        print("cedar cross-check: 0 passed, 1 failed")
        return 1
    passed = failed = 0
    for row in rows:
        try:
            problem = check_row(cedarpy, row)
        except Exception as error:  # a row cedarpy cannot even evaluate is a disagreement
            problem = f"cedarpy raised {type(error).__name__}: {error}"
        if problem is None:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {row.get('name', '?')}: {problem}")
    if len(rows) < MIN_ROWS:
        print(f"cedar cross-check: the table has {len(rows)} rows, fewer than {MIN_ROWS}")
        failed += 1
    print(f"cedar cross-check: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if os.environ.get("THV_POLICY_IN_VENV") != "1":
        bootstrap()
        os.environ["THV_POLICY_IN_VENV"] = "1"
        os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])
    sys.exit(main())
