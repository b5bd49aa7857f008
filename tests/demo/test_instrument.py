"""instrument(server) on both server styles, through the SDK's own in-process Client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import mcp_types as types
import orjson
import pytest
from mcp import Client
from mcp.server import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from opentelemetry.trace import SpanKind

import mcp_otel
from mcp_otel._instrument.mcp2 import Middleware as _McpOtelMiddleware
from mcp_otel.testing import capture
from tests._support import assert_absent_from_files

MODES = ["legacy", "auto"]


def _fastmcp() -> MCPServer:
    server = MCPServer("t-high", log_level="ERROR")

    @server.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool()
    def fail(reason: str) -> str:
        raise ToolError(f"refused: {reason}")

    @server.tool()
    async def login(user: str, password: str) -> str:
        return f"welcome {user}"

    @server.resource("t://catalog")
    def catalog() -> str:
        return "catalog"

    @server.resource("db://{user}:{password}@warehouse/tables")
    def tables(user: str, password: str) -> str:
        return f"tables for {user}"

    return server


def _lowlevel() -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name="echo", input_schema={"type": "object"}),
            types.Tool(name="deny", input_schema={"type": "object"}),
        ])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name == "deny":
            raise MCPError(code=-32001, message="denied by policy")
        text = json.dumps(params.arguments, sort_keys=True)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    return Server("t-low", on_list_tools=list_tools, on_call_tool=call_tool)


def _server_tool_spans(spans: list[Any]) -> list[Any]:
    """Server spans only: legacy in-process clients also trace their side (CLIENT)."""
    return [s for s in spans if s.kind is SpanKind.SERVER
            and s.attributes.get("mcp.method.name") == "tools/call"]


def _tool_spans(spans: list[Any], tool: str) -> list[Any]:
    return [s for s in _server_tool_spans(spans) if s.attributes.get("gen_ai.tool.name") == tool]


@pytest.mark.parametrize("mode", MODES)
async def test_mcpserver_calls_are_audited_measured_and_traced(mode: str) -> None:
    server = _fastmcp()
    args = {"a": 2, "b": 40}
    with capture() as cap:
        handle = cap.instrument(server)
        async with Client(server, mode=mode) as client:
            ok = await client.call_tool("add", args)
            bad = await client.call_tool("fail", {"reason": "nope"})
            await client.read_resource("t://catalog")
        counts = handle.counts()

    assert ok.structured_content == {"result": 42}
    assert bad.is_error
    # The response _meta carries the correlation id and the measured sizes.
    meta = ok.meta or {}
    assert meta["bytes_in"] == len(orjson.dumps(args))
    calls = cap.audit_events("tool_call")
    results = cap.audit_events("tool_result")
    errors = cap.audit_events("tool_error")
    assert [r["tool"] for r in calls] == ["add", "fail"]
    assert [r["correlation_id"] for r in results] == [meta["correlation_id"]]
    assert [r["correlation_id"] for r in errors] == [bad.meta["correlation_id"]]
    assert calls[0]["correlation_id"] == meta["correlation_id"]
    assert results[0]["bytes_out"] == meta["bytes_out"] > 0
    assert errors[0]["error_code"] == "tool_error"
    assert "refused: nope" in errors[0]["error"]
    assert [r["resource_uri"] for r in cap.audit_events("resource_access")] == ["t://catalog"]

    # Telemetry: one event per call with the same sizes, and exact counters.
    events = [e for e in cap.telemetry_events if e.get("event") == "tool_call"]
    assert [(e["tool"], e["status"]) for e in events] == [("add", "ok"), ("fail", "error")]
    assert events[0]["bytes_in"] == meta["bytes_in"]
    assert events[0]["bytes_out"] == meta["bytes_out"]
    assert cap.telemetry_totals["tool_calls"] == 2
    assert cap.telemetry_totals["errors"] == 1
    assert cap.metric_value("mcp_otel.tool.calls", {"gen_ai.tool.name": "add"}) == 1
    assert cap.metric_value("mcp_otel.tool.errors",
                            {"gen_ai.tool.name": "fail", "error.type": "tool_error"}) == 1
    op = cap.metric_points("mcp.server.operation.duration", {"mcp.method.name": "tools/call"})
    assert sum(p.count or 0 for p in op) == 2
    assert sum(p.count or 0 for p in op if p.attributes.get("error.type") == "tool_error") == 1
    reads = cap.metric_points("mcp.server.operation.duration",
                              {"mcp.method.name": "resources/read"})
    assert sum(p.count or 0 for p in reads) == 1

    # Spans: exactly the SDK's one server span per call, enriched (no duplicate).
    add_spans = _tool_spans(cap.spans, "add")
    assert len(add_spans) == 1
    assert add_spans[0].attributes["mcp_otel.correlation_id"] == meta["correlation_id"]
    assert add_spans[0].attributes["mcp_otel.bytes_out"] == meta["bytes_out"]
    fail_spans = _tool_spans(cap.spans, "fail")
    assert len(fail_spans) == 1 and fail_spans[0].attributes["error.type"] == "tool_error"
    assert counts.tool_calls == 2 and counts.tool_errors == 1 and counts.resource_reads == 1
    assert handle.sink_errors == 0
    # The audit records were written inside the call's span: same trace.
    assert calls[0]["trace_id"] == f"{add_spans[0].context.trace_id:032x}"


async def test_legacy_session_gets_a_span_and_a_duration() -> None:
    server = _fastmcp()
    with capture() as cap:
        handle = cap.instrument(server)
        async with Client(server, mode="legacy") as client:
            await client.call_tool("add", {"a": 1, "b": 1})
        counts = handle.counts()
    sessions = [s for s in cap.spans if s.name == "mcp.session"]
    assert len(sessions) == 1
    assert sessions[0].end_time is not None
    assert counts.sessions_started == counts.sessions_ended == 1
    points = cap.metric_points("mcp.server.session.duration")
    assert sum(p.count or 0 for p in points) == 1
    handshakes = [e for e in cap.telemetry_events if e.get("event") == "handshake"]
    assert len(handshakes) == 1 and handshakes[0]["success"] is True


@pytest.mark.parametrize("mode", MODES)
async def test_lowlevel_server_errors_carry_the_jsonrpc_code(mode: str) -> None:
    server = _lowlevel()
    with capture() as cap:
        cap.instrument(server)
        async with Client(server, mode=mode) as client:
            echoed = await client.call_tool("echo", {"x": "é"})
            with pytest.raises(MCPError):
                await client.call_tool("deny", {})
    assert echoed.meta and echoed.meta["bytes_in"] == len('{"x":"é"}'.encode())
    errors = cap.audit_events("tool_error")
    assert [(e["tool"], e["error_code"]) for e in errors] == [("deny", "-32001")]
    assert len(cap.audit_events("tool_call")) == 2
    events = [e for e in cap.telemetry_events if e.get("event") == "tool_call"]
    assert sorted(e["status"] for e in events) == ["error", "ok"]
    assert cap.metric_value("mcp_otel.tool.errors", {"error.type": "-32001"}) == 1
    deny = _tool_spans(cap.spans, "deny")
    assert len(deny) == 1 and deny[0].attributes["error.type"] == "-32001"


async def test_trace_context_from_params_meta_is_the_parent() -> None:
    server = _fastmcp()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    with capture() as cap:
        cap.instrument(server)
        async with Client(server, mode="auto") as client:
            await client.call_tool("add", {"a": 1, "b": 2},
                                   meta={"traceparent": f"00-{trace_id}-{parent}-01"})
    (span,) = _tool_spans(cap.spans, "add")
    assert f"{span.context.trace_id:032x}" == trace_id
    assert span.parent is not None and f"{span.parent.span_id:016x}" == parent
    (call,) = cap.audit_events("tool_call")
    assert call["trace_id"] == trace_id


async def test_credentials_in_a_resource_uri_are_masked_on_the_span() -> None:
    server = _fastmcp()
    with capture() as cap:
        cap.instrument(server)
        async with Client(server, mode="auto") as client:
            read = await client.read_resource("db://ann:pw-0f9e8d@warehouse/tables")
    assert read.contents[0].text == "tables for ann"
    (span,) = [s for s in cap.spans if s.attributes.get("mcp.method.name") == "resources/read"
               and s.kind is SpanKind.SERVER]
    assert "pw-0f9e8d" not in span.attributes["mcp.resource.uri"]
    assert "warehouse" in span.attributes["mcp.resource.uri"]
    assert all("pw-0f9e8d" not in json.dumps(r) for r in cap.audit_records)


async def test_without_the_sdk_middleware_we_open_the_span_ourselves() -> None:
    server = _fastmcp()
    server.middleware[:] = [m for m in server.middleware
                            if type(m).__name__ != "OpenTelemetryMiddleware"]
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    with capture() as cap:
        cap.instrument(server)
        async with Client(server, mode="auto") as client:
            await client.call_tool("add", {"a": 1, "b": 2},
                                   meta={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
            await client.call_tool("fail", {"reason": "x"})
    (span,) = _tool_spans(cap.spans, "add")
    assert span.name == "tools/call add"
    assert f"{span.context.trace_id:032x}" == trace_id
    assert "mcp_otel.correlation_id" in span.attributes
    (failed,) = _tool_spans(cap.spans, "fail")
    assert failed.attributes["error.type"] == "tool_error"


async def test_secrets_never_reach_the_audit_file(tmp_path: Path) -> None:
    server = _fastmcp()
    secret = "hunter2-8d1f0c"
    with capture(directory=tmp_path / "capture") as cap:
        cap.instrument(server)
        async with Client(server, mode="auto") as client:
            await client.call_tool("login", {"user": "ann", "password": secret})
    (call,) = cap.audit_events("tool_call")
    assert call["arguments"]["user"] == "ann"
    assert call["arguments"]["password"] != secret
    assert_absent_from_files(cap.directory, secret)


async def test_concurrent_clients_exact_counts() -> None:
    server = _fastmcp()
    clients, per_client = 6, 15

    async def one(i: int) -> list[str]:
        cids = []
        async with Client(server, mode="legacy" if i % 2 else "auto") as client:
            for n in range(per_client):
                if n % 5 == 4:
                    r = await client.call_tool("fail", {"reason": str(n)})
                else:
                    r = await client.call_tool("add", {"a": i, "b": n})
                cids.append(r.meta["correlation_id"])
        return cids

    with capture() as cap:
        handle = cap.instrument(server)
        results = await asyncio.gather(*(one(i) for i in range(clients)))
    cids = [c for r in results for c in r]
    total = clients * per_client
    assert len(set(cids)) == total
    assert {r["correlation_id"] for r in cap.audit_events("tool_call")} == set(cids)
    closed = cap.audit_events("tool_result") + cap.audit_events("tool_error")
    assert sorted(r["correlation_id"] for r in closed) == sorted(cids)
    assert len(cap.audit_events("tool_error")) == clients * (per_client // 5)
    assert cap.telemetry_totals["tool_calls"] == total
    assert cap.metric_value("mcp_otel.tool.calls") == total
    assert len(_server_tool_spans(cap.spans)) == total
    assert handle.counts().tool_calls == total


class _BrokenAudit:
    async def log_tool_call(self, **kwargs: Any) -> str:
        raise OSError("disk on fire")

    async def log_tool_result(self, **kwargs: Any) -> None:
        raise OSError("disk on fire")

    async def log_tool_error(self, **kwargs: Any) -> None:
        raise OSError("disk on fire")


async def test_a_failing_sink_never_fails_the_call() -> None:
    server = _fastmcp()
    with capture() as cap:
        handle = cap.instrument(server, audit=_BrokenAudit())
        async with Client(server, mode="auto") as client:
            result = await client.call_tool("add", {"a": 1, "b": 2})
    assert result.structured_content == {"result": 3}
    assert result.meta and result.meta["correlation_id"].startswith("mcp_otel_")
    assert handle.sink_errors == 2
    assert cap.telemetry_totals["tool_calls"] == 1


async def test_uninstrument_restores_the_server() -> None:
    server = _fastmcp()
    before = list(server.middleware)
    lifespan = server._lowlevel_server.lifespan
    with capture() as cap:
        handle = cap.instrument(server)
        with pytest.raises(ValueError, match="already instrumented"):
            mcp_otel.instrument(server, audit=False, telemetry=False)
        assert any(isinstance(m, _McpOtelMiddleware) for m in server.middleware)
        handle.uninstrument()
        handle.uninstrument()  # idempotent
        assert server.middleware == before
        assert server._lowlevel_server.lifespan is lifespan
        async with Client(server, mode="auto") as client:
            await client.call_tool("add", {"a": 1, "b": 2})
    assert [r for r in cap.audit_records if r.get("event") != "session_end"] == []
    assert not [e for e in cap.telemetry_events if e.get("event") == "tool_call"]


async def test_uninstrument_shuts_down_the_audit_logger_it_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """instrument() made the AuditLogger, so uninstrument() ends it: no thread, no
    descriptor and no open session left behind per instrument/uninstrument cycle."""
    monkeypatch.setenv("MCP_OTEL_DIR", str(tmp_path))
    server = _fastmcp()
    handle = mcp_otel.instrument(server, telemetry=False)
    async with Client(server, mode="auto") as client:
        await client.call_tool("add", {"a": 1, "b": 2})
    handle.uninstrument()
    records = [
        json.loads(line)
        for path in (tmp_path / "audit").glob("*.jsonl")
        for line in path.read_bytes().splitlines()
    ]
    assert [r["event"] for r in records] == ["tool_call", "tool_result", "session_end"]


def test_instrument_rejects_what_is_not_an_mcp_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Strict detection: the error names every supported framework and what is installed,
    and nothing was created for the rejected object (no sink, no file)."""
    data = tmp_path / "data"
    monkeypatch.setenv("MCP_OTEL_DIR", str(data))  # where default sinks would write
    with pytest.raises(TypeError) as info:
        mcp_otel.instrument(object())
    assert not data.exists()
    message = str(info.value)
    for expected in ("builtins.object", "MCPServer", "mcp 1.x", "fastmcp 2.x, 3.x, 4.x",
                     "Installed: mcp 2."):
        assert expected in message


