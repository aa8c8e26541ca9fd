"""Named checks of the standalone suites (auth/, authz/, browser/): each one runs a function,
prints one `PASS`/`FAIL` line as it finishes, and counts towards the closing summary line
`<suite>: N passed, M failed`.

Stdlib only: each suite imports it before it re-executes itself inside its own .venv.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator


class CheckFailed(Exception):
    """A check that failed as a check can: reported with its message alone (no traceback)."""


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Runner:
    """Runs and records the checks of one suite.

    A check is a function returning its detail (or None). It fails by raising CheckFailed (the
    detail is the message) or anything else (the detail is `Type: message`, and the traceback goes
    to stderr, or is appended to `traceback_log`). The line it prints is `PASS name: detail`, or
    with `timed`, `PASS name (1.2s): detail`."""

    only: set[str] | None = None
    timed: bool = False
    traceback_log: Path | None = None
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def selected(self, group: str) -> bool:
        return self.only is None or group in self.only

    def check(self, name: str, fn: Callable[[], str | None]) -> bool:
        started = time.monotonic()
        try:
            detail = fn() or ""
            ok = True
        except CheckFailed as error:
            ok, detail = False, str(error)
        except Exception as error:  # noqa: BLE001 - a crashing check is a failing check
            ok, detail = False, f"{type(error).__name__}: {error}"
            self._traceback(name)
        self._record(name, ok, detail, time.monotonic() - started)
        return ok

    def fail(self, name: str, detail: str) -> None:
        """A check that could not run at all (its setup failed): recorded as failed."""
        self._record(name, False, detail, 0.0)

    @contextmanager
    def guard(self, name: str, cleanup: Callable[[], Any] | None = None) -> Iterator[None]:
        """A block of checks sharing one setup (a session, a proxy): a CheckFailed escaping the
        block is recorded as the failed check `name`; `cleanup` runs afterwards in any case."""
        try:
            yield
        except CheckFailed as error:
            self.fail(name, str(error))
        finally:
            if cleanup is not None:
                cleanup()

    @contextmanager
    def fixtures(self, procs: list[Any]) -> Iterator[None]:
        """The body of a suite, which starts the processes it appends to `procs`: an exception
        escaping it is the failed check `harness.fixtures` (a broken fixture is a failed run, never
        a silent one); afterwards every process in `procs` is stopped, the last started first."""
        try:
            yield
        except Exception as error:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            self.fail("harness.fixtures", f"{type(error).__name__}: {error}")
        finally:
            for proc in reversed(procs):
                try:
                    proc.stop()
                except Exception:  # noqa: BLE001
                    traceback.print_exc(file=sys.stderr)

    @property
    def passed_count(self) -> int:
        return sum(1 for _, ok, _ in self.results if ok)

    @property
    def failed_count(self) -> int:
        return len(self.results) - self.passed_count

    @property
    def exit_status(self) -> int:
        """1 when a check failed or none ran, else 0."""
        return 1 if self.failed_count or not self.results else 0

    def summary_line(self, suite: str, extra_failed: int = 0) -> str:
        """`<suite>: N passed, M failed`; `extra_failed` counts failures recorded elsewhere."""
        return f"{suite}: {self.passed_count} passed, {self.failed_count + extra_failed} failed"

    def _record(self, name: str, ok: bool, detail: str, secs: float) -> None:
        self.results.append((name, ok, detail))
        timing = f" ({secs:.1f}s)" if self.timed else ""
        print(f"{'PASS' if ok else 'FAIL'} {name}{timing}: {detail}", flush=True)

    def _traceback(self, name: str) -> None:
        if self.traceback_log is None:
            traceback.print_exc(file=sys.stderr)
            return
        with open(self.traceback_log, "a", encoding="utf-8") as f:
            f.write(f"--- {name}\n{traceback.format_exc()}\n")


# ------------------------------------------------------------------------------------------------
# A suite's main()


def parse_args(doc: str, groups: str) -> tuple[argparse.Namespace, Runner]:
    """The command line of auth/ and authz/ (`--selftest`, `--only GROUP,...`; `groups` lists
    them for --help): the arguments, and a Runner for the groups chosen."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selftest", action="store_true", help="only the harness's own components (no thv)")
    parser.add_argument("--only", default="", help=f"comma-separated groups: {groups}")
    args = parser.parse_args()
    return args, Runner(set(filter(None, args.only.split(","))) or None)


def run_suite(
    suite: str,
    doc: str,
    groups: str,
    suite_dir: Path,
    header: str,
    execute: Callable[[Runner, argparse.Namespace, Path], None],
    show_duration: bool = False,
) -> int:
    """main() of auth/ and authz/: the command line (parse_args), a fresh results_dir, the line
    `<suite> harness: <header> logs=<folder>`, `execute(run, args, logdir)`, then `logs: <folder>`
    (followed by the run's duration with `show_duration`) and `<suite>: N passed, M failed`.
    Returns the exit status."""
    args, run = parse_args(doc, groups)
    logdir = results_dir(suite_dir)
    started = time.monotonic()
    print(f"{suite} harness: {header} logs={logdir}", flush=True)
    execute(run, args, logdir)
    duration = f" ({time.monotonic() - started:.0f}s)" if show_duration else ""
    print(f"logs: {logdir}{duration}", flush=True)
    print(run.summary_line(suite), flush=True)
    return run.exit_status


def results_dir(suite_dir: Path) -> Path:
    """A fresh folder for one run's logs: <suite_dir>/results/<timestamp>-<random>/ (gitignored)."""
    (suite_dir / "results").mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%dT%H%M%S-"), dir=suite_dir / "results"))
