"""What every framework adapter shares: "a request happened" becomes audit, telemetry,
metric and span calls.

Why one core: the output must be the same whatever the server is built with (mcp 1.x
decorators, mcp 2.x middleware, fastmcp's middleware), so the adapters only translate
their framework's request and result into a :class:`Request` and a :class:`ResultCodec`
and hand a ``call_next`` to :meth:`Observer.observe`. Nothing in this module imports a
framework.

Nothing here may break the host server: every sink call (audit, telemetry, metrics,
spans) is guarded; a failing sink is counted in :attr:`Instrumentation.sink_errors` and
logged once per cause, and the tool's own outcome (its result or its exception) is passed
on unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from opentelemetry import propagate, trace
from opentelemetry.metrics import Histogram, MeterProvider
from opentelemetry.trace import Span, SpanKind, StatusCode, TracerProvider

from mcp_otel import _json, _lifecycle, _setup, redaction
from mcp_otel.telemetry import (
    MAX_TOOL_NAMES,
    _bounded_label,
    operation_duration,
    session_duration,
)

_log = logging.getLogger("mcp_otel.instrument")

#: Keys added to a tools/call response ``_meta``: the same names Osiris' server used, so
#: clients written for Osiris keep reading them.
META_CORRELATION_ID = "correlation_id"
META_DURATION_MS = "duration_ms"
META_BYTES_IN = "bytes_in"
META_BYTES_OUT = "bytes_out"

SCOPE = "mcp_otel.instrument"
#: Error texts from tools and clients are cut to this many characters (after masking).
MAX_ERROR_TEXT = 2048


@dataclass
class InstrumentationCounts:
    """Exact in-process counts of what the instrumentation observed (read under the lock)."""

    tool_calls: int = 0
    tool_errors: int = 0
    resource_reads: int = 0
    resource_errors: int = 0
    sessions_started: int = 0
    sessions_ended: int = 0
    requests: int = 0


@dataclass
class Instrumentation:
    """Handle returned by :func:`mcp_otel.instrument`; :meth:`uninstrument` undoes every hook.

    The audit logger, telemetry emitter and cache are exposed so that tools can use the
    same instances (``handle.cache`` for discovery, for example). ``framework`` names the
    adapter in use (``"mcp2"``, ``"mcp1"``, ``"fastmcp"``).
    """

    server: Any
    audit: Any | None
    telemetry: Any | None
    cache: Any | None
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    framework: str = ""
    owns_audit: bool = False
    owns_telemetry: bool = False
    _undo: list[Callable[[], None]] = field(default_factory=list, repr=False)
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

    def on_uninstrument(self, undo: Callable[[], None]) -> None:
        """Register how to take one hook out again (run in reverse order)."""
        self._undo.append(undo)

    def uninstrument(self) -> None:
        """Remove every hook; idempotent.

        Every sink is flushed. The ``AuditLogger`` that :func:`instrument` created itself
        is also shut down (its session ends, its writer thread stops); the process-wide
        telemetry emitter and the shared providers are only flushed, so that a second
        ``instrument`` in the same process can reuse them.
        """
        if not self._active:
            return
        self._active = False
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:  # one stuck hook must not keep the others in
                self._sink_failed("uninstrument", exc)
        self.force_flush()
        if self.owns_audit:
            guard(self, "audit.shutdown", self.audit.shutdown)

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
            _log.warning("mcp-otel: %s failed (%s); the request was served", what,
                         type(exc).__name__)


def guard(handle: Instrumentation, what: str, fn: Callable[..., Any], *args: Any,
          **kwargs: Any) -> Any:
    """Call a sink; a failure is counted on ``handle`` and never reaches the host."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        handle._sink_failed(what, exc)
        return None


async def aguard(handle: Instrumentation, what: str, fn: Callable[..., Any], *args: Any,
                 **kwargs: Any) -> Any:
    try:
        return await fn(*args, **kwargs)
    except Exception as exc:
        handle._sink_failed(what, exc)
        return None


