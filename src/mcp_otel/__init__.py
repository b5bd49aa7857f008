"""mcp-otel: a trustworthy audit trail, exact usage metrics and a traced cache for MCP servers.

The public surface is small and re-exported here; everything else lives in private
``_modules``. Names are imported lazily so that ``import mcp_otel`` stays cheap for a server
that only wants, say, the exporters.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "AuditLogger": "mcp_otel.audit",
    "TelemetryEmitter": "mcp_otel.telemetry",
    "init_telemetry": "mcp_otel.telemetry",
    "get_telemetry": "mcp_otel.telemetry",
    "DiscoveryCache": "mcp_otel.cache",
    "instrument": "mcp_otel._instrument",
    "JsonlLogExporter": "mcp_otel.exporters",
    "JsonlSpanExporter": "mcp_otel.exporters",
    "JsonlMetricExporter": "mcp_otel.exporters",
    "configure": "mcp_otel._setup",
    # Needs the zero-code extra; imported only when asked for.
    "McpOtelInstrumentor": "mcp_otel.instrumentation",
}

__all__ = [
    "AuditLogger",
    "DiscoveryCache",
    "JsonlLogExporter",
    "JsonlMetricExporter",
    "JsonlSpanExporter",
    "McpOtelInstrumentor",
    "TelemetryEmitter",
    "__version__",
    "configure",
    "get_telemetry",
    "init_telemetry",
    "instrument",
]

if TYPE_CHECKING:  # pragma: no cover
    from mcp_otel._instrument import instrument
    from mcp_otel._setup import configure
    from mcp_otel.audit import AuditLogger
    from mcp_otel.cache import DiscoveryCache
    from mcp_otel.exporters import JsonlLogExporter, JsonlMetricExporter, JsonlSpanExporter
    from mcp_otel.instrumentation import McpOtelInstrumentor
    from mcp_otel.telemetry import TelemetryEmitter, get_telemetry, init_telemetry


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mcp_otel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
