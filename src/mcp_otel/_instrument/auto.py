"""Zero-code instrumentation: every supported MCP server the program creates is passed to
:func:`mcp_otel.instrument` as it is created.

Why the constructor: whatever transport later serves it (stdio, streamable HTTP, SSE, an
in-memory client, a server mounted in another), a server object is made once, through its
class's ``__init__``, and that object is exactly what a user would have handed to
``instrument()``. The classes hooked are public ones each adapter names
(``SERVER_CLASSES``: mcp 1.x ``Server`` and ``FastMCP``, mcp 2.x ``Server`` and
``MCPServer``, ``fastmcp.FastMCP``), so this module touches no framework internals. A
class is hooked when the program imports its module, not before.

Rules this module keeps:

* One server, one instrumentation. A hooked constructor that runs inside another (the
  low-level ``Server`` a ``FastMCP`` or ``MCPServer`` builds for itself, the constructor of
  a subclass calling ``super().__init__``) instruments nothing: only the outermost object
  is instrumented, once its own constructor has returned.
* The user's explicit call wins. ``instrument(server)`` on a server this module
  instrumented takes it over (:func:`release`): the automatic hooks are taken out first,
  and when the call creates its default ``AuditLogger`` the one already running is kept,
  so the audit session goes on in one hash chain and no record is counted twice.
* :meth:`AutoInstrumentation.uninstall` restores every class attribute it replaced
  (unless someone replaced it again after us: theirs stays, and our wrapper only passes
  through) and un-instruments every server instrumented through it.
* A server that cannot be instrumented is served as it is: the failure is logged, never
  raised into the program that created it.

Configuration is what ``instrument()`` already reads from the environment
(``MCP_OTEL_DIR``, ``MCP_OTEL_HANDLE_SIGNALS``, ...), plus the keyword arguments given to
:meth:`mcp_otel.instrumentation.McpOtelInstrumentor.instrument`.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_log = logging.getLogger("mcp_otel.instrument")

#: Adapter modules asked for their server classes, most specific first.
_ADAPTERS = ("fastmcp", "mcp2", "mcp1")

#: Set while a hooked constructor runs: servers built inside it are parts of it.
_BUILDING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mcp_otel_auto_building", default=False)

#: Keyword arguments of ``instrument()`` the zero-code instrumentor passes on.
OPTIONS = frozenset({"tracer_provider", "meter_provider", "record_results", "handle_signals"})


@dataclass(frozen=True)
class _Patch:
    """One replaced ``__init__``: ``own`` is the class's own (None: it inherited one)."""

    cls: type
    own: Callable[..., None] | None
    wrapper: Callable[..., None]


def class_names() -> tuple[tuple[str, str], ...]:
    """(public module, class name) of every server class the adapters name, each once."""
    found: list[tuple[str, str]] = []
    for name in _ADAPTERS:
        try:
            module = importlib.import_module(f"mcp_otel._instrument.{name}")
        except Exception as exc:  # an adapter this install cannot load
            _log.debug("mcp-otel: no zero-code hooks for %s (%s)", name, exc)
            continue
        for entry in module.SERVER_CLASSES:
            if entry not in found:
                found.append(entry)
    return tuple(found)


def _resolve(module: Any, name: str) -> type | None:
    cls = getattr(module, name, None)
    return cls if isinstance(cls, type) else None


def supported_classes() -> tuple[type, ...]:
    """Every installed server class the adapters name, each once (imports them)."""
    found: list[type] = []
    for module_name, name in class_names():
        try:
            cls = _resolve(importlib.import_module(module_name), name)
        except Exception:  # not this framework line (mcp.server.fastmcp on mcp 2.x, ...)
            continue
        if cls is not None and not any(cls is seen for seen in found):
            found.append(cls)
    return tuple(found)


