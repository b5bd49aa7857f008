"""instrument(server) on the official mcp SDK 1.x: the low-level Server built the way Osiris
builds it and mcp.server.fastmcp.FastMCP, through the SDK's own clients (in memory and a
real stdio subprocess). Runs in the mcp1-old and mcp1-new environments only."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

if not importlib.metadata.version("mcp").startswith("1."):  # pragma: no cover
    pytest.skip("mcp 1.x only (framework line mcp1)", allow_module_level=True)

import mcp.types as types
import orjson
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import McpError
from mcp.shared.memory import create_connected_server_and_client_session
from opentelemetry.trace import SpanKind, StatusCode

import mcp_otel
from mcp_otel._instrument import mcp1, mcp2
from mcp_otel.testing import capture
from tests._stdio_tee import tee_command
from tests._support import assert_absent_from_files

from ._mcp1_helpers import (
    HERE,
    OSIRIS_EXAMPLE,
    ServerState,
    fastmcp_server,
    jsonrpc_lines,
    lowlevel_of,
    lowlevel_server,
    resource_text,
    verify_strict,
)

KINDS = ["lowlevel", "fastmcp"]
MCP_VERSION = importlib.metadata.version("mcp")


def _server(kind: str, state: ServerState) -> Any:
    return lowlevel_server(state) if kind == "lowlevel" else fastmcp_server(state)


def _connect(server: Any, **kwargs: Any) -> Any:
    return create_connected_server_and_client_session(lowlevel_of(server), **kwargs)


async def _call_with_meta(client: ClientSession, name: str, arguments: dict[str, Any],
                          meta: dict[str, Any]) -> types.CallToolResult:
    """tools/call with ``params._meta`` (mcp < 1.10's ``call_tool`` has no ``meta``)."""
    params = types.CallToolRequestParams(name=name, arguments=arguments, **{"_meta": meta})
    request = types.ClientRequest(types.CallToolRequest(method="tools/call", params=params))
    return await client.send_request(request, types.CallToolResult)


def _server_spans(spans: list[Any], method: str | None = None) -> list[Any]:
    return [s for s in spans if s.kind is SpanKind.SERVER and s.name != "mcp.session"
            and (method is None or s.attributes.get("mcp.method.name") == method)]


def _wire_size(result: Any) -> int:
    """Size of the result as the server sent it, before mcp-otel added its ``_meta``."""
    wire = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    wire.pop("_meta", None)
    return len(orjson.dumps(wire))


def _text(result: Any) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


# ---- detection ------------------------------------------------------------------------


def test_detection_claims_mcp1_servers_only() -> None:
    state = ServerState()
    low, fast = lowlevel_server(state), fastmcp_server(state)
    assert mcp1.matches(low) and mcp1.matches(fast)
    assert not mcp2.matches(low) and not mcp2.matches(fast)
    assert not mcp1.matches(object()) and not mcp1.matches(None)
    with pytest.raises(TypeError) as info:
        mcp_otel.instrument(object(), audit=False, telemetry=False)
    message = str(info.value)
    assert "mcp 1.x: mcp.server.lowlevel.Server" in message
    assert f"Installed: mcp {MCP_VERSION}" in message


@pytest.mark.parametrize("kind", KINDS)
def test_instrument_reports_the_mcp1_adapter(kind: str) -> None:
    server = _server(kind, ServerState())
    handle = mcp_otel.instrument(server, audit=False, telemetry=False)
    try:
        assert handle.framework == "mcp1" and handle.server is server
    finally:
        handle.uninstrument()


# ---- one client: every output ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_calls_are_audited_measured_and_traced(kind: str) -> None:
    state = ServerState()
    server = _server(kind, state)
    echo_args = {"a": 2, "b": "é"}
    with capture() as cap:
        state.audit_dir = cap.directory / "audit"
        handle = cap.instrument(server)
        async with _connect(server) as client:
            ok = await client.call_tool("echo", echo_args)
            bad = await client.call_tool("fail", {"reason": "nope"})
            slow = await client.call_tool("slow", {"ms": 40})
            peek = await client.call_tool("peek", {})
            read = await client.read_resource("t://catalog")
            await client.list_tools()
        counts = handle.counts()

    # The host's answers are what its tools produced.
    assert json.loads(_text(ok)) == echo_args and not ok.isError
    assert bad.isError and "refused: nope" in _text(bad)
    assert read.contents[0].text == "catalog"
    results = {"echo": ok, "fail": bad, "slow": slow, "peek": peek}
    metas = {name: r.meta or {} for name, r in results.items()}
    for name, meta in metas.items():
        assert set(meta) >= {"correlation_id", "duration_ms", "bytes_in", "bytes_out"}, name
    assert metas["echo"]["bytes_in"] == len(orjson.dumps(echo_args))
    for name, result in results.items():
        assert metas[name]["bytes_out"] == _wire_size(result), name
    assert metas["slow"]["duration_ms"] >= 40

    # Audit: tool_call before the tool runs (peek saw its own), then its closing record.
    calls = cap.audit_events("tool_call")
    assert [c["tool"] for c in calls] == ["echo", "fail", "slow", "peek"]
    assert [c["correlation_id"] for c in calls] == [metas[n]["correlation_id"] for n in results]
    (seen,) = state.seen_by_peek
    assert (seen["event"], seen["correlation_id"]) == ("tool_call", metas["peek"]["correlation_id"])
    closed = {r["correlation_id"]: r for r in
              cap.audit_events("tool_result") + cap.audit_events("tool_error")}
    assert set(closed) == {m["correlation_id"] for m in metas.values()}
    (error,) = cap.audit_events("tool_error")
    assert error["correlation_id"] == metas["fail"]["correlation_id"]
    assert error["error_code"] == "tool_error" and "refused: nope" in error["error"]
    for name in ("echo", "slow", "peek"):
        record = closed[metas[name]["correlation_id"]]
        assert record["event"] == "tool_result"
        assert record["bytes_out"] == metas[name]["bytes_out"]
        assert record["duration_ms"] == metas[name]["duration_ms"]
    assert [(r["resource_uri"], r["status"]) for r in cap.audit_events("resource_access")] \
        == [("t://catalog", "ok")]

    # Telemetry: one event per call with the same figures, exact totals.
    events = [e for e in cap.telemetry_events if e.get("event") == "tool_call"]
    assert [(e["tool"], e["status"]) for e in events] == [
        ("echo", "ok"), ("fail", "error"), ("slow", "ok"), ("peek", "ok")]
    for event in events:
        meta = metas[event["tool"]]
        assert (event["bytes_in"], event["bytes_out"], event["duration_ms"]) == (
            meta["bytes_in"], meta["bytes_out"], meta["duration_ms"])
    totals = cap.telemetry_totals
    assert (totals["tool_calls"], totals["errors"]) == (4, 1)
    assert totals["total_bytes_in"] == sum(m["bytes_in"] for m in metas.values())
    assert totals["total_bytes_out"] == sum(m["bytes_out"] for m in metas.values())
    assert totals["total_duration_ms"] == sum(m["duration_ms"] for m in metas.values())
    assert cap.metric_value("mcp_otel.tool.calls", {"gen_ai.tool.name": "echo"}) == 1
    assert cap.metric_value("mcp_otel.tool.errors",
                            {"gen_ai.tool.name": "fail", "error.type": "tool_error"}) == 1
    op = cap.metric_points("mcp.server.operation.duration", {"mcp.method.name": "tools/call"})
    assert sum(p.count or 0 for p in op) == 4
    assert sum(p.count or 0 for p in op if p.attributes.get("error.type") == "tool_error") == 1
    for method in ("resources/read", "initialize"):
        points = cap.metric_points("mcp.server.operation.duration", {"mcp.method.name": method})
        assert sum(p.count or 0 for p in points) == 1, method

    # Spans: mcp-otel's SERVER span, exactly one per request, with its attributes.
    spans = _server_spans(cap.spans)
    assert len(spans) == counts.requests
    assert len({s.attributes["jsonrpc.request.id"] for s in spans}) == len(spans)
    tool_spans = _server_spans(cap.spans, "tools/call")
    assert [s.name for s in tool_spans] == [f"tools/call {n}" for n in results]
    negotiated = {s.attributes["mcp.protocol.version"] for s in spans}
    assert len(negotiated) == 1
    for span, name in zip(tool_spans, results, strict=True):
        meta = metas[name]
        assert span.attributes["gen_ai.tool.name"] == name
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert span.attributes["mcp_otel.correlation_id"] == meta["correlation_id"]
        assert span.attributes["mcp_otel.bytes_in"] == meta["bytes_in"]
        assert span.attributes["mcp_otel.bytes_out"] == meta["bytes_out"]
        assert span.attributes["mcp_otel.duration_ms"] == meta["duration_ms"]
    (failed,) = [s for s in tool_spans if s.name == "tools/call fail"]
    assert failed.attributes["error.type"] == "tool_error"
    assert failed.status.status_code is StatusCode.ERROR
    (read_span,) = _server_spans(cap.spans, "resources/read")
    assert read_span.attributes["mcp.resource.uri"] == "t://catalog"
    assert len(_server_spans(cap.spans, "initialize")) == 1
    assert _server_spans(cap.spans, "tools/list")
    assert calls[0]["trace_id"] == f"{tool_spans[0].context.trace_id:032x}"

    assert (counts.tool_calls, counts.tool_errors, counts.resource_reads) == (4, 1, 1)
    assert (counts.sessions_started, counts.sessions_ended) == (1, 1)
    assert handle.sink_errors == 0


async def test_trace_context_from_params_meta_is_the_parent() -> None:
    server = lowlevel_server(ServerState())
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    with capture() as cap:
        cap.instrument(server)
        async with _connect(server) as client:
            result = await _call_with_meta(client, "echo", {"a": 1},
                                           {"traceparent": f"00-{trace_id}-{parent}-01"})
            await client.call_tool("echo", {"a": 2})
    assert result.meta and result.meta["correlation_id"]
    first, second = _server_spans(cap.spans, "tools/call")
    assert f"{first.context.trace_id:032x}" == trace_id
    assert first.parent is not None and f"{first.parent.span_id:016x}" == parent
    assert f"{second.context.trace_id:032x}" != trace_id  # no _meta: a new trace
    calls = cap.audit_events("tool_call")
    assert calls[0]["trace_id"] == trace_id


async def test_sessions_handshakes_and_server_lifetime() -> None:
    """Each connection is one session: handshake event, initialize span, session span
    (ended when the client goes), session duration; server_start/stop around it."""
    server = lowlevel_server(ServerState())
    with capture() as cap:
        handle = cap.instrument(server)
        for _ in range(2):
            async with _connect(server) as client:
                await client.call_tool("echo", {})
        counts = handle.counts()
    assert (counts.sessions_started, counts.sessions_ended) == (2, 2)
    handshakes = [e for e in cap.telemetry_events if e.get("event") == "handshake"]
    assert [h["success"] for h in handshakes] == [True, True]
    assert all(h["client_info"]["name"] for h in handshakes)
    names = [e.get("event") for e in cap.telemetry_events]
    assert names.count("server_start") == names.count("server_stop") == 2
    sessions = [s for s in cap.spans if s.name == "mcp.session"]
    inits = _server_spans(cap.spans, "initialize")
    assert len(sessions) == len(inits) == 2
    for session, init in zip(sessions, inits, strict=True):
        assert session.end_time is not None and session.kind is SpanKind.SERVER
        assert [link.context.span_id for link in session.links] == [init.context.span_id]
        assert session.attributes["mcp.protocol.version"] == \
            init.attributes["mcp.protocol.version"]
        assert init.status.status_code is not StatusCode.ERROR
    points = cap.metric_points("mcp.server.session.duration")
    assert sum(p.count or 0 for p in points) == 2


async def test_an_error_result_and_a_protocol_error() -> None:
    """A raw handler-table entry (no decorator): an isError result is a tool_error with its
    text; an McpError keeps its JSON-RPC code on the audit record, metric and span."""
    from mcp.server.lowlevel import Server

    server = Server("t-raw")

    async def raw_call_tool(req: types.CallToolRequest) -> types.ServerResult:
        if req.params.name == "deny":
            raise McpError(types.ErrorData(code=-32001, message="denied by policy"))
        return types.ServerResult(types.CallToolResult(
            content=[types.TextContent(type="text", text="quota exceeded")], isError=True))

    server.request_handlers[types.CallToolRequest] = raw_call_tool
    with capture() as cap:
        cap.instrument(server)
        async with _connect(server) as client:
            quota = await client.call_tool("quota", {})
            with pytest.raises(McpError) as info:
                await client.call_tool("deny", {})
    assert quota.isError and _text(quota) == "quota exceeded"
    assert quota.meta and quota.meta["correlation_id"]
    assert info.value.error.code == -32001
    errors = cap.audit_events("tool_error")
    assert [(e["tool"], e["error_code"]) for e in errors] == [
        ("quota", "tool_error"), ("deny", "-32001")]
    assert "quota exceeded" in errors[0]["error"]
    assert "denied by policy" in errors[1]["error"]
    assert cap.metric_value("mcp_otel.tool.errors", {"error.type": "-32001"}) == 1
    deny = [s for s in _server_spans(cap.spans, "tools/call") if s.name == "tools/call deny"]
    assert len(deny) == 1 and deny[0].attributes["error.type"] == "-32001"


async def test_a_failed_resource_read_is_audited_as_an_error() -> None:
    server = lowlevel_server(ServerState())
    with capture() as cap:
        handle = cap.instrument(server)
        async with _connect(server) as client:
            with pytest.raises(McpError):
                await client.read_resource("t://nowhere")
    assert [(r["resource_uri"], r["status"]) for r in cap.audit_events("resource_access")] \
        == [("t://nowhere", "error")]
    assert (handle.counts().resource_reads, handle.counts().resource_errors) == (1, 1)
    (span,) = _server_spans(cap.spans, "resources/read")
    assert span.attributes["error.type"] == "ValueError"


async def test_secrets_in_arguments_are_masked_before_the_audit_file(tmp_path: Path) -> None:
    server = lowlevel_server(ServerState())
    secret = "hunter2-7c1e9a"
    with capture(directory=tmp_path / "capture") as cap:
        cap.instrument(server)
        async with _connect(server) as client:
            result = await client.call_tool("login", {"user": "ann", "password": secret})
    assert _text(result) == "welcome ann"
    (call,) = cap.audit_events("tool_call")
    assert call["arguments"]["user"] == "ann" and call["arguments"]["password"] != secret
    assert_absent_from_files(cap.directory, secret)


async def test_a_cancelled_call_still_gets_its_closing_record() -> None:
    """The client cancels a running tools/call (notifications/cancelled): the call that
    was audited as started is closed as a cancelled tool_error, on its span too."""
    from mcp.server.lowlevel import Server
    from mcp.shared.session import RequestResponder

    if not hasattr(RequestResponder, "cancel"):
        pytest.skip(f"mcp {MCP_VERSION} serves requests one at a time and cannot cancel one")
    server = Server("t-cancel")
    started = asyncio.Event()
    running: list[Any] = []

    @server.call_tool()
    async def call_tool(name: str, arguments: dict[str, Any]) -> list[Any]:
        running.append(server.request_context.request_id)
        started.set()
        await asyncio.Event().wait()
        return []

    with capture() as cap:
        handle = cap.instrument(server)
        async with _connect(server) as client:
            call = asyncio.create_task(client.call_tool("hang", {}))
            await started.wait()
            await client.send_notification(types.ClientNotification(types.CancelledNotification(
                method="notifications/cancelled",
                params=types.CancelledNotificationParams(requestId=running[0], reason="t"))))
            with pytest.raises(McpError):
                await call
    (opened,) = cap.audit_events("tool_call")
    (closed,) = cap.audit_events("tool_error")
    assert closed["correlation_id"] == opened["correlation_id"]
    assert closed["error_code"] == "cancelled"
    assert handle.counts().tool_errors == 1
    (span,) = _server_spans(cap.spans, "tools/call")
    assert span.attributes["error.type"] == "cancelled"


async def test_uninstrument_while_a_client_is_connected() -> None:
    """Taken out mid-connection: later requests go untouched, the open session still
    ends, and nothing is recorded twice or left open."""
    server = lowlevel_server(ServerState())
    low = lowlevel_of(server)
    with capture() as cap:
        handle = cap.instrument(server)
        async with _connect(server) as client:
            first = await client.call_tool("echo", {"a": 1})
            handle.uninstrument()
            second = await client.call_tool("echo", {"a": 2})
            assert "run" not in vars(low)
        counts = handle.counts()
    assert first.meta and not second.meta
    assert [r["event"] for r in cap.audit_records] == ["tool_call", "tool_result", "session_end"]
    assert (counts.tool_calls, counts.sessions_started, counts.sessions_ended) == (1, 1, 1)
    assert len(_server_spans(cap.spans, "tools/call")) == 1
    assert len([s for s in cap.spans if s.name == "mcp.session"]) == 1


# ---- handlers registered late -----------------------------------------------------------


async def test_handlers_registered_before_and_after_instrument_are_observed() -> None:
    """Decorators called after instrument(): before the client connects, and while it is
    connected (a handler added, a handler replaced); every one of them is observed."""
    from mcp.server.lowlevel import Server

    server = Server("t-late")

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:  # registered before instrument()
        return [types.Tool(name="early", inputSchema={"type": "object"})]

    with capture() as cap:
        handle = cap.instrument(server)

        @server.call_tool()
        async def call_tool(name: str, arguments: dict[str, Any]) -> list[Any]:
            return [types.TextContent(type="text", text=f"v1 {name}")]

        async with _connect(server) as client:
            first = await client.call_tool("early", {})

            @server.read_resource()
            async def read_resource(uri: Any) -> Any:
                return resource_text("late resource")

            @server.call_tool()
            async def call_tool_v2(name: str, arguments: dict[str, Any]) -> list[Any]:
                return [types.TextContent(type="text", text=f"v2 {name}")]

            read = await client.read_resource("t://late")
            second = await client.call_tool("early", {})
            await client.list_tools()
        counts = handle.counts()
    assert (_text(first), _text(second)) == ("v1 early", "v2 early")
    assert read.contents[0].text == "late resource"
    assert first.meta and second.meta
    assert len(cap.audit_events("tool_call")) == len(cap.audit_events("tool_result")) == 2
    assert [r["resource_uri"] for r in cap.audit_events("resource_access")] == ["t://late"]
    assert (counts.tool_calls, counts.resource_reads) == (2, 1)
    assert len(_server_spans(cap.spans, "tools/list")) >= 1
    assert len(_server_spans(cap.spans)) == counts.requests


# ---- failure isolation -----------------------------------------------------------------


class _OnFire:
    """An audit logger / telemetry emitter whose every method raises."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise OSError(f"{name}: disk on fire")

        return fail


async def _drive(server: Any) -> list[Any]:
    out: list[Any] = []
    async with _connect(server) as client:
        out.append(await client.call_tool("echo", {"a": 1, "b": "x"}))
        out.append(await client.call_tool("fail", {"reason": "r"}))
        out.append(await client.read_resource("t://catalog"))
        with pytest.raises(McpError) as info:
            await client.read_resource("t://nowhere")
        out.append(info.value.error)
        out.append(await client.list_tools())
    return out


def _without_meta(result: Any) -> Any:
    dump = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    dump.pop("_meta", None)
    return dump


@pytest.mark.parametrize("kind", KINDS)
async def test_failing_sinks_never_fail_or_alter_a_request(kind: str) -> None:
    baseline = await _drive(_server(kind, ServerState()))
    server = _server(kind, ServerState())
    handle = mcp_otel.instrument(server, audit=_OnFire(), telemetry=_OnFire())
    try:
        observed = await _drive(server)
    finally:
        handle.uninstrument()
    assert [_without_meta(r) for r in observed] == [_without_meta(r) for r in baseline]
    echo, fail = observed[0], observed[1]
    assert echo.meta and echo.meta["correlation_id"].startswith("mcp_otel_")
    assert fail.isError and fail.meta
    counts = handle.counts()
    assert (counts.tool_calls, counts.tool_errors, counts.sessions_ended) == (2, 1, 1)
    assert handle.sink_errors >= 8  # calls, results, errors, resources, lifetime events


# ---- uninstrument ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_uninstrument_restores_the_server(kind: str) -> None:
    server = _server(kind, ServerState())
    low = lowlevel_of(server)
    before = dict(low.request_handlers)
    with capture() as cap:
        handle = cap.instrument(server)
        with pytest.raises(ValueError, match="already instrumented"):
            mcp_otel.instrument(server, audit=False, telemetry=False)

        async def late(req: Any) -> Any:
            return types.ServerResult(types.EmptyResult())

        low.request_handlers[types.SetLevelRequest] = late
        async with _connect(server) as client:  # the connection wraps the late entry
            await client.call_tool("echo", {})
        assert all(low.request_handlers[k] is not v for k, v in before.items())
        assert "run" in vars(low)
        handle.uninstrument()
        handle.uninstrument()  # idempotent
        assert {k: v for k, v in low.request_handlers.items() if k in before} == before
        assert all(low.request_handlers[k] is v for k, v in before.items())
        assert low.request_handlers[types.SetLevelRequest] is late
        assert "run" not in vars(low)
        async with _connect(server) as client:
            await client.call_tool("echo", {})
        again = mcp_otel.instrument(server, audit=False, telemetry=False)
        again.uninstrument()
    assert len(cap.audit_events("tool_call")) == 1
    assert len([e for e in cap.telemetry_events if e.get("event") == "tool_call"]) == 1
    assert len(_server_spans(cap.spans, "tools/call")) == 1
    assert len([s for s in cap.spans if s.name == "mcp.session"]) == 1


# ---- concurrency ------------------------------------------------------------------------


async def test_concurrent_clients_exact_counts() -> None:
    server = lowlevel_server(ServerState())
    clients, per_client = 8, 20

    async def one(i: int) -> list[str]:
        cids = []
        async with _connect(server) as client:
            for n in range(per_client):
                if n % 5 == 4:
                    r = await client.call_tool("fail", {"reason": f"{i}-{n}"})
                    assert r.isError
                else:
                    r = await client.call_tool("echo", {"a": i, "b": str(n)})
                    assert json.loads(_text(r)) == {"a": i, "b": str(n)}
                cids.append(r.meta["correlation_id"])
        return cids

    with capture() as cap:
        handle = cap.instrument(server)
        results = await asyncio.gather(*(one(i) for i in range(clients)))
    cids = [c for r in results for c in r]
    total = clients * per_client
    assert len(set(cids)) == total
    calls = cap.audit_events("tool_call")
    assert sorted(r["correlation_id"] for r in calls) == sorted(cids)
    closed = cap.audit_events("tool_result") + cap.audit_events("tool_error")
    assert sorted(r["correlation_id"] for r in closed) == sorted(cids)
    assert len(cap.audit_events("tool_error")) == clients * (per_client // 5)
    assert cap.telemetry_totals["tool_calls"] == total
    assert cap.telemetry_totals["errors"] == clients * (per_client // 5)
    assert cap.metric_value("mcp_otel.tool.calls") == total
    assert len(_server_spans(cap.spans, "tools/call")) == total
    counts = handle.counts()
    assert (counts.tool_calls, counts.sessions_started, counts.sessions_ended) == (
        total, clients, clients)
    assert len([s for s in cap.spans if s.name == "mcp.session"]) == clients


# ---- stdio: real subprocesses ------------------------------------------------------------


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MCP_OTEL_DIR", None)
    env.update(extra)
    return env


async def _drive_osiris(params: StdioServerParameters, plan: list[tuple[str, dict[str, Any]]],
                        reads: int) -> dict[str, Any]:
    """One stdio client session against the example; what the client saw."""
    tally: dict[str, Any] = {"calls": 0, "errors": 0, "meta": [], "hits": 0,
                             "overviews": [], "reads": 0}
    async with stdio_client(params) as (read_stream, write_stream), \
            ClientSession(read_stream, write_stream) as client:
        await client.initialize()
        listed = await client.list_tools()
        assert {t.name for t in listed.tools} == {
            "connections_list", "connections_doctor", "discovery_request"}
        for name, arguments in plan:
            result = await client.call_tool(name, arguments)
            tally["calls"] += 1
            tally["errors"] += bool(result.isError)
            assert result.meta is not None, name
            tally["meta"].append(result.meta)
            if name == "discovery_request" and not result.isError:
                body = json.loads(_text(result))
                tally["hits"] += body["cached"]
                tally["overviews"].append(body["overview"])
        for uri in sorted(set(tally["overviews"]))[:reads]:
            read = await client.read_resource(uri)
            assert json.loads(read.contents[0].text)["fields"]
            tally["reads"] += 1
    return tally


def _osiris_plan(seed: int) -> list[tuple[str, dict[str, Any]]]:
    plan: list[tuple[str, dict[str, Any]]] = [("connections_list", {})]
    for i in range(12):
        component = ("orders", "customers", "invoices")[(i + seed) % 3]
        plan.append(("discovery_request", {"connection": "@mysql.sales",
                                           "component": component, "samples": i % 2}))
    plan += [("connections_doctor", {"connection": "@supabase.crm", "password": "pw-9f8e7d"}),
             ("connections_doctor", {"connection": "@mysql.legacy"}),
             ("connections_doctor", {"connection": "@nowhere"}),
             ("discovery_request", {"connection": "@nowhere", "component": "orders"})]
    return plan


def _read_lines(directory: Path, pattern: str) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(directory.glob(pattern))
            for line in path.read_bytes().splitlines() if line.strip()]


async def test_osiris_example_over_stdio_every_count_agrees(tmp_path: Path) -> None:
    """Items 4 and 8: the Osiris-shaped example as a real stdio subprocess, driven by the
    SDK's stdio client. Every byte on its stdout is protocol; the audit trail verifies
    strictly; audit lines, telemetry events and totals, cache statistics and the
    instrumentation's own counts agree with what the client saw."""
    logs, summary, stdout_log = tmp_path / "logs", tmp_path / "summary.json", tmp_path / "out"
    command, args = tee_command(stdout_log, sys.executable, str(OSIRIS_EXAMPLE),
                                "--logs", str(logs), "--summary", str(summary))
    params = StdioServerParameters(command=command, args=args,
                                   env=_child_env(MCP_OTEL_DIR=str(tmp_path / "otel")))
    plan = _osiris_plan(0)
    tally = await _drive_osiris(params, plan, reads=2)

    # stdout: JSON-RPC only (requests from the server would be ids we never sent).
    messages = [m.root for m in jsonrpc_lines(stdout_log)]
    requests = 1 + 1 + len(plan) + tally["reads"]  # initialize, tools/list, calls, reads
    assert all(isinstance(m, types.JSONRPCResponse | types.JSONRPCError) for m in messages)
    assert sorted(m.id for m in messages) == list(range(requests))

    report = json.loads(summary.read_text())  # written after the client closed stdin
    check = verify_strict(logs / "audit")
    assert check.returncode == 0, check.stdout + check.stderr

    audit = _read_lines(logs / "audit", "*.jsonl")
    events = [r["event"] for r in audit]
    cids = [m["correlation_id"] for m in tally["meta"]]
    assert events.count("tool_call") == tally["calls"] == len(plan)
    assert [r["correlation_id"] for r in audit if r["event"] == "tool_call"] == cids
    closed = [r for r in audit if r["event"] in ("tool_result", "tool_error")]
    assert sorted(r["correlation_id"] for r in closed) == sorted(cids)
    assert events.count("tool_error") == tally["errors"] == 3
    assert events.count("resource_access") == tally["reads"] == 2
    assert events[-1] == "session_end" and events.count("session_end") == 1
    by_cid = {m["correlation_id"]: m for m in tally["meta"]}
    for record in closed:
        meta = by_cid[record["correlation_id"]]
        assert record["duration_ms"] == meta["duration_ms"]
        if record["event"] == "tool_result":
            assert record["bytes_out"] == meta["bytes_out"]
    assert all("pw-9f8e7d" not in json.dumps(r) for r in audit)

    telemetry = _read_lines(logs / "telemetry", "mcp_telemetry_*.jsonl")
    names = [e["event"] for e in telemetry]
    assert names.count("tool_call") == len(plan)
    assert (names.count("server_start"), names.count("handshake"),
            names.count("server_stop")) == (1, 1, 1)
    totals = report["telemetry"]
    assert totals == {
        "tool_calls": len(plan), "errors": tally["errors"],
        "total_bytes_in": sum(m["bytes_in"] for m in tally["meta"]),
        "total_bytes_out": sum(m["bytes_out"] for m in tally["meta"]),
        "total_duration_ms": sum(m["duration_ms"] for m in tally["meta"]),
    }
    (stop,) = [e for e in telemetry if e["event"] == "server_stop"]
    assert stop["metrics"] == totals  # the stop event's copy: nothing counted after it

    distinct = {(a["component"], a["samples"]) for n, a in plan
                if n == "discovery_request" and a["connection"] == "@mysql.sales"}
    discoveries = sum(1 for n, a in plan
                      if n == "discovery_request" and a["connection"] == "@mysql.sales")
    assert tally["hits"] == discoveries - len(distinct)
    assert report["cache"]["disk_files"] == report["cache"]["memory_entries"] == len(distinct)

    counts = report["instrumentation"]
    assert (counts["tool_calls"], counts["tool_errors"]) == (len(plan), tally["errors"])
    assert (counts["resource_reads"], counts["resource_errors"]) == (2, 0)
    assert (counts["sessions_started"], counts["sessions_ended"]) == (1, 1)
    assert counts["requests"] == requests
    assert report["sink_errors"] == 0
    assert report["audit"]["tool_calls"] == len(plan)


async def test_several_stdio_server_processes_share_one_trail(tmp_path: Path) -> None:
    """Three example processes at once, one log directory: exact counts over all of them,
    one audit session per process, and the shared trail verifies strictly."""
    logs = tmp_path / "logs"
    processes = 3

    async def one(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        summary = tmp_path / f"summary-{i}.json"
        command, args = tee_command(tmp_path / f"out-{i}", sys.executable, str(OSIRIS_EXAMPLE),
                                    "--logs", str(logs), "--summary", str(summary))
        params = StdioServerParameters(command=command, args=args,
                                       env=_child_env(MCP_OTEL_DIR=str(tmp_path / f"otel-{i}")))
        tally = await _drive_osiris(params, _osiris_plan(i), reads=1)
        assert all(isinstance(m.root, types.JSONRPCResponse | types.JSONRPCError)
                   for m in jsonrpc_lines(tmp_path / f"out-{i}"))
        return tally, json.loads(summary.read_text())

    outcomes = await asyncio.gather(*(one(i) for i in range(processes)))
    check = verify_strict(logs / "audit")
    assert check.returncode == 0, check.stdout + check.stderr
    audit = _read_lines(logs / "audit", "*.jsonl")
    cids = sorted(m["correlation_id"] for tally, _ in outcomes for m in tally["meta"])
    assert len(set(cids)) == len(cids) == processes * len(_osiris_plan(0))
    assert sorted(r["correlation_id"] for r in audit if r["event"] == "tool_call") == cids
    assert sorted(r["correlation_id"] for r in audit
                  if r["event"] in ("tool_result", "tool_error")) == cids
    ends = [r for r in audit if r["event"] == "session_end"]
    assert len(ends) == len({r["session_id"] for r in audit}) == processes
    telemetry = _read_lines(logs / "telemetry", "mcp_telemetry_*.jsonl")
    assert len([e for e in telemetry if e["event"] == "tool_call"]) == len(cids)
    assert sum(report["telemetry"]["tool_calls"] for _, report in outcomes) == len(cids)
    assert sum(t["errors"] for t, _ in outcomes) == len(
        [r for r in audit if r["event"] == "tool_error"])
    # The cache is shared through the directory: one file per distinct key overall.
    assert {report["cache"]["disk_files"] for _, report in outcomes} == {6}
    assert len(list((logs / "cache").glob("disc_*.json"))) == 6


@pytest.mark.parametrize("exit_hard", [False, True], ids=["exit", "os._exit"])
async def test_a_bare_stdio_server_leaves_a_complete_trail(tmp_path: Path,
                                                          exit_hard: bool) -> None:
    """instrument(server) with its default sinks and no clean-up code: the server returns
    from run when stdin closes and exits. stdout held only the protocol; the spans, the
    telemetry and the audit records were flushed when the session ended (even a process
    that then leaves through os._exit, skipping every exit hook, has them); on a normal
    exit the audit logger's exit hook adds the session end and the trail verifies."""
    otel, stdout_log = tmp_path / "otel", tmp_path / "out"
    command, args = tee_command(stdout_log, sys.executable, str(HERE), "bare-server",
                                *(["--exit-hard"] if exit_hard else []))
    params = StdioServerParameters(command=command, args=args,
                                   env=_child_env(MCP_OTEL_DIR=str(otel)))
    async with stdio_client(params) as (read_stream, write_stream), \
            ClientSession(read_stream, write_stream) as client:
        await client.initialize()
        await client.list_tools()
        for _ in range(5):
            assert _text(await client.call_tool("ping", {})) == "pong"
    messages = [m.root for m in jsonrpc_lines(stdout_log)]
    assert all(isinstance(m, types.JSONRPCResponse) for m in messages)
    assert sorted(m.id for m in messages) == list(range(1 + 1 + 5))
    audit = _read_lines(otel / "audit", "*.jsonl")
    assert [r["event"] for r in audit] == ["tool_call", "tool_result"] * 5 + (
        [] if exit_hard else ["session_end"])
    telemetry = _read_lines(otel / "telemetry", "mcp_telemetry_*.jsonl")
    assert [e["event"] for e in telemetry] == (
        ["server_start", "handshake"] + ["tool_call"] * 5 + ["server_stop"])
    spans = _read_lines(otel / "traces", "mcp_spans_*.jsonl")
    names = sorted(s["name"] for s in spans)
    assert names == sorted(["initialize", "tools/list", "mcp.session"] + ["tools/call ping"] * 5)
    if not exit_hard:
        check = verify_strict(otel / "audit")
        assert check.returncode == 0, check.stdout + check.stderr


# ---- HTTP transports ---------------------------------------------------------------------


async def test_streamable_http_sessions_are_traced_with_their_session_id() -> None:
    """FastMCP's streamable HTTP app (mcp >= 1.8): each HTTP session is one connection
    (one Server.run), with its handshake and session span; every request's span and
    audit record belongs to it."""
    try:
        from mcp.client.streamable_http import streamable_http_client as http_client
    except ImportError:
        try:
            from mcp.client.streamable_http import streamablehttp_client as http_client
        except ImportError:
            pytest.skip(f"mcp {MCP_VERSION} has no streamable HTTP transport (mcp >= 1.8)")
    from ._mcp1_helpers import serving

    server = fastmcp_server(ServerState())
    session_ids: list[str | None] = []
    with capture() as cap:
        handle = cap.instrument(server)
        async with serving(server.streamable_http_app()) as base:
            for _ in range(2):
                async with http_client(f"{base}/mcp") as (read_stream, write_stream, sid), \
                        ClientSession(read_stream, write_stream) as client:
                    await client.initialize()
                    result = await client.call_tool("echo", {"a": 1, "b": "http"})
                    assert json.loads(_text(result)) == {"a": 1, "b": "http"}
                    assert result.meta and result.meta["correlation_id"]
                    session_ids.append(sid())
        counts = handle.counts()
    assert len(set(session_ids)) == 2 and all(session_ids)
    tool_spans = _server_spans(cap.spans, "tools/call")
    assert [s.attributes.get("mcp.session.id") for s in tool_spans] == session_ids
    assert (counts.tool_calls, counts.sessions_started, counts.sessions_ended) == (2, 2, 2)
    assert len([s for s in cap.spans if s.name == "mcp.session"]) == 2
    assert len(_server_spans(cap.spans)) == counts.requests
    assert len(cap.audit_events("tool_call")) == len(cap.audit_events("tool_result")) == 2


async def test_stateless_streamable_http_requests_are_observed() -> None:
    """Stateless streamable HTTP runs the server once per HTTP request: every tool call
    is observed and the client's initialize is a handshake, but nothing opens a session
    or a server lifetime per request."""
    try:
        from mcp.client.streamable_http import streamable_http_client as http_client
    except ImportError:
        try:
            from mcp.client.streamable_http import streamablehttp_client as http_client
        except ImportError:
            pytest.skip(f"mcp {MCP_VERSION} has no streamable HTTP transport (mcp >= 1.8)")
    from ._mcp1_helpers import serving, stateless_fastmcp_server

    server = stateless_fastmcp_server()
    with capture() as cap:
        handle = cap.instrument(server)
        async with serving(server.streamable_http_app()) as base, \
                http_client(f"{base}/mcp") as (read_stream, write_stream, _sid), \
                ClientSession(read_stream, write_stream) as client:
            await client.initialize()
            results = [await client.call_tool("add", {"a": i, "b": 1}) for i in range(4)]
        counts = handle.counts()
    assert [_text(r) for r in results] == ["1", "2", "3", "4"]
    assert len({r.meta["correlation_id"] for r in results}) == 4
    assert (counts.tool_calls, counts.sessions_started) == (4, 0)
    assert len(cap.audit_events("tool_result")) == 4
    names = [e.get("event") for e in cap.telemetry_events]
    assert "server_start" not in names and "server_stop" not in names
    assert names.count("handshake") == 1
    assert not [s for s in cap.spans if s.name == "mcp.session"]
    assert len(_server_spans(cap.spans, "tools/call")) == 4


async def test_sse_connections_are_observed() -> None:
    """The SDK's SSE transport with an Osiris-shaped low-level server."""
    from mcp.client.sse import sse_client

    from ._mcp1_helpers import serving, sse_app

    server = lowlevel_server(ServerState())
    with capture() as cap:
        handle = cap.instrument(server)
        async with serving(sse_app(server)) as base, \
                sse_client(f"{base}/sse") as (read_stream, write_stream), \
                ClientSession(read_stream, write_stream) as client:
            await client.initialize()
            ok = await client.call_tool("echo", {"a": 3})
            bad = await client.call_tool("fail", {"reason": "sse"})
        counts = handle.counts()
    assert ok.meta and bad.isError and bad.meta
    assert [e["tool"] for e in cap.audit_events("tool_error")] == ["fail"]
    assert (counts.tool_calls, counts.tool_errors) == (2, 1)
    assert (counts.sessions_started, counts.sessions_ended) == (1, 1)
    handshakes = [e for e in cap.telemetry_events if e.get("event") == "handshake"]
    assert len(handshakes) == 1 and handshakes[0]["success"] is True
    assert len(_server_spans(cap.spans)) == counts.requests
