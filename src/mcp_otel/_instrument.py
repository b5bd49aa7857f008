"""Instrument a server built on the official ``mcp`` SDK (2.3.x) in one call.

Why a middleware and not a wrapper around each tool: the SDK's context-tier middleware
(``Server.middleware``) sees every inbound message, including unknown tools, parameter
validation failures and ``initialize``, and it sees the *wire* result, so ``bytes_out`` is
the size of what the client really receives and the correlation id can be put in the
response ``_meta``. The API is marked provisional by the SDK, which is why the package pins
``mcp>=2.3,<2.4``.

Cooperation with the SDK's own tracing: ``mcp.server.Server`` ships an
``OpenTelemetryMiddleware`` that opens a SERVER span per message (W3C context taken from
``params._meta``) through the *global* tracer provider. We insert our middleware right
inside it, so our work runs with that span current: we add attributes to it rather than
opening a duplicate. Only when an application removed the SDK middleware do we open the
equivalent span ourselves. If no SDK tracer provider is installed globally, the SDK's
spans would be non-recording, so :func:`instrument` installs mcp-otel's provider.

Nothing here may break the host server: every sink call (audit, telemetry, metrics) is
guarded; a failing sink is counted in :attr:`Instrumentation.sink_errors` and logged once
per cause, and the tool's own outcome is returned unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from opentelemetry import trace
from opentelemetry.metrics import Histogram, MeterProvider
from opentelemetry.trace import Span, SpanKind, StatusCode, TracerProvider

from mcp_otel import _json, _setup
from mcp_otel.telemetry import MAX_TOOL_NAMES, MCP_DURATION_BUCKETS, _bounded_label

__all__ = ["Instrumentation", "instrument"]

_log = logging.getLogger(__name__)

#: Keys added to a tools/call response ``_meta``: the same names Osiris' server used, so
#: clients written for Osiris keep reading them.
META_CORRELATION_ID = "correlation_id"
META_DURATION_MS = "duration_ms"
META_BYTES_IN = "bytes_in"
META_BYTES_OUT = "bytes_out"

_SCOPE = "mcp_otel.instrument"
_MAX_ERROR_TEXT = 2048


@dataclass
class InstrumentationCounts:
    """Exact in-process counts of what the middleware observed (read under the lock)."""

    tool_calls: int = 0
    tool_errors: int = 0
    resource_reads: int = 0
    resource_errors: int = 0
    sessions_started: int = 0
    sessions_ended: int = 0
    requests: int = 0


@dataclass
class Instrumentation:
    """Handle returned by :func:`instrument`; :meth:`uninstrument` undoes every hook.

    The audit logger, telemetry emitter and cache are exposed so that tools can use the
    same instances (``handle.cache`` for discovery, for example).
    """

    server: Any
    audit: Any | None
    telemetry: Any | None
    cache: Any | None
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    owns_audit: bool = False
    owns_telemetry: bool = False
    _lowlevel: Any = None
    _middleware: Any = None
    _original_lifespan: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _counts: InstrumentationCounts = field(default_factory=InstrumentationCounts, repr=False)
    _sink_errors: int = 0
    _reported: set[str] = field(default_factory=set, repr=False)
    _active: bool = True

    @property
    def active(self) -> bool:
        return self._active

    @property
    def sink_errors(self) -> int:
        """How many audit/telemetry/metric calls raised (the tool outcome was kept)."""
        with self._lock:
            return self._sink_errors

    def counts(self) -> InstrumentationCounts:
        """A consistent copy of the counters."""
        with self._lock:
            return InstrumentationCounts(**vars(self._counts))

    def uninstrument(self) -> None:
        """Remove the middleware and the lifespan hook; idempotent.

        Every sink is flushed. The ``AuditLogger`` that :func:`instrument` created itself
        is also shut down (its session ends, its writer thread stops); the process-wide
        telemetry emitter and the shared providers are only flushed, so that a second
        ``instrument`` in the same process can reuse them.
        """
        if not self._active:
            return
        self._active = False
        with contextlib.suppress(ValueError):
            self._lowlevel.middleware.remove(self._middleware)
        if self._original_lifespan is not None and getattr(
            self._lowlevel.lifespan, "_mcp_otel_wrapped", False
        ):
            self._lowlevel.lifespan = self._original_lifespan
        self.force_flush()
        if self.owns_audit:
            _guard(self, "audit.shutdown", self.audit.shutdown)

    def force_flush(self) -> None:
        """Flush every sink we know of, so files are complete when this returns."""
        for sink in (self.audit, self.telemetry, self.tracer_provider, self.meter_provider):
            flush = getattr(sink, "force_flush", None)
            if flush is None:
                continue
            try:
                flush()
            except Exception as exc:  # a flush failure must not escape into the host
                self._sink_failed("force_flush", exc)

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self._counts, name, getattr(self._counts, name) + value)

    def _sink_failed(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self._sink_errors += 1
            first = what not in self._reported
            self._reported.add(what)
        if first:
            _log.warning("mcp-otel: %s failed (%s: %s); the request was served", what,
                         type(exc).__name__, exc)


def instrument(
    server: Any,
    *,
    audit: Any | None = None,
    telemetry: Any | None = None,
    cache: Any | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    record_results: bool = True,
) -> Instrumentation:
    """Audit, measure and trace every tool call, resource read and session of ``server``.

    ``server`` is an ``mcp.server.mcpserver.MCPServer`` or a low-level
    ``mcp.server.Server``. ``audit``/``telemetry``: an ``AuditLogger`` /
    ``TelemetryEmitter`` (or any object with the Osiris methods); ``None`` creates the
    default one under ``MCP_OTEL_DIR`` (``init_telemetry()`` for telemetry, so the whole
    process shares one emitter); ``False`` turns that sink off. ``cache`` is only carried
    on the handle for the tools to use. ``record_results=False`` keeps tool results out of
    the audit trail (only their sizes are recorded).

    Calling it twice on the same server raises ``ValueError``: two middlewares would
    double every count.
    """
    lowlevel = _lowlevel_server(server)
    if any(isinstance(m, _McpOtelMiddleware) for m in lowlevel.middleware):
        raise ValueError("this server is already instrumented by mcp-otel; uninstrument() first")

    owns_audit = owns_telemetry = False
    if audit is None:
        from mcp_otel.audit import AuditLogger

        audit = AuditLogger(_setup.data_dir() / "audit")
        owns_audit = True
    if telemetry is None:
        from mcp_otel.telemetry import init_telemetry

        telemetry = init_telemetry()
        owns_telemetry = True

    tp = tracer_provider or _ensure_global_tracer_provider()
    mp = meter_provider or _setup.get_meter_provider()

    handle = Instrumentation(
        server=server,
        audit=None if audit is False else audit,
        telemetry=None if telemetry is False else telemetry,
        cache=cache,
        tracer_provider=tp,
        meter_provider=mp,
        owns_audit=owns_audit,
        owns_telemetry=owns_telemetry,
        _lowlevel=lowlevel,
    )
    middleware = _McpOtelMiddleware(handle, lowlevel, record_results=record_results)
    handle._middleware = middleware
    # Right inside the SDK's OpenTelemetry middleware, so its span is current for us.
    index = next(
        (i + 1 for i, m in enumerate(lowlevel.middleware) if _is_sdk_otel_middleware(m)), 0
    )
    lowlevel.middleware.insert(index, middleware)
    handle._original_lifespan = lowlevel.lifespan
    lowlevel.lifespan = _wrap_lifespan(handle, lowlevel, lowlevel.lifespan)
    return handle


# --------------------------------------------------------------------------------------
# wiring helpers


def _lowlevel_server(server: Any) -> Any:
    """The low-level ``Server`` behind an ``MCPServer`` (or the server itself)."""
    candidate = getattr(server, "_lowlevel_server", server)
    if not isinstance(getattr(candidate, "middleware", None), list) or not hasattr(
        candidate, "lifespan"
    ):
        raise TypeError(
            "instrument() expects an mcp.server.mcpserver.MCPServer or mcp.server.Server "
            f"(mcp>=2.3,<2.4), got {type(server).__name__}"
        )
    return candidate


def _is_sdk_otel_middleware(middleware: Any) -> bool:
    try:
        from mcp.server._otel import OpenTelemetryMiddleware
    except ImportError:  # pragma: no cover - only on an unsupported SDK
        return False
    return isinstance(middleware, OpenTelemetryMiddleware)


def _ensure_global_tracer_provider() -> TracerProvider:
    """The SDK's spans use the global provider: make sure it is a recording one."""
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    current = trace.get_tracer_provider()
    if isinstance(current, SdkTracerProvider):
        return current
    ours = _setup.get_tracer_provider()
    if isinstance(ours, SdkTracerProvider):
        # set_tracer_provider only ever succeeds once per process; it logs otherwise.
        trace.set_tracer_provider(ours)
    return ours


