"""Fixtures for the audit trail tests: real loggers on tmp dirs, in-memory metrics."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mcp_otel.audit import AuditLogger
from mcp_otel.exporters import JsonlLogExporter

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def metric_reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    reader.provider = provider  # type: ignore[attr-defined]
    yield reader
    provider.shutdown()


@pytest.fixture
def make_audit(
    tmp_path: Path, metric_reader: InMemoryMetricReader
) -> Iterator[Callable[..., AuditLogger]]:
    """Build AuditLoggers that write under tmp_path and report to an in-memory reader."""
    made: list[AuditLogger] = []

    def factory(log_dir: Path | None = None, **kw: Any) -> AuditLogger:
        kw.setdefault("meter_provider", metric_reader.provider)  # type: ignore[attr-defined]
        kw.setdefault("otlp", False)
        logger = AuditLogger(log_dir or tmp_path / "audit", **kw)
        made.append(logger)
        return logger

    yield factory
    for logger in made:
        logger.shutdown(5.0)


class GatedExporter(JsonlLogExporter):
    """The real exporter behind a gate the test opens: simulates a stuck disk."""

    def __init__(self, path: str) -> None:
        super().__init__(path, format="flat")
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        self.entered.set()
        if not self.release.wait(30):
            return LogRecordExportResult.FAILURE
        return super().export(batch)


def read_records(directory: Path) -> list[dict[str, Any]]:
    """Every line of every audit file in ``directory``, parsed (fails on a bad line)."""
    out = []
    for path in sorted(directory.glob("*.jsonl")):
        for raw in path.read_bytes().splitlines():
            out.append(orjson.loads(raw))
    return out


def counter_value(reader: InMemoryMetricReader, name: str) -> int | None:
    data = reader.get_metrics_data()
    if data is None:
        return None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    return sum(p.value for p in m.data.data_points)
    return None


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a subprocess: our sources first, data kept under tmp_path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["MCP_OTEL_DIR"] = str(tmp_path / "data")
    env["MCP_OTEL_LOCAL_EXPORT"] = "false"
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.update(extra)
    return env


PYTHON = sys.executable
