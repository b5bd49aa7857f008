"""Adapter for standalone ``fastmcp`` 2.x (from 2.9, the first release with middleware),
3.x and 4.x: ``fastmcp.FastMCP``.

Why fastmcp's own middleware: ``FastMCP`` keeps its own middleware list with its own
context type (``MiddlewareContext``); a middleware of the official SDK placed there breaks
every request. The public way in is a subclass of ``fastmcp.server.middleware.Middleware``
in ``FastMCP.middleware``. Ours goes first in that list (outermost; ``add_middleware`` only
appends to the same public list), so a call refused by the user's own middleware (auth,
rate limits) is still audited, and the duration covers the whole chain. Only requests that
came from a client are observed (fastmcp has a request context for them, or it is the
``initialize`` handshake); in-process ``server.call_tool()`` calls and calls nested in an
observed request pass through, as on the official SDK.

One SERVER span per request, never two:

- fastmcp 2.x and the official ``mcp`` 1.x under it make no span: mcp-otel opens the
  semantic-convention SERVER span itself.
- fastmcp 4.x opens one SERVER span per request at its dispatch seam (and drops the mcp
  SDK's ``OpenTelemetryMiddleware`` from the low-level server, so the SDK makes none); it
  is current while fastmcp's middleware runs, so mcp-otel puts its attributes on it. Where
  fastmcp's native spans are off (``telemetry_mode``, ``suppress_fastmcp_telemetry()``)
  mcp-otel opens the span itself.
- fastmcp 3.x opens its SERVER span *inside* the middleware chain, around the component
  only, and ends it before the result comes back through the middleware: attributes that
  need the result (bytes out, error results) could never reach it, and the audit records
  written before the call would name another trace. So mcp-otel opens the request's span in
  its middleware, and while that request runs, the SERVER span fastmcp 3.x asks its tracer
  for is that same span (fastmcp adds its component attributes and errors to it, as
  fastmcp 4 does with its seam span). For that, ``fastmcp.server.telemetry.get_tracer`` is
  wrapped while an instrumented server exists; outside an observed request it returns
  fastmcp's tracer unchanged.
- The official mcp 1.x ``tools/call`` handler lists the tools itself on a cache miss,
  through fastmcp's middleware, inside the client's request: that lookup is no request of
  its own and gets no record and no span (fastmcp 3.x's is not made either).

The response ``_meta`` gets the correlation id and sizes where the result reaching
middleware is a fastmcp ``ToolResult`` with a ``meta`` field (2.14.7, 3.x, 4.x). Where it
is a bare content list (2.9) there is no place for it; an exception raised by a tool
(``ToolError``) becomes an error result only after the middleware chain, so that result
carries none either (the audit, telemetry and span have the id). A tool's own error
*result* (``ToolResult(is_error=True)``, 3.4+) carries it.

Sessions: where ``initialize`` passes through fastmcp middleware (``on_initialize``:
2.14.7, 3.x, 4.x; not 2.9) the handshake event and duration are recorded, and the
session's end is registered on the official SDK session's exit stack. Where
``initialize`` brings no session (fastmcp 2.x hands middleware none then) or is not seen
at all (2.9), an mcp 1.x session is opened at its first request instead, so its span and
duration start there. fastmcp 4 on protocol 2026-07-28 has no handshake and no session.

Lifespan: ``server_start``/``server_stop`` around fastmcp's ref-counted
``FastMCP._lifespan_manager`` (every transport enters it; 2.14.7, 3.x, 4.x), wrapped on the
instance; where it does not exist (2.9) the low-level server's ``lifespan``, which that
release runs per connection, is wrapped instead.

Private names touched, only here: ``FastMCP._lifespan_manager`` and
``FastMCP._mcp_server.lifespan`` (lifespan), ``fastmcp.server.telemetry.get_tracer``
(3.x span), and of the official SDK under fastmcp ``BaseSession._exit_stack`` /
``ServerSession._connection.exit_stack`` (session end) and ``BaseSession._in_flight``
(the method of the request being served, mcp 1.x).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer

from mcp_otel._instrument._core import Instrumentation, Observer, Request, guard, mask_text

NAME = "fastmcp"

#: Attribute fastmcp 4 puts on its per-request seam span (``fastmcp.server.telemetry``).
_SEAM_MARKER = "fastmcp.span.seam"

#: Set while one request is observed: nested in-process calls pass through.
_OBSERVING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mcp_otel_fastmcp_observing", default=False)


def matches(server: Any) -> bool:
    """True for a standalone fastmcp ``FastMCP`` (any line)."""
    try:
        from fastmcp import FastMCP
    except ImportError:
        return False
    return isinstance(server, FastMCP)


#: The public class zero-code instrumentation hooks, as (module, name): ``fastmcp.FastMCP``
#: (its subclasses, such as proxies, construct through it).
SERVER_CLASSES = (("fastmcp", "FastMCP"),)


def classify_error(exc: BaseException) -> str:
    """``tool_error`` for fastmcp's ``ToolError`` (as fastmcp 4's span says), the JSON-RPC
    code for the SDK's protocol errors, else the exception's class name."""
    from fastmcp.exceptions import ToolError

    if isinstance(exc, ToolError):
        return "tool_error"
    code = getattr(getattr(exc, "error", None), "code", None)
    if isinstance(code, int):
        return str(code)
    return type(exc).__qualname__


# ---- what the framework offers, by feature rather than version number ----------------


@dataclass(frozen=True)
class _Line:
    """What this fastmcp release offers an observer."""

    seam_span: bool  # 4.x: fastmcp's SERVER span is current while middleware runs
    inner_span: bool  # 3.x: fastmcp's SERVER span opens inside the chain

    @staticmethod
    def detect() -> _Line:
        try:
            import fastmcp.server.telemetry as telemetry
        except ImportError:  # 2.x: no tracing in fastmcp
            return _Line(seam_span=False, inner_span=False)
        if hasattr(telemetry, "seam_span"):
            return _Line(seam_span=True, inner_span=False)
        return _Line(seam_span=False, inner_span=hasattr(telemetry, "get_tracer"))


def _native_spans() -> bool:
    """fastmcp 4's switch for its own spans (a setting or a suppression block)."""
    try:
        from fastmcp.telemetry import native_spans_enabled
    except ImportError:
        return True
    try:
        return bool(native_spans_enabled())
    except Exception:
        return True