def _wrap_lifespan(handle: Instrumentation, lowlevel: Any, original: Any) -> Any:
    """Emit ``server_start`` / ``server_stop`` around the server's own lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(srv: Any) -> AsyncIterator[Any]:
        telemetry = handle.telemetry
        if telemetry is not None and handle.active:
            version = str(getattr(lowlevel, "version", "") or _package_version())
            _guard(handle, "telemetry.emit_server_start", telemetry.emit_server_start,
                   version, _protocol_version())
        try:
            async with original(srv) as state:
                yield state
        finally:
            if telemetry is not None and handle.active:
                _guard(handle, "telemetry.emit_server_stop", telemetry.emit_server_stop,
                       "shutdown")

    lifespan._mcp_otel_wrapped = True  # type: ignore[attr-defined]
    return lifespan


def _package_version() -> str:
    from mcp_otel import __version__

    return __version__


def _protocol_version() -> str:
    try:
        from mcp_types.version import LATEST_PROTOCOL_VERSION
    except ImportError:  # pragma: no cover
        return "2025-11-25"
    return str(LATEST_PROTOCOL_VERSION)


def _guard(handle: Instrumentation, what: str, fn: Callable[..., Any], *args: Any,
           **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        handle._sink_failed(what, exc)
        return None


async def _aguard(handle: Instrumentation, what: str, fn: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> Any:
    try:
        return await fn(*args, **kwargs)
    except Exception as exc:
        handle._sink_failed(what, exc)
        return None


def _error_type(exc: BaseException) -> str:
    """The same ``error.type`` the SDK's span uses, so metrics and spans agree."""
    from mcp.shared.exceptions import MCPError
    from pydantic import ValidationError

    if isinstance(exc, MCPError):
        return str(exc.error.code)
    if isinstance(exc, ValidationError):
        from mcp_types import INVALID_PARAMS

        return str(INVALID_PARAMS)
    return type(exc).__qualname__


