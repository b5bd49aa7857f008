"""``OTEL_{LOGS,TRACES,METRICS}_EXPORTER=jsonl`` through the SDK's own auto-configuration.

The program is run by ``opentelemetry-instrument`` (opentelemetry-distro), which finds our
classes by their entry points -- the test never imports them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests._support import require
from tests.exporters._helpers import read_lines

PROGRAM = """
import logging
from opentelemetry import _logs, metrics, trace

tracer = trace.get_tracer("ep")
with tracer.start_as_current_span("ep-span"):
    _logs.get_logger("ep").emit(body="ep-log", attributes={"k": "v"}, event_name="ep.event")
metrics.get_meter("ep").create_counter("ep.counter").add(5)
# no explicit shutdown: the SDK's atexit hooks flush the batch processors and the reader
"""


def _instrument() -> str:
    path = Path(sys.executable).with_name("opentelemetry-instrument")
    require(path.exists(), "opentelemetry-instrument (opentelemetry-distro) is not installed")
    return str(path)


def _run(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MCP_OTEL_"))}
    env.update(
        {
            "OTEL_LOGS_EXPORTER": "jsonl",
            "OTEL_TRACES_EXPORTER": "jsonl",
            "OTEL_METRICS_EXPORTER": "jsonl",
            "OTEL_SERVICE_NAME": "ep-test",
            "MCP_OTEL_DIR": str(tmp_path / "data"),
            **extra,
        }
    )
    return subprocess.run(
        [_instrument(), sys.executable, "-c", PROGRAM],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_entry_points_via_opentelemetry_instrument(tmp_path: Path) -> None:
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    day = f"{datetime.now(UTC):%Y%m%d}"
    data = tmp_path / "data"
    (log,) = read_lines([data / "logs" / f"logs_{day}.jsonl"])
    assert log["body"] == "ep-log" and log["k"] == "v" and log["event_name"] == "ep.event"
    (span,) = read_lines([data / "traces" / f"traces_{day}.jsonl"])
    assert span["name"] == "ep-span" and span["trace_id"] == log["trace_id"]
    points = read_lines([data / "metrics" / f"metrics_{day}.jsonl"])
    assert any(p["metric"] == "ep.counter" and p["value"] == 5 for p in points)


def test_entry_points_honour_format_and_sdk_disabled(tmp_path: Path) -> None:
    proc = _run(tmp_path, MCP_OTEL_JSONL_FORMAT="otlp")
    assert proc.returncode == 0, proc.stderr
    day = f"{datetime.now(UTC):%Y%m%d}"
    (line,) = read_lines([tmp_path / "data" / "logs" / f"logs_{day}.jsonl"])
    assert "resourceLogs" in line

    disabled = tmp_path / "off"
    proc = _run(disabled, OTEL_SDK_DISABLED="true")
    assert proc.returncode == 0, proc.stderr
    assert not (disabled / "data").exists()
