"""One demo server process: ``python -m mcp_otel._demo.server --framework NAME``.

The demo's tools on the framework ``NAME`` (see :mod:`.frameworks`), instrumented with
``mcp_otel.instrument`` and served by uvicorn over that framework's streamable HTTP app.

Protocol with the driver (stdout, one JSON object per line): ``{"ready": PORT, "pid": N,
"framework": ADAPTER}`` once the socket listens, then ``{"done": {...counts...}}`` after a
clean shutdown (SIGTERM or SIGINT) when every sink has been flushed. Everything else goes
to stderr; framework output that lands on stdout anyway (a banner, a log line) is
harmless, since the driver reads only the JSON objects carrying its keys.

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
from collections.abc import Sequence
from typing import Any

from mcp_otel import _json


def _listen() -> socket.socket:
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on the accepted connections
    # only when the listening socket's proto is IPPROTO_TCP (a bare SOCK_STREAM socket has
    # 0). Without it Nagle holds a response's last chunk until the client's delayed ACK:
    # 40 ms on Linux for every back-to-back call.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(_json.dumps(obj).decode() + "\n")
    sys.stdout.flush()


async def _serve(sock: socket.socket, framework: str) -> dict[str, Any]:
    import uvicorn

    import mcp_otel
    from mcp_otel import _setup
    from mcp_otel._demo.frameworks import build
    from mcp_otel._demo.tools import DemoState
    from mcp_otel.cache import DiscoveryCache

    state = DemoState()
    server, app = build(framework, state)
    cache = DiscoveryCache(_setup.data_dir() / "cache")
    handle = mcp_otel.instrument(server, cache=cache)
    state.cache = handle.cache
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                            timeout_graceful_shutdown=5)
    userver = uvicorn.Server(config)
    _emit({"ready": sock.getsockname()[1], "pid": os.getpid(), "framework": handle.framework})
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
    parser.add_argument("--framework", required=True, help="mcp2, mcp1 or fastmcp")
    args = parser.parse_args(argv)
    os.environ["MCP_OTEL_DIR"] = args.out
    # uvicorn captures SIGTERM/SIGINT for a graceful shutdown and re-raises them once it
    # has stopped; these handlers absorb that re-raise so the sinks still get flushed.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _absorb_signal)
    sock = _listen()
    try:
        counts = asyncio.run(_serve(sock, args.framework))
    finally:
        sock.close()
    _emit({"done": counts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