@pytest.mark.parametrize("mode", MODES)
async def test_a_cancelled_call_still_gets_its_closing_record(mode: str) -> None:
    server = MCPServer("t-cancel", log_level="ERROR")
    started = asyncio.Event()

    @server.tool()
    async def hang() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    with capture() as cap:
        handle = cap.instrument(server)
        async with Client(server, mode=mode) as client:
            call = asyncio.create_task(client.call_tool("hang", {}))
            await started.wait()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
    (opened,) = cap.audit_events("tool_call")
    (closed,) = cap.audit_events("tool_error")
    assert closed["correlation_id"] == opened["correlation_id"]
    assert closed["error_code"] == "cancelled"
    assert handle.counts().tool_errors == 1
    (span,) = _tool_spans(cap.spans, "hang")
    assert span.attributes["error.type"] == "cancelled"


@pytest.mark.parametrize("path", ["result", "exception"])
async def test_an_error_text_is_masked_before_it_is_cut(path: str) -> None:
    """Error texts are cut at 2048 characters; the cut must come after masking: a DSN
    whose password spans the cut would otherwise reach the sinks without its '@', which
    the URL rule needs, and its password would be written in the clear. Both ways a tool
    fails: an isError result (MCPServer's ToolError) and an exception (MCPError)."""
    password = "S3cr3tPW" + "y" * 200  # spans offset 2048 whatever the SDK's prefix
    message = "x" * 1900 + f" postgresql://bob:{password}@db.internal/prod failed"
    if path == "result":
        server: Any = MCPServer("t-cut", log_level="ERROR")

        @server.tool()
        def connect() -> str:
            raise ToolError(message)
    else:
        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> Any:
            raise MCPError(code=-32001, message=message)

        server = Server("t-cut", on_call_tool=call_tool)
    with capture() as cap:
        cap.instrument(server)
        async with Client(server, mode="auto") as client:
            if path == "result":
                assert (await client.call_tool("connect", {})).is_error
            else:
                with pytest.raises(MCPError):
                    await client.call_tool("connect", {})
    (error,) = cap.audit_events("tool_error")
    (event,) = [e for e in cap.telemetry_events if e.get("event") == "tool_call"]
    for text in (error["error"], event["error"]):
        assert "postgresql://bob:***MASKED***" in text and len(text) <= 2048
        assert "S3cr3tPW" not in text


