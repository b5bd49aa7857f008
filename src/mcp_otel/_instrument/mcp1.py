"""Adapter for the official ``mcp`` SDK 1.x: the low-level ``Server`` (decorator API) and
``mcp.server.fastmcp.FastMCP``.

mcp 1.x has no middleware and no tracing of its own, so everything rests on three public
surfaces, all of which exist from mcp 1.2.1 (Osiris' floor) to 1.30:

* ``Server.request_handlers``, the dict the decorators fill (``types.CallToolRequest ->
  handler``). Every entry is replaced *in place* by an :class:`_Observed` wrapper that
  hands the typed request to :meth:`Observer.observe`, which opens the SERVER span itself
  (``own_span=True``) and, for ``tools/call`` and ``resources/read``, audits and measures.
  Why in place and not a dict subclass: code holding the dict (the SDK's own
  ``ExperimentalHandlers`` keeps a reference) keeps registering into the dict the server
  reads; a swapped dict would silently lose those handlers. Handlers registered after
  :func:`attach` are wrapped when a connection starts (``Server.run``) and again before
  every inbound request is dispatched (the read-stream tap below), so a decorator called
  late, even while clients are connected, is observed from the next request on.
  The wrapper passes through calls it must not count: after :meth:`uninstrument`, calls
  nested inside an observed request (mcp >= 1.10 refreshes its tool cache by calling
  the ``tools/list`` handler from inside ``tools/call``) and calls without a request
  object. Request ids, the session and the HTTP request come from the SDK's public
  per-request context variable ``mcp.server.lowlevel.server.request_ctx``.
* ``Server.run(read_stream, write_stream, initialization_options, ...)``, shadowed by an
  instance attribute: one call is one connection in every transport (stdio, the
  in-memory test client, each streamable-HTTP or SSE session). It brackets the
  connection: ``server_start``/``server_stop`` telemetry (what a lifespan gives: mcp 1.2.x
  has no ``Server.lifespan``, and from 1.3 on ``run`` enters the lifespan itself, so the
  bracket is the same moment; a *stateless* streamable-HTTP run, one per HTTP request,
  gets none), the ``mcp.session`` span, and when a session ended a flush of every sink,
  so a stdio server that returns from ``run`` has complete files even if its exit is cut
  short (the ``AuditLogger``'s own exit hook then writes the session-end record). The
  stop event and the flush do file I/O, so they run in a worker thread, not on the loop.
* The ``initialize`` handshake is answered inside ``ServerSession``, never reaching a
  handler, so ``run`` gets the transport's streams wrapped in taps (:class:`_Reader`,
  :class:`_Writer`) that only look at the JSON-RPC messages going by: the initialize
  request (start, client info, requested version, ``params._meta`` trace context) and
  its response (end, negotiated version). Those give the handshake telemetry, the
  ``initialize`` SERVER span and the session span. A tap never changes, delays or drops a
  message, and a failure inside it is counted and ignored.

The tools/call result is a ``types.ServerResult(CallToolResult)``; :class:`_ResultCodec`
reads its wire form (``model_dump(by_alias=True)``, what the session sends) and returns a
copy of the same types with the correlation id merged into ``_meta``. A tool that raises
is turned into an ``isError`` result by the SDK's ``call_tool`` decorator, which the core
audits as ``tool_error`` with the error text; a handler that raises ``McpError`` (a raw
``request_handlers`` entry) keeps its JSON-RPC code as ``error.type``.

Connections that were already running when :func:`attach` was called are observed per
request (the handlers are wrapped in place) but have no handshake or session records:
their streams were handed to the SDK before the taps existed.

Private SDK names touched here, and only here: ``FastMCP._mcp_server`` (the low-level
server a ``FastMCP`` wraps).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from mcp_otel._instrument._core import (
    SCOPE,
    Instrumentation,
    Observer,
    Request,
    guard,
    package_version,
)

NAME = "mcp1"
_log = logging.getLogger("mcp_otel.instrument")

#: True inside a request this adapter observes: nested handler calls are not requests.
_OBSERVING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mcp_otel_mcp1_observing", default=False)
#: The connection (one ``Server.run`` call) the current task serves, if it is tapped.
_CONNECTION: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar(
    "mcp_otel_mcp1_connection", default=None)
#: Serialises our own read-check-replace of dict entries between event-loop threads.
_WRAP_LOCK = threading.Lock()
#: ``mcp.types`` and ``mcp.server.lowlevel.server.request_ctx``, bound by :func:`attach`
#: (this module is imported for detection on installs without mcp 1.x).
_types: Any = None
_request_ctx: Any = None


# ---- detection ------------------------------------------------------------------------


def matches(server: Any) -> bool:
    """True for an mcp 1.x low-level ``Server`` or ``mcp.server.fastmcp.FastMCP``."""
    return _lowlevel_or_none(server) is not None


#: The public classes zero-code instrumentation hooks, as (module, name): mcp 1.x's
#: low-level ``Server`` and ``FastMCP``. ``mcp.server.fastmcp`` raises on import under mcp
#: 2.x on purpose, so there only the ``Server`` (mcp2's too) is found.
SERVER_CLASSES = (("mcp.server.lowlevel", "Server"), ("mcp.server.fastmcp", "FastMCP"))


def _is_v1_lowlevel(obj: Any) -> bool:
    try:
        from mcp.server.lowlevel import Server
    except Exception:  # mcp missing or too broken to import
        return False
    # mcp 2.x's Server has no public handler dict: that one is mcp2's.
    return isinstance(obj, Server) and isinstance(getattr(obj, "request_handlers", None), dict)


def _lowlevel_or_none(server: Any) -> Any:
    if _is_v1_lowlevel(server):
        return server
    try:
        from mcp.server.fastmcp import FastMCP
    except Exception:  # mcp 2.x raises on this import on purpose; no mcp at all
        return None
    if isinstance(server, FastMCP):
        inner = getattr(server, "_mcp_server", None)
        if _is_v1_lowlevel(inner):
            return inner
    return None


def classify_error(exc: BaseException) -> str:
    """The JSON-RPC code of an ``McpError`` (what the client receives), else the class."""
    try:
        from mcp.shared.exceptions import McpError
    except Exception:
        return type(exc).__qualname__
    if isinstance(exc, McpError):
        code = getattr(getattr(exc, "error", None), "code", None)
        if code is not None:
            return str(code)
    return type(exc).__qualname__


# ---- results --------------------------------------------------------------------------


class _ResultCodec:
    """``types.ServerResult(CallToolResult)`` (or a bare result model) <-> wire dict."""

    def wire(self, result: Any) -> Mapping[str, Any] | None:
        model = getattr(result, "root", result)
        dump = getattr(model, "model_dump", None)
        if dump is None:
            return None
        out = dump(by_alias=True, mode="json", exclude_none=True)
        return out if isinstance(out, Mapping) else None

    def with_meta(self, result: Any, meta: Mapping[str, Any]) -> Any:
        """A copy of ``result``, same types, with ``meta`` merged into its ``_meta``."""
        wrapped = hasattr(result, "root")
        model = result.root if wrapped else result
        if not hasattr(model, "model_copy"):
            return result
        merged = dict(getattr(model, "meta", None) or {})
        merged.update(meta)
        copy = model.model_copy(update={"meta": merged})
        return type(result)(copy) if wrapped else copy


_CODEC = _ResultCodec()


# ---- the handler table ----------------------------------------------------------------


class _Observed:
    """One ``request_handlers`` entry under observation; ``inner`` is the original."""

    __slots__ = ("inner", "observer")

    def __init__(self, inner: Any, observer: Observer) -> None:
        self.inner = inner
        self.observer = observer

    async def __call__(self, req: Any) -> Any:
        observer = self.observer
        if req is None or _OBSERVING.get() or not observer.handle.active:
            return await self.inner(req)
        try:
            request = _request_of(req)
        except Exception as exc:  # our reading of the request failed: serve it anyway
            observer.handle._sink_failed("instrumentation", exc)
            return await self.inner(req)
        token = _OBSERVING.set(True)
        try:
            return await observer.observe(request, lambda: self.inner(req), codec=_CODEC,
                                          own_span=True)
        finally:
            _OBSERVING.reset(token)


def _request_context() -> Any:
    """The SDK's per-request context (request id, session, HTTP request), or None."""
    return _request_ctx.get(None) if _request_ctx is not None else None


