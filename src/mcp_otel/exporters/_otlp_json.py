"""The ``otlp`` line format: the OTLP File exporter format of the OpenTelemetry spec.

Each line is one ``LogsData`` / ``TracesData`` / ``MetricsData`` message in OTLP/JSON
(https://opentelemetry.io/docs/specs/otel/protocol/file-exporter/ and
https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): lowerCamelCase field
names, 64-bit integers as strings, enums as integers, and -- unlike protobuf's own JSON
mapping -- trace and span ids as hex, not base64. The Collector's ``otlpjsonfile``
receiver reads these files.

We reuse the SDK's own protobuf encoders (the same code the OTLP exporters send over the
wire, so the content is exactly what a collector would receive) and protobuf's JSON
mapping; only the id fields are rewritten to hex. ``ExportXServiceRequest`` and
``XData`` share their wire and JSON layout (field 1, same name), so the request's JSON is
the ``XData`` line.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.trace import ReadableSpan

from mcp_otel._json import dumps

_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids(node: Any) -> None:
    """Rewrite base64 id fields (protobuf's bytes mapping) to OTLP/JSON's hex, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            elif isinstance(value, dict | list):
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _hex_ids(item)


def _line(message: Any) -> bytes:
    as_dict = MessageToDict(message, use_integers_for_enums=True)
    if not as_dict:
        return b""
    _hex_ids(as_dict)
    return dumps(as_dict) + b"\n"


def log_line(batch: Sequence[ReadableLogRecord]) -> tuple[bytes, int]:
    """The whole batch as one ``LogsData`` line; returns (payload, records in it)."""
    if not batch:
        return b"", 0
    return _line(encode_logs(batch)), len(batch)


def span_line(spans: Sequence[ReadableSpan]) -> tuple[bytes, int]:
    if not spans:
        return b"", 0
    return _line(encode_spans(spans)), len(spans)


def metric_line(data: MetricsData) -> tuple[bytes, int]:
    points = sum(
        len(getattr(m.data, "data_points", ()))
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    )
    if not points:
        return b"", 0
    return _line(encode_metrics(data)), points
