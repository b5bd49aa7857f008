"""The ``otlp`` line format: the OTLP File exporter format of the OpenTelemetry spec.

Each line is one ``LogsData`` / ``TracesData`` / ``MetricsData`` message in OTLP/JSON
(https://opentelemetry.io/docs/specs/otel/protocol/file-exporter/ and
https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): lowerCamelCase field
names, 64-bit integers as strings, enums as integers, and -- unlike protobuf's own JSON
mapping -- trace and span ids as hex, not base64. The Collector's ``otlpjsonfile``
receiver reads these files.

Spans and metrics reuse the SDK's own protobuf encoders (the code the OTLP exporters send
over the wire, so the content is exactly what a collector would receive) and protobuf's
JSON mapping; only the id fields are rewritten to hex. ``ExportXServiceRequest`` and
``XData`` share their wire and JSON layout (field 1, same name), so the request's JSON is
the ``XData`` line.

Logs -- the audit and telemetry volume -- are encoded directly to the same JSON: the
protobuf round trip (build messages, then ``MessageToDict``) costs ~70 us per record,
the direct encoding ~11 us. The tests check that both produce the same document. Where
the SDK encoder would drop a value (an ``int`` beyond 64 bits raises there and the
attribute is lost) we write it as a ``stringValue`` instead; ``bytearray``/``memoryview``
become ``bytesValue`` rather than an array of small ints.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics.export import MetricsData

from mcp_otel._json import dumps_line
from mcp_otel._otel_compat import ReadableLogRecord

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

# The protobuf encoders (spans, metrics) are imported by the first line that needs them:
# they add about 5,600 objects to the process (descriptors, message classes), and every
# one of them lengthens each full garbage collection of a host that never asks for
# the ``otlp`` line format (the default is ``flat``).

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
    from google.protobuf.json_format import MessageToDict

    as_dict = MessageToDict(message, use_integers_for_enums=True)
    if not as_dict:
        return b""
    _hex_ids(as_dict)
    return dumps_line(as_dict)


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _any(value: Any) -> dict[str, Any]:
    """An ``AnyValue`` in OTLP/JSON (the mapping of the SDK's ``_encode_value``)."""
    t = type(value)
    if t is str:
        return {"stringValue": value}
    if t is bool:
        return {"boolValue": value}
    if t is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if t is float:
        if math.isfinite(value):
            return {"doubleValue": value}
        return {
            "doubleValue": "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        }
    if value is None:
        return {}
    if isinstance(value, bool):
        return _any(bool(value))
    if isinstance(value, str):
        return _any(str(value))
    if isinstance(value, int):
        return _any(int(value))
    if isinstance(value, float):
        return _any(float(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytesValue": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        kvs = [{"key": str(k), "value": _any(v)} for k, v in value.items()]
        return {"kvlistValue": {"values": kvs}} if kvs else {"kvlistValue": {}}
    if isinstance(value, Sequence | set | frozenset):
        items = [_any(v) for v in value]
        return {"arrayValue": {"values": items}} if items else {"arrayValue": {}}
    return {"stringValue": str(value)}


def _attributes(attributes: Any) -> list[dict[str, Any]]:
    if not attributes:
        return []
    # BoundedAttributes' Mapping-mixin items() is 3x slower than a dict's: take its
    # public copy(), one C-level dict copy.
    plain = attributes
    if type(plain) is not dict:
        copy = getattr(plain, "copy", None)
        if copy is not None:
            plain = copy()
    return [{"key": k, "value": _any(v)} for k, v in plain.items()]


def _resource(resource: Any) -> dict[str, Any]:
    attrs = _attributes(resource.attributes) if resource is not None else []
    return {"attributes": attrs} if attrs else {}


def _scope(scope: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if scope is None:
        return out
    if scope.name:
        out["name"] = scope.name
    if scope.version:
        out["version"] = scope.version
    attrs = _attributes(getattr(scope, "attributes", None))
    if attrs:
        out["attributes"] = attrs
    return out


def _log_record(readable: ReadableLogRecord) -> dict[str, Any]:
    rec = readable.log_record
    out: dict[str, Any] = {}
    if rec.timestamp:
        out["timeUnixNano"] = str(rec.timestamp)
    sev = getattr(rec.severity_number, "value", None)
    if sev:
        out["severityNumber"] = sev
    if rec.severity_text:
        out["severityText"] = rec.severity_text
    out["body"] = _any(rec.body)
    attrs = _attributes(rec.attributes)
    if attrs:
        out["attributes"] = attrs
    dropped = readable.dropped_attributes
    if dropped:
        out["droppedAttributesCount"] = dropped
    flags = int(rec.trace_flags or 0)
    if flags:
        out["flags"] = flags
    if rec.trace_id:
        out["traceId"] = f"{rec.trace_id:032x}"
    if rec.span_id:
        out["spanId"] = f"{rec.span_id:016x}"
    if rec.observed_timestamp:
        out["observedTimeUnixNano"] = str(rec.observed_timestamp)
    if rec.event_name:
        out["eventName"] = rec.event_name
    return out


def logs_data(batch: Sequence[ReadableLogRecord]) -> dict[str, Any]:
    """``LogsData`` as an OTLP/JSON dict, grouped by resource then scope like the SDK's."""
    # Grouped by object identity: Resource.__hash__ serialises all attributes to JSON on
    # every call. Equal but distinct resources then get separate (equally valid) entries.
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[dict[str, Any]]]]]] = {}
    for readable in batch:
        resource = readable.resource
        entry = groups.get(id(resource))
        if entry is None:
            entry = groups[id(resource)] = (resource, {})
        scope = readable.instrumentation_scope or None
        scoped = entry[1].get(id(scope))
        if scoped is None:
            scoped = entry[1][id(scope)] = (scope, [])
        scoped[1].append(_log_record(readable))
    resource_logs = []
    for resource, by_scope in groups.values():
        scope_logs = []
        for scope, records in by_scope.values():
            entry: dict[str, Any] = {"scope": _scope(scope), "logRecords": records}
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            scope_logs.append(entry)
        rl: dict[str, Any] = {"resource": _resource(resource), "scopeLogs": scope_logs}
        if resource is not None and resource.schema_url:
            rl["schemaUrl"] = resource.schema_url
        resource_logs.append(rl)
    return {"resourceLogs": resource_logs}


def log_line(batch: Sequence[ReadableLogRecord]) -> tuple[bytes, int]:
    """The whole batch as one ``LogsData`` line; returns (payload, records in it)."""
    if not batch:
        return b"", 0
    return dumps_line(logs_data(batch)), len(batch)


def span_line(spans: Sequence[ReadableSpan]) -> tuple[bytes, int]:
    if not spans:
        return b"", 0
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return _line(encode_spans(spans)), len(spans)


def data_points(data: MetricsData) -> int:
    """How many data points ``data`` holds (the unit metric exports are counted in)."""
    return sum(
        len(getattr(m.data, "data_points", ()))
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    )


def metric_line(data: MetricsData) -> tuple[bytes, int]:
    points = data_points(data)
    if not points:
        return b"", 0
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    return _line(encode_metrics(data)), points
