"""One redaction policy per process: a secret named once is masked by every sink.

Each check runs in a fresh interpreter: the policy is process-wide by design, so naming a
secret here must not leak into the rest of the test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mcp_otel import AuditLogger, TelemetryEmitter, redaction
    from mcp_otel._instrument._core import cut_error_text
    from mcp_otel._span_masking import MaskingSpanExporter

    out = Path(sys.argv[1])
    secret = "flux_capacitor=s3cr3t-value"
    report = {"before": redaction.policy().mask_text(secret)}

    logger = AuditLogger(out / "audit", secret_keys=["flux_capacitor"], handle_sigterm=False)
    logger.shutdown()

    report["policy"] = redaction.policy().mask_text(secret)
    report["error_text"] = cut_error_text("tool failed: " + secret)

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(MaskingSpanExporter(memory)))
    with provider.get_tracer("t").start_as_current_span("call") as span:
        span.record_exception(RuntimeError("tool failed: " + secret))
    (exported,) = memory.get_finished_spans()
    report["span_event"] = dict(exported.events[0].attributes)

    telemetry = TelemetryEmitter(enabled=True, output_dir=str(out / "telemetry"))
    telemetry.emit_tool_call(
        "t", "error", 1, 1, 1, error="tool failed: " + secret,
        metadata={"flux_capacitor": "s3cr3t-value"},
    )
    telemetry.shutdown()
    files = sorted((out / "telemetry").rglob("*.jsonl"))
    report["telemetry"] = [line for p in files for line in p.read_text().splitlines()]
    sys.stderr.write(json.dumps(report))
    """
)


def test_a_secret_named_to_the_audit_logger_is_masked_by_every_sink(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    report = json.loads(run.stderr[run.stderr.index('{"before"'):])
    assert "s3cr3t-value" in report["before"]  # not a default secret name: the control
    for sink in ("policy", "error_text"):
        assert "s3cr3t-value" not in report[sink], (sink, report[sink])
        assert "flux_capacitor=" in report[sink]
    assert "s3cr3t-value" not in json.dumps(report["span_event"])
    assert "RuntimeError" in json.dumps(report["span_event"])
    events = [json.loads(line) for line in report["telemetry"]]
    assert events, "the telemetry event file is empty"
    assert "s3cr3t-value" not in json.dumps(events)
    assert "flux_capacitor" in json.dumps(events)
