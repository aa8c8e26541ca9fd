"""Starting the upstream MCP servers and `thv proxy` (harness.processes.Thv) in front of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.bootstrap import Toolchain, node_first
from harness.processes import LOOPBACK, Proc, Thv, free_port

READY_TIMEOUT_SECONDS = 20
SDK_EXAMPLES = "@modelcontextprotocol/sdk/dist/esm/examples/server"


@dataclass(frozen=True)
class Upstream:
    """A Node MCP server from node_modules, run on a runner-chosen loopback port."""

    name: str
    script: str  # path under node_modules
    args: tuple[str, ...] = ()
    endpoint: str = "/mcp"  # path of the MCP endpoint: the path of thv's --target-uri


SIMPLE_STREAMABLE = Upstream("simple-streamable-http", f"{SDK_EXAMPLES}/simpleStreamableHttp.js")
SIMPLE_SSE = Upstream("simple-sse", f"{SDK_EXAMPLES}/simpleSseServer.js")  # legacy SSE on GET /mcp
SSE_AND_STREAMABLE = Upstream("sse-and-streamable-http", f"{SDK_EXAMPLES}/sseAndStreamableHttpCompatibleServer.js")
EVERYTHING = Upstream("server-everything", "@modelcontextprotocol/server-everything/dist/index.js", ("streamableHttp",))
EVERYTHING_SSE = Upstream("server-everything-sse", EVERYTHING.script, ("sse",), endpoint="/sse")  # legacy HTTP+SSE


class ProcessPool:
    """Starts the suite's processes and guarantees they are all stopped (see `stop_all`)."""

    def __init__(self, tools: Toolchain, interop_dir: Path, log_dir: Path, thv_bin: Path) -> None:
        self.tools = tools
        self.interop_dir = interop_dir
        self.log_dir = log_dir
        self.thv_bin = thv_bin
        self._started: list[Proc] = []

    def start_upstream(self, upstream: Upstream) -> tuple[Proc, str]:
        """Start `upstream`, wait until it listens, and return it with its base URL."""
        port = free_port()
        shim = self.interop_dir / "lib" / "loopback-listen.mjs"
        argv = [str(self.tools.node), "--import", shim.as_uri(), str(self.tools.node_modules / upstream.script)]
        # PORT / MCP_PORT are what server-everything / simpleStreamableHttp read; the shim makes the
        # examples without a port option (and all of them for the host) use the same loopback port.
        env = self._path_env({"INTEROP_LISTEN_PORT": str(port), "PORT": str(port), "MCP_PORT": str(port)})
        process = Proc(
            upstream.name, [*argv, *upstream.args], self.log_dir, cwd=self.interop_dir, env=env, track=self._started
        )
        process.wait_for_port(port, READY_TIMEOUT_SECONDS)
        return process, f"http://{LOOPBACK}:{port}"

    def start_proxy(self, server_name: str, target_uri: str) -> tuple[Proc, str]:
        """Start `thv proxy` in front of `target_uri` on a free port; return it with its base URL."""
        thv = Thv(
            server_name, target_uri, ["--debug"], self.log_dir,
            ready_timeout=READY_TIMEOUT_SECONDS, binary=self.thv_bin, cwd=self.interop_dir,
            env=self._path_env(), track=self._started,
        )  # fmt: skip
        thv.proc.wait_for_port(thv.port, READY_TIMEOUT_SECONDS)
        return thv.proc, thv.base

    def stop_all(self) -> None:
        """Stop every process still running, newest first (proxies before their upstreams)."""
        for process in reversed(self._started):
            process.stop()

    def _path_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # Any `node` child gets Node 22.
        return {**node_first(self.tools), **(extra or {})}
