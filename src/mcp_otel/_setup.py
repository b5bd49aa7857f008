"""The one place that configures OpenTelemetry for the whole package.

STUB: the telemetry work (issue 4) fleshes this out. The function names and signatures
below are the contract other modules rely on; keep them.
"""

from __future__ import annotations

import os
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

DEFAULT_DIR = "./mcp-otel-data"


def data_dir() -> Path:
    """The data directory: ``MCP_OTEL_DIR``, else ``./mcp-otel-data``."""
    return Path(os.environ.get("MCP_OTEL_DIR") or DEFAULT_DIR)


def sdk_disabled() -> bool:
    """True when ``OTEL_SDK_DISABLED`` is set to true (case-insensitive)."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def otlp_configured(signal: str | None = None) -> bool:
    """True when an OTLP endpoint is configured (generic or for ``signal``)."""
    names = ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    if signal:
        names.append(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    return any(os.environ.get(n) for n in names)


def get_tracer_provider() -> trace.TracerProvider:
    """The application's SDK tracer provider if it set one, else mcp-otel's shared one."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    return _shared_tracer_provider()


_PROVIDER: TracerProvider | None = None


def _shared_tracer_provider() -> TracerProvider:
    global _PROVIDER
    if _PROVIDER is None:
        _PROVIDER = TracerProvider()
    return _PROVIDER


def configure() -> None:
    """Set up mcp-otel's shared providers (idempotent)."""
    _shared_tracer_provider()
