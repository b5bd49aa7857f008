"""Servers and subprocess helpers for ``test_mcp1.py`` (mcp 1.x only).

Also a small command line, run by the stdio tests as real subprocesses (under the stdout
tee of ``tests/_stdio_tee.py``):

* ``python _mcp1_helpers.py bare-server [--exit-hard]``: the smallest instrumented stdio
  server: ``mcp_otel.instrument(server)`` with the default sinks (``MCP_OTEL_DIR``), then
  ``server.run`` until stdin closes, with no clean-up code of its own. ``--exit-hard``
  leaves through ``os._exit(0)`` right after ``run`` returns, skipping every exit hook.

No ``from __future__ import annotations`` here, on purpose: FastMCP before about mcp 1.11
inspects tool signatures with ``issubclass(param.annotation, Context)``, which raises on
the string annotations that import produces.
"""

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parents[3]
OSIRIS_EXAMPLE = REPO / "examples" / "osiris_server.py"


@dataclass
class ServerState:
    """What the test servers' tools share with the test."""

    audit_dir: Path | None = None
    seen_by_peek: list[dict[str, Any]] = field(default_factory=list)


def _audit_lines(directory: Path | None) -> list[dict[str, Any]]:
    if directory is None:
        return []
    return [json.loads(line) for path in sorted(directory.glob("*.jsonl"))
            for line in path.read_bytes().splitlines() if line.strip()]


def resource_text(text: str) -> Any:
    """What a low-level ``read_resource`` handler returns: ``ReadResourceContents``
    where the SDK has them (a bare str is deprecated there), else the str."""
    try:
        from mcp.server.lowlevel.helper_types import ReadResourceContents
    except ImportError:
        return text
    return [ReadResourceContents(content=text, mime_type="text/plain")]


def lowlevel_server(state: ServerState, name: str = "t-low") -> Any:
    """An Osiris-shaped low-level server: ``list_tools``/``call_tool``/``read_resource``
    decorators called on handlers defined beforehand."""
    import mcp.types as types
    from mcp.server.lowlevel import Server

    server = Server(name)
    schema = {"type": "object"}

    async def list_tools() -> list[Any]:
        return [types.Tool(name=n, inputSchema=schema)
                for n in ("echo", "fail", "slow", "peek", "login")]

    async def call_tool(tool: str, arguments: dict[str, Any]) -> list[Any]:
        return [types.TextContent(type="text", text=await _run_tool(state, tool, arguments))]

    async def read_resource(uri: Any) -> Any:
        if str(uri) == "t://catalog":
            return resource_text("catalog")
        raise ValueError(f"no such resource: {uri}")

    server.list_tools()(list_tools)
    server.call_tool()(call_tool)
    server.read_resource()(read_resource)
    return server


def fastmcp_server(state: ServerState, name: str = "t-fast") -> Any:
    """The same tools on ``mcp.server.fastmcp.FastMCP``."""
    from mcp.server.fastmcp import FastMCP
    from mcp.server.fastmcp.exceptions import ToolError

    server = FastMCP(name)

    @server.tool()
    async def echo(a: int = 0, b: str = "") -> str:
        return await _run_tool(state, "echo", {"a": a, "b": b})

    @server.tool()
    async def fail(reason: str) -> str:
        raise ToolError(f"refused: {reason}")

    @server.tool()
    async def slow(ms: int) -> str:
        return await _run_tool(state, "slow", {"ms": ms})

    @server.tool()
    async def peek() -> str:
        return await _run_tool(state, "peek", {})

    @server.tool()
    async def login(user: str, password: str) -> str:
        return await _run_tool(state, "login", {"user": user, "password": password})

    @server.resource("t://catalog")
    def catalog() -> str:
        return "catalog"

    return server


def stateless_fastmcp_server() -> Any:
    """A FastMCP served by stateless streamable HTTP (one ``Server.run`` per request)."""
    from mcp.server.fastmcp import FastMCP

    server = FastMCP("t-stateless", stateless_http=True)

    @server.tool()
    def add(a: int, b: int) -> int:
        return a + b

    return server


async def _run_tool(state: ServerState, tool: str, arguments: dict[str, Any]) -> str:
    if tool == "fail":
        raise ValueError(f"refused: {arguments.get('reason')}")
    if tool == "slow":
        # A workload whose duration the instrumentation must measure (not a wait).
        await asyncio.sleep(int(arguments["ms"]) / 1000)
        return "done"
    if tool == "peek":
        # What the audit trail holds while the tool runs: its own tool_call must be there.
        seen = _audit_lines(state.audit_dir)
        state.seen_by_peek.append(seen[-1] if seen else {})
        return "peeked"
    if tool == "login":
        return f"welcome {arguments.get('user')}"
    return json.dumps(arguments, sort_keys=True)


def lowlevel_of(server: Any) -> Any:
    """What ``create_connected_server_and_client_session`` takes: mcp < 1.10's accepts only
    the low-level server, so a FastMCP's is handed over (as later SDKs do themselves)."""
    return getattr(server, "_mcp_server", server)


def jsonrpc_lines(path: Path) -> list[Any]:
    """Every line of a server's captured stdout (see ``tests/_stdio_tee.py``), parsed as
    the SDK's own JSON-RPC message (raises on anything else: a stray byte from mcp-otel
    would break the protocol)."""
    import mcp.types as types

    from tests._stdio_tee import jsonrpc_messages  # not at the top: this file is also a script

    jsonrpc_messages(path)
    return [types.JSONRPCMessage.model_validate_json(line)
            for line in path.read_bytes().splitlines()]


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a loopback port inside this event loop; yields
    the base URL. The socket listens before uvicorn starts, so a client can connect at
    once (its connection waits in the backlog); leaving the block stops uvicorn and waits
    until every connection, and so every ``Server.run``, has ended."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           access_log=False, timeout_graceful_shutdown=10))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def sse_app(server: Any) -> Any:
    """The SDK's documented SSE wiring for a low-level server (mcp 1.x has it throughout)."""
    from mcp.server.sse import SseServerTransport
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Mount, Route

    transport = SseServerTransport("/messages/")

    async def handle_sse(request: Any) -> Response:
        async with transport.connect_sse(request.scope, request.receive,
                                         request._send) as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
        return Response()

    return Starlette(routes=[Route("/sse", endpoint=handle_sse),
                             Mount("/messages/", app=transport.handle_post_message)])


def verify_strict(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_otel", "verify", "--strict", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


# ---- command line (subprocess side) -------------------------------------------------------


def _bare_server(exit_hard: bool) -> None:
    import anyio
    import mcp.types as types
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server

    import mcp_otel

    server = Server("bare")

    @server.list_tools()
    async def list_tools() -> list[Any]:
        return [types.Tool(name="ping", inputSchema={"type": "object"})]

    @server.call_tool()
    async def call_tool(name: str, arguments: dict[str, Any]) -> list[Any]:
        return [types.TextContent(type="text", text="pong")]

    mcp_otel.instrument(server)

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)
    if exit_hard:
        os._exit(0)


if __name__ == "__main__":
    if sys.argv[1] == "bare-server":
        _bare_server(exit_hard="--exit-hard" in sys.argv[2:])
        sys.exit(0)
    sys.exit(f"unknown command {sys.argv[1]!r}")
