"""``JsonlLogExporter``: log records to a locked JSONL file (the audit trail's sink)."""

from __future__ import annotations

from collections.abc import Sequence

from mcp_otel._otel_compat import LogRecordExporter, LogRecordExportResult, ReadableLogRecord
from mcp_otel.exporters import _flat, _otlp_json
from mcp_otel.exporters._base import _JsonlExporterBase


class JsonlLogExporter(_JsonlExporterBase, LogRecordExporter):
    """A ``LogRecordExporter`` writing one batch per locked ``write``.

    ``flat`` writes one record per line (attributes at the top level, see
    ``FLAT_LOG_ENVELOPE``); ``otlp`` writes one ``LogsData`` per batch. ``export``
    returns ``FAILURE`` when not all of the batch is in the file: on a full disk the
    ``flat`` records that fit are written (see :meth:`export_prefix`), the others counted
    in ``failed_records``. It never raises.
    """

    _signal = "logs"

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        written = self.export_prefix(batch)
        return (
            LogRecordExportResult.SUCCESS if written == len(batch)
            else LogRecordExportResult.FAILURE
        )

    def export_prefix(
        self, batch: Sequence[ReadableLogRecord], *, count_failed: bool = True
    ) -> int:
        """Write the longest leading run of ``batch`` that fits; return its length.

        ``export`` reports only all-or-nothing; a caller that must know which records are
        in the file (the audit trail, whose hash chain follows the file order) uses this.
        The records after the returned length are not in the file. ``count_failed=False``:
        do not add them to ``failed_records`` (the caller retries, and counts a record
        once, when it gives up on it).
        """
        if self.config.format == "otlp":
            written, _ = self._write(
                lambda: _otlp_json.log_line(batch), len(batch), count_failed=count_failed
            )
        else:
            resources = _flat.ResourceCache() if self.config.include_resource else None
            written, _ = self._write(
                lambda: _flat.log_lines(batch, resources), len(batch), count_failed=count_failed
            )
        return written

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._force_flush()

    def shutdown(self) -> None:
        self._do_shutdown()