def _is_seam_span(span: Span) -> bool:
    if not span.is_recording():
        return False
    attributes = getattr(span, "attributes", None)  # SDK spans; the API span has none
    return isinstance(attributes, Mapping) and attributes.get(_SEAM_MARKER) is True


# ---- translating fastmcp's context into the core's Request ----------------------------


def _dump(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if dump is None:
        return value
    return dump(by_alias=True, mode="json", exclude_none=True)


def _wire_params(message: Any) -> dict[str, Any]:
    """The params of ``message`` in wire form: fastmcp hands middleware the typed params
    (``CallToolRequestParams``), a typed request (``InitializeRequest``) or, in fastmcp 4's
    outer pass, the raw params mapping."""
    if message is None:
        return {}
    if isinstance(message, Mapping):
        return dict(message)
    if hasattr(message, "method") and hasattr(message, "params"):
        message = message.params
        if message is None:
            return {}
    wire = _dump(message)
    return dict(wire) if isinstance(wire, Mapping) else {}


def _request_context(fctx: Any) -> Any:
    """fastmcp's view of the SDK request context (None outside a client request; fastmcp
    2.9 raises there instead)."""
    if fctx is None:
        return None
    try:
        return fctx.request_context
    except Exception:
        return None


def _meta_of(rc: Any) -> Mapping[str, Any] | None:
    """``params._meta`` of the request: a dict on fastmcp 4, the SDK's ``Meta`` model (with
    the trace context among its extra fields) on mcp 1.x."""
    meta = getattr(rc, "meta", None)
    if meta is None:
        return None
    meta = _dump(meta)
    return meta if isinstance(meta, Mapping) else None


def _session_id(rc: Any) -> str | None:
    """The streamable-HTTP session id, from the request's header (other transports have
    none on the wire)."""
    headers = getattr(getattr(rc, "request", None), "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("mcp-session-id")
    except Exception:
        return None
    return value if isinstance(value, str) and value else None


def _session_of(fctx: Any, rc: Any) -> Any:
    session = getattr(rc, "session", None)
    if session is not None:
        return session
    try:
        return fctx.session if fctx is not None else None
    except Exception:  # fastmcp 2.x during initialize: no session reachable
        return None


def _protocol_version(rc: Any, session: Any, params: Mapping[str, Any]) -> str | None:
    version = getattr(rc, "protocol_version", None)  # fastmcp 4
    if not version:
        version = params.get("protocolVersion")  # initialize: what the client asked for
    if not version:
        client = getattr(session, "client_params", None)  # mcp 1.x, after initialize
        version = getattr(client, "protocolVersion", None)
    return str(version) if version else None


#: What ``_request_of`` returns for fastmcp called while serving another request.
_INTERNAL = object()


def _request_of(context: Any) -> tuple[Request, Any] | object | None:
    """The core's Request for a client request and the SDK session; None for what is no
    client request; :data:`_INTERNAL` for a lookup the SDK makes inside another request."""
    method = getattr(context, "method", None)
    if not isinstance(method, str) or getattr(context, "type", "request") != "request":
        return None
    fctx = getattr(context, "fastmcp_context", None)
    rc = _request_context(fctx)
    if rc is None and method != "initialize":
        return None  # an in-process call, not a client request
    served = _served_method(rc)
    if served is not None and served != method:
        return _INTERNAL
    params = _wire_params(getattr(context, "message", None))
    meta = _meta_of(rc)
    if meta is None and isinstance(params.get("_meta"), Mapping):
        meta = params["_meta"]
    session = _session_of(fctx, rc)
    request = Request(
        method=method,
        params=params,
        request_id=getattr(rc, "request_id", None),
        protocol_version=_protocol_version(rc, session, params),
        meta=meta,
        session_id=_session_id(rc),
    )
    return request, session


def _served_method(rc: Any) -> str | None:
    """The method of the client request the SDK is serving (mcp 1.x, from the session's
    in-flight table), or None where it cannot tell.

    Why: mcp 1.x's ``tools/call`` handler lists the tools itself on a cache miss, through
    the ``tools/list`` handler and so through fastmcp's middleware, inside the request
    context of the ``tools/call``; that lookup is not a client request and must not get a
    span or a duration of its own.
    """
    in_flight = getattr(getattr(rc, "session", None), "_in_flight", None)
    if not isinstance(in_flight, Mapping):
        return None
    responder = in_flight.get(getattr(rc, "request_id", None))
    method = getattr(getattr(getattr(responder, "request", None), "root", None), "method", None)
    return method if isinstance(method, str) else None


def _exit_stack(session: Any) -> Any:
    """Where the SDK closes a session: mcp 2.x's per-connection exit stack, or mcp 1.x's
    session exit stack (both closed when the client goes away)."""
    stack = getattr(getattr(session, "_connection", None), "exit_stack", None)
    if stack is None:
        stack = getattr(session, "_exit_stack", None)
    return stack if callable(getattr(stack, "callback", None)) else None


# ---- results ------------------------------------------------------------------------


def _is_tool_result(result: Any) -> bool:
    return hasattr(result, "content") and hasattr(result, "structured_content")


class ToolResultCodec:
    """What ``call_next`` returns for ``tools/call`` in fastmcp middleware: a ``ToolResult``
    (with ``meta`` on 2.14.7, 3.x, 4.x; ``is_error`` on 3.4+), a bare content list (2.9),
    or on fastmcp 4 an extension's own result model (a task's ``CreateTaskResult``).

    ``wire`` is the JSON of the result as fastmcp turns it into the response (content,
    structuredContent, _meta, isError when set); the envelope fields the SDK adds around
    it are not counted in ``bytes_out``.
    """

    def wire(self, result: Any) -> Mapping[str, Any] | None:
        if result is None:
            return {}
        if _is_tool_result(result):
            wire: dict[str, Any] = {"content": [_dump(c) for c in result.content or ()]}
            if result.structured_content is not None:
                wire["structuredContent"] = result.structured_content
            meta = getattr(result, "meta", None)
            if meta:
                wire["_meta"] = meta
            if getattr(result, "is_error", False) is True:
                wire["isError"] = True
            return wire
        if isinstance(result, list | tuple):
            return {"content": [_dump(c) for c in result]}
        wire_form = _dump(result)
        return wire_form if isinstance(wire_form, Mapping) else None

    def with_meta(self, result: Any, meta: Mapping[str, Any]) -> Any:
        if not _is_tool_result(result) or not hasattr(result, "meta"):
            return result  # no place for it in this release's result
        merged = {**(result.meta or {}), **meta}
        model_copy = getattr(result, "model_copy", None)
        if model_copy is not None:  # 3.x/4.x: a pydantic model
            return model_copy(update={"meta": merged})
        out = copy.copy(result)  # 2.x: a plain class; never touch a cached original
        out.meta = merged
        return out


# ---- fastmcp 3.x: its inner SERVER span becomes the request's span -------------------


@dataclass
class _Slot:
    """The request's SERVER span, handed once to fastmcp 3.x's ``server_span`` (None: the
    SERVER span fastmcp asks for is not made at all). ``held``: the exceptions fastmcp
    recorded on it, until we know whether they leave the request (see :class:`_SpanView`)."""

    span: Span | None
    used: bool = False
    held: list[tuple[BaseException, Any, Any, bool]] = field(default_factory=list)

    def release(self, escaping: BaseException | None) -> None:
        """Record what fastmcp recorded, except the exception leaving the request: the
        request's span records that one itself as it ends (one event, not two)."""
        held, self.held = self.held, []
        if self.span is None:
            return
        for exception, attributes, timestamp, escaped in held:
            if exception is not escaping:
                self.span.record_exception(exception, attributes, timestamp, escaped)


class _SpanView(Span):
    """The request's span as fastmcp 3.x's ``server_span`` sees it: attributes, status and
    events go to it unchanged; it is never ended here (the observer owns it); an exception
    fastmcp records is held until the request is over (:meth:`_Slot.release`)."""

    def __init__(self, span: Span, slot: _Slot) -> None:
        self._span = span
        self._slot = slot

    def end(self, end_time: int | None = None) -> None:
        del end_time

    def get_span_context(self) -> Any:
        return self._span.get_span_context()

    def set_attributes(self, attributes: Any) -> None:
        self._span.set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None
                  ) -> None:
        self._span.add_event(name, attributes, timestamp)

    def add_link(self, context: Any, attributes: Any = None) -> None:
        self._span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def is_recording(self) -> bool:
        return self._span.is_recording()

    def set_status(self, status: Any, description: str | None = None) -> None:
        self._span.set_status(status, description)

    def record_exception(self, exception: BaseException, attributes: Any = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        self._slot.held.append((exception, attributes, timestamp, escaped))


_SLOT: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar(
    "mcp_otel_fastmcp_server_span", default=None)


class _EnrichingTracer(Tracer):
    """fastmcp 3.x's tracer during an observed request: its first SERVER span is the
    request's span (not ended here: it belongs to the observer); everything else is
    fastmcp's tracer unchanged."""

    def __init__(self, inner: Tracer, slot: _Slot) -> None:
        self._inner = inner
        self._slot = slot

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        return self._inner.start_span(*args, **kwargs)

    @contextlib.contextmanager
    def start_as_current_span(self, name: str, context: Any = None,
                              kind: SpanKind = SpanKind.INTERNAL, *args: Any,
                              **kwargs: Any) -> Iterator[Span]:
        slot = self._slot
        if kind is SpanKind.SERVER and not slot.used:
            slot.used = True
            yield trace.INVALID_SPAN if slot.span is None else _SpanView(slot.span, slot)
            return
        with self._inner.start_as_current_span(name, context, kind, *args, **kwargs) as span:
            yield span


class _TracerPatch:
    """Wraps ``fastmcp.server.telemetry.get_tracer`` while any fastmcp 3.x server is
    instrumented (counted), and puts the original back after the last one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._original: Callable[..., Tracer] | None = None
        self._wrapper: Callable[..., Tracer] | None = None

    def acquire(self) -> None:
        import fastmcp.server.telemetry as telemetry

        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            original = telemetry.get_tracer

            @functools.wraps(original)
            def get_tracer(*args: Any, **kwargs: Any) -> Tracer:
                tracer = original(*args, **kwargs)
                slot = _SLOT.get()
                if slot is None or slot.used:
                    return tracer
                return _EnrichingTracer(tracer, slot)

            self._original, self._wrapper = original, get_tracer
            telemetry.get_tracer = get_tracer

    def release(self) -> None:
        import fastmcp.server.telemetry as telemetry

        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            if telemetry.get_tracer is self._wrapper:  # never undo someone else's wrap
                telemetry.get_tracer = self._original
            self._original = self._wrapper = None


_TRACER_PATCH = _TracerPatch()


# ---- the middleware -----------------------------------------------------------------


@functools.cache
def middleware_type() -> type:
    """mcp-otel's fastmcp middleware class (built on first use: fastmcp is optional)."""
    from fastmcp.server.middleware import Middleware

    class McpOtelMiddleware(Middleware):  # type: ignore[misc,valid-type]
        """Translates fastmcp's ``MiddlewareContext`` and defers to the observer."""

        def __init__(self, observer: Observer, line: _Line) -> None:
            self._observer = observer
            self._line = line
            self._codec = ToolResultCodec()
            # SDK sessions whose mcp.session span is open (weak: the SDK owns them).
            self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()

        async def on_request(self, context: Any, call_next: Callable[[Any], Awaitable[Any]]
                             ) -> Any:
            observer = self._observer
            if not observer.handle.active or _OBSERVING.get():
                return await call_next(context)
            try:
                found = _request_of(context)
                own_span = self._own_span()
            except Exception as exc:  # our bookkeeping failed: serve the request regardless
                observer.handle._sink_failed("instrumentation", exc)
                return await call_next(context)
            if found is None:
                return await call_next(context)
            if found is _INTERNAL:
                return await self._internal(context, call_next)
            request, session = found  # type: ignore[misc]
            on_close = None
            if request.method == "initialize":
                on_close = self._on_close(session)
            else:
                guard(observer.handle, "session tracking", self._late_session, request,
                      session)
            token = _OBSERVING.set(True)
            try:
                return await observer.observe(
                    request, lambda: self._call(request, context, call_next, own_span),
                    codec=self._codec, own_span=own_span, on_close=on_close)
            finally:
                _OBSERVING.reset(token)

        def _on_close(self, session: Any) -> Callable[[Callable[[], None]], bool] | None:
            """The session-end hook for ``initialize``, or None where the session is out
            of reach (then no session is opened here: one we could never end would be a
            lie; :meth:`_late_session` opens it at its first request)."""
            stack = _exit_stack(session) if session is not None else None
            if stack is None:
                return None

            def on_close(end: Callable[[], None]) -> bool:
                self._sessions.add(session)
                stack.callback(end)
                return True

            return on_close

        def _late_session(self, request: Request, session: Any) -> None:
            """Open the session of an mcp 1.x connection whose ``initialize`` we did not
            see with its session (fastmcp 2.x), at its first request."""
            if session is None or hasattr(session, "_connection") or session in self._sessions:
                return  # mcp 2.x sessions are per request on 2026-07-28: not tracked late
            stack = _exit_stack(session)
            if stack is None:
                return
            self._sessions.add(session)
            client = getattr(session, "client_params", None)
            info = getattr(client, "clientInfo", None)
            end = self._observer.start_session(
                start_ns=time.perf_counter_ns(), protocol_version=request.protocol_version,
                session_id=request.session_id,
                client_info=_dump(info) if info is not None else None)
            stack.callback(end)

        def _own_span(self) -> bool:
            if self._line.seam_span:
                return not (_native_spans() and _is_seam_span(trace.get_current_span()))
            return True

        async def _internal(self, context: Any,
                            call_next: Callable[[Any], Awaitable[Any]]) -> Any:
            """Not a client request: no record, and on fastmcp 3.x no SERVER span of its
            own either (it would be a second one inside the client's request)."""
            if not self._line.inner_span:
                return await call_next(context)
            token = _SLOT.set(_Slot(None))
            try:
                return await call_next(context)
            finally:
                _SLOT.reset(token)

        async def _call(self, request: Request, context: Any,
                        call_next: Callable[[Any], Awaitable[Any]], own_span: bool) -> Any:
            span = trace.get_current_span()
            token = slot = None
            if own_span and self._line.inner_span and span.is_recording():
                slot = _Slot(span)
                token = _SLOT.set(slot)
            try:
                result = await call_next(context)
            except BaseException as exc:
                if slot is not None:
                    guard(self._observer.handle, "span", slot.release, exc)
                raise
            else:
                if slot is not None:
                    guard(self._observer.handle, "span", slot.release, None)
                return result
            finally:
                if token is not None:
                    _SLOT.reset(token)
                if request.method == "resources/read":
                    _mask_uri(self._observer.handle, span, request.params.get("uri"))

    return McpOtelMiddleware


def _mask_uri(handle: Instrumentation, span: Span, uri: Any) -> None:
    """fastmcp (3.x, 4.x) sets the raw resource URI on the span after mcp-otel set the
    masked one: credentials a client put in a URI must not reach a span, so every copy
    (``mcp.resource.uri``, any other attribute or the name holding it) is masked again."""
    if not isinstance(uri, str) or not span.is_recording():
        return
    try:
        masked = mask_text(uri)
        span.set_attribute("mcp.resource.uri", masked)
        if masked == uri:
            return
        attributes = getattr(span, "attributes", None) or {}
        for key, value in dict(attributes).items():
            if isinstance(value, str) and uri in value:
                span.set_attribute(key, value.replace(uri, masked))
        name = getattr(span, "name", None)
        if isinstance(name, str) and uri in name:
            span.update_name(name.replace(uri, masked))
    except Exception as exc:
        handle._sink_failed("span", exc)


# ---- attach -------------------------------------------------------------------------


def attach(handle: Instrumentation, server: Any, observer: Observer) -> None:
    """Hook ``server``; every hook registers its undo on ``handle``."""
    kind = middleware_type()
    chain = server.middleware
    if any(isinstance(m, kind) for m in chain):
        raise ValueError(
            "this server is already instrumented by mcp-otel; uninstrument() first")
    line = _Line.detect()
    if line.inner_span:
        _TRACER_PATCH.acquire()
        handle.on_uninstrument(_TRACER_PATCH.release)
    middleware = kind(observer, line)
    chain.insert(0, middleware)  # outermost: sees what the user's middleware refuses
    handle.on_uninstrument(lambda: _remove(server, middleware))
    _hook_lifespan(handle, server, observer)


def _remove(server: Any, middleware: Any) -> None:
    with contextlib.suppress(ValueError):
        server.middleware.remove(middleware)


def _hook_lifespan(handle: Instrumentation, server: Any, observer: Observer) -> None:
    def started() -> None:
        observer.server_started(_server_version(server), _protocol())

    if hasattr(type(server), "_lifespan_manager"):
        original = server._lifespan_manager
        depth = [0]
        lock = threading.Lock()  # event loops in several threads may share one server

        def enter() -> bool:
            with lock:
                depth[0] += 1
                return depth[0] == 1

        def leave() -> bool:
            with lock:
                depth[0] -= 1
                return depth[0] == 0

        @contextlib.asynccontextmanager
        async def lifespan_manager(*args: Any, **kwargs: Any) -> AsyncIterator[None]:
            # fastmcp enters it once per transport and again per low-level run (it is
            # ref-counted): the server starts with the first entry, stops with the last.
            if enter():
                started()
            try:
                async with original(*args, **kwargs):
                    yield
            finally:
                if leave():
                    observer.server_stopped("shutdown")

        server._lifespan_manager = lifespan_manager

        def restore() -> None:
            if vars(server).get("_lifespan_manager") is lifespan_manager:
                del server._lifespan_manager

        handle.on_uninstrument(restore)
        return

    lowlevel = server._mcp_server
    original_lifespan = lowlevel.lifespan

    @contextlib.asynccontextmanager
    async def lifespan(srv: Any) -> AsyncIterator[Any]:
        started()
        try:
            async with original_lifespan(srv) as state:
                yield state
        finally:
            observer.server_stopped("shutdown")

    lowlevel.lifespan = lifespan

    def restore_lifespan() -> None:
        if lowlevel.lifespan is lifespan:
            lowlevel.lifespan = original_lifespan

    handle.on_uninstrument(restore_lifespan)


def _server_version(server: Any) -> str:
    version = getattr(server, "version", None)
    if isinstance(version, str) and version:
        return version
    try:
        import fastmcp

        return str(fastmcp.__version__)
    except Exception:
        return "unknown"


def _protocol() -> str:
    from mcp_otel._instrument.mcp2 import _protocol_version

    return _protocol_version()
