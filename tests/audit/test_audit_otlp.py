"""The same sealed records over OTLP to a real gRPC receiver; the file never depends on it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest

from mcp_otel import integrity
from mcp_otel.audit import AuditLogger

from .._support import require
from .conftest import read_records

try:
    import grpc
    import oteltest.sink.handler as handler_mod
    import oteltest.sink.private as private
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
except ImportError as exc:  # pragma: no cover - dev extras missing
    grpc = None  # type: ignore[assignment]
    _IMPORT_ERROR: str | None = str(exc)
else:
    _IMPORT_ERROR = None


@pytest.fixture
def receiver() -> Iterator[tuple[str, Any]]:
    require(_IMPORT_ERROR is None, f"OTLP receiver needs grpc + oteltest: {_IMPORT_ERROR}")
    handler = handler_mod.AccumulatingHandler()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
        private._LogsServiceServicer(handler.handle_logs), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", handler
    server.stop(grace=None).wait(5)


def _received(handler: Any) -> list[dict[str, Any]]:
    out = []
    for req in handler.telemetry.log_requests:
        for rl in req.pbreq.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    attrs = {kv.key: kv.value for kv in rec.attributes}
                    out.append({"event_name": rec.event_name,
                                "seq": attrs["seq"].int_value,
                                "hash": attrs["hash"].string_value})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_records_also_go_over_otlp(receiver: tuple[str, Any], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         make_audit: Callable[..., AuditLogger]) -> None:
    endpoint, handler = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")
    a = make_audit(otlp=True)
    for i in range(20):
        await a.log_tool_call("t", {"i": i})
    a.shutdown()
    file_recs = read_records(tmp_path / "audit")
    got = _received(handler)
    assert len(file_recs) == 21
    assert sorted((g["seq"], g["hash"]) for g in got) == [(r["seq"], r["hash"]) for r in file_recs]
    assert {g["event_name"] for g in got} == {"mcp.audit.tool_call", "mcp.audit.session_end"}


async def test_file_stays_complete_when_the_collector_is_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        make_audit: Callable[..., AuditLogger]) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    a = make_audit(otlp=True)
    t0 = time.monotonic()
    await asyncio.gather(*(a.log_tool_call("t", {"i": i}) for i in range(500)))
    assert time.monotonic() - t0 < 10  # the file path never waits for the collector
    assert len(read_records(tmp_path / "audit")) == 500
    a.shutdown(timeout=5)
    assert len(read_records(tmp_path / "audit")) == 501
    assert integrity.verify_paths([tmp_path / "audit"]).ok