def _request_of(req: Any) -> Request:
    params_model = getattr(req, "params", None)
    params: Mapping[str, Any] = {}
    if params_model is not None:
        dumped = params_model.model_dump(by_alias=True, mode="json", exclude_none=True)
        if isinstance(dumped, Mapping):
            params = dumped
    meta = params.get("_meta")
    ctx = _request_context()
    connection = _CONNECTION.get()
    protocol_version = connection.protocol_version if connection is not None else None
    if protocol_version is None:
        client = getattr(getattr(ctx, "session", None), "client_params", None)
        protocol_version = getattr(client, "protocolVersion", None)
    return Request(
        method=str(getattr(req, "method", "") or type(req).__name__),
        params=params,
        request_id=getattr(ctx, "request_id", None),
        protocol_version=str(protocol_version) if protocol_version is not None else None,
        meta=meta if isinstance(meta, Mapping) else None,
        session_id=_http_session_id(ctx),
    )


def _http_session_id(ctx: Any) -> str | None:
    """Streamable HTTP's ``Mcp-Session-Id`` (``RequestContext.request``, mcp >= 1.9)."""
    headers = getattr(getattr(ctx, "request", None), "headers", None)
    if headers is None:
        return None
    try:
        sid = headers.get("mcp-session-id")
    except Exception:
        return None
    return sid if isinstance(sid, str) and sid else None


