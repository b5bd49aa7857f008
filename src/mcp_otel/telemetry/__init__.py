"""Osiris' telemetry API (``TelemetryEmitter``, ``init_telemetry``, ``get_telemetry``) on
OpenTelemetry: exact counts, metric export, and an event file written synchronously.

The parts, one concept per module:

* :mod:`._values` -- what happens to the values a host passes (counts, labels, caps,
  masking), so that no argument can crash the host or grow a line without bound;
* :mod:`._instruments` -- the locked tally of counts, the observable counters that export
  it (one consistent snapshot per collection) and the MCP duration histograms;
* :mod:`._events` -- the event line and its synchronous, locked append to the file;
* :mod:`._pipeline` -- the per-process set of providers, readers and sinks (rebuilt in a
  forked child);
* :mod:`._emitter` -- :class:`TelemetryEmitter` itself.

docs/telemetry.md has the user-facing guarantees and figures.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from mcp_otel.telemetry._emitter import TelemetryEmitter
from mcp_otel.telemetry._events import EVENT_PREFIX
from mcp_otel.telemetry._instruments import (
    MCP_DURATION_BUCKETS,
    METRIC_KEYS,
    operation_duration,
    session_duration,
)
from mcp_otel.telemetry._values import (
    MAX_ERROR_TYPES,
    MAX_NAME_LENGTH,
    MAX_TOOL_NAMES,
    MAX_VALUE,
    _bounded_label,
)

__all__ = [
    "EVENT_PREFIX",
    "MAX_ERROR_TYPES",
    "MAX_NAME_LENGTH",
    "MAX_TOOL_NAMES",
    "MAX_VALUE",
    "MCP_DURATION_BUCKETS",
    "METRIC_KEYS",
    "TelemetryEmitter",
    "_bounded_label",
    "get_telemetry",
    "init_telemetry",
    "operation_duration",
    "session_duration",
]

_telemetry: TelemetryEmitter | None = None
_telemetry_lock = threading.Lock()


def init_telemetry(
    enabled: bool = True, output_dir: Path | None = None, *, meter_provider: Any = None
) -> TelemetryEmitter:
    """The process-wide emitter; the first call's arguments win (thread-safe).

    ``meter_provider`` (an extension): see :class:`TelemetryEmitter`.

    Like the constructor, the first call needs ``output_dir`` (or ``MCP_OTEL_DIR``) when
    ``enabled``: ``ValueError("output_dir is required")`` otherwise.
    """
    global _telemetry
    if _telemetry is not None:
        return _telemetry
    with _telemetry_lock:
        if _telemetry is None:
            _telemetry = TelemetryEmitter(
                enabled=enabled, output_dir=output_dir, meter_provider=meter_provider
            )
        return _telemetry


def get_telemetry() -> TelemetryEmitter | None:
    """The emitter made by :func:`init_telemetry`, or ``None`` before it was called."""
    return _telemetry
