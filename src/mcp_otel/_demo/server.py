"""One demo server process: ``python -m mcp_otel._demo.server``.

Protocol with the driver (stdout, one JSON object per line): ``{"ready": PORT, "pid": N}``
once the socket listens, then ``{"done": {...counts...}}`` after a clean shutdown
(SIGTERM or SIGINT) when every sink has been flushed. Everything else goes to stderr.

The socket is bound to 127.0.0.1 port 0 *before* uvicorn starts and handed to it, so the
port is known without a race and nothing listens beyond loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mcp_otel import _json

#: Keep secrets out of the tool result: the driver checks no file contains them.
_CONNECT_OK = "connected"


@dataclass
class DemoState:
    """What the tools share: the cache from the instrumentation handle."""

    cache: Any = None


def flaky_fails(query: str, attempt: int) -> bool:
    """Deterministic "sometimes": about one call in four fails, decided by the arguments."""
    return zlib.crc32(f"{query}|{attempt}".encode()) % 4 == 0


def build_server(state: DemoState) -> Any:
    """The demo's MCPServer with realistic tools and one resource."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("mcp-otel-demo", version="0.1.0", log_level="WARNING")

    @server.tool()
    async def discover_schema(connection: str, component: str, samples: int = 0) -> dict[str, Any]:
        """Discover a component's schema, served from the DiscoveryCache when possible."""
        cache = state.cache
        entry = await cache.get(connection, component, samples) if cache is not None else None
        if entry is not None:
            return {"discovery_id": entry.get("discovery_id"), "cached": True,
                    "data": entry.get("data")}
        data = {
            "component": component,
            "fields": [{"name": f"{component}_col{i}", "type": "string"} for i in range(4)],
            "rows_sampled": samples,
        }
        discovery_id = await cache.set(connection, component, samples, data) if cache else None
        return {"discovery_id": discovery_id, "cached": False, "data": data}

    @server.tool()
    async def flaky_query(query: str, attempt: int) -> dict[str, Any]:
        """A query against an unreliable upstream: fails about one time in four."""
        if flaky_fails(query, attempt):
            raise ToolError(f"upstream timed out for attempt {attempt}")
        return {"query": query, "rows": attempt % 7 + 1}

    @server.tool()
    async def slow_report(rows: int) -> dict[str, Any]:
        """A report that takes 20-60 ms to build."""
        await asyncio.sleep(0.02 + (rows % 5) * 0.01)
        return {"rows": rows, "report": "ok"}

    @server.tool()
    async def connect_database(dsn: str, password: str, api_key: str) -> dict[str, Any]:
        """Takes secrets as arguments; mcp-otel must mask them before any file."""
        return {"status": _CONNECT_OK, "driver": dsn.split(":", 1)[0]}

    @server.resource("demo://catalog")
    def catalog() -> str:
        """The list of demo connections."""
        return _json.dumps({"connections": ["sales", "crm", "billing", "hr"]}).decode()

    return server


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(_json.dumps(obj).decode() + "\n")
    sys.stdout.flush()


async def _serve(sock: socket.socket) -> dict[str, Any]:
    import uvicorn

    import mcp_otel
    from mcp_otel import _setup
    from mcp_otel.cache import DiscoveryCache

    state = DemoState()
    server = build_server(state)
    cache = DiscoveryCache(_setup.data_dir() / "cache")
    handle = mcp_otel.instrument(server, cache=cache)
    state.cache = handle.cache
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                            timeout_graceful_shutdown=5)
    userver = uvicorn.Server(config)
    _emit({"ready": sock.getsockname()[1], "pid": os.getpid()})
    try:
        await userver.serve(sockets=[sock])
    finally:
        counts = handle.counts()
        handle.uninstrument()
        await _close_sinks(handle)
    return {**vars(counts), "sink_errors": handle.sink_errors}


async def _close_sinks(handle: Any) -> None:
    """Flush and close everything so the files are complete before we report "done"."""
    from mcp_otel import _setup

    audit, telemetry = handle.audit, handle.telemetry
    if audit is not None:
        ashutdown = getattr(audit, "ashutdown", None)
        if ashutdown is not None:
            await ashutdown()
        else:
            audit.shutdown()
    if telemetry is not None:
        telemetry.shutdown()
    _setup.shutdown()


def _absorb_signal(signum: int, frame: Any) -> None:
    del signum, frame


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_otel._demo.server")
    parser.add_argument("--out", required=True, help="data directory (MCP_OTEL_DIR)")
    args = parser.parse_args(argv)
    os.environ["MCP_OTEL_DIR"] = args.out
    # uvicorn captures SIGTERM/SIGINT for a graceful shutdown and re-raises them once it
    # has stopped; these handlers absorb that re-raise so the sinks still get flushed.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _absorb_signal)
    sock = _listen()
    try:
        counts = asyncio.run(_serve(sock))
    finally:
        sock.close()
    _emit({"done": counts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
