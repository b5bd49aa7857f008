"""Adapter for the official ``mcp`` SDK 2.x: ``MCPServer`` and the low-level ``Server``.

Why a middleware first: the SDK's context-tier middleware (``Server.middleware``) sees
every inbound message, including unknown tools, parameter validation failures and
``initialize``, and it sees the *wire* result, so ``bytes_out`` is the size of what the
client really receives and the correlation id can be put in the response ``_meta``.

That list is marked provisional by the SDK. When a release no longer has it, the adapter
falls back to the stable ``get_request_handler``/``add_request_handler`` pair and wraps
the ``tools/call`` and ``resources/read`` handlers (then ``initialize`` and sessions are
not observed, which is logged once at instrument time).

Cooperation with the SDK's own tracing: ``mcp.server.Server`` ships an
``OpenTelemetryMiddleware`` that opens the SERVER span per message through the *global*
tracer provider. We insert our middleware right inside it, so our work runs with that span
current: we add attributes to it rather than opening a duplicate. Only when it is absent
do we open the equivalent span ourselves.

Private SDK names touched here, and only here: ``MCPServer._lowlevel_server`` (its
lifespan), ``ServerSession._connection`` (the per-client connection whose ``exit_stack``
the SDK documents for middleware cleanup, and its session id).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from mcp_otel._instrument._core import (
    Instrumentation,
    Observer,
    Request,
    WireCodec,
    package_version,
)

NAME = "mcp2"
_log = logging.getLogger("mcp_otel.instrument")


def matches(server: Any) -> bool:
    """True for an ``MCPServer`` or a low-level ``Server`` of mcp 2.x."""
    try:
        from mcp.server.lowlevel import Server
    except ImportError:
        return False
    if isinstance(server, Server):
        return not hasattr(server, "request_handlers")  # 1.x keeps a public dict
    try:
        from mcp.server.mcpserver import MCPServer
    except ImportError:
        return False
    return isinstance(server, MCPServer)


#: The public classes zero-code instrumentation hooks, as (module, name): mcp 2.x's
#: low-level ``Server`` and ``MCPServer`` (mcp 1.x has no ``mcp.server.mcpserver``).
SERVER_CLASSES = (("mcp.server.lowlevel", "Server"), ("mcp.server.mcpserver", "MCPServer"))


def _lowlevel(server: Any) -> Any:
    from mcp.server.lowlevel import Server

    return server if isinstance(server, Server) else server._lowlevel_server


def classify_error(exc: BaseException) -> str:
    """The ``error.type`` the SDK's span uses, so metrics and spans agree."""
    from mcp.shared.exceptions import MCPError
    from pydantic import ValidationError

    if isinstance(exc, MCPError):
        return str(exc.error.code)
    if isinstance(exc, ValidationError):
        return "-32602"  # INVALID_PARAMS, as the SDK answers it
    return type(exc).__qualname__


_SDK_OTEL_MIDDLEWARE: list[type | None] = []  # resolved once: this runs per message


def _is_sdk_otel_middleware(middleware: Any) -> bool:
    if not _SDK_OTEL_MIDDLEWARE:
        try:
            from mcp.server._otel import OpenTelemetryMiddleware
        except ImportError:
            _SDK_OTEL_MIDDLEWARE.append(None)
        else:
            _SDK_OTEL_MIDDLEWARE.append(OpenTelemetryMiddleware)
    cls = _SDK_OTEL_MIDDLEWARE[0]
    return cls is not None and isinstance(middleware, cls)


def _connection_of(ctx: Any) -> Any:
    return getattr(getattr(ctx, "session", None), "_connection", None)


def _session_id(ctx: Any) -> str | None:
    sid = getattr(_connection_of(ctx), "session_id", None)
    return sid if isinstance(sid, str) and sid else None


def _request_of(ctx: Any) -> Request:
    params = ctx.params if isinstance(ctx.params, Mapping) else {}
    meta = ctx.meta if isinstance(ctx.meta, Mapping) else params.get("_meta")
    return Request(
        method=str(ctx.method),
        params=params,
        request_id=ctx.request_id,
        protocol_version=getattr(ctx, "protocol_version", None),
        meta=meta if isinstance(meta, Mapping) else None,
        session_id=_session_id(ctx),
    )