class AutoInstrumentation:
    """One installation of the constructor hooks and the servers instrumented through
    them. At most one is installed at a time (:func:`install`)."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        unknown = set(options) - OPTIONS
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; accepted: {sorted(OPTIONS)}")
        self._options = dict(options)
        self._lock = threading.Lock()
        self._patches: list[_Patch] = []
        #: id(server) -> its handle; the handle holds the server, so the id stays unique.
        self._handles: dict[int, Any] = {}
        self._active = False

    @property
    def active(self) -> bool:
        return self._active

    def patched_classes(self) -> tuple[type, ...]:
        with self._lock:
            return tuple(p.cls for p in self._patches)

    def handles(self) -> list[Any]:
        """The live handles of the servers instrumented through this installation."""
        with self._lock:
            return list(self._handles.values())

    def handle_of(self, server: Any) -> Any | None:
        with self._lock:
            handle = self._handles.get(id(server))
        return handle if handle is not None and handle.server is server else None

    # ---- hooks ------------------------------------------------------------------------

    def _install(self) -> None:
        """Hook each class when the program imports its module (now, if it did already).

        Why after import rather than importing every framework here: the launcher loads
        instrumentors before the program starts, and importing mcp or fastmcp costs
        seconds that a program which never builds a server (or uses another framework)
        should not pay. wrapt's post-import hooks (public API; wrapt comes with
        opentelemetry-instrumentation) call back once the module is fully imported,
        before the program can use the class. Without wrapt, the modules are imported now.
        """
        self._active = True
        modules = list(dict.fromkeys(module for module, _ in class_names()))
        try:
            from wrapt import register_post_import_hook
        except ImportError:
            register_post_import_hook = None
        for module_name in modules:
            if register_post_import_hook is not None:
                register_post_import_hook(self._imported, module_name)
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception:  # not this framework line
                continue
            self._imported(module)

    def _imported(self, module: Any) -> None:
        """A module naming server classes was imported: hook its classes (never raises;
        a hook registered by an uninstalled installation does nothing)."""
        try:
            if not self._active:
                return
            for module_name, name in class_names():
                if module_name == module.__name__:
                    cls = _resolve(module, name)
                    if cls is not None:
                        self._patch(cls)
        except Exception as exc:
            _log.warning("mcp-otel: could not hook %s (%s)", getattr(module, "__name__", module),
                         exc)

    def _patch(self, cls: type) -> None:
        with self._lock:
            if not self._active or any(p.cls is cls for p in self._patches):
                return  # hooked already (mcp1 and mcp2 both name the low-level Server)
            own = vars(cls).get("__init__")
            wrapper = self._wrapper(cls, own)
            cls.__init__ = wrapper  # type: ignore[misc]
            self._patches.append(_Patch(cls, own, wrapper))

    def _wrapper(self, cls: type, own: Callable[..., None] | None) -> Callable[..., None]:
        auto = self

        def construct(server: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if own is not None:
                own(server, *args, **kwargs)
            else:
                super(cls, server).__init__(*args, **kwargs)

        def __init__(server: Any, *args: Any, **kwargs: Any) -> None:
            if _BUILDING.get() or not auto._active:
                construct(server, args, kwargs)
                return
            token = _BUILDING.set(True)
            try:
                construct(server, args, kwargs)
            finally:
                _BUILDING.reset(token)
            auto._created(server)

        if own is not None:
            functools.update_wrapper(__init__, own)
        __init__._mcp_otel_auto = True  # type: ignore[attr-defined]
        return __init__

    def _created(self, server: Any) -> None:
        """Instrument a server its constructor just returned; never raise into the host."""
        from mcp_otel._instrument import instrument

        if not self._active or self.handle_of(server) is not None:
            return
        try:
            handle = instrument(server, **self._options)
        except Exception as exc:
            if isinstance(exc, ValueError) and "already instrumented" in str(exc):
                _log.debug("mcp-otel: %s is instrumented already", type(server).__qualname__)
                return  # by the program itself, inside a subclass constructor: theirs stays
            _log.warning("mcp-otel: could not instrument %s.%s (%s: %s); it runs without "
                         "mcp-otel", type(server).__module__, type(server).__qualname__,
                         type(exc).__name__, exc)
            return
        with self._lock:
            self._handles[id(server)] = handle
        handle.on_uninstrument(functools.partial(self._forget, server, handle))
        if not self._active:  # uninstalled while we instrumented: nothing stays behind
            handle.uninstrument()

    def _forget(self, server: Any, handle: Any) -> None:
        with self._lock:
            if self._handles.get(id(server)) is handle:
                del self._handles[id(server)]

    def _pop(self, server: Any) -> Any | None:
        with self._lock:
            handle = self._handles.get(id(server))
            if handle is None or handle.server is not server:
                return None
            del self._handles[id(server)]
            return handle

    def _uninstall(self) -> None:
        """Restore every class attribute, then un-instrument every server (in this order:
        no server created meanwhile can slip in behind the last un-instrument)."""
        self._active = False
        with self._lock:
            patches, self._patches = self._patches, []
        for patch in reversed(patches):
            if vars(patch.cls).get("__init__") is not patch.wrapper:
                continue  # replaced after us: that wrapper calls ours, which passes through
            if patch.own is None:
                del patch.cls.__init__  # type: ignore[misc]
            else:
                patch.cls.__init__ = patch.own  # type: ignore[misc]
        for handle in self.handles():
            try:
                handle.uninstrument()
            except Exception as exc:  # one stuck server must not keep the others hooked
                _log.warning("mcp-otel: uninstrument failed (%s)", type(exc).__name__)
        with self._lock:
            self._handles.clear()


_CURRENT: AutoInstrumentation | None = None
_INSTALL_LOCK = threading.Lock()


def install(**options: Any) -> AutoInstrumentation:
    """Hook every supported server class; an installation already running is returned
    as it is (a second one would instrument every server twice)."""
    global _CURRENT
    with _INSTALL_LOCK:
        if _CURRENT is not None and _CURRENT.active:
            return _CURRENT
        auto = AutoInstrumentation(options)
        auto._install()
        _CURRENT = auto
        return auto


def uninstall() -> None:
    """Undo :func:`install` (no-op when nothing is installed)."""
    global _CURRENT
    with _INSTALL_LOCK:
        auto, _CURRENT = _CURRENT, None
    if auto is not None:
        auto._uninstall()


def current() -> AutoInstrumentation | None:
    return _CURRENT


def release(server: Any, *, keep_audit: bool) -> Any | None:
    """Called by ``instrument(server)``: when ``server`` was instrumented automatically,
    take that instrumentation out so the explicit call replaces it.

    With ``keep_audit`` the ``AuditLogger`` the automatic instrumentation created is not
    shut down but returned, for the explicit call to own from now on (one audit session,
    one chain); otherwise it is shut down with the rest. Returns that logger or None.
    """
    auto = _CURRENT
    handle = auto._pop(server) if auto is not None else None
    if handle is None:
        return None
    keep = keep_audit and handle.owns_audit and handle.audit is not None
    if keep:
        handle.owns_audit = False
    handle.uninstrument()
    return handle.audit if keep else None