def _result_is_error(result: Any) -> bool:
    if isinstance(result, Mapping):
        return result.get("isError") is True
    return getattr(result, "is_error", False) is True


def _as_wire(result: Any) -> Any:
    """The JSON form of a handler result (middleware normally returns a dict already)."""
    dump = getattr(result, "model_dump", None)
    if dump is not None:
        return dump(by_alias=True, mode="json", exclude_none=True)
    return result


def _error_text(result: Mapping[str, Any]) -> str:
    parts: list[str] = []
    content = result.get("content")
    if isinstance(content, list):
        for item in content:
            if isinstance(item, Mapping) and isinstance(item.get("text"), str):
                parts.append(item["text"])
    text = "\n".join(parts) or "tool returned isError"
    return _cut_error_text(text)


def _cut_error_text(text: str) -> str:
    """``text`` masked, then cut at ``_MAX_ERROR_TEXT`` characters, in that order.

    The sinks mask again, but only what they get: a cut that falls inside a credential can
    hide what its rule needs (a DSN cut before its ``@`` is no URL password any more), and
    the rest of the secret would be written in the clear.
    """
    return _mask_text(text)[:_MAX_ERROR_TEXT]


def _audit_result(result: Mapping[str, Any]) -> Any:
    """What the audit trail keeps of a result: its content, not the envelope."""
    if "structuredContent" in result:
        return result["structuredContent"]
    return result.get("content")


def _connection_of(ctx: Any) -> Any:
    # ServerSession keeps the per-client Connection privately; the SDK documents
    # ``connection.exit_stack`` as the place for middleware cleanup. Pinned minor.
    return getattr(getattr(ctx, "session", None), "_connection", None)


def _session_id(ctx: Any) -> str | None:
    connection = _connection_of(ctx)
    sid = getattr(connection, "session_id", None)
    return sid if isinstance(sid, str) and sid else None


_REDACTOR: Any = None


def _mask_text(text: str) -> str:
    """Credentials inside a client-supplied URI (``db://u:pw@host``) never reach a span,
    nor those inside an error text reach its cut (:func:`_cut_error_text`)."""
    global _REDACTOR
    if _REDACTOR is None:
        from mcp_otel.redaction import Redactor

        _REDACTOR = Redactor()
    try:
        return str(_REDACTOR.mask_text(text))
    except Exception:  # masking must not fail a request; drop the value instead
        return "<unmaskable>"


def _ms_between(start_ns: int, end_ns: int) -> int:
    return max(0, round((end_ns - start_ns) / 1_000_000))