async def test_the_middleware_tool_label_is_cut_like_the_emitters() -> None:
    """Without mcp-otel's emitter the middleware labels the duration metric itself; a
    client-invented tool name is cut at 128 characters there too, as documented."""
    server = _fastmcp()
    with capture() as cap:
        cap.instrument(server, telemetry=False)
        async with Client(server, mode="auto") as client:
            await client.call_tool("x" * 1000, {})
            await client.call_tool("x" * 999, {})  # the same label: one series
    points = cap.metric_points("mcp.server.operation.duration",
                               {"mcp.method.name": "tools/call"})
    assert [p.attributes["gen_ai.tool.name"] for p in points] == ["x" * 128]
    assert sum(p.count or 0 for p in points) == 2


async def test_without_the_provisional_middleware_list_the_handlers_are_wrapped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A later mcp 2.x without ``Server.middleware``: the stable handler table is used,
    mcp-otel opens the SERVER span, and uninstrument restores the original handlers."""
    from mcp_otel._instrument import mcp2

    server = _lowlevel()
    server.middleware.clear()  # no SDK span either, as on such a release
    original = server.get_request_handler("tools/call").handler
    monkeypatch.setattr(mcp2, "_middleware_hook", lambda lowlevel: None)
    with capture() as cap:
        handle = cap.instrument(server)
        assert server.get_request_handler("tools/call").handler is not original
        async with Client(server) as client:
            ok = await client.call_tool("echo", {"x": 1})
        handle.uninstrument()
    assert server.get_request_handler("tools/call").handler is original
    assert ok.meta["correlation_id"] == cap.audit_events("tool_result")[0]["correlation_id"]
    spans = _tool_spans(cap.spans, "echo")
    assert len(spans) == 1
    assert spans[0].attributes["mcp_otel.correlation_id"] == ok.meta["correlation_id"]


async def test_a_huge_hostile_error_text_is_cut_with_a_mark_and_masked() -> None:
    """Any client can make a tool fail with a text of its choosing: 1 MB after a secret
    word (the pattern that was quadratic) is cut to the cap with a visible mark, and the
    secret in the kept part is masked."""
    message = "token=abc " + "0123456789abcdef" * 65536

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> Any:
        raise MCPError(code=-32001, message=message)

    server = Server("t-huge", on_call_tool=call_tool)
    with capture() as cap:
        cap.instrument(server)
        async with Client(server, mode="auto") as client:
            with pytest.raises(MCPError):
                await client.call_tool("boom", {})
    (error,) = cap.audit_events("tool_error")
    assert len(error["error"]) <= 2048
    assert "[TRUNCATED:" in error["error"]
    assert error["error"].startswith("token=***MASKED***")
