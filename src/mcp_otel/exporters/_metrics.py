"""``JsonlMetricExporter``: metric snapshots to a locked JSONL file."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import Aggregation

from mcp_otel.exporters import _flat, _otlp_json
from mcp_otel.exporters._base import _JsonlExporterBase


def _points(data: MetricsData) -> int:
    try:
        return _otlp_json.data_points(data)
    except Exception:
        return 0


class JsonlMetricExporter(_JsonlExporterBase, MetricExporter):
    """A ``MetricExporter`` (push, for a ``PeriodicExportingMetricReader``).

    ``flat`` writes one data point per line (see ``FLAT_METRIC_ENVELOPE``); ``otlp``
    writes one ``MetricsData`` per collection. Temporality and aggregation preferences
    are the SDK's (cumulative by default) unless given. Failures are counted in
    ``failed_records`` (data points).
    """

    _signal = "metrics"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Aggregation] | None = None,
        **options: Any,
    ) -> None:
        """``options`` are the keyword arguments every exporter takes (``format``,
        ``fsync``, rotation, ...; see :class:`_JsonlExporterBase`)."""
        MetricExporter.__init__(
            self,
            preferred_temporality=preferred_temporality,
            preferred_aggregation=preferred_aggregation,
        )
        _JsonlExporterBase.__init__(self, path, **options)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.config.format == "otlp":
            written, total = self._write(
                lambda: _otlp_json.metric_line(metrics_data), _points(metrics_data)
            )
        else:
            include = self.config.include_resource
            written, total = self._write(
                lambda: _flat.metric_lines(metrics_data, include), _points(metrics_data)
            )
        return MetricExportResult.SUCCESS if written == total else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._force_flush()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._do_shutdown()
