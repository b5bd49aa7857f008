"""mcp_otel._setup: resource, shared providers, the application's own providers, sampling,
OTLP selection, OTEL_SDK_DISABLED, fork safety. Global OTel state can be set only once
per process, so scenarios that touch it run in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mcp_otel import _setup, telemetry
from mcp_otel.telemetry import TelemetryEmitter

from ._helpers import last_snapshot_totals, read_lines, run_script


def _run(tmp_path: Path, script: str, **env: str) -> dict[str, object]:
    return run_script(tmp_path, script, **env)[0]


def test_resource_service_name_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    attrs = _setup.build_resource({"deployment.environment.name": "test"}).attributes
    assert attrs["service.name"] == "mcp-server"
    assert attrs["deployment.environment.name"] == "test"
    assert attrs["service.instance.id"]
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=a")
    assert _setup.build_resource({"team": "b"}).attributes["service.name"] == "from-attrs"
    assert _setup.build_resource({"team": "b"}).attributes["team"] == "a"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-name")
    assert _setup.build_resource().attributes["service.name"] == "from-name"


SHARED = r"""
import json, pathlib
from mcp_otel import _setup
tp = _setup.get_tracer_provider()
with tp.get_tracer("t").start_as_current_span("work") as span:
    recording = span.is_recording()
mp = _setup.get_meter_provider()
mp.get_meter("t").create_counter("mcp_otel.test.things").add(3)
same = _setup.get_tracer_provider() is tp and _setup.get_meter_provider() is mp
_setup.shutdown()
print(json.dumps({"recording": recording, "same": same, "type": type(tp).__name__}))
"""


def test_shared_providers_write_spans_and_metrics(tmp_path: Path) -> None:
    out = _run(tmp_path, SHARED)
    assert out == {"recording": True, "same": True, "type": "TracerProvider"}
    spans = read_lines(tmp_path / "data" / "traces", "mcp_spans_*.jsonl")
    assert [s["name"] for s in spans] == ["work"]
    points = read_lines(tmp_path / "data" / "metrics", "*.jsonl")
    assert [p["value"] for p in points if p["metric"] == "mcp_otel.test.things"][-1] == 3


def test_sampler_from_environment(tmp_path: Path) -> None:
    out = _run(tmp_path, SHARED, OTEL_TRACES_SAMPLER="always_off")
    assert out["recording"] is False
    assert read_lines(tmp_path / "data" / "traces", "mcp_spans_*.jsonl") == []


def test_sdk_disabled_gives_no_op_providers_and_no_files(tmp_path: Path) -> None:
    out = _run(tmp_path, SHARED, OTEL_SDK_DISABLED="true")
    assert out["recording"] is False and out["type"] == "NoOpTracerProvider"
    assert not (tmp_path / "data").exists()


APP_PROVIDER = r"""
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
app_exporter = InMemorySpanExporter()
app = TracerProvider()
app.add_span_processor(SimpleSpanProcessor(app_exporter))
trace.set_tracer_provider(app)
from mcp_otel import _setup
first, second = _setup.get_tracer_provider(), _setup.get_tracer_provider()
with first.get_tracer("t").start_as_current_span("mcp-span"):
    pass
app.force_flush()
print(json.dumps({"is_app": first is app and second is app,
                  "app_spans": [s.name for s in app_exporter.get_finished_spans()]}))
"""


def test_application_provider_is_kept_and_augmented_once(tmp_path: Path) -> None:
    out = _run(tmp_path, APP_PROVIDER)
    assert out == {"is_app": True, "app_spans": ["mcp-span"]}
    spans = read_lines(tmp_path / "data" / "traces", "mcp_spans_*.jsonl")
    assert [s["name"] for s in spans] == ["mcp-span"]  # added once, not once per call


SET_GLOBAL = r"""
import json
from opentelemetry import metrics, trace
from mcp_otel import _setup
_setup.configure(set_global=True)
print(json.dumps({"tracer": trace.get_tracer_provider() is _setup.get_tracer_provider(),
                  "meter": metrics.get_meter_provider() is _setup.get_meter_provider()}))
