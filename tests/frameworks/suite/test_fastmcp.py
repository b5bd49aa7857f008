"""instrument(server) on standalone fastmcp (2.x from 2.9, 3.x, 4.x), through fastmcp's own
in-memory ``Client`` and, once, over streamable HTTP.

Runs inside a per-line environment (``MCP_OTEL_FRAMEWORK_LINE=fastmcp2-old`` ...); where
fastmcp is not installed the module is skipped, except when such a line was asked for or
under ``CI=true`` with a fastmcp line set, where a missing fastmcp is a failure. The same
checks as ``tests/demo/test_instrument.py`` (mcp 2.x), adapted: what differs between the
lines is stated next to each expectation (see the ``HAS_*`` flags).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

LINE = os.environ.get("MCP_OTEL_FRAMEWORK_LINE", "")

try:
    import fastmcp
except ImportError:
    if LINE.startswith("fastmcp"):
        pytest.fail(f"MCP_OTEL_FRAMEWORK_LINE={LINE} but fastmcp is not installed",
                    pytrace=False)
    pytest.skip("fastmcp is not installed (it runs in the per-line environments)",
                allow_module_level=True)

import orjson  # noqa: E402
from fastmcp import Client, FastMCP  # noqa: E402
from fastmcp.exceptions import ToolError  # noqa: E402
from fastmcp.server.middleware import Middleware  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags  # noqa: E402

import mcp_otel  # noqa: E402
from mcp_otel._instrument import fastmcp as adapter  # noqa: E402
from mcp_otel.testing import capture  # noqa: E402
from tests._stdio_tee import jsonrpc_messages, tee_command  # noqa: E402
from tests._support import assert_absent_from_files  # noqa: E402

VERSION = tuple(int(part) for part in fastmcp.__version__.split(".")[:3])
MAJOR = VERSION[0]


def _tool_result_type() -> Any:
    for module, name in (("fastmcp.tools", "ToolResult"), ("fastmcp.tools.tool", "ToolResult")):
        with contextlib.suppress(ImportError, AttributeError):
            return getattr(importlib.import_module(module), name)
    return None


TOOL_RESULT = _tool_result_type()
_RESULT_PARAMS = inspect.signature(TOOL_RESULT).parameters if TOOL_RESULT else {}
#: The tool result reaching middleware has a ``meta`` (-> response ``_meta``): 2.14+, 3.x, 4.x.
HAS_META = "meta" in _RESULT_PARAMS
#: A tool can return an error result itself (``ToolResult(is_error=True)``): 3.4+, 4.x.
HAS_ERROR_RESULT = "is_error" in _RESULT_PARAMS
#: ``initialize`` passes through fastmcp middleware (the handshake is recorded): 2.13+.
HAS_HANDSHAKE = hasattr(Middleware, "on_initialize")
#: fastmcp's own SERVER span: 3.x opens it inside the chain, 4.x at its dispatch seam.
FASTMCP_SPANS = MAJOR >= 3
#: One ref-counted server lifespan (2.1x+); 2.9 runs the low-level one per connection.
SHARED_LIFESPAN = hasattr(FastMCP, "_lifespan_manager")
#: fastmcp 4's Client negotiates protocol 2026-07-28 ("auto", no handshake) or "legacy".
MODES: list[str | None] = ["legacy", "auto"] if MAJOR >= 4 else [None]


def test_the_environment_is_the_line_asked_for() -> None:
    """A runner that asked for a line gets that line's major version (no silent fallback)."""
    if not LINE.startswith("fastmcp"):
        pytest.skip("no framework line requested")
    assert LINE[len("fastmcp")] == str(MAJOR), (LINE, fastmcp.__version__)


