"""mcp-otel touches OpenTelemetry and asyncio internals only in two adapter modules,
``_otel_compat`` and ``_asyncio_compat``.

Two kinds of test:

* each private name or behaviour the adapters rely on is checked against the installed
  SDK and interpreter, so a release that moves one fails here, by name, rather than
  somewhere deep in the audit trail;
* a scan of ``src/`` fails on any private OpenTelemetry module or name imported, or any
  private attribute of an OpenTelemetry or asyncio object read, outside the adapters.
"""

from __future__ import annotations

import ast
import asyncio
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import opentelemetry
import pytest
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)

from mcp_otel import _asyncio_compat, _setup
from mcp_otel import _otel_compat as compat

SRC = Path(__file__).resolve().parents[1] / "src" / "mcp_otel"
ADAPTERS = ("_otel_compat.py", "_asyncio_compat.py")

# --------------------------------------------------------------- what the module relies on


def test_every_reexported_name_is_there() -> None:
    for name in compat.__all__:
        assert getattr(compat, name) is not None, name


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_log_exporters_are_where_the_module_imports_them(protocol: str) -> None:
    exporter = compat.otlp_log_exporter(protocol)
    try:
        assert isinstance(exporter, compat.LogRecordExporter)
        assert type(exporter).__name__ == "OTLPLogExporter"
    finally:
        exporter.shutdown()


def test_otlp_log_exporter_rejects_an_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="unknown OTLP protocol"):
        compat.otlp_log_exporter("http/json")


class _ListMetricExporter(MetricExporter):
    def __init__(self) -> None:
        super().__init__(preferred_temporality={Counter: AggregationTemporality.DELTA})
        self.exported: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: object) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        pass


