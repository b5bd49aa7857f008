"""``JsonlLogExporter``: log records to a locked JSONL file (the audit trail's sink)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from mcp_otel.exporters import _flat, _otlp_json
from mcp_otel.exporters._base import _JsonlExporterBase


class JsonlLogExporter(_JsonlExporterBase, LogRecordExporter):
    """A ``LogRecordExporter`` writing one batch per locked ``write``.

    ``flat`` writes one record per line (attributes at the top level, see
    ``FLAT_LOG_ENVELOPE``); ``otlp`` writes one ``LogsData`` per batch. ``export``
    returns ``FAILURE`` (and counts the records in ``failed_records``) when the batch is
    not in the file; it never raises.
    """

    _signal = "logs"

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if self.config.format == "otlp":
            ok = self._write(lambda: _otlp_json.log_line(batch), len(batch))
        else:
            resources = _flat.ResourceCache() if self.config.include_resource else None
            ok = self._write(lambda: _flat.log_lines(batch, resources), len(batch))
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._force_flush()

    def shutdown(self) -> None:
        self._do_shutdown()
