"""The in-test OTLP receiver: oteltest's servicers behind our own 127.0.0.1 gRPC server.

One implementation for every suite that needs a real OTLP/gRPC peer (telemetry, cache,
stack). grpc and oteltest are imported when a sink starts: an ``ImportError`` reaches the
caller, which decides whether a missing dev extra skips or fails.
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass
from typing import Any


@dataclass
class GrpcSink:
    """oteltest's ``AccumulatingHandler`` receiving traces, metrics and logs over gRPC."""

    handler: Any
    port: int
    _server: Any

    @classmethod
    def start(cls) -> GrpcSink:
        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
        from oteltest.sink.handler import AccumulatingHandler
        from oteltest.sink.private import (
            _LogsServiceServicer,
            _MetricsServiceServicer,
            _TraceServiceServicer,
        )

        handler = AccumulatingHandler()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceServiceServicer(handler.handle_trace), server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _MetricsServiceServicer(handler.handle_metrics), server
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
            _LogsServiceServicer(handler.handle_logs), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return cls(handler, port, server)

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)

    def metric_requests(self) -> list[Any]:
        return [r.pbreq for r in list(self.handler.telemetry.metric_requests)]

    def log_requests(self) -> list[Any]:
        return [r.pbreq for r in list(self.handler.telemetry.log_requests)]

    def log_records(self) -> list[Any]:
        return log_records(self.handler)

    def spans(self) -> list[Any]:
        return spans(self.handler)


def log_records(handler: Any) -> list[Any]:
    """Every log record ``handler`` received (over any of its servers)."""
    return [
        rec
        for req in list(handler.telemetry.log_requests)
        for rl in req.pbreq.resource_logs
        for sl in rl.scope_logs
        for rec in sl.log_records
    ]


def spans(handler: Any) -> list[Any]:
    """Every span ``handler`` received (over any of its servers)."""
    return [
        span
        for req in list(handler.telemetry.trace_requests)
        for rs in req.pbreq.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


def attributes(kvs: Any) -> dict[str, Any]:
    """An OTLP ``KeyValue`` list (record, point or resource attributes) as a plain dict."""
    out: dict[str, Any] = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out