def test_metric_exporter_preferences_reach_the_reader_through_the_fork_safe_wrapper() -> None:
    inner = _ListMetricExporter()
    temporality, _aggregation = compat.metric_exporter_preferences(inner)
    assert temporality[Counter] is AggregationTemporality.DELTA
    # What the preferences are for: a reader over the wrapper exports DELTA sums, as the
    # wrapped exporter asked (the SDK default for a counter is CUMULATIVE).
    reader = PeriodicExportingMetricReader(_setup.fork_safe(inner),
                                           export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    try:
        counter = provider.get_meter("compat-test").create_counter("c")
        counter.add(2)
        assert provider.force_flush()
        counter.add(3)
        assert provider.force_flush()
    finally:
        provider.shutdown()
    points = [
        (metric.data.aggregation_temporality, [p.value for p in metric.data.data_points])
        for data in inner.exported
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    ]
    assert points == [(AggregationTemporality.DELTA, [2]), (AggregationTemporality.DELTA, [3])]


def _record(attributes: dict[str, object]) -> compat.LogRecord:
    return compat.LogRecord(timestamp=1, observed_timestamp=1, attributes=attributes)


def test_unbounded_record_keeps_its_attributes_as_given() -> None:
    marker = object()  # not an OTel attribute value: BoundedAttributes would drop it
    attrs = {"a": 1, "payload": marker}
    record = compat.UnboundedLogRecord(_record(attrs))
    assert record.log_record.attributes is attrs
    assert record.log_record.attributes["payload"] is marker
    # The control: the SDK's own record does wrap them (in __post_init__). If this fails,
    # the SDK no longer bounds attributes there and UnboundedLogRecord may be unneeded.
    plain = compat.ReadWriteLogRecord(_record({"a": 1}))
    assert type(plain.log_record.attributes) is not dict


class _Capture(compat.LogRecordProcessor):
    def __init__(self) -> None:
        self.records: list[object] = []

    def on_emit(self, log_record: object) -> None:  # type: ignore[override]
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def test_sdk_logger_emit_passes_a_read_write_record_through_unchanged() -> None:
    capture = _Capture()
    provider = compat.LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(capture)
    attrs = {"k": "v"}
    record = compat.UnboundedLogRecord(_record(attrs), provider.resource)
    provider.get_logger("compat-test").emit(record)
    assert len(capture.records) == 1
    assert capture.records[0] is record
    assert record.log_record.attributes is attrs


def test_a_disabled_sdk_gives_no_op_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit trail detects OTEL_SDK_DISABLED by the NoOpLogger it gets."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    provider = compat.LoggerProvider(shutdown_on_exit=False)
    assert isinstance(provider.get_logger("compat-test"), compat.NoOpLogger)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    provider = compat.LoggerProvider(shutdown_on_exit=False)
    assert not isinstance(provider.get_logger("compat-test"), compat.NoOpLogger)


# ------------------------------------------------------------------- asyncio's internals


def test_self_pipe_fd_and_call_soon_unwoken_wake_a_loop_from_another_thread() -> None:
    """The two steps of call_soon_threadsafe, done apart from another thread: queue the
    callback, then a byte to the dup of the self-pipe, while the loop waits for it."""
    loop = asyncio.new_event_loop()
    fd = _asyncio_compat.self_pipe_fd(loop)
    assert fd >= 0, "a stock selector loop without _csock: asyncio moved it"

    async def woken() -> bool:
        fut: asyncio.Future[bool] = loop.create_future()

        def wake() -> None:
            try:
                _asyncio_compat.call_soon_unwoken(loop, fut.set_result, (True,))
            except BaseException as exc:  # _call_soon moved: fail now, not at the bound
                loop.call_soon_threadsafe(fut.set_exception, exc)
                return
            os.write(fd, b"\0")

        waker = threading.Thread(target=wake)
        waker.start()
        try:
            return await asyncio.wait_for(fut, 10)  # a bound, not a wait: fails if unwoken
        finally:
            waker.join()

    try:
        assert loop.run_until_complete(woken()) is True
    finally:
        os.close(fd)
        loop.close()


def test_self_pipe_fd_refuses_a_loop_without_a_self_pipe() -> None:
    class Foreign(asyncio.AbstractEventLoop):
        pass

    assert _asyncio_compat.self_pipe_fd(Foreign()) == -1


# ------------------------------------------------------------------------ the scan of src/

#: Findings tolerated, as ``(file relative to src/mcp_otel, private name)``: none now.
_TOLERATED: set[tuple[str, str]] = set()

_ATTR_CALLS = {"getattr", "setattr", "hasattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_names(trees: Iterable[ast.AST]) -> set[str]:
    """Private names a body of code defines: functions, classes, imports, assigned names,
    attributes assigned on ``self``/``cls``, ``__slots__`` entries, ``setattr`` literals."""
    out: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                out.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                out.add(node.id)
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                out.add(node.attr)  # only on itself: `other._x = 1` defines nothing
            elif isinstance(node, ast.alias):
                out.add((node.asname or node.name).split(".")[0])
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id == "setattr" and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant)):
                out.add(str(node.args[1].value))
            elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple | ast.List)
                  and any(isinstance(t, ast.Name) and t.id == "__slots__"
                          for t in node.targets)):
                out.update(str(e.value) for e in node.value.elts
                           if isinstance(e, ast.Constant))
    return {n for n in out if _private(n)}


def _parse_all(paths: Iterable[Path]) -> list[ast.AST]:
    trees = []
    for path in paths:
        try:
            trees.append(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        except (SyntaxError, UnicodeDecodeError):  # a vendored oddity: not ours to judge
            continue
    return trees


def _foreign_private_names() -> set[str]:
    """Private names defined by the OpenTelemetry API/SDK/OTLP exporters and by asyncio."""
    paths: list[Path] = []
    for base in opentelemetry.__path__:
        for sub in ("_logs", "sdk", "exporter/otlp", "metrics", "trace", "context", "util",
                    "attributes", "propagate", "propagators", "baggage", "environment_variables"):
            root = Path(base, sub)
            paths.extend(root.rglob("*.py") if root.is_dir() else [root.with_suffix(".py")])
    paths.extend(Path(asyncio.__file__).parent.glob("*.py"))
    return _defined_names(_parse_all(p for p in paths if p.is_file()))


def _is_super_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "super")


