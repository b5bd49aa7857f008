"""An MCP server shaped like Osiris' (keboola/osiris), instrumented by mcp-otel.

Osiris' server is an ``mcp`` 1.x low-level ``Server`` built with the decorator API and
served over stdio; it drives an ``AuditLogger``, a ``TelemetryEmitter`` and a
``DiscoveryCache`` by hand from every tool. Here the three are mcp-otel's drop-in
replacements, created the way Osiris creates them (``<logs>/audit``, ``<logs>/telemetry``,
``<logs>/cache``), and one ``mcp_otel.instrument(server, audit=..., telemetry=...)`` call
does what Osiris' tools did by hand: ``log_tool_call`` before each tool runs,
``log_tool_result``/``log_tool_error`` and ``emit_tool_call`` after it with the measured
duration and sizes, the correlation id and sizes in the response ``_meta``,
``emit_server_start``/``emit_server_stop`` and ``emit_handshake``; plus a SERVER span per
request. The tools only keep their own logic: ``discovery_request`` uses the cache as
Osiris does (``get`` first, ``set`` on a miss).

Run it as an MCP client would (stdio; requires ``mcp`` 1.x)::

    python examples/osiris_server.py --logs ./osiris-logs

then check the audit trail with ``mcp-otel verify --strict ./osiris-logs/audit``.
``--summary FILE`` writes the in-process counts as JSON when the server stops (the test
``tests/frameworks/suite/test_mcp1.py`` compares them with the files). Nothing but the MCP
protocol is ever written to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mcp.types as types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.stdio import stdio_server

import mcp_otel
from mcp_otel.audit import AuditLogger
from mcp_otel.cache import DiscoveryCache
from mcp_otel.telemetry import TelemetryEmitter

SERVER_NAME = "osiris-example"
SERVER_VERSION = "0.5.0"

#: The connections Osiris would read from its ``osiris_connections.yaml``.
CONNECTIONS: dict[str, dict[str, Any]] = {
    "@mysql.sales": {"family": "mysql", "host": "db.sales.internal", "reachable": True},
    "@supabase.crm": {"family": "supabase", "host": "crm.supabase.co", "reachable": True},
    "@mysql.legacy": {"family": "mysql", "host": "legacy.internal", "reachable": False},
}
COMPONENTS = ("orders", "customers", "invoices")

TOOLS = [
    types.Tool(
        name="connections_list",
        description="List the configured connections (no secrets).",
        inputSchema={"type": "object", "properties": {}},
    ),
    types.Tool(
        name="connections_doctor",
        description="Check that a connection answers; fails for an unreachable one.",
        inputSchema={
            "type": "object",
            "properties": {"connection": {"type": "string"}, "password": {"type": "string"}},
            "required": ["connection"],
        },
    ),
    types.Tool(
        name="discovery_request",
        description="Discover a component's schema, served from the discovery cache.",
        inputSchema={
            "type": "object",
            "properties": {
                "connection": {"type": "string"},
                "component": {"type": "string"},
                "samples": {"type": "integer", "minimum": 0},
            },
            "required": ["connection", "component"],
        },
    ),
]


def _text(payload: Any) -> list[types.TextContent]:
    return [types.TextContent(type="text", text=json.dumps(payload, sort_keys=True))]


def build_server(cache: DiscoveryCache) -> Server:
    """The low-level server, built the way Osiris builds it (decorators called as
    functions on handlers defined beforehand)."""
    server = Server(SERVER_NAME)
    artifacts: dict[str, dict[str, Any]] = {}  # discovery id -> its overview

    async def list_tools() -> list[types.Tool]:
        return TOOLS

    async def call_tool(name: str, arguments: dict[str, Any]) -> list[types.TextContent]:
        if name == "connections_list":
            return _text({"connections": [
                {"id": cid, "family": c["family"], "host": c["host"]}
                for cid, c in sorted(CONNECTIONS.items())]})
        if name == "connections_doctor":
            connection = str(arguments.get("connection", ""))
            conn = CONNECTIONS.get(connection)
            if conn is None:
                raise ValueError(f"unknown connection {connection!r}")
            if not conn["reachable"]:
                # The SDK's call_tool decorator turns this into an isError result.
                raise ConnectionError(f"{connection}: {conn['host']}:3306 timed out")
            return _text({"connection": connection, "status": "ok"})
        if name == "discovery_request":
            connection = str(arguments.get("connection", ""))
            component = str(arguments.get("component", ""))
            samples = int(arguments.get("samples", 0))
            if connection not in CONNECTIONS or component not in COMPONENTS:
                raise ValueError(f"nothing to discover at {connection}/{component}")
            entry = await cache.get(connection, component, samples)
            if entry is not None:
                discovery_id = entry["discovery_id"]
                artifacts[discovery_id] = entry["data"]
                cached = True
            else:
                data = {"component": component, "rows_sampled": samples,
                        "fields": [f"{component}_col{i}" for i in range(4)]}
                discovery_id = await cache.set(connection, component, samples, data)
                artifacts[discovery_id] = data
                cached = False
            return _text({"discovery_id": discovery_id, "cached": cached,
                          "overview": cache.get_discovery_uri(discovery_id, "overview")})
        raise ValueError(f"unknown tool {name!r}")

    async def read_resource(uri: Any) -> str:
        # osiris://mcp/discovery/<id>/overview.json
        parts = str(uri).split("/")
        if len(parts) != 6 or parts[:4] != ["osiris:", "", "mcp", "discovery"]:
            raise ValueError(f"no such resource: {uri}")
        data = artifacts.get(parts[4]) if parts[5] == "overview.json" else None
        if data is None:
            raise ValueError(f"no such discovery artifact: {uri}")
        return json.dumps(data, sort_keys=True)

    server.list_tools()(list_tools)
    server.call_tool()(call_tool)
    server.read_resource()(read_resource)
    return server


async def serve(logs: Path, summary: Path | None) -> None:
    audit = AuditLogger(logs / "audit")
    telemetry = TelemetryEmitter(output_dir=logs / "telemetry")
    cache = DiscoveryCache(logs / "cache")
    server = build_server(cache)
    handle = mcp_otel.instrument(server, audit=audit, telemetry=telemetry, cache=cache)
    options = InitializationOptions(
        server_name=SERVER_NAME,
        server_version=SERVER_VERSION,
        capabilities=server.get_capabilities(NotificationOptions(), {}),
    )
    try:
        async with stdio_server() as (read_stream, write_stream):
            # Returns when the client closes stdin; instrument() has then emitted
            # server_stop, ended the session span and flushed every sink.
            await server.run(read_stream, write_stream, options)
    finally:
        report = {
            "instrumentation": vars(handle.counts()),
            "sink_errors": handle.sink_errors,
            "audit": audit.get_session_summary(),
            "telemetry": telemetry.metrics,
            "cache": cache.get_cache_stats(),
        }
        handle.uninstrument()
        audit.shutdown()  # the session-end record; it also runs at exit if forgotten
        telemetry.shutdown()
        if summary is not None:
            summary.write_text(json.dumps(report, sort_keys=True, default=str))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=Path, default=Path("osiris-logs"),
                        help="directory for audit/, telemetry/ and cache/")
    parser.add_argument("--summary", type=Path, default=None,
                        help="write the in-process counts here as JSON on exit")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.logs, args.summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
