"""mcp_otel.testing.capture on its own: cache spans and metrics, async use, clean-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from opentelemetry import trace

from mcp_otel.testing import capture


async def test_cache_spans_and_counters_are_captured() -> None:
    async with capture() as cap:
        directory = cap.directory
        assert await cap.cache.get("sales", "orders") is None
        await cap.cache.set("sales", "orders", 0, {"fields": ["id"]})
        entry = await cap.cache.get("sales", "orders")
        assert entry is not None and entry["data"] == {"fields": ["id"]}
    assert not directory.exists()  # removed when the block ended
    gets = [s for s in cap.spans if s.name == "cache.get"]
    assert [s.attributes["cache.hit"] for s in gets] == [False, True]
    assert "cache.set" in cap.span_names()
    assert cap.metric_value("mcp_otel.cache.requests", {"mcp_otel.cache.result": "hit"}) == 1
    assert cap.metric_value("mcp_otel.cache.requests", {"mcp_otel.cache.result": "miss"}) == 1
    # Nothing in the connection name reaches a span.
    assert all("sales" not in str(dict(s.attributes)) for s in cap.spans)


def test_spans_outside_the_block_are_not_captured() -> None:
    tracer = trace.get_tracer("t")
    with capture() as first:
        with tracer.start_as_current_span("inside"):
            pass
        with capture() as second, tracer.start_as_current_span("nested"):
            pass
    with tracer.start_as_current_span("after"):
        pass
    assert first.span_names() == ["inside", "nested"]
    assert second.span_names() == ["nested"]


async def test_keep_leaves_the_files_and_audit_is_read_back(tmp_path: Path) -> None:
    server = MCPServer("t-cap", log_level="ERROR")

    @server.tool()
    def hello(name: str) -> str:
        return f"hello {name}"

    target = tmp_path / "cap"
    middleware_before = list(server.middleware)
    with capture(directory=target) as cap:
        handle = cap.instrument(server)
        assert list(server.middleware) != middleware_before  # hooked while capturing
        async with Client(server) as client:
            await client.call_tool("hello", {"name": "x"})
    assert [r["event"] for r in cap.audit_records if r.get("tool") == "hello"] == [
        "tool_call", "tool_result"]
    assert any(p.name.startswith("mcp_audit_") for p in (target / "audit").iterdir())
    assert cap.telemetry_totals["tool_calls"] == 1
    # The server is left as it was found.
    assert not handle.active
    assert list(server.middleware) == middleware_before


def test_capture_reads_back_whatever_the_deployment_line_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``MCP_OTEL_JSONL_FORMAT=otlp`` is for a deployment's files; the capture owns its
    own and reads them back as flat lines (with otlp lines it raised ``KeyError``)."""
    monkeypatch.setenv("MCP_OTEL_JSONL_FORMAT", "otlp")
    before = dict(os.environ)
    with capture() as cap:
        for duration in (1, 2, 3):
            cap.telemetry.emit_tool_call("a", "ok", duration, 2, 3)
            assert dict(os.environ) == before  # never touched, not even for a moment
    calls = [e for e in cap.telemetry_events if e.get("event") == "tool_call"]
    assert [e["duration_ms"] for e in calls] == [1, 2, 3]
    assert cap.metric_value("mcp_otel.tool.calls", {"gen_ai.tool.name": "a"}) == 3
    assert dict(os.environ) == before