# --------------------------------------------------------------------------------------
# the middleware


class _McpOtelMiddleware:
    """Context-tier middleware doing the audit, telemetry, metric and span work."""

    def __init__(self, handle: Instrumentation, lowlevel: Any, *, record_results: bool) -> None:
        self._handle = handle
        self._lowlevel = lowlevel
        self._record_results = record_results
        self._tracer = handle.tracer_provider.get_tracer(_SCOPE, _package_version())
        # mcp-otel's TelemetryEmitter records mcp.server.operation.duration for tools/call
        # and mcp.server.session.duration itself; recording them here too would double them.
        self._telemetry_records_tools = hasattr(handle.telemetry, "record_session_duration")
        self._tool_labels: set[str] = set()
        meter = handle.meter_provider.get_meter(_SCOPE, _package_version())
        self._op_duration: Histogram = meter.create_histogram(
            "mcp.server.operation.duration",
            unit="s",
            description="MCP request or notification duration as observed on the server.",
            explicit_bucket_boundaries_advisory=list(MCP_DURATION_BUCKETS),
        )
        self._session_duration: Histogram = meter.create_histogram(
            "mcp.server.session.duration",
            unit="s",
            description="Duration of an MCP session as observed on the server.",
            explicit_bucket_boundaries_advisory=list(MCP_DURATION_BUCKETS),
        )

    def _own_span_needed(self) -> bool:
        return not any(_is_sdk_otel_middleware(m) for m in self._lowlevel.middleware)

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Any]) -> Any:
        handle = self._handle
        if not handle.active:
            return await call_next(ctx)
        if self._own_span_needed():
            with self._open_server_span(ctx):
                return await self._dispatch(ctx, call_next)
        return await self._dispatch(ctx, call_next)

    @contextlib.contextmanager
    def _open_server_span(self, ctx: Any) -> Any:
        """The span the SDK's middleware would have opened (same name and attributes)."""
        from mcp.shared._otel import extract_trace_context

        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        name = params.get("name")
        target = name if isinstance(name, str) else None
        attributes: dict[str, Any] = {
            "mcp.method.name": ctx.method,
            "mcp.protocol.version": ctx.protocol_version,
        }
        if ctx.request_id is not None:
            attributes["jsonrpc.request.id"] = str(ctx.request_id)
        if ctx.method == "tools/call":
            attributes["gen_ai.operation.name"] = "execute_tool"
            if target is not None:
                attributes["gen_ai.tool.name"] = target
        meta = ctx.meta if isinstance(ctx.meta, Mapping) else params.get("_meta")
        with self._tracer.start_as_current_span(
            f"{ctx.method}{f' {target}' if target else ''}",
            kind=SpanKind.SERVER,
            attributes=attributes,
            context=extract_trace_context(meta if isinstance(meta, Mapping) else None),
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            yield span

    async def _dispatch(self, ctx: Any, call_next: Callable[[Any], Any]) -> Any:
        method = ctx.method
        if ctx.request_id is not None:
            self._handle._count(requests=1)
        if method == "tools/call":
            return await self._tool_call(ctx, call_next)
        if method == "initialize":
            return await self._initialize(ctx, call_next)
        if method == "resources/read":
            return await self._resource_read(ctx, call_next)
        return await self._timed(ctx, call_next, {"mcp.method.name": method})

    async def _timed(self, ctx: Any, call_next: Callable[[Any], Any],
                     attributes: dict[str, Any]) -> Any:
        """Any other method: only the semconv duration (requests, not notifications)."""
        start = time.perf_counter_ns()
        try:
            result = await call_next(ctx)
        except Exception as exc:
            if ctx.request_id is not None:
                self._record_duration(start, {**attributes, "error.type": _error_type(exc)})
            raise
        if ctx.request_id is not None:
            self._record_duration(start, attributes)
        return result

    def _tool_label(self, tool: str) -> str:
        """Tool names come from clients: cap the metric label's length and cardinality
        as the telemetry emitter does (the same helper, the same overflow label)."""
        return _bounded_label(tool, self._tool_labels, MAX_TOOL_NAMES)

    def _record_duration(self, start_ns: int, attributes: dict[str, Any]) -> None:
        seconds = (time.perf_counter_ns() - start_ns) / 1e9
        _guard(self._handle, "metrics", self._op_duration.record, seconds, attributes)

    # ---- tools/call -----------------------------------------------------------------

    async def _tool_call(self, ctx: Any, call_next: Callable[[Any], Any]) -> Any:
        handle = self._handle
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        raw_name = params.get("name")
        tool = raw_name if isinstance(raw_name, str) and raw_name else "<invalid>"
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        bytes_in = len(_json.dumps(arguments))
        span = trace.get_current_span()
        session_id = _session_id(ctx)

        correlation_id: str | None = None
        if handle.audit is not None:
            correlation_id = await _aguard(
                handle, "audit.log_tool_call", handle.audit.log_tool_call,
                tool_name=tool, arguments=arguments, params_bytes=bytes_in,
            )
        if not correlation_id:
            correlation_id = f"mcp_otel_{secrets.token_hex(8)}"
        if span.is_recording():
            span.set_attributes({
                "mcp_otel.correlation_id": correlation_id,
                "mcp_otel.bytes_in": bytes_in,
            })
            if session_id:
                span.set_attribute("mcp.session.id", session_id)

        attributes: dict[str, Any] = {"mcp.method.name": "tools/call",
                                      "gen_ai.tool.name": self._tool_label(tool)}
        start = time.perf_counter_ns()
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            end = time.perf_counter_ns()
            cancelled = not isinstance(exc, Exception)
            error_type = "cancelled" if cancelled else _error_type(exc)
            text = "cancelled" if cancelled else (_cut_error_text(str(exc)) or error_type)
            # Shielded: a cancelled call still gets its closing audit record.
            with anyio.CancelScope(shield=True):
                await self._tool_failed(tool, correlation_id, start, end, bytes_in, 0,
                                        error_type, text)
            if not self._telemetry_records_tools:
                self._record_duration(start, {**attributes, "error.type": error_type})
            raise
        end = time.perf_counter_ns()
        wire = {} if result is None else _as_wire(result)
        if not isinstance(wire, Mapping):
            # The SDK will reject this shape after us; the call still gets its closing
            # record, as a failure, so the audit trail never has a call left open.
            await self._tool_failed(tool, correlation_id, start, end, bytes_in, 0,
                                    "invalid_result", f"handler returned {type(result).__name__}")
            return result
        bytes_out = len(_json.dumps(wire))
        duration_ms = _ms_between(start, end)
        if _result_is_error(wire):
            await self._tool_failed(tool, correlation_id, start, end, bytes_in, bytes_out,
                                    "tool_error", _error_text(wire))
            if not self._telemetry_records_tools:
                self._record_duration(start, {**attributes, "error.type": "tool_error"})
        else:
            handle._count(tool_calls=1)
            if handle.audit is not None:
                await _aguard(
                    handle, "audit.log_tool_result", handle.audit.log_tool_result,
                    tool=tool, duration_ms=duration_ms, result_bytes=bytes_out,
                    correlation_id=correlation_id, success=True,
                    result=_audit_result(wire) if self._record_results else None,
                )
            if handle.telemetry is not None:
                _guard(handle, "telemetry.emit_tool_call", handle.telemetry.emit_tool_call,
                       tool, "ok", duration_ms, bytes_in, bytes_out)
            if not self._telemetry_records_tools:
                self._record_duration(start, attributes)
        if span.is_recording():
            span.set_attributes({"mcp_otel.bytes_out": bytes_out,
                                 "mcp_otel.duration_ms": duration_ms})
        out = dict(wire)
        meta = dict(out.get("_meta") or {})
        meta.update({
            META_CORRELATION_ID: correlation_id,
            META_DURATION_MS: duration_ms,
            META_BYTES_IN: bytes_in,
            META_BYTES_OUT: bytes_out,
        })
        out["_meta"] = meta
        return out

    async def _tool_failed(self, tool: str, correlation_id: str, start: int, end: int,
                           bytes_in: int, bytes_out: int, error_type: str, text: str) -> None:
        handle = self._handle
        duration_ms = _ms_between(start, end)
        handle._count(tool_calls=1, tool_errors=1)
        if handle.audit is not None:
            await _aguard(
                handle, "audit.log_tool_error", handle.audit.log_tool_error,
                tool=tool, duration_ms=duration_ms, error_code=error_type,
                correlation_id=correlation_id, error=text,
            )
        if handle.telemetry is not None:
            if self._telemetry_records_tools:
                # mcp-otel's emitter: free text on the event, error.type on the metrics.
                _guard(handle, "telemetry.emit_tool_call", handle.telemetry.emit_tool_call,
                       tool, "error", duration_ms, bytes_in, bytes_out, error=text,
                       error_type=error_type)
            else:  # an Osiris-API emitter: only the low-cardinality type
                _guard(handle, "telemetry.emit_tool_call", handle.telemetry.emit_tool_call,
                       tool, "error", duration_ms, bytes_in, bytes_out, error=error_type)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("error.type", error_type)
            span.set_status(StatusCode.ERROR)

    # ---- resources/read -------------------------------------------------------------

    async def _resource_read(self, ctx: Any, call_next: Callable[[Any], Any]) -> Any:
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        uri = params.get("uri")
        uri_text = uri if isinstance(uri, str) else "<invalid>"
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("mcp.resource.uri", _mask_text(uri_text))
            session_id = _session_id(ctx)
            if session_id:
                span.set_attribute("mcp.session.id", session_id)
        attributes = {"mcp.method.name": "resources/read"}
        start = time.perf_counter_ns()
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            cancelled = not isinstance(exc, Exception)
            error_type = "cancelled" if cancelled else _error_type(exc)
            self._record_duration(start, {**attributes, "error.type": error_type})
            with anyio.CancelScope(shield=True):
                await self._resource_done(uri_text, ok=False)
            raise
        self._record_duration(start, attributes)
        await self._resource_done(uri_text, ok=True)
        return result

    async def _resource_done(self, uri: str, *, ok: bool) -> None:
        handle = self._handle
        handle._count(resource_reads=1, resource_errors=0 if ok else 1)
        if handle.audit is not None and hasattr(handle.audit, "log_resource_access"):
            await _aguard(handle, "audit.log_resource_access",
                          handle.audit.log_resource_access, uri, "read", ok)

    # ---- initialize / sessions ------------------------------------------------------

    async def _initialize(self, ctx: Any, call_next: Callable[[Any], Any]) -> Any:
        handle = self._handle
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        client_info = params.get("clientInfo")
        client_info = dict(client_info) if isinstance(client_info, Mapping) else None
        attributes = {"mcp.method.name": "initialize"}
        start = time.perf_counter_ns()
        try:
            result = await call_next(ctx)
        except Exception as exc:
            duration_ms = _ms_between(start, time.perf_counter_ns())
            self._record_duration(start, {**attributes, "error.type": _error_type(exc)})
            if handle.telemetry is not None:
                _guard(handle, "telemetry.emit_handshake", handle.telemetry.emit_handshake,
                       duration_ms, False, client_info)
            raise
        duration_ms = _ms_between(start, time.perf_counter_ns())
        self._record_duration(start, attributes)
        if handle.telemetry is not None:
            _guard(handle, "telemetry.emit_handshake", handle.telemetry.emit_handshake,
                   duration_ms, True, client_info)
        self._start_session(ctx, client_info, start)
        return result

    def _start_session(self, ctx: Any, client_info: dict[str, Any] | None,
                       start_ns: int) -> None:
        """A span from the handshake to the connection's close, plus its duration."""
        handle = self._handle
        connection = _connection_of(ctx)
        exit_stack = getattr(connection, "exit_stack", None)
        if exit_stack is None:
            return
        session_id = _session_id(ctx)
        attributes: dict[str, Any] = {"mcp.protocol.version": str(ctx.protocol_version)}
        if session_id:
            attributes["mcp.session.id"] = session_id
        if client_info:
            if isinstance(client_info.get("name"), str):
                attributes["mcp_otel.client.name"] = client_info["name"]
            if isinstance(client_info.get("version"), str):
                attributes["mcp_otel.client.version"] = client_info["version"]
        current = trace.get_current_span().get_span_context()
        links = [trace.Link(current)] if current.is_valid else []
        span: Span = self._tracer.start_span(
            "mcp.session", kind=SpanKind.SERVER, attributes=attributes, links=links,
            context=trace.set_span_in_context(trace.INVALID_SPAN),
        )
        handle._count(sessions_started=1)

        def _end_session() -> None:
            seconds = (time.perf_counter_ns() - start_ns) / 1e9
            if self._telemetry_records_tools:
                _guard(handle, "telemetry.record_session_duration",
                       handle.telemetry.record_session_duration, seconds)
            else:
                _guard(handle, "metrics", self._session_duration.record, seconds,
                       {"mcp.protocol.version": str(ctx.protocol_version)})
            span.end()
            handle._count(sessions_ended=1)

        try:
            exit_stack.callback(_end_session)
        except Exception as exc:  # the exit stack refused (already closing)
            handle._sink_failed("session tracking", exc)
            span.end()
