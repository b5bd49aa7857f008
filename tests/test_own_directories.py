"""A component writes files only in the directory it was given (issue 12, item 8).

``AuditLogger("./logs/audit")`` alone used to create ``./mcp-otel-data/metrics/...``: its
two counters started mcp-otel's shared metrics pipeline, whose file lives under the data
directory. Each scenario runs in a fresh interpreter (global OpenTelemetry state is set
once per process, and the SDK exports at interpreter exit), from an empty working
directory, with ``HOME`` in the test's directory too, and then lists every tree.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._support import require

SRC = str(Path(__file__).resolve().parents[1] / "src")

AUDIT = """
import asyncio, sys
from pathlib import Path
from mcp_otel.audit import AuditLogger

audit = AuditLogger(Path(sys.argv[1]))
asyncio.run(audit.log_tool_call("lookup", 12))
audit.shutdown()
"""

CACHE = """
import asyncio, sys
from pathlib import Path
from mcp_otel.cache import DiscoveryCache

async def main():
    cache = DiscoveryCache(Path(sys.argv[1]))
    await cache.set("conn", "comp", 0, {"v": 1})
    assert (await cache.get("conn", "comp"))["data"] == {"v": 1}

asyncio.run(main())
"""


def _run(tmp_path: Path, script: str, *args: str, **env: str) -> str:
    """Run ``script`` from ``tmp_path/cwd`` with no OTEL_*/MCP_OTEL_* variables but ``env``;
    returns its stdout."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MCP_OTEL_"))
    }
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p
    )
    full_env.update({"HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1", **env})
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _tree(root: Path) -> list[str]:
    """Every directory and file below ``root``, relative."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _audit_tree(audit_dir: Path) -> None:
    (name,) = [p.name for p in audit_dir.iterdir()]
    assert name.startswith("mcp_audit_") and name.endswith(".jsonl")
    lines = (audit_dir / name).read_bytes().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["tool_call", "session_end"]


def test_audit_logger_alone_writes_only_its_directory(tmp_path: Path) -> None:
    given = tmp_path / "given"
    _run(tmp_path, AUDIT, str(given / "audit"))
    assert _tree(tmp_path / "cwd") == []
    assert _tree(tmp_path / "home") == []
    assert [p for p in _tree(given) if not p.startswith("audit/")] == ["audit"]
    _audit_tree(given / "audit")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "given", "home"]


def test_relative_audit_directory_is_the_only_thing_created_in_cwd(tmp_path: Path) -> None:
    _run(tmp_path, AUDIT, "./logs/audit")
    assert [p for p in _tree(tmp_path / "cwd") if not p.startswith("logs/audit/")] == [
        "logs",
        "logs/audit",
    ]
    _audit_tree(tmp_path / "cwd" / "logs" / "audit")
    assert _tree(tmp_path / "home") == []


def test_cache_alone_writes_only_its_directory(tmp_path: Path) -> None:
    given = tmp_path / "given"
    _run(tmp_path, CACHE, str(given / "cache"))
    assert _tree(tmp_path / "cwd") == []
    assert _tree(tmp_path / "home") == []
    top = {p.split("/")[0] for p in _tree(given)}
    assert top == {"cache"}
    assert len(list((given / "cache").glob("disc_*.json"))) == 1


def _metric_names(directory: Path) -> set[str]:
    """Names of the metric points in the shared metrics file(s) (flat JSONL lines)."""
    return {
        json.loads(line)["metric"]
        for path in directory.glob("metrics/*.jsonl")
        for line in path.read_bytes().splitlines()
    }


def test_with_mcp_otel_dir_set_the_counters_go_to_its_metrics_file(tmp_path: Path) -> None:
    """The user chose the data directory: the shared pipeline may write there."""
    data, given = tmp_path / "data", tmp_path / "given"
    _run(tmp_path, AUDIT, str(given / "audit"), MCP_OTEL_DIR=str(data))
    assert {"mcp_otel.audit.records", "mcp_otel.audit.lost"} <= _metric_names(data)
    assert _tree(tmp_path / "cwd") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "data", "given", "home"]


def test_inside_the_default_data_directory_the_shared_pipeline_is_used(tmp_path: Path) -> None:
    """What ``instrument()`` does: ``AuditLogger(<data dir>/audit)``, metrics beside it."""
    _run(tmp_path, AUDIT, "mcp-otel-data/audit")
    data = tmp_path / "cwd" / "mcp-otel-data"
    assert {p.name for p in data.iterdir()} == {"audit", "metrics"}
    assert "mcp_otel.audit.records" in _metric_names(data)


APP_PROVIDERS = """
import asyncio, json, sys
from pathlib import Path
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
tp = TracerProvider()
tp.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(tp)

from mcp_otel.audit import AuditLogger
from mcp_otel.cache import DiscoveryCache