def _wrap_entries(handlers: dict[Any, Any], observer: Observer) -> None:
    """Wrap every entry not wrapped for ``observer`` yet. Only values of existing keys are
    replaced (never a key added or removed), and only if the entry is still the one read,
    so a handler registered meanwhile is not overwritten."""
    with _WRAP_LOCK:
        for key, value in list(handlers.items()):
            if isinstance(value, _Observed) and value.observer is observer:
                continue
            if handlers.get(key) is value:
                handlers[key] = _Observed(value, observer)


def _unwrap_entries(handlers: dict[Any, Any], observer: Observer) -> None:
    with _WRAP_LOCK:
        for key, value in list(handlers.items()):
            if (isinstance(value, _Observed) and value.observer is observer
                    and handlers.get(key) is value):
                handlers[key] = value.inner


def _rewrap(lowlevel: Any, observer: Observer) -> None:
    handlers = getattr(lowlevel, "request_handlers", None)
    if isinstance(handlers, dict) and observer.handle.active:
        _wrap_entries(handlers, observer)


# ---- connections: run, taps, handshake, session -----------------------------------------


def _jsonrpc_root(item: Any) -> Any:
    """The JSON-RPC message inside a stream item: ``SessionMessage`` (mcp >= 1.7) or a
    bare ``JSONRPCMessage`` (earlier); None for the exceptions transports pass along."""
    if isinstance(item, BaseException):
        return None
    message = getattr(item, "message", item)
    return getattr(message, "root", None)


