"""The ``mcp-otel demo``: a real instrumented MCP server and real clients driving it.

``server`` holds the server process (official SDK, uvicorn, streamable HTTP on a free
127.0.0.1 port); ``driver`` starts several of them sharing one data directory, runs the
clients and checks that every count agrees across the audit trail, the telemetry events,
the metric snapshots and the spans.
"""