@pytest.fixture(autouse=True, scope="module")
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The shared span provider resolves its files under MCP_OTEL_DIR when it is built."""
    path = tmp_path_factory.mktemp("mcp-otel-data")
    previous = os.environ.get("MCP_OTEL_DIR")
    os.environ["MCP_OTEL_DIR"] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("MCP_OTEL_DIR", None)
        else:
            os.environ["MCP_OTEL_DIR"] = previous


# ---- servers and clients ------------------------------------------------------------


def _tool(server: FastMCP) -> Any:
    """``@server.tool`` (4.x) or ``@server.tool()`` (2.x, 3.x)."""
    return server.tool if MAJOR >= 4 else server.tool()


def _server(name: str = "t-fastmcp", **kwargs: Any) -> FastMCP:
    server = FastMCP(name, **kwargs)
    tool = _tool(server)

    @tool
    def add(a: int, b: int) -> int:
        return a + b

    @tool
    def fail(reason: str) -> str:
        raise ToolError(f"refused: {reason}")

    @tool
    async def slow(ms: int) -> str:
        await asyncio.sleep(ms / 1000)
        return "done"

    @tool
    def login(user: str, password: str) -> str:
        return f"welcome {user}"

    @server.resource("t://catalog")
    def catalog() -> str:
        return "catalog"

    @server.resource("db://{user}:{password}@warehouse/tables")
    def tables(user: str, password: str) -> str:
        return f"tables for {user}"

    return server


def _client(target: Any, mode: str | None = None) -> Any:
    return Client(target, mode=mode) if mode else Client(target)


def _meta(result: Any) -> dict[str, Any]:
    return dict(result.meta or {})


def _is_error(result: Any) -> bool:
    """``is_error`` on mcp 2.x results (fastmcp 4 deprecates ``isError``), else ``isError``."""
    if "is_error" in getattr(type(result), "model_fields", {}):
        return bool(result.is_error)
    return bool(result.isError)


def _structured(result: Any) -> Any:
    if "structured_content" in getattr(type(result), "model_fields", {}):
        return result.structured_content
    return result.structuredContent


def _texts(result: Any) -> list[str]:
    return [c.text for c in result.content if getattr(c, "text", None) is not None]


def _server_spans(spans: list[Any], method: str) -> list[Any]:
    """SERVER spans of one method (the in-process clients also trace their side)."""
    return [s for s in spans if s.kind is SpanKind.SERVER
            and s.attributes.get("mcp.method.name") == method]


def _tool_spans(spans: list[Any], tool: str) -> list[Any]:
    return [s for s in _server_spans(spans, "tools/call")
            if s.attributes.get("gen_ai.tool.name") == tool]


def _tool_events(cap: Any) -> list[dict[str, Any]]:
    return [e for e in cap.telemetry_events if e.get("event") == "tool_call"]


# ---- the whole output of one client -------------------------------------------------


class _Ordering:
    """The capture's audit logger, recording the order of its calls next to the tool's."""

    def __init__(self, audit: Any, log: list[str]) -> None:
        self._audit = audit
        self._log = log

    async def log_tool_call(self, **kwargs: Any) -> Any:
        self._log.append(f"tool_call {kwargs['tool_name']}")
        return await self._audit.log_tool_call(**kwargs)

    async def log_tool_result(self, **kwargs: Any) -> Any:
        self._log.append(f"tool_result {kwargs['tool']}")
        return await self._audit.log_tool_result(**kwargs)

    async def log_tool_error(self, **kwargs: Any) -> Any:
        self._log.append(f"tool_error {kwargs['tool']}")
        return await self._audit.log_tool_error(**kwargs)

    async def log_resource_access(self, *args: Any) -> Any:
        self._log.append(f"resource_access {args[0]}")
        return await self._audit.log_resource_access(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._audit, name)


@pytest.mark.parametrize("mode", MODES)
async def test_calls_are_audited_measured_and_traced(mode: str | None) -> None:
    server = _server()
    order: list[str] = []

    @_tool(server)
    def probe(x: int) -> int:
        order.append("probe ran")
        return x

    args = {"a": 2, "b": 40}
    with capture() as cap:
        handle = cap.instrument(server, audit=_Ordering(cap.audit, order))
        async with _client(server, mode) as client:
            ok = await client.call_tool_mcp("add", args)
            bad = await client.call_tool_mcp("fail", {"reason": "nope"})
            slow = await client.call_tool_mcp("slow", {"ms": 30})
            await client.call_tool_mcp("probe", {"x": 7})
            read = await client.read_resource("t://catalog")
        counts = handle.counts()

    assert _texts(ok) == ["42"] and not _is_error(ok)
    assert _is_error(bad) and "refused: nope" in _texts(bad)[0]
    assert _texts(slow) == ["done"]
    assert read[0].text == "catalog"

    # Audit: tool_call before the tool runs, the closing record after it.
    assert [o for o in order if "probe" in o] == [
        "tool_call probe", "probe ran", "tool_result probe"]
    calls = cap.audit_events("tool_call")
    results = cap.audit_events("tool_result")
    errors = cap.audit_events("tool_error")
    assert [r["tool"] for r in calls] == ["add", "fail", "slow", "probe"]
    assert [r["tool"] for r in results] == ["add", "slow", "probe"]
    assert [(r["tool"], r["error_code"]) for r in errors] == [("fail", "tool_error")]
    assert "refused: nope" in errors[0]["error"]
    by_tool = {r["tool"]: r["correlation_id"] for r in calls}
    assert [r["correlation_id"] for r in results] == [by_tool["add"], by_tool["slow"],
                                                      by_tool["probe"]]
    assert errors[0]["correlation_id"] == by_tool["fail"]
    assert [r["resource_uri"] for r in cap.audit_events("resource_access")] == ["t://catalog"]
    assert calls[0]["bytes_in"] == len(orjson.dumps(args))

    # Real durations and sizes, the same in audit, telemetry and span.
    add_result = results[0]
    assert add_result["bytes_out"] > 0
    assert results[1]["duration_ms"] >= 30
    if HAS_META:
        meta = _meta(ok)
        assert meta["correlation_id"] == by_tool["add"]
        assert meta["bytes_in"] == len(orjson.dumps(args))
        assert meta["bytes_out"] == add_result["bytes_out"]
        assert _meta(slow)["duration_ms"] >= 30
    else:  # fastmcp 2.9-2.13: the middleware result is a bare content list
        assert "correlation_id" not in _meta(ok)
    events = _tool_events(cap)
    assert [(e["tool"], e["status"]) for e in events] == [
        ("add", "ok"), ("fail", "error"), ("slow", "ok"), ("probe", "ok")]
    assert events[0]["bytes_in"] == calls[0]["bytes_in"]
    assert events[0]["bytes_out"] == add_result["bytes_out"]
    assert events[2]["duration_ms"] >= 30
    assert cap.telemetry_totals["tool_calls"] == 4
    assert cap.telemetry_totals["errors"] == 1
    assert cap.metric_value("mcp_otel.tool.calls", {"gen_ai.tool.name": "add"}) == 1
    assert cap.metric_value("mcp_otel.tool.errors",
                            {"gen_ai.tool.name": "fail", "error.type": "tool_error"}) == 1
    op = cap.metric_points("mcp.server.operation.duration", {"mcp.method.name": "tools/call"})
    assert sum(p.count or 0 for p in op) == 4
    reads = cap.metric_points("mcp.server.operation.duration",
                              {"mcp.method.name": "resources/read"})
    assert sum(p.count or 0 for p in reads) == 1

    # Spans: exactly one SERVER span per request, carrying mcp-otel's attributes.
    for tool in ("add", "fail", "slow", "probe"):
        assert len(_tool_spans(cap.spans, tool)) == 1, tool
    (add_span,) = _tool_spans(cap.spans, "add")
    assert add_span.name == "tools/call add"
    assert add_span.attributes["mcp_otel.correlation_id"] == by_tool["add"]
    assert add_span.attributes["mcp_otel.bytes_in"] == calls[0]["bytes_in"]
    assert add_span.attributes["mcp_otel.bytes_out"] == add_result["bytes_out"]
    (slow_span,) = _tool_spans(cap.spans, "slow")
    assert slow_span.attributes["mcp_otel.duration_ms"] >= 30
    assert (slow_span.end_time - slow_span.start_time) >= 30_000_000
    (fail_span,) = _tool_spans(cap.spans, "fail")
    assert fail_span.attributes["error.type"] == "tool_error"
    # One exception event, though fastmcp 3.x records it too on the span it was handed.
    assert [e.attributes["exception.message"] for e in fail_span.events
            if e.name == "exception"] == ["refused: nope"]
    assert len(_server_spans(cap.spans, "resources/read")) == 1
    if FASTMCP_SPANS:  # fastmcp's component attributes are on the same, single span
        assert add_span.attributes["fastmcp.component.type"] == "tool"
    # The audit records were written inside the request's span: the same trace.
    assert calls[0]["trace_id"] == f"{add_span.context.trace_id:032x}"
    assert results[0]["span_id"] == f"{add_span.context.span_id:016x}"

    assert counts.tool_calls == 4 and counts.tool_errors == 1 and counts.resource_reads == 1
    assert handle.sink_errors == 0


async def test_fastmcp_4_reuses_its_seam_span_and_the_sdk_makes_none() -> None:
    """Which span is kept, per line: on 4.x the SERVER span is fastmcp's (scope
    ``fastmcp``, marked as its seam span), the mcp SDK's OpenTelemetryMiddleware is not in
    the low-level server's chain; elsewhere the span is mcp-otel's."""
    server = _server()
    with capture() as cap:
        cap.instrument(server)
        async with _client(server, MODES[0]) as client:
            await client.call_tool_mcp("add", {"a": 1, "b": 1})
    (span,) = _tool_spans(cap.spans, "add")
    if MAJOR >= 4:
        assert span.instrumentation_scope.name == "fastmcp"
        assert span.attributes["fastmcp.span.seam"] is True
        assert not any(type(m).__name__ == "OpenTelemetryMiddleware"
                       for m in server._mcp_server.middleware)
    else:
        assert span.instrumentation_scope.name == "mcp_otel.instrument"
    assert "mcp_otel.correlation_id" in span.attributes


@pytest.mark.skipif(MAJOR < 4, reason="fastmcp's telemetry_mode exists from 4.0")
@pytest.mark.parametrize("telemetry_mode", ["propagation_only", "off"])
async def test_without_fastmcp_spans_we_open_the_span_ourselves(
        monkeypatch: pytest.MonkeyPatch, telemetry_mode: str) -> None:
    monkeypatch.setattr(fastmcp.settings, "telemetry_mode", telemetry_mode)
    server = _server()
    with capture() as cap:
        cap.instrument(server)
        async with _client(server, "auto") as client:
            await client.call_tool_mcp("add", {"a": 1, "b": 2})
    (span,) = _tool_spans(cap.spans, "add")
    assert span.instrumentation_scope.name == "mcp_otel.instrument"
    assert span.name == "tools/call add"
    assert "mcp_otel.correlation_id" in span.attributes
    assert not [s for s in cap.spans if s.kind is SpanKind.SERVER
                and s.instrumentation_scope.name == "fastmcp"]


async def test_trace_context_from_params_meta_is_the_parent() -> None:
    server = _server()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    with capture() as cap:
        cap.instrument(server)
        async with _client(server, MODES[0]) as client:
            if MAJOR >= 4:
                # The mcp 2.x client injects its own CLIENT span into params._meta (over
                # any traceparent given): run it under the remote parent instead.
                remote = SpanContext(int(trace_id, 16), int(parent, 16), is_remote=True,
                                     trace_flags=TraceFlags(TraceFlags.SAMPLED))
                with trace.use_span(NonRecordingSpan(remote)):
                    await client.call_tool_mcp("add", {"a": 1, "b": 2})
            else:  # the SDK session, so that fastmcp 3's client adds nothing of its own
                await client.session.call_tool(
                    "add", {"a": 1, "b": 2}, meta={"traceparent": f"00-{trace_id}-{parent}-01"})
    (span,) = _tool_spans(cap.spans, "add")
    assert f"{span.context.trace_id:032x}" == trace_id
    assert span.parent is not None
    if MAJOR >= 4:
        (sent,) = [s for s in cap.spans if s.kind is SpanKind.CLIENT
                   and s.name == "MCP send tools/call add"]
        assert span.parent.span_id == sent.context.span_id
        # ... whose ancestry (fastmcp's own client span) leads to the remote parent.
        by_id = {s.context.span_id: s for s in cap.spans}
        ancestor = sent
        while ancestor.parent is not None and ancestor.parent.span_id in by_id:
            ancestor = by_id[ancestor.parent.span_id]
        assert f"{ancestor.parent.span_id:016x}" == parent
    else:
        assert f"{span.parent.span_id:016x}" == parent
    (call,) = cap.audit_events("tool_call")
    assert call["trace_id"] == trace_id


async def test_credentials_in_a_resource_uri_are_masked_on_the_span() -> None:
    """fastmcp puts the raw URI on its span (3.x, 4.x): every copy is masked again."""
    server = _server()
    with capture() as cap:
        cap.instrument(server)
        async with _client(server, MODES[0]) as client:
            read = await client.read_resource("db://ann:pw-0f9e8d@warehouse/tables")
    assert read[0].text == "tables for ann"
    (span,) = _server_spans(cap.spans, "resources/read")
    assert "pw-0f9e8d" not in span.name
    assert "warehouse" in span.attributes["mcp.resource.uri"]
    for key, value in span.attributes.items():
        assert "pw-0f9e8d" not in str(value), key
    assert all("pw-0f9e8d" not in json.dumps(r) for r in cap.audit_records)


@pytest.mark.parametrize("mode", MODES)
async def test_sessions_and_handshake(mode: str | None) -> None:
    server = _server()
    with capture() as cap:
        handle = cap.instrument(server)
        async with _client(server, mode) as client:
            await client.call_tool_mcp("add", {"a": 1, "b": 1})
            await client.call_tool_mcp("add", {"a": 1, "b": 2})
        counts = handle.counts()
    handshakes = [e for e in cap.telemetry_events if e.get("event") == "handshake"]
    sessions = [s for s in cap.spans if s.name == "mcp.session"]
    if mode == "auto":  # protocol 2026-07-28: no handshake, no session
        assert handshakes == [] and sessions == []
        assert counts.sessions_started == counts.sessions_ended == 0
        return
    assert len(sessions) == 1 and sessions[0].end_time is not None
    assert counts.sessions_started == counts.sessions_ended == 1
    assert sum(p.count or 0 for p in cap.metric_points("mcp.server.session.duration")) == 1
    if HAS_HANDSHAKE:
        assert len(handshakes) == 1 and handshakes[0]["success"] is True
        assert handshakes[0]["client_info"]["name"]
        # A session opened at initialize carries the client's name.
        assert sessions[0].attributes["mcp_otel.client.name"] == handshakes[0][
            "client_info"]["name"]
    else:  # fastmcp 2.9-2.12: initialize does not pass through middleware
        assert handshakes == []


async def test_server_start_and_stop_around_the_user_lifespan() -> None:
    seen: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, str]]:
        seen.append("enter")
        try:
            yield {"db": "open"}
        finally:
            seen.append("exit")

    server = _server(lifespan=lifespan)
    with capture() as cap:
        cap.instrument(server)
        async with _client(server, MODES[0]) as client:
            assert _texts(await client.call_tool_mcp("add", {"a": 1, "b": 1})) == ["2"]
        if SHARED_LIFESPAN:  # one server lifetime for overlapping connections
            async with _client(server, MODES[0]) as one, _client(server, MODES[0]) as two:
                await one.call_tool_mcp("add", {"a": 1, "b": 1})
                await two.call_tool_mcp("add", {"a": 1, "b": 1})
    lifecycle = [e["event"] for e in cap.telemetry_events
                 if e.get("event") in ("server_start", "server_stop")]
    runs = 2 if SHARED_LIFESPAN else 1
    assert lifecycle == ["server_start", "server_stop"] * runs
    # The user's lifespan still runs (fastmcp 2.14 runs it only on the first start).
    assert seen[:2] == ["enter", "exit"] and len(seen) in (2, 2 * runs)
    (start,) = [e for e in cap.telemetry_events if e.get("event") == "server_start"][:1]
    assert start["version"]


async def test_a_refusal_by_the_users_middleware_is_audited() -> None:
    """mcp-otel's middleware is the outermost: a call the user's own middleware refuses is
    still a tool_call with its tool_error."""

    class Deny(Middleware):
        async def on_call_tool(self, context: Any, call_next: Any) -> Any:
            if context.message.name == "login":
                raise ToolError("denied by policy")
            return await call_next(context)

    server = _server()
    server.add_middleware(Deny())
    with capture() as cap:
        cap.instrument(server)
        assert isinstance(server.middleware[0], adapter.middleware_type())
        async with _client(server, MODES[0]) as client:
            refused = await client.call_tool_mcp("login", {"user": "ann", "password": "x"})
            allowed = await client.call_tool_mcp("add", {"a": 1, "b": 1})
    assert _is_error(refused) and not _is_error(allowed)
    assert [r["tool"] for r in cap.audit_events("tool_call")] == ["login", "add"]
    (error,) = cap.audit_events("tool_error")
    assert error["tool"] == "login" and "denied by policy" in error["error"]


@pytest.mark.skipif(MAJOR != 3, reason="fastmcp 3.x records exceptions on the span it is "
                                         "handed inside the middleware chain")
async def test_an_exception_replaced_inside_the_chain_keeps_both_events() -> None:
    """fastmcp 3.x records the tool's exception on the request's span; when an inner
    middleware replaces it, that record is kept next to the one that left the request."""

    class Rewrap(Middleware):
        async def on_call_tool(self, context: Any, call_next: Any) -> Any:
            try:
                return await call_next(context)
            except ToolError as exc:
                raise ToolError(f"wrapped: {exc}") from exc

    server = _server()
    server.add_middleware(Rewrap())
    with capture() as cap:
        cap.instrument(server)
        async with _client(server) as client:
            assert _is_error(await client.call_tool_mcp("fail", {"reason": "r"}))
    (span,) = _tool_spans(cap.spans, "fail")
    assert [e.attributes["exception.message"] for e in span.events
            if e.name == "exception"] == ["refused: r", "wrapped: refused: r"]
    (error,) = cap.audit_events("tool_error")
    assert error["error"] == "wrapped: refused: r"


async def test_unknown_tools_and_error_results_are_tool_errors() -> None:
    server = _server()
    if HAS_ERROR_RESULT:

        @_tool(server)
        def soft_fail() -> Any:
            from mcp.types import TextContent

            return TOOL_RESULT(content=[TextContent(type="text", text="soft: no rows")],
                               is_error=True)

    with capture() as cap:
        handle = cap.instrument(server)
        async with _client(server, MODES[0]) as client:
            unknown = await client.call_tool_mcp("no_such_tool", {})
            soft = await client.call_tool_mcp("soft_fail", {}) if HAS_ERROR_RESULT else None
    assert _is_error(unknown)
    calls = cap.audit_events("tool_call")
    errors = cap.audit_events("tool_error")
    expected = ["no_such_tool", "soft_fail"] if HAS_ERROR_RESULT else ["no_such_tool"]
    assert [r["tool"] for r in calls] == [r["tool"] for r in errors] == expected
    assert [r["correlation_id"] for r in calls] == [r["correlation_id"] for r in errors]
    assert handle.counts().tool_errors == len(expected)
    if soft is not None:  # an error *result*: its text, and the id in its _meta
        assert _is_error(soft)
        assert errors[1]["error_code"] == "tool_error"
        assert errors[1]["error"] == "soft: no rows"
        assert _meta(soft)["correlation_id"] == errors[1]["correlation_id"]


async def test_secrets_never_reach_the_audit_file(tmp_path: Path) -> None:
    server = _server()
    secret = "hunter2-8d1f0c"
    with capture(directory=tmp_path / "capture") as cap:
        cap.instrument(server)
        async with _client(server, MODES[0]) as client:
            await client.call_tool_mcp("login", {"user": "ann", "password": secret})
    (call,) = cap.audit_events("tool_call")
    assert call["arguments"]["user"] == "ann"
    assert call["arguments"]["password"] != secret
    assert_absent_from_files(cap.directory, secret)


async def test_an_error_text_is_masked_before_it_is_cut() -> None:
    password = "S3cr3tPW" + "y" * 200  # spans offset 2048 whatever fastmcp adds
    message = "x" * 1900 + f" postgresql://bob:{password}@db.internal/prod failed"
    server = FastMCP("t-cut")

    @_tool(server)
    def connect() -> str:
        raise ToolError(message)

    with capture() as cap:
        cap.instrument(server)
        async with _client(server, MODES[0]) as client:
            assert _is_error(await client.call_tool_mcp("connect", {}))
    (error,) = cap.audit_events("tool_error")
    (event,) = _tool_events(cap)
    for text in (error["error"], event["error"]):
        assert "postgresql://bob:***MASKED***" in text and len(text) <= 2048
        assert "S3cr3tPW" not in text


@pytest.mark.parametrize("mode", MODES)
async def test_a_cancelled_call_still_gets_its_closing_record(mode: str | None) -> None:
    server = FastMCP("t-cancel")
    started = asyncio.Event()

    @_tool(server)
    async def hang() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    with capture() as cap:
        handle = cap.instrument(server)
        async with _client(server, mode) as client:
            call = asyncio.create_task(client.call_tool_mcp("hang", {}))
            await started.wait()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        # Leaving the client ends the connection, which cancels the hanging handler where
        # the client sends no cancellation of its own.
    (opened,) = cap.audit_events("tool_call")
    (closed,) = cap.audit_events("tool_error")
    assert closed["correlation_id"] == opened["correlation_id"]
    assert closed["error_code"] == "cancelled"
    assert handle.counts().tool_errors == 1
    (span,) = _tool_spans(cap.spans, "hang")
    assert span.attributes["error.type"] == "cancelled"


# ---- a failing sink never fails or alters a request ---------------------------------


class _Raising:
    """An audit logger / telemetry emitter whose every method raises."""

    def __init__(self, *names: str) -> None:
        for name in names:
            setattr(self, name, self._raiser(name))

    @staticmethod
    def _raiser(name: str) -> Any:
        if name.startswith("log_"):
            async def fail_async(*args: Any, **kwargs: Any) -> Any:
                raise OSError(f"{name}: disk on fire")
            return fail_async

        def fail(*args: Any, **kwargs: Any) -> Any:
            raise OSError(f"{name}: collector on fire")
        return fail


def _broken_audit() -> _Raising:
    return _Raising("log_tool_call", "log_tool_result", "log_tool_error",
                    "log_resource_access", "force_flush", "shutdown")


def _broken_telemetry() -> _Raising:
    return _Raising("emit_tool_call", "emit_handshake", "emit_server_start",
                    "emit_server_stop", "record_session_duration", "force_flush", "shutdown")


async def _exercise(server: FastMCP, mode: str | None) -> list[Any]:
    """Every kind of request, the outcomes as the client sees them (ids taken out)."""
    out: list[Any] = []
    async with _client(server, mode) as client:
        for name, args in (("add", {"a": 1, "b": 2}), ("fail", {"reason": "r"}),
                           ("no_such_tool", {})):
            result = await client.call_tool_mcp(name, args)
            meta = {k: v for k, v in _meta(result).items()
                    if k not in ("correlation_id", "duration_ms", "bytes_in", "bytes_out")}
            out.append((name, _texts(result), _structured(result), _is_error(result), meta))
        out.append(("read", [c.text for c in await client.read_resource("t://catalog")]))
    return out


@pytest.mark.parametrize("mode", MODES)
async def test_raising_sinks_never_fail_or_alter_a_request(mode: str | None) -> None:
    baseline = await _exercise(_server(), mode)
    server = _server()
    with capture() as cap:
        handle = cap.instrument(server, audit=_broken_audit(), telemetry=_broken_telemetry())
        assert await _exercise(server, mode) == baseline
        counts = handle.counts()
    assert counts.tool_calls == 3 and counts.tool_errors == 2 and counts.resource_reads == 1
    # 3 calls x (open + close) audit, 3 telemetry events, 1 resource record, and the
    # lifecycle/handshake/session events of this line.
    assert handle.sink_errors >= 3 * 2 + 3 + 1
    assert len(_server_spans(cap.spans, "tools/call")) == 3


async def test_a_sink_failing_inside_the_adapter_is_contained(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Even the adapter's own translation failing leaves the request served."""
    server = _server()

    def broken(context: Any) -> Any:
        raise RuntimeError("translation bug")

    monkeypatch.setattr(adapter, "_request_of", broken)
    with capture() as cap:
        handle = cap.instrument(server)
        async with _client(server, MODES[0]) as client:
            assert _texts(await client.call_tool_mcp("add", {"a": 2, "b": 2})) == ["4"]
    assert handle.sink_errors >= 1
    assert cap.audit_events("tool_call") == []


