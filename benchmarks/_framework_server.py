"""A one-tool MCP server over streamable HTTP, for ``bench_frameworks.py``.

Built with whichever framework ``--framework`` names (``mcp2``: ``MCPServer``; ``mcp1``:
mcp 1.x ``FastMCP``; ``fastmcp``: standalone ``fastmcp.FastMCP``), uninstrumented
(``--mode off``) or instrumented with an ``AuditLogger`` in ``queued`` or ``written``
mode. Prints ``{"ready": port}`` on stdout once listening, and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
from pathlib import Path
from typing import Any


def build(framework: str) -> tuple[Any, Any]:
    """(server, ASGI app) with one trivial tool ``echo``."""
    if framework == "mcp2":
        from mcp.server.mcpserver import MCPServer

        server: Any = MCPServer("bench", log_level="WARNING")
        server.tool()(echo)
        return server, server.streamable_http_app()
    if framework == "mcp1":
        from mcp.server.fastmcp import FastMCP

        server = FastMCP("bench", log_level="WARNING")
        server.tool()(echo)
        return server, server.streamable_http_app()
    if framework == "fastmcp":
        import fastmcp

        server = fastmcp.FastMCP("bench")
        server.tool()(echo) if int(fastmcp.__version__.split(".")[0]) < 4 else server.tool(
            echo)
        return server, server.http_app()
    raise SystemExit(f"unknown framework {framework!r}")


async def echo(text: str) -> str:
    """Returns its argument."""
    return text


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    server, app = build(args.framework)
    handle = None
    if args.mode != "off":
        import mcp_otel

        out = Path(args.out)
        handle = mcp_otel.instrument(
            server, audit=mcp_otel.AuditLogger(out / "audit", wait=args.mode),
            telemetry=mcp_otel.TelemetryEmitter(output_dir=out / "telemetry"))
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only
    # when the listening socket's proto is IPPROTO_TCP, and socket.socket() leaves it 0.
    # Without TCP_NODELAY, Nagle holds the response's last chunk until the client's delayed
    # ACK (40 ms on Linux): back-to-back calls then take 44 ms each whatever the server does.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                            timeout_graceful_shutdown=2)
    userver = uvicorn.Server(config)
    sys.stdout.write(json.dumps({"ready": sock.getsockname()[1]}) + "\n")
    sys.stdout.flush()
    try:
        await userver.serve(sockets=[sock])
    finally:
        if handle is not None:
            handle.uninstrument()
            handle.audit.shutdown()
            handle.telemetry.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", required=True)
    parser.add_argument("--mode", choices=["off", "queued", "written"], required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: None)  # uvicorn re-raises after its shutdown
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
