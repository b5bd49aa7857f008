"""Both line formats, through the SDK's real providers and processors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import Parse
from opentelemetry.metrics import Observation
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from mcp_otel.exporters import (
    FLAT_LOG_ENVELOPE,
    FLAT_METRIC_ENVELOPE,
    FLAT_SPAN_ENVELOPE,
    JsonlLogExporter,
    JsonlMetricExporter,
    JsonlSpanExporter,
)
from tests.exporters._helpers import read_lines

RES = Resource.create({"service.name": "fmt-test"})


def emit_all(tmp_path: Path, fmt: str) -> dict[str, Path]:
    """A log record, two spans and four kinds of metric through the real SDK."""
    paths = {s: tmp_path / f"{s}.jsonl" for s in ("logs", "spans", "metrics")}
    log_exp = JsonlLogExporter(paths["logs"], format=fmt)  # type: ignore[arg-type]
    span_exp = JsonlSpanExporter(paths["spans"], format=fmt)  # type: ignore[arg-type]
    metric_exp = JsonlMetricExporter(paths["metrics"], format=fmt)  # type: ignore[arg-type]
    lp = LoggerProvider(resource=RES)
    lp.add_log_record_processor(SimpleLogRecordProcessor(log_exp))
    tp = TracerProvider(resource=RES)
    tp.add_span_processor(SimpleSpanProcessor(span_exp))
    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=3_600_000)
    mp = MeterProvider(
        metric_readers=[reader],
        resource=RES,
        views=[View(instrument_name="exp.*", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = mp.get_meter("meter")
    meter.create_counter("calls", unit="{call}").add(3, {"tool": "a"})
    meter.create_histogram("lat", unit="s").record(0.25, {"tool": "a"})
    meter.create_histogram("exp.lat").record(3.0)
    meter.create_up_down_counter("inflight").add(-2)
    meter.create_observable_gauge("up", callbacks=[lambda _o: [Observation(7.5)]])
    tracer = tp.get_tracer("tracer")
    with (
        tracer.start_as_current_span("outer", kind=SpanKind.SERVER) as outer,
        tracer.start_as_current_span(
            "inner",
            attributes={"name": "clashing", "k": [1, 2]},
            links=[Link(outer.get_span_context())],
        ) as inner,
    ):
        inner.add_event("evt", {"e": True})
        inner.set_status(Status(StatusCode.ERROR, "boom"))
        lp.get_logger("logger").emit(
            body={"nested": {"a": [1, "x"]}},
            attributes={
                "timestamp": "attr wins",
                "otel.timestamp": "also mine",
                "dict": {"k": {"deep": [1, 2, {"z": None}]}},
                "raw": b"\x00\xff",
                "nan": float("nan"),
            },
            event_name="tool_call",
            severity_text="WARN",
        )
    reader.force_flush()
    for p in (lp, tp, mp):
        p.shutdown()
    return paths


def test_flat_schema_and_clash_rule(tmp_path: Path) -> None:
    paths = emit_all(tmp_path, "flat")
    (log,) = read_lines([paths["logs"]])
    assert set(log) - {
        "dict",
        "raw",
        "nan",
        "otel.timestamp",
        "otel.otel.timestamp",
    } <= FLAT_LOG_ENVELOPE | {"timestamp"}
    assert log["timestamp"] == "attr wins"
    assert log["otel.timestamp"] == "also mine"  # attributes are never renamed
    assert log["otel.otel.timestamp"].endswith("Z")  # the displaced envelope value
    assert log["event_name"] == "tool_call"
    assert log["severity"] == "WARN"
    assert log["body"] == {"nested": {"a": [1, "x"]}}
    assert log["dict"] == {"k": {"deep": [1, 2, {"z": None}]}}  # nested JSON, not a string
    assert log["raw"] == {"$base64": "AP8="}
    assert log["nan"] == "NaN"
    assert len(log["trace_id"]) == 32 and len(log["span_id"]) == 16
    assert log["schema_version"] == 1

    spans = {s.get("otel.name", s["name"]): s for s in read_lines([paths["spans"]])}
    inner, outer = spans["inner"], spans["outer"]
    assert set(inner) - {"k", "otel.name"} <= FLAT_SPAN_ENVELOPE
    assert inner["name"] == "clashing" and inner["otel.name"] == "inner"
    assert inner["k"] == [1, 2]
    assert inner["parent_span_id"] == outer["span_id"]
    assert inner["trace_id"] == outer["trace_id"] == log["trace_id"]
    assert inner["status"] == "ERROR" and inner["status_message"] == "boom"
    assert inner["events"][0]["name"] == "evt" and inner["events"][0]["e"] is True
    assert inner["links"][0]["span_id"] == outer["span_id"]
    assert outer["kind"] == "SERVER" and outer["duration_ms"] >= 0
    assert outer["timestamp"] <= outer["end_timestamp"]

    points = {p["metric"]: p for p in read_lines([paths["metrics"]])}
    for p in points.values():
        assert set(p) - {"tool"} <= FLAT_METRIC_ENVELOPE
    assert points["calls"]["value"] == 3 and points["calls"]["tool"] == "a"
    assert points["calls"]["type"] == "sum" and points["calls"]["monotonic"] is True
    assert points["calls"]["unit"] == "{call}"
    assert points["inflight"]["value"] == -2 and points["inflight"]["monotonic"] is False
    assert points["lat"]["type"] == "histogram" and points["lat"]["count"] == 1
    assert sum(points["lat"]["bucket_counts"]) == 1
    assert points["exp.lat"]["type"] == "exponential_histogram"
    assert points["up"] == points["up"] | {"type": "gauge", "value": 7.5}


@pytest.mark.parametrize(
    ("signal", "message", "top"),
    [
        ("logs", LogsData, "resourceLogs"),
        ("spans", TracesData, "resourceSpans"),
        ("metrics", MetricsData, "resourceMetrics"),
    ],
)
def test_otlp_lines_parse_back_into_protobuf(
    tmp_path: Path, signal: str, message: type, top: str
) -> None:
    paths = emit_all(tmp_path, "otlp")
    raw_lines = paths[signal].read_bytes().splitlines()
    assert raw_lines
    for raw in raw_lines:
        doc = json.loads(raw)
        assert list(doc) == [top]
        # OTLP/JSON ids are hex; protobuf's generic JSON mapping expects base64.
        parsed = Parse(json.dumps(_ids_to_base64(doc)), message())  # strict: unknown fields raise
        assert parsed.ByteSize() > 0
        assert len(getattr(parsed, _SNAKE[top])) >= 1
        for trace_id in _find(doc, "traceId"):
            assert bytes.fromhex(trace_id) in parsed.SerializeToString()
    text = paths[signal].read_text()
    if signal == "logs":
        rec = json.loads(raw_lines[0])["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
        assert rec["eventName"] == "tool_call"
        assert len(rec["traceId"]) == 32 and int(rec["traceId"], 16)  # hex, not base64
        assert "fmt-test" in text
    if signal == "spans":
        span = json.loads(raw_lines[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        assert isinstance(span["kind"], int)  # enums as integers (OTLP/JSON)
        assert isinstance(span["startTimeUnixNano"], str)  # 64-bit ints as strings
        assert "parentSpanId" in span and len(span["parentSpanId"]) == 16


_SNAKE = {
    "resourceLogs": "resource_logs",
    "resourceSpans": "resource_spans",
    "resourceMetrics": "resource_metrics",
}
_IDS = {"traceId", "spanId", "parentSpanId"}


def _ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode() if k in _IDS else _ids_to_base64(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_ids_to_base64(v) for v in node]
    return node


def _find(node: Any, key: str) -> list[Any]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [
            x for v in node.values() for x in _find(v, key)
        ]
    if isinstance(node, list):
        return [x for v in node for x in _find(v, key)]
    return []


def test_otlp_one_line_per_batch(tmp_path: Path) -> None:
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadableLogRecord

    exp = JsonlLogExporter(tmp_path / "o.jsonl", format="otlp")
    for b in range(3):
        batch = [ReadableLogRecord(LogRecord(body=f"{b}-{i}"), resource=RES) for i in range(7)]
        assert exp.export(batch).name == "SUCCESS"
    exp.shutdown()
    lines = read_lines([tmp_path / "o.jsonl"])
    assert len(lines) == 3
    assert all(len(ln["resourceLogs"][0]["scopeLogs"][0]["logRecords"]) == 7 for ln in lines)
    assert exp.written_records == 21


def test_flat_include_resource(tmp_path: Path) -> None:
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadableLogRecord

    exp = JsonlLogExporter(tmp_path / "r.jsonl", include_resource=True)
    exp.export([ReadableLogRecord(LogRecord(body="b", attributes={"a": 1}), resource=RES)])
    exp.shutdown()
    (line,) = read_lines([tmp_path / "r.jsonl"])
    assert line["resource"]["service.name"] == "fmt-test"
    assert line["a"] == 1


def test_direct_otlp_log_encoding_equals_the_sdk_protobuf_route(tmp_path: Path) -> None:
    """Our direct LogsData encoder writes what protobuf's JSON mapping of the SDK's own
    encoder writes (ids in hex), for two resources, scopes with versions, every value kind."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    from mcp_otel.exporters import _otlp_json

    memory = InMemoryLogRecordExporter()
    providers = [
        LoggerProvider(resource=Resource.create({"service.name": name}, schema_url=url))
        for name, url in (("one", "https://opentelemetry.io/schemas/1.21.0"), ("two", ""))
    ]
    tp = TracerProvider()
    values: list[Any] = [
        "s",
        "",
        True,
        False,
        0,
        -(2**63),
        2**63 - 1,
        1.5,
        0.0,
        float("nan"),
        float("inf"),
        b"\x00\x01",
        None,
        [],
        {},
        [1, "a", [2.5, None]],
        {"k": {"deep": [True, b"z"]}},
    ]
    for p in providers:
        p.add_log_record_processor(SimpleLogRecordProcessor(memory))
        plain = p.get_logger("plain")
        versioned = p.get_logger("versioned", "1.2.3", attributes={"scope.attr": 7})
        for i, value in enumerate(values):
            plain.emit(body=value, attributes={"v": value, "i": i})
        with tp.get_tracer("t").start_as_current_span("s"):
            versioned.emit(
                body="in span",
                severity_number=SeverityNumber.ERROR,
                severity_text="ERROR",
                event_name="ev",
                timestamp=1_700_000_000_123_456_789,
            )
        versioned.emit()  # everything empty
    batch = memory.get_finished_logs()
    ours = json.loads(_otlp_json.log_line(batch)[0])
    # The SDK's own protobuf encoder (what the OTLP exporter sends), then protobuf's JSON.
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    reference = json.loads(_otlp_json._line(encode_logs(batch)))
    assert ours == reference