# ---- uninstrument -------------------------------------------------------------------


async def test_uninstrument_restores_the_server() -> None:
    server = _server()
    before = list(server.middleware)
    lowlevel_lifespan = server._mcp_server.lifespan
    tracer_hook = _fastmcp_get_tracer()
    with capture() as cap:
        handle = cap.instrument(server)
        with pytest.raises(ValueError, match="already instrumented"):
            mcp_otel.instrument(server, audit=False, telemetry=False)
        assert isinstance(server.middleware[0], adapter.middleware_type())
        if FASTMCP_SPANS and MAJOR == 3:
            assert _fastmcp_get_tracer() is not tracer_hook
        handle.uninstrument()
        handle.uninstrument()  # idempotent
        assert server.middleware == before
        assert "_lifespan_manager" not in vars(server)
        assert server._mcp_server.lifespan is lowlevel_lifespan
        assert _fastmcp_get_tracer() is tracer_hook
        async with _client(server, MODES[0]) as client:
            assert _texts(await client.call_tool_mcp("add", {"a": 1, "b": 2})) == ["3"]
    assert [r for r in cap.audit_records if r.get("event") != "session_end"] == []
    assert _tool_events(cap) == []
    # Nothing of ours is left on the span fastmcp may still make.
    assert all("mcp_otel.correlation_id" not in s.attributes for s in cap.spans)