class Middleware:
    """The context-tier middleware: translates ``ctx`` and defers to the observer."""

    def __init__(self, observer: Observer, middleware: list[Any]) -> None:
        self._observer = observer
        self._chain = middleware
        self._codec = WireCodec()

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Any]) -> Any:
        observer = self._observer
        if not observer.handle.active:
            return await call_next(ctx)
        try:
            request = _request_of(ctx)
            own_span = not any(_is_sdk_otel_middleware(m) for m in self._chain)
        except Exception as exc:
            observer.handle._sink_failed("instrumentation", exc)
            return await call_next(ctx)

        def on_close(end: Callable[[], None]) -> bool:
            stack = getattr(_connection_of(ctx), "exit_stack", None)
            if stack is None:
                return False
            stack.callback(end)
            return True

        return await observer.observe(request, lambda: call_next(ctx), codec=self._codec,
                                      own_span=own_span, on_close=on_close)


def attach(handle: Instrumentation, server: Any, observer: Observer) -> None:
    """Hook ``server``; every hook registers its undo on ``handle``."""
    lowlevel = _lowlevel(server)
    chain = _middleware_hook(lowlevel)
    if chain is not None:
        if any(isinstance(m, Middleware) for m in chain):
            raise ValueError(
                "this server is already instrumented by mcp-otel; uninstrument() first")
        middleware = Middleware(observer, chain)
        # Right inside the SDK's OpenTelemetry middleware, so its span is current for us.
        index = next((i + 1 for i, m in enumerate(chain) if _is_sdk_otel_middleware(m)), 0)
        chain.insert(index, middleware)
        handle.on_uninstrument(lambda: _remove(chain, middleware))
    else:
        _wrap_handlers(handle, lowlevel, observer)
    original = lowlevel.lifespan
    lowlevel.lifespan = _wrap_lifespan(observer, lowlevel, original)

    def restore_lifespan() -> None:
        if getattr(lowlevel.lifespan, "_mcp_otel_wrapped", False):
            lowlevel.lifespan = original

    handle.on_uninstrument(restore_lifespan)


def _middleware_hook(lowlevel: Any) -> list[Any] | None:
    """The provisional ``Server.middleware`` list, or None where a release dropped it."""
    chain = getattr(lowlevel, "middleware", None)
    return chain if isinstance(chain, list) else None


def _remove(chain: list[Any], middleware: Any) -> None:
    with contextlib.suppress(ValueError):
        chain.remove(middleware)


def _wrap_handlers(handle: Instrumentation, lowlevel: Any, observer: Observer) -> None:
    """Fallback without the provisional middleware list: wrap the stable handler table."""
    get = getattr(lowlevel, "get_request_handler", None)
    add = getattr(lowlevel, "add_request_handler", None)
    if get is None or add is None:
        raise TypeError("this mcp 2.x release has neither Server.middleware nor "
                        "get_request_handler/add_request_handler; mcp-otel cannot hook it")
    _log.info("mcp-otel: Server.middleware is gone in this mcp release; wrapping the "
              "tools/call and resources/read handlers (initialize is not observed)")
    codec = WireCodec()
    for method in ("tools/call", "resources/read"):
        entry = get(method)
        if entry is None:
            continue
        params_type, inner = entry.params_type, entry.handler

        def make(method: str = method, inner: Any = inner) -> Any:
            async def handler(ctx: Any, params: Any) -> Any:
                dump = getattr(params, "model_dump", None)
                wire = dump(by_alias=True, mode="json", exclude_none=True) if dump else {}
                request = Request(method=method, params=wire,
                                  request_id=getattr(ctx, "request_id", None),
                                  protocol_version=getattr(ctx, "protocol_version", None),
                                  meta=wire.get("_meta"), session_id=_session_id(ctx))
                return await observer.observe(request, lambda: inner(ctx, params),
                                              codec=codec, own_span=True)
            return handler

        add(method, params_type, make())
        handle.on_uninstrument(
            lambda m=method, p=params_type, h=inner: add(m, p, h))


def _wrap_lifespan(observer: Observer, lowlevel: Any, original: Any) -> Any:
    """Emit ``server_start`` / ``server_stop`` around the server's own lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(srv: Any) -> AsyncIterator[Any]:
        version = str(getattr(lowlevel, "version", "") or package_version())
        observer.server_started(version, _protocol_version())
        try:
            async with original(srv) as state:
                yield state
        finally:
            observer.server_stopped("shutdown")

    lifespan._mcp_otel_wrapped = True  # type: ignore[attr-defined]
    return lifespan


def _protocol_version() -> str:
    try:
        from mcp_types.version import LATEST_PROTOCOL_VERSION
    except ImportError:
        try:
            from mcp.types import LATEST_PROTOCOL_VERSION
        except ImportError:
            return "unknown"
    return str(LATEST_PROTOCOL_VERSION)
