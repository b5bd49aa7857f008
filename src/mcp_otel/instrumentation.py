"""``McpOtelInstrumentor``: mcp-otel as an OpenTelemetry instrumentor, for zero-code use.

``opentelemetry-instrument python server.py`` finds it through the
``opentelemetry_instrumentor`` entry point (name ``mcp_otel``) and calls
:meth:`~McpOtelInstrumentor.instrument`; from then on every MCP server the program creates
(mcp 1.x ``Server``/``FastMCP``, mcp 2.x ``Server``/``MCPServer``, fastmcp 2-4 ``FastMCP``)
is instrumented as :func:`mcp_otel.instrument` would, configured by the same environment
variables (``MCP_OTEL_DIR``, ``MCP_OTEL_HANDLE_SIGNALS``, ...). The mechanics live in
:mod:`mcp_otel._instrument.auto`; this module only adapts them to ``BaseInstrumentor``,
which needs the ``zero-code`` extra (``opentelemetry-instrumentation``).

Why no ``instrumentation_dependencies``: the instrumentor serves whichever MCP framework is
installed and names none, so the dependency check of ``opentelemetry-instrument`` never
refuses it and installing mcp-otel never pulls a framework in.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from mcp_otel._instrument import auto

__all__ = ["McpOtelInstrumentor"]


class McpOtelInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments every supported MCP server created after :meth:`instrument`.

    ``instrument(**kwargs)`` accepts ``tracer_provider``, ``meter_provider``,
    ``record_results`` and ``handle_signals``, passed to :func:`mcp_otel.instrument` for
    each server. ``uninstrument()`` restores the framework classes and un-instruments
    every server instrumented through it (servers the program instrumented itself with
    ``mcp_otel.instrument`` stay as they are).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        options = {k: v for k, v in kwargs.items() if k in auto.OPTIONS}
        auto.install(**options)

    def _uninstrument(self, **kwargs: Any) -> None:
        auto.uninstall()

    def instrumentation_of(self, server: Any) -> Any | None:
        """The :class:`~mcp_otel._instrument.Instrumentation` handle of a server this
        instrumentor instrumented (its ``audit``, ``telemetry``, ``counts()``), or None."""
        current = auto.current()
        return current.handle_of(server) if current is not None else None

    def instrumented_servers(self) -> list[Any]:
        """The servers instrumented through this instrumentor that are still hooked."""
        current = auto.current()
        return [h.server for h in current.handles()] if current is not None else []