_setup.shutdown()
"""


def test_configure_can_install_global_providers(tmp_path: Path) -> None:
    assert _run(tmp_path, SET_GLOBAL) == {"tracer": True, "meter": True}


FORK = r"""
import json, os
from mcp_otel import _setup
tp = _setup.get_tracer_provider()
mp = _setup.get_meter_provider()
counter = mp.get_meter("t").create_counter("mcp_otel.test.forked")
counter.add(5)
parent_id = tp.resource.attributes["service.instance.id"]
pid = os.fork()
if pid == 0:
    code = 1
    try:
        child_tp = _setup.get_tracer_provider()
        child_mp = _setup.get_meter_provider()
        assert child_tp is not tp and child_mp is not mp
        assert child_tp.resource.attributes["service.instance.id"] != parent_id
        with child_tp.get_tracer("t").start_as_current_span("child-span"):
            pass
        counter.add(100)  # an instrument of the parent's provider: must not be exported
        child_mp.get_meter("t").create_counter("mcp_otel.test.forked").add(2)
        _setup.shutdown()
        tp.shutdown(); mp.shutdown()  # the inherited copies: inert
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
with tp.get_tracer("t").start_as_current_span("parent-span"):
    pass
counter.add(1)
_setup.shutdown()
print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status), "parent_id": parent_id}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_fresh_shared_providers_and_inert_copies(tmp_path: Path) -> None:
    out = _run(tmp_path, FORK, MCP_OTEL_JSONL_RESOURCE="true")
    assert out["child_exit"] == 0
    spans = read_lines(tmp_path / "data" / "traces", "mcp_spans_*.jsonl")
    assert sorted(s["name"] for s in spans) == ["child-span", "parent-span"]
    points = [
        p
        for p in read_lines(tmp_path / "data" / "metrics", "*.jsonl")
        if p["metric"] == "mcp_otel.test.forked"
    ]
    by_instance: dict[str, int] = {}
    for p in points:  # cumulative: the last value per process
        by_instance[p["resource"]["service.instance.id"]] = p["value"]
    assert by_instance[out["parent_id"]] == 6  # type: ignore[index]
    assert sorted(by_instance.values()) == [2, 6]  # the child's 100 went nowhere


