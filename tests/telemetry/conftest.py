"""Fixtures for the telemetry tests: a private data directory and emitters that are
always shut down (their exporter threads stopped) when a test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_otel.telemetry import TelemetryEmitter


@pytest.fixture(autouse=True)
def _private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test writes under its own directory and never exports over OTLP by accident."""
    monkeypatch.setenv("MCP_OTEL_DIR", str(tmp_path / "data"))
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_METRIC_EXPORT_INTERVAL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_emitter() -> Iterator[Callable[..., TelemetryEmitter]]:
    made: list[TelemetryEmitter] = []

    def factory(*args: Any, **kwargs: Any) -> TelemetryEmitter:
        emitter = TelemetryEmitter(*args, **kwargs)
        made.append(emitter)
        return emitter

    yield factory
    for emitter in made:
        emitter.shutdown()