def test_direct_otlp_log_encoding_keeps_what_the_sdk_encoder_drops(tmp_path: Path) -> None:
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadableLogRecord

    exp = JsonlLogExporter(tmp_path / "o.jsonl", format="otlp")
    rec = LogRecord(body=bytearray(b"ab"), attributes={"big": 2**70, "s": "bad\udc80"})
    assert exp.export([ReadableLogRecord(rec, resource=RES)]).name == "SUCCESS"
    exp.shutdown()
    (line,) = read_lines([tmp_path / "o.jsonl"])
    out = line["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert out["body"] == {"bytesValue": "YWI="}
    attrs = {a["key"]: a["value"] for a in out["attributes"]}
    assert attrs["big"] == {"stringValue": str(2**70)}
    assert attrs["s"] == {"stringValue": "bad\\udc80"}
    Parse(json.dumps(_ids_to_base64(line)), LogsData())


def test_flat_fast_path_is_byte_identical_to_the_reference_encoding() -> None:
    """log_lines writes common records from byte fragments; the careful dict route
    (_log_line_slow) must produce exactly the same bytes for every kind of record."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.trace import NonRecordingSpan, SpanContext, set_span_in_context

    from mcp_otel.exporters import _flat

    ctx = set_span_in_context(
        NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=1))
    )
    bodies: list[Any] = [
        None,
        "plain",
        'quote " back\\ newline \n tab \t',
        "unicodé ✓ 😀",
        "x" * 1000,
        12,
        1.25,
        True,
        {"nested": [1, {"k": None}]},
        [1, 2],
        b"\x00\xff",
        float("nan"),
        "bad\udc80",
    ]
    attribute_sets: list[dict[str, Any] | None] = [
        None,
        {},
        {"a": 1, "b": "two", "c": 3.5, "d": True},
        {"none": None},
        {"nested": {"k": [1, "x", {"deep": b"\x01"}]}},
        {"nan": float("nan")},
        {"severity": "clash"},
        {"timestamp": "own", "event": "audit-like", "seq": 3},
        {"timestamp": 1, "otel.timestamp": 2},  # the renamed field clashes again
        {"trace_id": "t", "span_id": "s", "body": 1, "schema_version": 9, "event_name": "e"},
        {"ünï": "cödé", "q": 'a"b'},
        {"s": "bad\udcff"},
        {"big": 2**70},
    ]
    records = []
    for i, body in enumerate(bodies):
        for j, attrs in enumerate(attribute_sets):
            sev = [None, SeverityNumber.INFO, SeverityNumber.ERROR][(i + j) % 3]
            text = [None, "WARN", ""][(i * j) % 3]
            records.append(
                ReadableLogRecord(
                    LogRecord(
                        timestamp=1_700_000_000_000_000_001 + i * 1_000_000_007 + j,
                        context=ctx if (i + j) % 2 else None,
                        severity_number=sev,
                        severity_text=text,
                        body=body,
                        attributes=attrs,
                        event_name=["", "ev", 'é"v'][(i + 2 * j) % 3],
                    ),
                    resource=RES,
                )
            )
    payload, count = _flat.log_lines(records)
    assert count == len(records)
    lines = bytes(payload).splitlines(keepends=True)
    assert len(lines) == len(records)
    for readable, line in zip(records, lines, strict=True):
        ts = _flat.rfc3339(readable.log_record.timestamp)
        assert line == _flat._log_line_slow(readable, ts, None)
        json.loads(line)
    # and a batch without any null takes the unchecked pass alone
    clean = [r for r in records if b"null" not in _flat._log_line_slow(r, "t", None)]
    payload, _ = _flat.log_lines(clean)
    assert bytes(payload).count(b"\n") == len(clean)
