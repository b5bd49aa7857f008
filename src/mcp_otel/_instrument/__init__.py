"""``instrument(server)``: one call that audits, measures and traces an MCP server.

The framework is detected from the object the user holds; each framework family has a
small adapter module beside the shared core (:mod:`._core`), and only the adapters touch
framework internals. Detection is strict: an object no adapter recognises raises
``TypeError`` naming the supported frameworks and the versions installed, and an adapter
that fails half-way has every hook it placed taken out again before the error is raised.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

__all__ = ["SUPPORTED", "Instrumentation", "instrument"]

#: (adapter module, what it accepts), in detection order.
SUPPORTED: tuple[tuple[str, str], ...] = (
    ("mcp2", "mcp 2.x: mcp.server.mcpserver.MCPServer, mcp.server.lowlevel.Server"),
    ("mcp1", "mcp 1.x: mcp.server.lowlevel.Server (decorator API), "
             "mcp.server.fastmcp.FastMCP"),
    ("fastmcp", "fastmcp 2.x, 3.x, 4.x: fastmcp.FastMCP"),
)


def __getattr__(name: str) -> Any:
    if name == "Instrumentation":
        from mcp_otel._instrument._core import Instrumentation

        return Instrumentation
    raise AttributeError(name)


def _installed() -> str:
    found = []
    for dist in ("mcp", "fastmcp"):
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{dist} not installed")
    return ", ".join(found)


def _adapter_for(server: Any) -> Any:
    """The adapter module that recognises ``server``. Adapters are tried from the most
    specific: fastmcp's ``FastMCP`` wraps an official server, so it goes first."""
    for name in ("fastmcp", "mcp2", "mcp1"):
        try:
            module = importlib.import_module(f"mcp_otel._instrument.{name}")
        except ImportError:  # an adapter not written for this install
            continue
        try:
            if module.matches(server):
                return module
        except Exception:  # a framework too broken to inspect is not supported
            continue
    supported = "; ".join(what for _, what in SUPPORTED)
    raise TypeError(
        f"instrument() does not support {type(server).__module__}.{type(server).__qualname__}. "
        f"Supported: {supported}. Installed: {_installed()}."
    )


def instrument(
    server: Any,
    *,
    audit: Any | None = None,
    telemetry: Any | None = None,
    cache: Any | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    record_results: bool = True,
    handle_signals: bool | None = None,
) -> Any:
    """Audit, measure and trace every tool call, resource read and session of ``server``.

    ``server`` is the object the user holds: an mcp 2.x ``MCPServer`` or low-level
    ``Server``, an mcp 1.x low-level ``Server`` or ``FastMCP``, or a standalone fastmcp
    ``FastMCP`` (2.x-4.x). ``audit``/``telemetry``: an ``AuditLogger`` /
    ``TelemetryEmitter`` (or any object with the Osiris methods); ``None`` creates the
    default one under ``MCP_OTEL_DIR`` (``init_telemetry(output_dir=<dir>/telemetry)`` for
    telemetry, so the whole process shares one emitter); ``False`` turns that sink off.
    ``cache`` is only carried on the handle for the tools to use. ``record_results=False``
    keeps tool results out of the audit trail (only their sizes are recorded).
    ``handle_signals``: flush everything on SIGTERM/SIGINT and chain to the handler already
    there (default on, unless ``MCP_OTEL_HANDLE_SIGNALS=false``; see
    :mod:`mcp_otel._lifecycle`).

    Calling it twice on the same server raises ``ValueError``: two observers would
    double every count. A server that zero-code instrumentation
    (``opentelemetry-instrument``, :mod:`mcp_otel.instrumentation`) instrumented when it
    was created is taken over instead: this call's arguments replace the automatic ones,
    and the audit session the automatic instrumentation started goes on (when ``audit``
    is None), so nothing is recorded twice.
    """
    adapter = _adapter_for(server)

    from mcp_otel import _setup
    from mcp_otel._instrument import auto
    from mcp_otel._instrument._core import Instrumentation, Observer, ensure_global_tracer_provider

    owns_audit = owns_telemetry = False
    kept_audit = auto.release(server, keep_audit=audit is None)
    if audit is None and kept_audit is not None:
        audit, owns_audit = kept_audit, True
    if audit is None:
        from mcp_otel.audit import AuditLogger

        audit = AuditLogger(_setup.data_dir() / "audit")
        owns_audit = True
    meter_provider = meter_provider or _setup.get_meter_provider()
    if telemetry is None:
        from mcp_otel.telemetry import init_telemetry

        # Its counters go to the same provider as the rest: one metrics file per data
        # directory (metrics/), not a second one under telemetry/.
        telemetry = init_telemetry(
            output_dir=_setup.data_dir() / "telemetry", meter_provider=meter_provider
        )
        owns_telemetry = True

    handle = Instrumentation(
        server=server,
        audit=None if audit is False else audit,
        telemetry=None if telemetry is False else telemetry,
        cache=cache,
        tracer_provider=tracer_provider or ensure_global_tracer_provider(),
        meter_provider=meter_provider,
        framework=adapter.NAME,
        owns_audit=owns_audit,
        owns_telemetry=owns_telemetry,
    )
    observer = Observer(handle, record_results=record_results,
                        classify_error=adapter.classify_error)
    try:
        adapter.attach(handle, server, observer)
    except BaseException:
        # Nothing half-instrumented: take out whatever the adapter placed already.
        handle.uninstrument()
        raise
    from mcp_otel import _lifecycle

    if _lifecycle.signals_enabled() if handle_signals is None else handle_signals:
        _lifecycle.install_signal_handlers()
    return handle
