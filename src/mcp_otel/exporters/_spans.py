"""``JsonlSpanExporter``: finished spans to a locked JSONL file."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from mcp_otel.exporters import _flat, _otlp_json
from mcp_otel.exporters._base import _JsonlExporterBase


class JsonlSpanExporter(_JsonlExporterBase, SpanExporter):
    """A ``SpanExporter`` writing one batch per locked ``write``.

    ``flat`` writes one span per line (see ``FLAT_SPAN_ENVELOPE``); ``otlp`` writes one
    ``TracesData`` per batch. Never raises; failures are counted in ``failed_records``.
    """

    _signal = "traces"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.config.format == "otlp":
            written, total = self._write(lambda: _otlp_json.span_line(spans), len(spans))
        else:
            resources = _flat.ResourceCache() if self.config.include_resource else None
            written, total = self._write(lambda: _flat.span_lines(spans, resources), len(spans))
        return SpanExportResult.SUCCESS if written == total else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._force_flush()

    def shutdown(self) -> None:
        self._do_shutdown()
