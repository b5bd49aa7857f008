"""Locked JSONL exporters for logs, spans and metrics (OpenTelemetry SDK interfaces).

Many threads and many processes can share one file without a torn, interleaved,
duplicated or lost line: see docs/exporters.md for the guarantees, formats and settings.
"""

from __future__ import annotations

from mcp_otel.exporters._config import ExporterConfig
from mcp_otel.exporters._file import (
    LockedJsonlFile,
    RotationPolicy,
    UnsupportedPlatformError,
)
from mcp_otel.exporters._flat import (
    FLAT_LOG_ENVELOPE,
    FLAT_METRIC_ENVELOPE,
    FLAT_SPAN_ENVELOPE,
    SCHEMA_VERSION,
)
from mcp_otel.exporters._logs import JsonlLogExporter
from mcp_otel.exporters._metrics import JsonlMetricExporter
from mcp_otel.exporters._spans import JsonlSpanExporter

__all__ = [
    "FLAT_LOG_ENVELOPE",
    "FLAT_METRIC_ENVELOPE",
    "FLAT_SPAN_ENVELOPE",
    "SCHEMA_VERSION",
    "ExporterConfig",
    "JsonlLogExporter",
    "JsonlMetricExporter",
    "JsonlSpanExporter",
    "LockedJsonlFile",
    "RotationPolicy",
    "UnsupportedPlatformError",
]