def _fastmcp_get_tracer() -> Any:
    try:
        import fastmcp.server.telemetry as telemetry
    except ImportError:
        return None
    return getattr(telemetry, "get_tracer", None)


async def test_two_instrumented_servers_keep_the_tracer_hook_until_the_last_goes() -> None:
    original = _fastmcp_get_tracer()
    one, two = _server("one"), _server("two")
    with capture() as cap:
        first = cap.instrument(one)
        second = cap.instrument(two)
        first.uninstrument()
        async with _client(two, MODES[0]) as client:
            await client.call_tool_mcp("add", {"a": 1, "b": 1})
        second.uninstrument()
        assert _fastmcp_get_tracer() is original
    assert len(_tool_spans(cap.spans, "add")) == 1


# ---- concurrency --------------------------------------------------------------------


async def test_concurrent_clients_exact_counts() -> None:
    server = _server()
    clients, per_client = 6, 15

    async def one(i: int) -> None:
        async with _client(server, MODES[i % len(MODES)]) as client:
            for n in range(per_client):
                if n % 5 == 4:
                    assert _is_error(await client.call_tool_mcp("fail", {"reason": str(n)}))
                else:
                    r = await client.call_tool_mcp("add", {"a": i, "b": n})
                    assert _texts(r) == [str(i + n)]

    with capture() as cap:
        handle = cap.instrument(server)
        await asyncio.gather(*(one(i) for i in range(clients)))
    total = clients * per_client
    calls = cap.audit_events("tool_call")
    closed = cap.audit_events("tool_result") + cap.audit_events("tool_error")
    assert len(calls) == total
    assert len({r["correlation_id"] for r in calls}) == total
    assert sorted(r["correlation_id"] for r in closed) == sorted(r["correlation_id"]
                                                                 for r in calls)
    assert len(cap.audit_events("tool_error")) == clients * (per_client // 5)
    assert cap.telemetry_totals["tool_calls"] == total
    assert cap.metric_value("mcp_otel.tool.calls") == total
    spans = _server_spans(cap.spans, "tools/call")
    assert len(spans) == total
    assert {s.attributes["mcp_otel.correlation_id"] for s in spans} == {
        r["correlation_id"] for r in calls}
    assert handle.counts().tool_calls == total


_PROCESS_SCRIPT = """
import asyncio, sys
import fastmcp
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
import mcp_otel
from mcp_otel.audit import AuditLogger
from mcp_otel.telemetry import TelemetryEmitter

directory, index, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
server = FastMCP(f"proc-{index}")
tool = server.tool if int(fastmcp.__version__.split(".")[0]) >= 4 else server.tool()

@tool
def add(a: int, b: int) -> int:
    return a + b

@tool
def fail(reason: str) -> str:
    raise ToolError(reason)

async def main() -> None:
    async with Client(server) as one, Client(server) as two:
        async def run(client, offset):
            for n in range(calls):
                if n % 4 == 3:
                    await client.call_tool_mcp("fail", {"reason": f"{index}-{n}"})
                else:
                    await client.call_tool_mcp("add", {"a": index, "b": offset + n})
        await asyncio.gather(run(one, 0), run(two, 1000))

audit = AuditLogger(directory + "/audit")
telemetry = TelemetryEmitter(output_dir=directory + "/telemetry")
handle = mcp_otel.instrument(server, audit=audit, telemetry=telemetry)
asyncio.run(main())
handle.uninstrument()
audit.shutdown()
telemetry.shutdown()
assert handle.sink_errors == 0, handle.sink_errors
"""


def test_several_processes_share_one_audit_directory(tmp_path: Path) -> None:
    """3 processes x 2 concurrent clients x 20 calls into one audit and telemetry
    directory: exact counts, every call closed, and ``mcp-otel verify --strict`` accepts
    the trail."""
    import subprocess
    import sys

    from mcp_otel.reader import read_records as read_jsonl

    processes, calls = 3, 20
    env = {**os.environ, "MCP_OTEL_DIR": str(tmp_path / "data")}
    children = [subprocess.Popen([sys.executable, "-c", _PROCESS_SCRIPT, str(tmp_path),
                                  str(i), str(calls)], env=env, stderr=subprocess.PIPE)
                for i in range(processes)]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode(errors="replace")[-2000:]
    records = [r for path in sorted((tmp_path / "audit").glob("*.jsonl"))
               for r in read_jsonl(path)]
    opened = [r for r in records if r["event"] == "tool_call"]
    results = [r for r in records if r["event"] == "tool_result"]
    errors = [r for r in records if r["event"] == "tool_error"]
    total = processes * 2 * calls
    assert len(opened) == len({r["correlation_id"] for r in opened}) == total
    assert sorted(r["correlation_id"] for r in results + errors) == sorted(
        r["correlation_id"] for r in opened)
    assert len(errors) == processes * 2 * (calls // 4)
    assert len([r for r in records if r["event"] == "session_end"]) == processes
    events = [e for path in sorted((tmp_path / "telemetry").glob("mcp_telemetry_*.jsonl"))
              for e in read_jsonl(path) if e.get("event") == "tool_call"]
    assert len(events) == total
    verify = subprocess.run([sys.executable, "-m", "mcp_otel", "verify", "--strict",
                             str(tmp_path / "audit")], env=env, capture_output=True,
                            timeout=120)
    assert verify.returncode == 0, verify.stdout.decode() + verify.stderr.decode()


# ---- streamable HTTP ----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_http_transports_through_uvicorn(transport: str) -> None:
    """fastmcp's ``http_app()`` (streamable HTTP, and SSE which every line still has)
    served by uvicorn on a free port, fastmcp's own HTTP client: the client's trace
    context arrives through params._meta only (no in-process context), streamable HTTP's
    session id is on the span, and the counts are exact."""
    import uvicorn

    server = _server()
    path = "/mcp" if transport == "http" else "/sse"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent = "b7ad6b7169203331"
    with capture() as cap:
        handle = cap.instrument(server)
        web = uvicorn.Server(uvicorn.Config(server.http_app(transport=transport),
                                            log_level="warning", lifespan="on"))
        # The listening socket exists already: the client's connection waits in its
        # backlog until uvicorn (after the app's lifespan startup) accepts it.
        serving = asyncio.create_task(web.serve(sockets=[sock]))
        try:
            async with _client(f"http://127.0.0.1:{port}{path}", MODES[0]) as client:
                if MAJOR >= 3:  # fastmcp's client injects its span into params._meta
                    remote = SpanContext(int(trace_id, 16), int(parent, 16), is_remote=True,
                                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
                    with trace.use_span(NonRecordingSpan(remote)):
                        ok = await client.call_tool_mcp("add", {"a": 20, "b": 22})
                else:
                    ok = await client.session.call_tool(
                        "add", {"a": 20, "b": 22},
                        meta={"traceparent": f"00-{trace_id}-{parent}-01"})
                for n in range(9):
                    await client.call_tool_mcp("add", {"a": n, "b": n})
                bad = await client.call_tool_mcp("fail", {"reason": "http"})
        finally:
            web.should_exit = True
            await serving
            sock.close()
        counts = handle.counts()
    assert _texts(ok) == ["42"] and _is_error(bad)
    spans = _tool_spans(cap.spans, "add")
    assert len(spans) == 10
    (first,) = [s for s in spans if s.attributes["mcp_otel.bytes_in"] == len(
        orjson.dumps({"a": 20, "b": 22}))]
    assert f"{first.context.trace_id:032x}" == trace_id
    session_ids = {s.attributes.get("mcp.session.id") for s in spans}
    if transport == "http":  # SSE has no session header
        assert len(session_ids) == 1 and None not in session_ids
    assert len(cap.audit_events("tool_call")) == 11
    assert [r["tool"] for r in cap.audit_events("tool_error")] == ["fail"]
    assert counts.tool_calls == 11 and counts.tool_errors == 1
    assert counts.sessions_started == counts.sessions_ended == 1
    lifecycle = [e["event"] for e in cap.telemetry_events
                 if e.get("event") in ("server_start", "server_stop")]
    assert lifecycle == ["server_start", "server_stop"]


# ---- stdio --------------------------------------------------------------------------

_STDIO_SERVER = """
import fastmcp
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
import mcp_otel

server = FastMCP("stdio-server")
tool = server.tool if int(fastmcp.__version__.split(".")[0]) >= 4 else server.tool()

@tool
def add(a: int, b: int) -> int:
    return a + b

@tool
def fail(reason: str) -> str:
    raise ToolError(f"refused: {reason}")

handle = mcp_otel.instrument(server)  # the defaults: files under MCP_OTEL_DIR
server.run(transport="stdio")         # returns when the client closes stdin
handle.uninstrument()                 # ends the audit session, flushes every sink
"""


async def test_stdio_server_as_a_subprocess_of_fastmcps_stdio_client(tmp_path: Path) -> None:
    """A real stdio server process driven by fastmcp's own stdio client: the protocol on
    stdout stays intact (mcp-otel writes nothing there), and the process leaves a complete
    trail under MCP_OTEL_DIR that ``mcp-otel verify --strict`` accepts."""
    import subprocess
    import sys

    from fastmcp.client.transports import StdioTransport

    from mcp_otel.reader import read_records as read_jsonl

    script = tmp_path / "server.py"
    script.write_text(_STDIO_SERVER)
    data = tmp_path / "data"
    env = {**os.environ, "MCP_OTEL_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    stdout_log = tmp_path / "stdout"  # a byte-for-byte copy of what the server wrote there
    command, args = tee_command(stdout_log, sys.executable, str(script))
    transport = StdioTransport(command=command, args=args, env=env,
                               keep_alive=False)  # the process ends with the client
    async with _client(transport, MODES[0]) as client:
        results = [await client.call_tool_mcp("add", {"a": n, "b": n}) for n in range(8)]
        bad = await client.call_tool_mcp("fail", {"reason": "stdio"})
    responses = [m for m in jsonrpc_messages(stdout_log) if "id" in m]
    assert len(responses) >= 10  # initialize and the nine calls, and nothing but JSON-RPC
    assert [_texts(r) for r in results] == [[str(2 * n)] for n in range(8)]
    assert _is_error(bad) and "refused: stdio" in _texts(bad)[0]
    if HAS_META:
        assert all(_meta(r)["correlation_id"].startswith("mcp_") for r in results)
    records = [r for p in sorted((data / "audit").glob("*.jsonl")) for r in read_jsonl(p)]
    assert [r["event"] for r in records].count("tool_call") == 9
    assert [r["event"] for r in records].count("tool_result") == 8
    assert [(r["tool"], r["error_code"]) for r in records if r["event"] == "tool_error"] == [
        ("fail", "tool_error")]
    assert records[-1]["event"] == "session_end"
    events = [e for p in sorted(data.rglob("mcp_telemetry_*.jsonl")) for e in read_jsonl(p)]
    assert [e["status"] for e in events if e.get("event") == "tool_call"] == ["ok"] * 8 + [
        "error"]
    spans = [json.loads(line) for p in sorted((data / "traces").glob("*.jsonl"))
             for line in p.read_text().splitlines() if line.strip()]
    tool_spans = [sp for sp in spans if str(sp.get("name", "")).startswith("tools/call ")]
    assert len(tool_spans) == 9
    verify = subprocess.run([sys.executable, "-m", "mcp_otel", "verify", "--strict",
                             str(data / "audit")], env=env, capture_output=True, timeout=120)
    assert verify.returncode == 0, verify.stdout.decode() + verify.stderr.decode()