audit = AuditLogger(Path(sys.argv[1]) / "audit")
asyncio.run(audit.log_tool_call("lookup", 12))
audit.shutdown()
cache = DiscoveryCache(Path(sys.argv[1]) / "cache")
asyncio.run(cache.set("conn", "comp", 0, {"v": 1}))
points = {
    m.name: sum(p.value for p in m.data.data_points)
    for rm in reader.get_metrics_data().resource_metrics
    for sm in rm.scope_metrics
    for m in sm.metrics
}
print(json.dumps({"points": points, "spans": [s.name for s in spans.get_finished_spans()]}))
"""


def test_application_providers_receive_the_counters_and_spans(tmp_path: Path) -> None:
    given = tmp_path / "given"
    out = json.loads(_run(tmp_path, APP_PROVIDERS, str(given)).strip().splitlines()[-1])
    assert out["points"]["mcp_otel.audit.records"] == 2  # tool_call, session_end
    assert out["points"]["mcp_otel.audit.lost"] == 0
    assert "mcp_otel.cache.requests" in out["points"]
    assert out["spans"] == ["cache.set"]
    # The application's provider is used as it is: no span file of mcp-otel's added.
    assert _tree(tmp_path / "cwd") == []
    assert {p.split("/")[0] for p in _tree(given)} == {"audit", "cache"}


def test_with_only_an_otlp_endpoint_the_counters_go_over_otlp(tmp_path: Path) -> None:
    try:
        from tests._otlp_sink import GrpcSink

        sink = GrpcSink.start()
    except ImportError as exc:
        require(False, f"grpc/oteltest (dev extra) not installed: {exc}")
        return
    try:
        given = tmp_path / "given"
        _run(
            tmp_path,
            AUDIT,
            str(given / "audit"),
            OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=f"http://127.0.0.1:{sink.port}",
            OTEL_EXPORTER_OTLP_METRICS_INSECURE="true",
        )
        names = {
            m.name
            for req in sink.metric_requests()
            for rm in req.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
    finally:
        sink.stop()
    assert {"mcp_otel.audit.records", "mcp_otel.audit.lost"} <= names
    assert _tree(tmp_path / "cwd") == []
    assert [p for p in _tree(given) if not p.startswith("audit/")] == ["audit"]


@pytest.mark.parametrize("disabled", ["OTEL_SDK_DISABLED", "MCP_OTEL_LOCAL_EXPORT"])
def test_switches_that_write_no_file_keep_cwd_empty(tmp_path: Path, disabled: str) -> None:
    value = "true" if disabled == "OTEL_SDK_DISABLED" else "false"
    _run(tmp_path, AUDIT, str(tmp_path / "given" / "audit"), **{disabled: value})
    assert _tree(tmp_path / "cwd") == []
    _audit_tree(tmp_path / "given" / "audit")


FORK = """
import json, os, sys
from opentelemetry.metrics import NoOpMeterProvider
from mcp_otel import _setup

given = sys.argv[1]
before = _setup.component_meter_provider(given)  # nothing started, nothing allowed
_setup.get_meter_provider()  # the application starts the shared pipeline (instrument())
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    # The child keeps the parent's choice: the shared pipeline (rebuilt for this process).
    child = _setup.component_meter_provider(given)
    os.write(w, json.dumps({"shared": child is _setup.get_meter_provider(),
                            "noop": isinstance(child, NoOpMeterProvider)}).encode())
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps({"before_noop": isinstance(before, NoOpMeterProvider),
                  "child": json.loads(os.read(r, 1000))}))
"""


def test_a_forked_child_keeps_the_parents_choice(tmp_path: Path) -> None:
    out = json.loads(_run(tmp_path, FORK, str(tmp_path / "given")).strip().splitlines()[-1])
    assert out == {"before_noop": True, "child": {"shared": True, "noop": False}}


INSTRUMENTED = """
import asyncio, os
from mcp import Client
from mcp.server.mcpserver import MCPServer
import mcp_otel

server = MCPServer("layout", log_level="ERROR")

@server.tool()
def add(a: int, b: int) -> int:
    return a + b

async def main():
    async with Client(server) as client:
        for i in range(3):
            await client.call_tool("add", {"a": i, "b": 1})

handle = mcp_otel.instrument(server, handle_signals=False)
asyncio.run(main())
handle.uninstrument()
mcp_otel.telemetry.get_telemetry().shutdown()
from mcp_otel import _setup
_setup.shutdown()
"""


def test_an_instrumented_server_writes_one_metrics_file_naming_its_process(
    tmp_path: Path,
) -> None:
    """One metrics file per data directory, each line with its service.instance.id: the
    emitter's counters and the instrumentation's histograms share it (before, the emitter
    wrote a second one under telemetry/ with the duration metric in both)."""
    require(importlib.util.find_spec("mcp.server.mcpserver") is not None, "needs mcp 2.x")
    data = tmp_path / "data"
    _run(tmp_path, INSTRUMENTED, MCP_OTEL_DIR=str(data))
    metric_files = sorted(str(p.relative_to(data)) for p in data.rglob("*metrics*.jsonl"))
    assert len(metric_files) == 1 and metric_files[0].startswith("metrics/"), metric_files
    lines = [json.loads(line) for line in (data / metric_files[0]).read_bytes().splitlines()]
    instances = {line["resource"]["service.instance.id"] for line in lines}
    assert len(instances) == 1 and "" not in instances
    names = {line["metric"] for line in lines}
    assert {"mcp_otel.tool.calls", "mcp.server.operation.duration",
            "mcp_otel.audit.records"} <= names
    calls = [line for line in lines if line["metric"] == "mcp_otel.tool.calls"]
    assert calls[-1]["value"] == 3
