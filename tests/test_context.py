"""What waits in a queue keeps a span's identity, never the live span (mcp_otel._context).

A live SDK span held past its request is promoted to the oldest GC generation with its
attributes, events and locks; on a real MCP server that made a 65-77 ms full collection
every few seconds the p99 latency of instrumented calls.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import get_current_span

from mcp_otel import TelemetryEmitter
from mcp_otel._context import EMPTY, context_of, span_ids
from mcp_otel.audit import AuditLogger
from mcp_otel.reader import read_records


def test_span_ids_round_trip_to_a_context_with_the_same_identity() -> None:
    tracer = TracerProvider().get_tracer("t")
    assert span_ids() is None and context_of(None) is EMPTY
    with tracer.start_as_current_span("request") as span:
        ids = span_ids()
        identity = span.get_span_context()
    assert ids == (identity.trace_id, identity.span_id, int(identity.trace_flags))
    rebuilt = get_current_span(context_of(ids)).get_span_context()
    assert (rebuilt.trace_id, rebuilt.span_id, rebuilt.trace_flags) == (
        identity.trace_id, identity.span_id, identity.trace_flags)
    assert rebuilt.trace_flags.sampled  # exemplars are kept for sampled spans only


def test_queued_audit_records_and_pending_durations_do_not_keep_the_span(
        tmp_path: Path) -> None:
    tracer = TracerProvider().get_tracer("t")
    audit = AuditLogger(tmp_path / "audit", wait="queued", linger=3600, otlp=False,
                        handle_sigterm=False)
    telemetry = TelemetryEmitter(enabled=True, output_dir=tmp_path / "telemetry")
    try:
        asyncio.run(audit.log_tool_call("warm", {}))  # the writer is up
        assert audit.force_flush()
        with tracer.start_as_current_span("request") as span:
            trace_id = span.get_span_context().trace_id
            asyncio.run(audit.log_tool_call("t", {"i": 1}))
            telemetry.emit_tool_call("t", "ok", 3, 10, 20)
            alive = weakref.ref(span)
        del span
        gc.collect()
        assert alive() is None  # while the record may still wait for the writer
        assert audit.force_flush()
        (path,) = (tmp_path / "audit").glob("*.jsonl")
        record = list(read_records(path))[-1]
        assert record["tool"] == "t" and record["trace_id"] == f"{trace_id:032x}"
    finally:
        audit.shutdown()
        telemetry.shutdown()


def test_a_duration_recorded_outside_any_span_never_takes_another_calls_span(
        tmp_path: Path) -> None:
    """The emitter records pending durations later, maybe on a thread serving another
    call: a duration from outside any span must not get that call's span as exemplar."""
    reader = InMemoryMetricReader()
    telemetry = TelemetryEmitter(enabled=True, output_dir=tmp_path, events=False,
                                 meter_provider=MeterProvider(metric_readers=[reader]))
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("first call") as first:
        telemetry.emit_tool_call("t", "ok", 3, 10, 20)
    telemetry.emit_tool_call("t", "ok", 4, 10, 20)  # outside any span
    with tracer.start_as_current_span("another call") as other:
        data = reader.get_metrics_data()  # the pending durations are recorded here
    exemplars = [
        exemplar
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics if metric.name == "mcp.server.operation.duration"
        for point in metric.data.data_points
        for exemplar in point.exemplars
    ]
    assert [e.span_id for e in exemplars] == [first.get_span_context().span_id]
    assert other.get_span_context().span_id not in {e.span_id for e in exemplars}


def test_durations_waiting_for_the_histogram_are_not_tracked_by_the_collector(
        tmp_path: Path) -> None:
    """A pending duration may wait a second or more: if the collector tracked it, it would
    reach the oldest generation and bring the next full collection closer."""
    telemetry = TelemetryEmitter(enabled=True, output_dir=tmp_path)
    tracer = TracerProvider().get_tracer("t")
    try:
        with tracer.start_as_current_span("request"):
            telemetry.emit_tool_call("t", "ok", 3, 10, 20)  # the cell and caches exist
            gc.collect()
            before = len(gc.get_objects())
            for i in range(200):  # fewer than a batch: all still pending
                telemetry.emit_tool_call("t", "ok", i, 10, 20)
            gc.collect()  # a tuple is untracked once what it holds is: at most two passes
            gc.collect()
            after = len(gc.get_objects())
        assert after - before < 20  # was 200: a tuple per duration, with its attributes
        assert telemetry.metrics["tool_calls"] == 201
    finally:
        telemetry.shutdown()