def test_otlp_exporter_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _setup.otlp_exporter("metrics") is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    grpc_exporter = _setup.otlp_exporter("metrics")
    assert type(grpc_exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf")
    http_exporter = _setup.otlp_exporter("logs")
    assert type(http_exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert _setup.otlp_exporter("traces") is None
    with pytest.raises(ValueError):
        _setup.otlp_exporter("profiles")
    for exporter in (grpc_exporter, http_exporter):
        exporter.shutdown()


def test_sdk_disabled_emitter_still_counts_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    emitter = TelemetryEmitter(enabled=True, output_dir=tmp_path / "tel")
    threads = [
        threading.Thread(
            target=lambda: [emitter.emit_tool_call("t", "error", 1, 2, 3) for _ in range(500)]
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emitter.emit_server_stop("shutdown")
    emitter.shutdown()
    assert emitter.metrics == {"tool_calls": 4000, "total_bytes_in": 8000,
                               "total_bytes_out": 12000, "total_duration_ms": 4000,
                               "errors": 4000}  # fmt: skip
    assert emitter.resource is None
    assert not (tmp_path / "tel").exists()


def test_init_telemetry_first_call_wins_across_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry, "_telemetry", None)
    barrier = threading.Barrier(32)
    got: list[TelemetryEmitter] = []

    def call(i: int) -> None:
        barrier.wait()
        got.append(telemetry.init_telemetry(enabled=False, output_dir=tmp_path / str(i)))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len({id(e) for e in got}) == 1
        assert telemetry.get_telemetry() is got[0]
        assert telemetry.init_telemetry(enabled=True) is got[0]
        assert got[0].enabled is False
    finally:
        got[0].shutdown()


GLOBAL_FORK = r"""
import json, os
from opentelemetry import metrics
from mcp_otel import _setup
_setup.configure(set_global=True)
parent_mp = _setup.get_meter_provider()
assert metrics.get_meter_provider() is parent_mp
pid = os.fork()
if pid == 0:
    code = 1
    try:
        child_mp = _setup.get_meter_provider()
        assert child_mp is not parent_mp  # the global one is the parent's, inert here
        child_mp.get_meter("t").create_counter("mcp_otel.test.global_fork").add(7)
        _setup.shutdown()
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
parent_mp.get_meter("t").create_counter("mcp_otel.test.global_fork").add(1)
_setup.shutdown()
print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status)}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_after_installing_global_providers(tmp_path: Path) -> None:
    assert _run(tmp_path, GLOBAL_FORK, MCP_OTEL_JSONL_RESOURCE="true") == {"child_exit": 0}
    last: dict[str, int] = {}
    for p in read_lines(tmp_path / "data" / "metrics", "*.jsonl"):
        if p["metric"] == "mcp_otel.test.global_fork":
            last[p["resource"]["service.instance.id"]] = p["value"]
    assert sorted(last.values()) == [1, 7]


def test_local_export_can_be_switched_off(tmp_path: Path) -> None:
    out = _run(tmp_path, SHARED, MCP_OTEL_LOCAL_EXPORT="false")
    assert out == {"recording": True, "same": True, "type": "TracerProvider"}
    assert not (tmp_path / "data").exists()


AT_EXIT = r"""
import json, os
from mcp_otel import _setup
from mcp_otel.telemetry import init_telemetry
telemetry = init_telemetry(enabled=True)
for _ in range(5):
    telemetry.emit_tool_call("t", "ok", 1, 2, 3)
with _setup.get_tracer_provider().get_tracer("t").start_as_current_span("at-exit-span"):
    pass
print(json.dumps({"session_id": telemetry.session_id}))
# no shutdown, no flush: interpreter exit must write everything
"""


def test_everything_is_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    out = _run(tmp_path, AT_EXIT)
    events = read_lines(tmp_path / "data" / "telemetry", "mcp_telemetry_*.jsonl")
    assert [e["session_id"] for e in events] == [out["session_id"]] * 5
    snapshot = read_lines(tmp_path / "data" / "telemetry", "mcp_metrics_*.jsonl")
    expected = {"tool_calls": 5, "total_bytes_in": 10, "total_bytes_out": 15,
                "total_duration_ms": 5, "errors": 0}  # fmt: skip
    assert last_snapshot_totals(snapshot)[None] == expected
    spans = read_lines(tmp_path / "data" / "traces", "mcp_spans_*.jsonl")
    assert [s["name"] for s in spans] == ["at-exit-span"]


def test_forked_child_writes_spans_through_the_applications_provider(tmp_path: Path) -> None:
    """The child's copy of mcp-otel's file exporter on the app's provider is inert: the
    child must add its own, or its spans never reach the local file."""
    script = """
import os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
from mcp_otel import _setup
with _setup.get_tracer_provider().get_tracer("t").start_as_current_span("parent-span"):
    pass
pid = os.fork()
if pid == 0:
    tp = _setup.get_tracer_provider()
    with tp.get_tracer("t").start_as_current_span("child-span"):
        pass
    tp.force_flush()
    os._exit(0)
assert os.waitpid(pid, 0)[1] == 0
trace.get_tracer_provider().force_flush()
"""
    env = {**os.environ, "MCP_OTEL_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    names = sorted(
        json.loads(line)["name"]
        for path in (tmp_path / "traces").glob("*.jsonl")
        for line in path.read_bytes().splitlines()
    )
    assert names == ["child-span", "parent-span"]


MASKED_SPANS = r"""
import json
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from mcp_otel import _setup
app = %s
if app:
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())
tp = _setup.get_tracer_provider()
with tp.get_tracer("t").start_as_current_span("tools/call") as span:
    try:
        raise RuntimeError("cannot connect to postgresql://bob:Hunter2Pw@db/x")
    except RuntimeError as exc:
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, "lookup failed, password=Hunter2Pw"))
with tp.get_tracer("t").start_as_current_span("plain") as span:
    span.set_attribute("cache.key", "k")
