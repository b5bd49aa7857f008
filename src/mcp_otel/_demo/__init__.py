"""The ``mcp-otel demo``: real instrumented MCP servers and real clients driving them.

``frameworks`` knows which MCP frameworks are installed and builds the demo server on one
(``tools`` holds the tools, written once); ``server`` is one server process (uvicorn,
streamable HTTP on a free 127.0.0.1 port); ``client`` is the framework-neutral client (raw
JSON-RPC over streamable HTTP); ``driver`` starts several servers sharing one data
directory, runs the clients and checks that every count agrees across the audit trail,
the telemetry events, the metric snapshots and the spans.
"""
