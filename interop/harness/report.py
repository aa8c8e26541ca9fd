"""Named checks, printed as they finish, and the closing summary line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.processes import log_tail

LOG_TAIL_LINES = 40


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""
    logs: tuple[Path, ...] = field(default_factory=tuple)


class Report:
    """Collects every check. Anything that could not run is recorded as a failed check too."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def record(self, name: str, passed: bool, detail: str = "", logs: tuple[Path, ...] = ()) -> bool:
        check = Check(name, passed, detail, logs)
        self.checks.append(check)
        status = "PASS" if passed else "FAIL"
        print(f"{status}  {name}" + (f"  ({detail.splitlines()[0]})" if detail else ""), flush=True)
        return passed

    @property
    def passed_count(self) -> int:
        return sum(check.passed for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def print_failures(self) -> None:
        """Each failure in full, then the tail of every log a failure points at (once each)."""
        if not self.failed:
            return
        print("\n=== failures ===")
        shown: set[Path] = set()
        for check in self.failed:
            print(f"\n--- {check.name}\n{check.detail or '(no detail)'}")
            for path in check.logs:
                if path in shown:
                    print(f"[log {path} shown above]")
                    continue
                shown.add(path)
                print(f"[last {LOG_TAIL_LINES} lines of {path}]\n{log_tail(path, LOG_TAIL_LINES)}")

    def summary_line(self) -> str:
        return f"interop: {self.passed_count} passed, {len(self.failed)} failed"