@dataclass(frozen=True)
class Request:
    """One inbound MCP message, as every adapter describes it to the core.

    ``params`` is the wire form (camelCase keys); ``meta`` is ``params._meta``, where a
    client puts its W3C trace context; ``request_id`` is None for a notification.
    """

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    request_id: Any = None
    protocol_version: str | None = None
    meta: Mapping[str, Any] | None = None
    session_id: str | None = None


class ResultCodec(Protocol):
    """How an adapter reads and amends its framework's tools/call result."""

    def wire(self, result: Any) -> Mapping[str, Any] | None:
        """The JSON form the client receives (``content``, ``isError``, ...), or None
        when the result has a shape the framework will reject anyway."""
        ...

    def with_meta(self, result: Any, meta: Mapping[str, Any]) -> Any:
        """``result`` with ``meta`` merged into its ``_meta`` (or unchanged where the
        framework has no place for it)."""
        ...


class WireCodec:
    """Results that are the wire dict already, or pydantic models of it (mcp 2.x)."""

    def wire(self, result: Any) -> Mapping[str, Any] | None:
        if result is None:
            return {}
        dump = getattr(result, "model_dump", None)
        if dump is not None:
            result = dump(by_alias=True, mode="json", exclude_none=True)
        return result if isinstance(result, Mapping) else None

    def with_meta(self, result: Any, meta: Mapping[str, Any]) -> Any:
        wire = self.wire(result)
        if wire is None:
            return result
        return self.wire_with_meta(wire, meta)

    @staticmethod
    def wire_with_meta(wire: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
        """``wire`` (from :meth:`wire`) with ``meta`` merged: the observer has the wire form
        already, and a second ``model_dump`` of the result cost as much as the first."""
        out = dict(wire)
        merged = dict(out.get("_meta") or {})
        merged.update(meta)
        out["_meta"] = merged
        return out


def default_error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


def ms_between(start_ns: int, end_ns: int) -> int:
    return max(0, round((end_ns - start_ns) / 1_000_000))


def mask_text(text: str) -> str:
    """Credentials inside a client-supplied URI (``db://u:pw@host``) never reach a span.

    Linear in the text's length (see :mod:`mcp_otel.redaction`)."""
    try:
        return str(redaction.policy().mask_text(text))
    except Exception:  # masking must not fail a request; drop the value instead
        return "<unmaskable>"


def cut_error_text(text: str) -> str:
    """``text`` cut to :data:`MAX_ERROR_TEXT` characters with a visible mark, masked.

    Only what is kept is masked (plus a margin past the cut, so a credential the cut
    would split is still recognised): a client's megabyte-long error text costs the
    request no more than its first few kilobytes.
    """
    try:
        return str(redaction.policy().mask_preview(text, MAX_ERROR_TEXT))
    except Exception:  # masking must not fail a request; drop the value instead
        return "<unmaskable>"


def _error_text(result: Mapping[str, Any]) -> str:
    parts: list[str] = []
    content = result.get("content")
    if isinstance(content, list):
        for item in content:
            if isinstance(item, Mapping) and isinstance(item.get("text"), str):
                parts.append(item["text"])
    return cut_error_text("\n".join(parts) or "tool returned isError")


def _audit_result(result: Mapping[str, Any]) -> Any:
    """What the audit trail keeps of a result: its content, not the envelope."""
    if "structuredContent" in result:
        return result["structuredContent"]
    return result.get("content")


def _exception_text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not change the request's outcome
        return type(exc).__qualname__


def package_version() -> str:
    from mcp_otel import __version__

    return __version__


def ensure_global_tracer_provider() -> TracerProvider:
    """Frameworks' own spans use the global provider: make sure it is a recording one."""
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    current = trace.get_tracer_provider()
    if isinstance(current, SdkTracerProvider):
        return current
    ours = _setup.get_tracer_provider()
    if isinstance(ours, SdkTracerProvider):
        # set_tracer_provider only ever succeeds once per process; it logs otherwise.
        trace.set_tracer_provider(ours)
    return ours


@dataclass
class _ToolCall:
    tool: str
    correlation_id: str
    bytes_in: int
    span: Span
    attributes: dict[str, Any]


class Observer:
    """The framework-neutral observer: one per instrumented server.

    ``classify_error`` maps an exception to the ``error.type`` the framework's own span
    would carry (a JSON-RPC code for protocol errors), so metrics and spans agree.
    """

    def __init__(self, handle: Instrumentation, *, record_results: bool,
                 classify_error: Callable[[BaseException], str] = default_error_type) -> None:
        self._handle = handle
        self._record_results = record_results
        self._classify = classify_error
        self._tracer = handle.tracer_provider.get_tracer(SCOPE, package_version())
        # mcp-otel's TelemetryEmitter records mcp.server.operation.duration for tools/call
        # and mcp.server.session.duration itself; recording them here too would double them.
        self._telemetry_records_tools = hasattr(handle.telemetry, "record_session_duration")
        self._tool_labels: set[str] = set()
        meter = handle.meter_provider.get_meter(SCOPE, package_version())
        self._op_duration: Histogram = operation_duration(meter)
        self._session_duration: Histogram = session_duration(meter)

    @property
    def handle(self) -> Instrumentation:
        return self._handle

    # ---- entry point ------------------------------------------------------------------

    async def observe(self, request: Request, call_next: Callable[[], Awaitable[Any]], *,
                      codec: ResultCodec | None = None, own_span: bool = True,
                      on_close: Callable[[Callable[[], None]], bool] | None = None) -> Any:
        """Run ``call_next`` (the framework's handling of ``request``) under observation.

        ``own_span``: open the semantic-convention SERVER span here; False where the
        framework opened one already (it is then current, and gets our attributes).
        ``on_close``: for ``initialize``, registers the callable that ends the session
        when the connection closes (returns False when it cannot).
        """
        if not self._handle.active:
            return await call_next()
        codec = codec or WireCodec()
        span_cm = self._server_span_or_none(request) if own_span else None
        if span_cm is None:
            return await self._dispatch(request, call_next, codec, on_close)
        with span_cm:
            return await self._dispatch(request, call_next, codec, on_close)

    def _server_span_or_none(self, request: Request) -> Any:
        try:
            return self.server_span(request)
        except Exception as exc:
            self._handle._sink_failed("span", exc)
            return None

    @contextlib.contextmanager
    def server_span(self, request: Request) -> Iterator[Span]:
        """The SERVER span of the MCP semantic conventions, parented on ``params._meta``."""
        name = request.params.get("name") if request.method in (
            "tools/call", "prompts/get") else None
        target = name if isinstance(name, str) else None
        attributes: dict[str, Any] = {"mcp.method.name": request.method}
        if request.protocol_version:
            attributes["mcp.protocol.version"] = str(request.protocol_version)
        if request.request_id is not None:
            attributes["jsonrpc.request.id"] = str(request.request_id)
        if request.session_id:
            attributes["mcp.session.id"] = request.session_id
        if request.method == "tools/call":
            attributes["gen_ai.operation.name"] = "execute_tool"
            if target is not None:
                attributes["gen_ai.tool.name"] = target
        elif request.method == "prompts/get" and target is not None:
            attributes["gen_ai.prompt.name"] = target
        meta = request.meta if isinstance(request.meta, Mapping) else None
        parent = propagate.extract(dict(meta)) if meta else None
        with self._tracer.start_as_current_span(
            f"{request.method}{f' {target}' if target else ''}",
            kind=SpanKind.SERVER,
            attributes=attributes,
            context=parent,
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                # The conventions require error.type on a failed request's span; the tool
                # path sets its own, every other method (resources/read, ...) gets it here.
                if span.is_recording() and "error.type" not in (
                        getattr(span, "attributes", None) or {}):
                    span.set_attribute("error.type", self._etype(exc)
                                       if isinstance(exc, Exception) else "cancelled")
                raise

    async def _dispatch(self, request: Request, call_next: Callable[[], Awaitable[Any]],
                        codec: ResultCodec,
                        on_close: Callable[[Callable[[], None]], bool] | None) -> Any:
        if request.request_id is not None:
            self._handle._count(requests=1)
        if request.method == "tools/call":
            return await self._tool_call(request, call_next, codec)
        if request.method == "initialize":
            return await self.initialize(request, call_next, on_close)
        if request.method == "resources/read":
            return await self._resource_read(request, call_next)
        return await self.timed(request, call_next)

    async def timed(self, request: Request, call_next: Callable[[], Awaitable[Any]]) -> Any:
        """Any other method: only the semconv duration (requests, not notifications)."""
        attributes = {"mcp.method.name": request.method}
        start = time.perf_counter_ns()
        try:
            result = await call_next()
        except Exception as exc:
            if request.request_id is not None:
                self._record_duration(start, {**attributes, "error.type": self._etype(exc)})
            raise
        if request.request_id is not None:
            self._record_duration(start, attributes)
        return result

    def _etype(self, exc: BaseException) -> str:
        try:
            return str(self._classify(exc))
        except Exception:
            return type(exc).__qualname__

    def _tool_label(self, tool: str) -> str:
        """Tool names come from clients: cap the metric label's length and cardinality
        as the telemetry emitter does (the same helper, the same overflow label)."""
        return _bounded_label(tool, self._tool_labels, MAX_TOOL_NAMES)

    def _record_duration(self, start_ns: int, attributes: dict[str, Any]) -> None:
        seconds = (time.perf_counter_ns() - start_ns) / 1e9
        guard(self._handle, "metrics", self._op_duration.record, seconds, attributes)

    # ---- tools/call -------------------------------------------------------------------

    async def _tool_started(self, request: Request) -> _ToolCall:
        handle = self._handle
        raw_name = request.params.get("name")
        tool = raw_name if isinstance(raw_name, str) and raw_name else "<invalid>"
        arguments = request.params.get("arguments")
        if arguments is None:
            arguments = {}
        bytes_in = len(_json.dumps(arguments))
        span = trace.get_current_span()
        correlation_id: str | None = None
        if handle.audit is not None:
            correlation_id = await aguard(
                handle, "audit.log_tool_call", handle.audit.log_tool_call,
                tool_name=tool, arguments=arguments, params_bytes=bytes_in,
            )
        if not isinstance(correlation_id, str) or not correlation_id:
            correlation_id = f"mcp_otel_{secrets.token_hex(8)}"
        if span.is_recording():
            span_attributes: dict[str, Any] = {"mcp_otel.correlation_id": correlation_id,
                                               "mcp_otel.bytes_in": bytes_in}
            if request.session_id:
                span_attributes["mcp.session.id"] = request.session_id
            span.set_attributes(span_attributes)  # one call: the SDK cleans and locks per call
        attributes: dict[str, Any] = {"mcp.method.name": "tools/call",
                                      "gen_ai.tool.name": self._tool_label(tool)}
        return _ToolCall(tool, correlation_id, bytes_in, span, attributes)

    async def _tool_call(self, request: Request, call_next: Callable[[], Awaitable[Any]],
                         codec: ResultCodec) -> Any:
        try:
            call: _ToolCall | None = await self._tool_started(request)
        except Exception as exc:  # our bookkeeping failed: serve the request regardless
            self._handle._sink_failed("instrumentation", exc)
            call = None
        start = time.perf_counter_ns()
        try:
            result = await call_next()
        except BaseException as exc:
            end = time.perf_counter_ns()
            if call is not None:
                # Shielded: a cancelled call still gets its closing audit record.
                with anyio.CancelScope(shield=True):
                    await self._tool_raised(call, exc, start, end)
            raise
        end = time.perf_counter_ns()
        if call is None:
            return result
        try:
            return await self._tool_returned(call, result, codec, start, end)
        except Exception as exc:
            self._handle._sink_failed("instrumentation", exc)
            return result

    async def _tool_raised(self, call: _ToolCall, exc: BaseException, start: int,
                           end: int) -> None:
        try:
            cancelled = not isinstance(exc, Exception)
            error_type = "cancelled" if cancelled else self._etype(exc)
            text = "cancelled" if cancelled else (
                cut_error_text(_exception_text(exc)) or error_type)
            await self._tool_failed(call, start, end, 0, error_type, text)
            if not self._telemetry_records_tools:
                self._record_duration(start, {**call.attributes, "error.type": error_type})
        except Exception as failure:
            self._handle._sink_failed("instrumentation", failure)

    async def _tool_returned(self, call: _ToolCall, result: Any, codec: ResultCodec,
                             start: int, end: int) -> Any:
        handle = self._handle
        wire = codec.wire(result)
        if wire is None:
            # The framework will reject this shape after us; the call still gets its
            # closing record, as a failure, so the audit trail never has a call left open.
            await self._tool_failed(call, start, end, 0, "invalid_result",
                                    f"handler returned {type(result).__name__}")
            return result
        bytes_out = len(_json.dumps(wire))
        duration_ms = ms_between(start, end)
        if wire.get("isError") is True:
            await self._tool_failed(call, start, end, bytes_out, "tool_error",
                                    _error_text(wire))
            if not self._telemetry_records_tools:
                self._record_duration(start, {**call.attributes, "error.type": "tool_error"})
        else:
            handle._count(tool_calls=1)
            if handle.audit is not None:
                await aguard(
                    handle, "audit.log_tool_result", handle.audit.log_tool_result,
                    tool=call.tool, duration_ms=duration_ms, result_bytes=bytes_out,
                    correlation_id=call.correlation_id, success=True,
                    result=_audit_result(wire) if self._record_results else None,
                )
            if handle.telemetry is not None:
                guard(handle, "telemetry.emit_tool_call", handle.telemetry.emit_tool_call,
                      call.tool, "ok", duration_ms, call.bytes_in, bytes_out)
            if not self._telemetry_records_tools:
                self._record_duration(start, call.attributes)
        if call.span.is_recording():
            call.span.set_attributes({"mcp_otel.bytes_out": bytes_out,
                                      "mcp_otel.duration_ms": duration_ms})
        meta = {
            META_CORRELATION_ID: call.correlation_id,
            META_DURATION_MS: duration_ms,
            META_BYTES_IN: call.bytes_in,
            META_BYTES_OUT: bytes_out,
        }
        if type(codec) is WireCodec:
            return WireCodec.wire_with_meta(wire, meta)
        return codec.with_meta(result, meta)

    async def _tool_failed(self, call: _ToolCall, start: int, end: int, bytes_out: int,
                           error_type: str, text: str) -> None:
        handle = self._handle
        duration_ms = ms_between(start, end)
        handle._count(tool_calls=1, tool_errors=1)
        if handle.audit is not None:
            await aguard(
                handle, "audit.log_tool_error", handle.audit.log_tool_error,
                tool=call.tool, duration_ms=duration_ms, error_code=error_type,
                correlation_id=call.correlation_id, error=text,
            )
        if handle.telemetry is not None:
            if self._telemetry_records_tools:
                # mcp-otel's emitter: free text on the event, error.type on the metrics.
                guard(handle, "telemetry.emit_tool_call", handle.telemetry.emit_tool_call,
                      call.tool, "error", duration_ms, call.bytes_in, bytes_out, error=text,
                      error_type=error_type)
            else:  # an Osiris-API emitter: only the low-cardinality type
                guard(handle, "telemetry.emit_tool_call", handle.telemetry.emit_tool_call,
                      call.tool, "error", duration_ms, call.bytes_in, bytes_out,
                      error=error_type)
        span = call.span
        if span.is_recording():
            span.set_attribute("error.type", error_type)
            span.set_status(StatusCode.ERROR)

    # ---- resources/read ---------------------------------------------------------------

    async def _resource_read(self, request: Request,
                             call_next: Callable[[], Awaitable[Any]]) -> Any:
        uri = request.params.get("uri")
        uri_text = uri if isinstance(uri, str) else "<invalid>"
        span = trace.get_current_span()
        if span.is_recording():
            guard(self._handle, "span", span.set_attribute, "mcp.resource.uri",
                  mask_text(uri_text))
            if request.session_id:
                span.set_attribute("mcp.session.id", request.session_id)
        attributes = {"mcp.method.name": "resources/read"}
        start = time.perf_counter_ns()
        try:
            result = await call_next()
        except BaseException as exc:
            cancelled = not isinstance(exc, Exception)
            error_type = "cancelled" if cancelled else self._etype(exc)
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
            await aguard(handle, "audit.log_resource_access",
                         handle.audit.log_resource_access, uri, "read", ok)

    # ---- initialize / sessions / server lifetime --------------------------------------

    async def initialize(self, request: Request, call_next: Callable[[], Awaitable[Any]],
                         on_close: Callable[[Callable[[], None]], bool] | None) -> Any:
        """The handshake: its telemetry event and duration, then the session span."""
        client_info = request.params.get("clientInfo")
        start = time.perf_counter_ns()
        try:
            result = await call_next()
        except Exception as exc:
            guard(self._handle, "handshake", self.handshake, start_ns=start, ok=False,
                  client_info=client_info, error=exc)
            raise
        guard(self._handle, "handshake", self.handshake, start_ns=start, ok=True,
              client_info=client_info)
        if on_close is not None:
            end = guard(self._handle, "session tracking", self.start_session,
                        start_ns=start, protocol_version=request.protocol_version,
                        session_id=request.session_id,
                        client_info=client_info if isinstance(client_info, Mapping) else None)
            if end is not None and not guard(self._handle, "session tracking", on_close, end):
                end()
        return result

    def handshake(self, *, start_ns: int, ok: bool, client_info: Mapping[str, Any] | None,
                  error: BaseException | None = None) -> None:
        """Record one initialize handshake (telemetry event and duration)."""
        handle = self._handle
        info = dict(client_info) if isinstance(client_info, Mapping) else None
        duration_ms = ms_between(start_ns, time.perf_counter_ns())
        attributes = {"mcp.method.name": "initialize"}
        if error is not None:
            attributes["error.type"] = self._etype(error)
        self._record_duration(start_ns, attributes)
        if handle.telemetry is not None:
            guard(handle, "telemetry.emit_handshake", handle.telemetry.emit_handshake,
                  duration_ms, ok, info)

    def start_session(self, *, start_ns: int, protocol_version: str | None,
                      session_id: str | None,
                      client_info: Mapping[str, Any] | None) -> Callable[[], None]:
        """Open the ``mcp.session`` span; returns the callable that ends it (idempotent).

        The adapter calls the returned function when the connection closes.
        """
        handle = self._handle
        attributes: dict[str, Any] = {}
        if protocol_version:
            attributes["mcp.protocol.version"] = str(protocol_version)
        if session_id:
            attributes["mcp.session.id"] = session_id
        if isinstance(client_info, Mapping):
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
        ended = threading.Event()

        def end_session() -> None:
            if ended.is_set():
                return
            ended.set()
            seconds = (time.perf_counter_ns() - start_ns) / 1e9
            if self._telemetry_records_tools:
                guard(handle, "telemetry.record_session_duration",
                      handle.telemetry.record_session_duration, seconds)
            else:
                guard(handle, "metrics", self._session_duration.record, seconds,
                      {"mcp.protocol.version": str(protocol_version)} if protocol_version
                      else {})
            span.end()
            handle._count(sessions_ended=1)

        return end_session

    def server_started(self, version: str, protocol_version: str) -> None:
        telemetry = self._handle.telemetry
        if telemetry is not None and self._handle.active:
            guard(self._handle, "telemetry.emit_server_start", telemetry.emit_server_start,
                  version, protocol_version)

    def server_stopped(self, reason: str = "shutdown") -> None:
        """The server's lifespan ended: record it and flush, within the shutdown deadline
        (an unreachable collector must not hold the exit up; see :mod:`._lifecycle`)."""
        handle = self._handle
        if not handle.active:
            return
        telemetry = handle.telemetry

        def stop_and_flush() -> bool:
            if telemetry is not None:
                guard(handle, "telemetry.emit_server_stop", telemetry.emit_server_stop,
                      reason)
            return _setup.force_flush(int(_lifecycle.shutdown_timeout() * 1000))

        _lifecycle.bounded(stop_and_flush)
