"""mcp_otel._setup.shutdown() with a shared provider installed as the OTel global."""

from __future__ import annotations

from pathlib import Path

from ._helpers import read_lines, run_script

SCRIPT = r"""
import json
from opentelemetry import trace
from mcp_otel import _setup
_setup.configure(set_global=True)
first = _setup.get_tracer_provider()
trace.get_tracer("app").start_span("before").end()
_setup.shutdown()
trace.get_tracer("app").start_span("after").end()  # e.g. the mcp SDK's global tracer
same = _setup.get_tracer_provider() is first is trace.get_tracer_provider()
_setup.force_flush()
print(json.dumps({"same": same}))
"""


def test_shutdown_keeps_a_provider_installed_as_the_global_one(tmp_path: Path) -> None:
    """The API accepts a global provider once per process: stopping it would drop every
    later span for good, so shutdown() flushes it and keeps it."""
    assert run_script(tmp_path, SCRIPT)[0] == {"same": True}
    names = [s["name"] for s in read_lines(tmp_path / "data" / "traces", "mcp_spans_*.jsonl")]
    assert names == ["before", "after"]


BAD_ENV = r"""
import json
from mcp_otel import _setup
tp = _setup.get_tracer_provider()
tp.get_tracer("t").start_span("span").end()
mp = _setup.get_meter_provider()
mp.get_meter("t").create_counter("mcp_otel.test.things").add(2)
lp = _setup.get_logger_provider()
_setup.force_flush()
_setup.shutdown()
print(json.dumps({"ok": True}))
"""


def test_env_values_the_sdk_rejects_warn_and_use_the_defaults(tmp_path: Path) -> None:
    """The SDK raises ValueError from its processors and readers for these; through
    instrument() or AuditLogger() that would crash the host at start-up."""
    _, err = run_script(tmp_path, BAD_ENV, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="100000",
                        OTEL_BLRP_MAX_EXPORT_BATCH_SIZE="100000",
                        OTEL_METRIC_EXPORT_INTERVAL="-5")
    assert err.count("using the OpenTelemetry defaults") == 3, err
    assert [s["name"] for s in read_lines(tmp_path / "data" / "traces", "*.jsonl")] == ["span"]
    points = read_lines(tmp_path / "data" / "metrics", "*.jsonl")
    assert [p["value"] for p in points if p["metric"] == "mcp_otel.test.things"][-1] == 2