class _Connection:
    """What one ``Server.run`` call observed: its handshake and its session."""

    def __init__(self, observer: Observer, lowlevel: Any) -> None:
        self._observer = observer
        #: A stateless run serves one HTTP request: a handshake there opens no session.
        self.stateless = False
        self._handle = observer.handle
        self._lowlevel = lowlevel
        self._tracer = self._handle.tracer_provider.get_tracer(SCOPE, package_version())
        self.protocol_version: str | None = None
        self._init_id: Any = None
        self._init_start = 0
        self._init_span: Span | None = None
        self._client_info: Mapping[str, Any] | None = None
        self._settled = False
        self._end_session: Any = None
        self._had_session = False
        self._lock = threading.Lock()

    @property
    def had_session(self) -> bool:
        """Whether a handshake succeeded on this connection (its session may have ended)."""
        return self._had_session

    # -- taps (called for every message; must be cheap and must not raise) --------------

    def inbound(self, item: Any) -> None:
        if not self._handle.active:
            return
        try:
            root = _jsonrpc_root(item)
            if not isinstance(root, _types.JSONRPCRequest):
                return
            if root.method == "initialize":
                self._initialize_received(root)
            else:
                _rewrap(self._lowlevel, self._observer)
        except Exception as exc:
            self._handle._sink_failed("instrumentation", exc)

    def outbound(self, item: Any) -> None:
        if self._settled or self._init_id is None or not self._handle.active:
            return
        try:
            root = _jsonrpc_root(item)
            if isinstance(root, _types.JSONRPCResponse) and root.id == self._init_id:
                result = root.result if isinstance(root.result, Mapping) else {}
                negotiated = result.get("protocolVersion")
                self._settle(ok=True, negotiated=negotiated if isinstance(negotiated, str)
                             else None)
            elif isinstance(root, _types.JSONRPCError) and root.id == self._init_id:
                self._settle(ok=False, error=_mcp_error(root.error))
        except Exception as exc:
            self._handle._sink_failed("instrumentation", exc)

    # -- the handshake ------------------------------------------------------------------

    def _initialize_received(self, root: Any) -> None:
        with self._lock:
            if self._init_id is not None or self._settled:
                return  # a second initialize on one connection is the SDK's to refuse
            self._init_id = root.id
            self._init_start = time.perf_counter_ns()
        params = root.params if isinstance(root.params, Mapping) else {}
        info = params.get("clientInfo")
        self._client_info = info if isinstance(info, Mapping) else None
        requested = params.get("protocolVersion")
        self._handle._count(requests=1)
        meta = params.get("_meta")
        attributes: dict[str, Any] = {"mcp.method.name": "initialize",
                                      "jsonrpc.request.id": str(root.id)}
        if isinstance(requested, str):
            attributes["mcp.protocol.version"] = requested
        parent = propagate.extract(dict(meta)) if isinstance(meta, Mapping) and meta else None
        self._init_span = guard(self._handle, "span", self._tracer.start_span, "initialize",
                                kind=SpanKind.SERVER, attributes=attributes, context=parent)

    def _settle(self, *, ok: bool, negotiated: str | None = None,
                error: BaseException | None = None) -> None:
        with self._lock:
            if self._settled:
                return
            self._settled = True
        if negotiated:
            self.protocol_version = negotiated
        span = self._init_span
        observer = self._observer
        guard(self._handle, "handshake", observer.handshake, start_ns=self._init_start, ok=ok,
              client_info=self._client_info, error=error)
        if span is not None and span.is_recording():
            if negotiated:
                span.set_attribute("mcp.protocol.version", negotiated)
            if not ok:
                span.set_attribute("error.type", classify_error(error) if error else "_OTHER")
                span.set_status(StatusCode.ERROR)
        if ok and not self.stateless:
            self._had_session = True
            with trace.use_span(span or trace.INVALID_SPAN, end_on_exit=False):
                self._end_session = guard(
                    self._handle, "session tracking", observer.start_session,
                    start_ns=self._init_start, protocol_version=self.protocol_version,
                    session_id=None, client_info=self._client_info)
        if span is not None:
            guard(self._handle, "span", span.end)

    def close(self) -> None:
        """The connection ended: a handshake left unanswered is a failed one (its event,
        its duration and its span), then the session ends."""
        with self._lock:
            pending = self._init_id is not None and not self._settled
            self._settled = True
        if pending:
            guard(self._handle, "handshake", self._observer.handshake,
                  start_ns=self._init_start, ok=False, client_info=self._client_info,
                  error=ConnectionError("connection closed during the handshake"))
            span = self._init_span
            if span is not None:
                if span.is_recording():
                    span.set_attribute("error.type", "ConnectionError")
                    span.set_status(StatusCode.ERROR)
                guard(self._handle, "span", span.end)
        end, self._end_session = self._end_session, None
        if end is not None:
            guard(self._handle, "session tracking", end)


def _mcp_error(error: Any) -> BaseException | None:
    try:
        from mcp.shared.exceptions import McpError

        return McpError(error)
    except Exception:
        return None