def scan(trees: dict[str, ast.AST], foreign: set[str], own: set[str]) -> list[tuple[str, int, str]]:
    """``(file, line, name)`` for each use of a private OpenTelemetry module or name, or of
    a private attribute that OpenTelemetry or asyncio defines and mcp-otel does not (or
    that is reached through ``super()``)."""
    found: list[tuple[str, int, str]] = []

    def private_module(module: str) -> bool:
        parts = module.split(".")
        return parts[0] == "opentelemetry" and any(_private(p) for p in parts[1:])

    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(name, node.lineno, a.name) for a in node.names
                          if private_module(a.name)]
            elif isinstance(node, ast.ImportFrom) and node.module:
                if private_module(node.module):
                    found.append((name, node.lineno, node.module))
                elif node.module.split(".")[0] == "opentelemetry":
                    found += [(name, node.lineno, f"{node.module}.{a.name}")
                              for a in node.names if _private(a.name)]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                receiver = node.value
                if isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"):
                    continue
                if node.attr in foreign and (node.attr not in own or _is_super_call(receiver)):
                    found.append((name, node.lineno, node.attr))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in _ATTR_CALLS and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str)):
                attr = node.args[1].value
                if _private(attr) and attr in foreign and attr not in own:
                    found.append((name, node.lineno, attr))
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and node.value.isidentifier() is False and private_module(node.value)
                  and " " not in node.value):  # importlib.import_module("opentelemetry._x")
                found.append((name, node.lineno, node.value))
    return found


@pytest.fixture(scope="module")
def src_trees() -> dict[str, ast.AST]:
    return {str(p.relative_to(SRC)): ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in sorted(SRC.rglob("*.py"))}


@pytest.fixture(scope="module")
def foreign() -> set[str]:
    return _foreign_private_names()


def test_no_private_otel_or_asyncio_name_outside_the_compat_module(
        src_trees: dict[str, ast.AST], foreign: set[str]) -> None:
    others = {n: t for n, t in src_trees.items() if n not in ADAPTERS}
    own = _defined_names(others.values())
    found = [f for f in scan(others, foreign, own) if (f[0], f[2]) not in _TOLERATED]
    assert found == [], (
        "private OpenTelemetry/asyncio names outside mcp_otel/_otel_compat.py and "
        "_asyncio_compat.py (use a public API, or add the name to an adapter with a "
        "test here):\n"
        + "\n".join(f"  {f}:{line}: {n}" for f, line, n in found))


_VIOLATIONS = '''
import opentelemetry.sdk._logs
from opentelemetry import _logs
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.util import _once
import importlib
importlib.import_module("opentelemetry.exporter.otlp.proto.http._log_exporter")
provider._disabled = False
t = inner._preferred_temporality
plain = getattr(attrs, "_dict", None)
loop._call_soon(cb, (), None)
csock = getattr(loop, "_csock", None)
class R(Reader):
    def _set_collect_callback(self, cb):
        super()._set_collect_callback(cb)
'''

_ALLOWED = '''
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.metrics.export import MetricExporter
class Mine:
    def __init__(self):
        self._lock = None
        self._resource = None
    def run(self, other: "Mine"):
        with other._lock:
            return other._resource
'''


@pytest.mark.parametrize("expected", [
    "opentelemetry.sdk._logs", "opentelemetry._logs", "opentelemetry.sdk._logs.export",
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter", "opentelemetry.util._once",
    "opentelemetry.exporter.otlp.proto.http._log_exporter", "_disabled",
    "_preferred_temporality", "_dict", "_call_soon", "_csock", "_set_collect_callback",
])
def test_the_scan_finds_each_kind_of_private_use(foreign: set[str], expected: str) -> None:
    trees = {"bad.py": ast.parse(_VIOLATIONS), "good.py": ast.parse(_ALLOWED)}
    own = _defined_names(trees.values())
    names = [n for f, _, n in scan(trees, foreign, own) if f == "bad.py"]
    assert expected in names


def test_the_scan_leaves_public_names_and_our_own_private_attributes_alone(
        foreign: set[str]) -> None:
    trees = {"good.py": ast.parse(_ALLOWED)}
    assert scan(trees, foreign, _defined_names(trees.values())) == []


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_each_adapter_docstring_lists_every_private_name_it_uses(
        src_trees: dict[str, ast.AST], foreign: set[str], adapter: str) -> None:
    tree = src_trees[adapter]
    doc = ast.get_docstring(tree) or ""
    found = scan({adapter: tree}, foreign, set())
    missing = sorted({n for _, _, n in found if n.rsplit(".", 1)[-1] not in doc})
    assert found and missing == [], missing
