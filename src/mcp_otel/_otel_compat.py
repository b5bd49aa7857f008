"""The one module that touches OpenTelemetry names outside its stable public API.

Everywhere else, mcp-otel uses only the public OpenTelemetry API and SDK. The exceptions
are below, each because no public alternative exists; they are gathered here so that an
SDK release that moves one breaks one module, and ``tests/test_otel_compat.py`` (which
checks every one of them against the installed SDK) says which. ``tests/test_otel_compat.py``
also scans ``src/`` and fails on a private OpenTelemetry name used anywhere else.

Private names relied on, and why:

* ``opentelemetry._logs`` (the logs API) and ``opentelemetry.sdk._logs`` /
  ``opentelemetry.sdk._logs.export`` (the logs SDK): the logs signal is still marked
  experimental, so its only home is these underscored packages. They are the documented
  entry points (the SDK's own docs and examples import from them), and the names taken
  from them are the ones in their ``__all__``. Re-exported here unchanged (the API
  module itself as ``logs_api``).
* ``opentelemetry.exporter.otlp.proto.{grpc,http}._log_exporter.OTLPLogExporter``: the
  OTLP log exporters live only in these modules (same reason); imported lazily by
  :func:`otlp_log_exporter`, since grpc is slow to import.
* ``MetricExporter._preferred_temporality`` / ``._preferred_aggregation``: the SDK's
  metric readers read an exporter's preferences from these attributes and there is no
  public getter. mcp-otel's fork-safe wrapper (:func:`mcp_otel._setup.fork_safe`) must
  present the wrapped exporter's preferences to the reader; :func:`metric_exporter_preferences`
  reads them.
* ``ReadWriteLogRecord.__post_init__``: the SDK wraps a record's attributes in
  ``BoundedAttributes`` there, re-cleaning every nested value and applying the
  ``OTEL_*_LIMIT`` variables. An audit record is encoded, masked and hash-sealed by value
  and may carry a :class:`mcp_otel.redaction.Snapshot` (not an OTel attribute type) until
  the writer thread masks it, so that pass must not run. :class:`UnboundedLogRecord` skips
  it; it relies on the SDK doing that wrapping in ``__post_init__`` and nowhere else, and
  on ``Logger.emit`` passing a ``ReadWriteLogRecord`` to the processors as it is.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import _logs as logs_api
from opentelemetry._logs import LogRecord, NoOpLogger, SeverityNumber
from opentelemetry.sdk._logs import (
    Logger,
    LoggerProvider,
    LogRecordLimits,
    LogRecordProcessor,
    ReadableLogRecord,
    ReadWriteLogRecord,
)
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics.export import MetricExporter

__all__ = [
    "BatchLogRecordProcessor",
    "LogRecord",
    "LogRecordExportResult",
    "LogRecordExporter",
    "LogRecordLimits",
    "LogRecordProcessor",
    "Logger",
    "LoggerProvider",
    "NoOpLogger",
    "ReadWriteLogRecord",
    "ReadableLogRecord",
    "SeverityNumber",
    "SimpleLogRecordProcessor",
    "UnboundedLogRecord",
    "logs_api",
    "metric_exporter_preferences",
    "otlp_log_exporter",
]


def otlp_log_exporter(protocol: str) -> LogRecordExporter:
    """The SDK's OTLP log exporter for ``protocol`` (``"grpc"`` or ``"http/protobuf"``),
    configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
            OTLPLogExporter,
        )
    else:
        raise ValueError(f"unknown OTLP protocol {protocol!r}")
    return OTLPLogExporter()


def metric_exporter_preferences(exporter: MetricExporter) -> tuple[Any, Any]:
    """``(preferred_temporality, preferred_aggregation)`` of ``exporter``: the mappings a
    metric reader takes from it, to be passed on to ``MetricExporter.__init__``."""
    return exporter._preferred_temporality, exporter._preferred_aggregation


class UnboundedLogRecord(ReadWriteLogRecord):
    """A ``ReadWriteLogRecord`` whose attributes stay the mapping it was given.

    No ``BoundedAttributes`` wrapper: no limit, no re-cleaning, no copy. For records
    whose attributes were already made valid and final by their producer (see the module
    docstring for why the audit trail needs this and what it relies on).
    """

    def __post_init__(self) -> None:
        pass