class _Reader:
    """The transport's read stream, with :meth:`_Connection.inbound` looking at each item."""

    def __init__(self, inner: Any, connection: _Connection) -> None:
        self._inner = inner
        self._connection = connection

    async def __aenter__(self) -> _Reader:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)

    def __aiter__(self) -> _Reader:
        return self

    async def __anext__(self) -> Any:
        item = await self._inner.__anext__()
        self._connection.inbound(item)
        return item

    async def receive(self) -> Any:
        item = await self._inner.receive()
        self._connection.inbound(item)
        return item

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Writer:
    """The transport's write stream, with :meth:`_Connection.outbound` after each send."""

    def __init__(self, inner: Any, connection: _Connection) -> None:
        self._inner = inner
        self._connection = connection

    async def __aenter__(self) -> _Writer:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)

    async def send(self, item: Any) -> None:
        await self._inner.send(item)
        self._connection.outbound(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _wrap_run(handle: Instrumentation, lowlevel: Any, observer: Observer) -> None:
    previous = vars(lowlevel).get("run")  # an instance attribute someone set, or None
    original = lowlevel.run  # what the server would call: bound method or that attribute

    async def run(*args: Any, **kwargs: Any) -> Any:
        if not handle.active:
            return await original(*args, **kwargs)
        connection = _Connection(observer, lowlevel)
        try:
            args, kwargs = _tapped(args, kwargs, connection)
            _rewrap(lowlevel, observer)
            # Stateless streamable HTTP runs once per HTTP request: no server lifetime.
            connection.stateless = bool(_argument(args, kwargs, 4, "stateless", False))
            lifetime = not connection.stateless
            options = _argument(args, kwargs, 2, "initialization_options", None)
        except Exception as exc:
            handle._sink_failed("instrumentation", exc)
            return await original(*args, **kwargs)
        if lifetime:
            observer.server_started(_server_version(lowlevel, options), _protocol_version())
        token = _CONNECTION.set(connection)
        try:
            return await original(*args, **kwargs)
        finally:
            _CONNECTION.reset(token)
            guard(handle, "session tracking", connection.close)
            if lifetime:
                await _off_loop(handle, _stopped, observer, connection.had_session)

    run._mcp_otel_handle = handle  # type: ignore[attr-defined]
    lowlevel.run = run

    def restore() -> None:
        if vars(lowlevel).get("run") is not run:
            return  # someone replaced it after us: theirs stays
        if previous is None:
            del lowlevel.run
        else:
            lowlevel.run = previous

    handle.on_uninstrument(restore)


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str,
              default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _stopped(observer: Observer, flush: bool) -> None:
    """``server_stop`` (the emitter flushes its own files there), then, when a session
    ended, every other sink, so a stdio server that returns from ``run`` and exits has
    complete files even if its exit is cut short."""
    observer.server_stopped("shutdown")
    if flush and observer.handle.active:
        observer.handle.force_flush()


async def _off_loop(handle: Instrumentation, fn: Any, *args: Any) -> None:
    """Run blocking sink work (file writes, exports) in a worker thread; shielded so that
    the cancellation that ends a connection does not cut it short."""
    import anyio

    try:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(fn, *args)
    except Exception as exc:
        handle._sink_failed("force_flush", exc)


def _tapped(args: tuple[Any, ...], kwargs: dict[str, Any],
            connection: _Connection) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``run``'s arguments with the read and write streams tapped (positional or named)."""
    args = list(args)  # type: ignore[assignment]
    for index, name, tap in ((0, "read_stream", _Reader), (1, "write_stream", _Writer)):
        if len(args) > index:
            args[index] = tap(args[index], connection)  # type: ignore[index]
        elif name in kwargs:
            kwargs = {**kwargs, name: tap(kwargs[name], connection)}
    return tuple(args), kwargs


def _server_version(lowlevel: Any, options: Any) -> str:
    version = getattr(options, "server_version", None) or getattr(lowlevel, "version", None)
    return str(version or package_version())


def _protocol_version() -> str:
    try:
        from mcp.types import LATEST_PROTOCOL_VERSION
    except Exception:
        return "unknown"
    return str(LATEST_PROTOCOL_VERSION)


# ---- attach ---------------------------------------------------------------------------


def _already_instrumented(lowlevel: Any) -> bool:
    owner = getattr(vars(lowlevel).get("run"), "_mcp_otel_handle", None)
    if owner is not None and owner.active:
        return True
    handlers = getattr(lowlevel, "request_handlers", None) or {}
    return any(isinstance(h, _Observed) and h.observer.handle.active
               for h in list(handlers.values()))


def attach(handle: Instrumentation, server: Any, observer: Observer) -> None:
    """Hook ``server``; every hook registers its undo on ``handle``."""
    global _types, _request_ctx
    lowlevel = _lowlevel_or_none(server)
    if lowlevel is None:
        raise TypeError(f"not an mcp 1.x server: {type(server).__qualname__}")
    from mcp import types
    from mcp.server.lowlevel.server import request_ctx

    _types, _request_ctx = types, request_ctx
    if _already_instrumented(lowlevel):
        raise ValueError("this server is already instrumented by mcp-otel; uninstrument() first")
    handlers = lowlevel.request_handlers
    _wrap_entries(handlers, observer)

    def unwrap() -> None:
        _unwrap_entries(handlers, observer)
        current = getattr(lowlevel, "request_handlers", None)
        if isinstance(current, dict) and current is not handlers:
            _unwrap_entries(current, observer)

    handle.on_uninstrument(unwrap)
    _wrap_run(handle, lowlevel, observer)