_setup.force_flush()
_setup.shutdown()
tp.shutdown()
print(json.dumps({}))
"""


@pytest.mark.parametrize("app", [False, True])
def test_exception_texts_in_spans_are_masked_in_the_span_file(tmp_path: Path, app: bool) -> None:
    """The SDK copies an exception's message into the span status and an exception event:
    the span file (shared provider, or the file added to an application's provider) must
    not hold the secrets those texts carry."""
    _run(tmp_path, MASKED_SPANS % app)
    raw = "".join(p.read_text() for p in (tmp_path / "data" / "traces").glob("*.jsonl"))
    assert "Hunter2Pw" not in raw
    spans = {s["name"]: s for s in read_lines(tmp_path / "data" / "traces", "mcp_spans_*.jsonl")}
    assert spans["tools/call"]["status_message"] == "lookup failed, password=***MASKED***"
    assert spans["plain"]["cache.key"] == "k"  # span attributes are left as they are


def test_masking_span_exporter_passes_clean_spans_through_untouched() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    from mcp_otel._span_masking import MaskingSpanExporter

    sink = InMemorySpanExporter()
    seen: list[object] = []
    inner_export = sink.export

    def export(spans: object) -> object:
        seen.extend(spans)  # type: ignore[arg-type]
        return inner_export(spans)  # type: ignore[arg-type]

    sink.export = export  # type: ignore[method-assign]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(MaskingSpanExporter(sink)))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("ok") as ok:
        ok.set_status(Status(StatusCode.ERROR, "nothing secret here"))
    with tracer.start_as_current_span("bad") as bad:
        bad.add_event("exception", {"exception.message": "token=abcdef123", "n": 1})
    clean, masked = sink.get_finished_spans()
    assert clean.status.description == "nothing secret here"
    assert dict(masked.events[0].attributes) == {"exception.message": "token=***MASKED***",
                                                  "n": 1}
    assert masked.context == bad.get_span_context() and masked.name == "bad"
    provider.shutdown()


BAD_ENV_CTOR = """
import json, os
from mcp_otel.telemetry import TelemetryEmitter
t = TelemetryEmitter()
t.emit_tool_call("a", "ok", 1, 1, 1)
pipeline = t._box[0]
processors = (pipeline.logger_provider._multi_log_record_processor._log_record_processors
              if pipeline.logger_provider is not None else ())
batch = [p._batch_processor._max_export_batch_size
         for p in processors if hasattr(p, "_batch_processor")]
print(json.dumps({"tool_calls": t.metrics["tool_calls"], "batch": batch,
                  "interval": [r._export_interval_millis for r in pipeline.exporting_readers]}))
os._exit(0)  # no shutdown: it would wait for the unreachable OTLP endpoint
"""


@pytest.mark.parametrize(
    ("env", "warning", "effective"),
    [
        (
            {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://127.0.0.1:9",
             "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "100000"},
            "using the OpenTelemetry defaults for this BatchLogRecordProcessor",
            {"batch": [512], "interval": [60000]},
        ),
        (
            {"OTEL_METRIC_EXPORT_INTERVAL": "-5"},
            "using the OpenTelemetry defaults for this PeriodicExportingMetricReader",
            {"batch": [], "interval": [60000]},
        ),
    ],
)  # fmt: skip
def test_bad_standard_environment_values_warn_and_use_the_default(
    tmp_path: Path, env: dict[str, str], warning: str, effective: dict[str, list[int]]
) -> None:
    # The SDK raises ValueError for these from its constructors; TelemetryEmitter() must not
    # pass that on to the host (Osiris' server builds it at start).
    out, err = run_script(tmp_path, BAD_ENV_CTOR, **env)
    assert out == {"tool_calls": 1, **effective}
    assert warning in err


def test_ended_spans_are_exported_within_the_short_schedule_delay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans must not wait the SDK's 5 s in the queue (they would be promoted to the oldest
    GC generation and trigger full collections): the export comes without a flush."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    monkeypatch.delenv("OTEL_BSP_SCHEDULE_DELAY", raising=False)
    exported = threading.Event()

    class Signal(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            exported.set()
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(_setup.batch_span_processor(Signal()))
    try:
        with provider.get_tracer("t").start_as_current_span("s"):
            pass
        # an upper bound far below the SDK default of 5 s, far above the 50 ms delay
        assert exported.wait(2.5)
    finally:
        provider.shutdown()
