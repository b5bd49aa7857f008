"""Helpers for your own tests: capture what mcp-otel records during a block.

Example (pytest, with pytest-asyncio)::

    from mcp import Client
    from mcp_otel.testing import capture

    async def test_add_is_audited(my_server):
        with capture() as cap:
            cap.instrument(my_server)
            async with Client(my_server) as client:
                await client.call_tool("add", {"a": 1, "b": 2})
        assert [r["event"] for r in cap.audit_records if r["tool"] == "add"] == [
            "tool_call", "tool_result"]
        assert cap.metric_value("mcp_otel.tool.calls", {"gen_ai.tool.name": "add"}) == 1
        assert any(s.name == "tools/call add" for s in cap.spans)

Why this shape: the audit trail and the telemetry emitter own their pipelines (locked
files, hash chain), so the honest way to see *what they would write* is to let them write
into a private temporary directory and read the lines back when the block ends; spans and
metrics are taken from the SDK's own in-memory span processor and metric reader. The audit,
telemetry and cache files of the block go to the temporary directory, which is removed
afterwards (``keep=True`` keeps it; see :attr:`Capture.directory`). Spans still also reach
whatever exporters the global tracer provider has (mcp-otel's span file under
``MCP_OTEL_DIR``, for example): point ``MCP_OTEL_DIR`` at a temporary directory in tests.

Spans: the ``mcp`` SDK and the cache trace through the *global* tracer provider, so
``capture`` makes sure an SDK provider is installed globally (as :func:`mcp_otel.instrument`
does) and attaches one span processor to it, once per process; it forwards ended spans to
whichever captures are open and costs nothing otherwise.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader, Sum
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

from mcp_otel import _setup

__all__ = ["Capture", "MetricPoint", "capture"]


@dataclass(frozen=True)
class MetricPoint:
    """One data point: a counter's or gauge's ``value``, or a histogram's ``count``/``sum``."""

    name: str
    attributes: Mapping[str, Any]
    value: float | None = None
    count: int | None = None
    sum: float | None = None


class _Fanout(SpanProcessor):
    """Attached once to a provider; hands ended spans to the captures that are open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sinks: list[list[ReadableSpan]] = []

    def add(self, sink: list[ReadableSpan]) -> None:
        with self._lock:
            self._sinks.append(sink)

    def remove(self, sink: list[ReadableSpan]) -> None:
        with self._lock:
            self._sinks = [s for s in self._sinks if s is not sink]

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        del span, parent_context

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            for sink in self._sinks:
                sink.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        del timeout_millis
        return True


_FANOUTS: dict[int, tuple[SdkTracerProvider, _Fanout]] = {}
_FANOUT_LOCK = threading.Lock()


def _fanout_for(provider: SdkTracerProvider) -> _Fanout:
    with _FANOUT_LOCK:
        known = _FANOUTS.get(id(provider))
        if known is not None and known[0] is provider:
            return known[1]
        fanout = _Fanout()
        provider.add_span_processor(fanout)
        _FANOUTS[id(provider)] = (provider, fanout)
        return fanout


@dataclass
class Capture:
    """What one ``with capture():`` block recorded; filled in when the block ends.

    During the block use :attr:`audit`, :attr:`telemetry`, :attr:`cache` (or
    :meth:`instrument`) so that the records land here.
    """

    directory: Path
    keep: bool = False
    spans: list[ReadableSpan] = field(default_factory=list)
    audit_records: list[dict[str, Any]] = field(default_factory=list)
    telemetry_events: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[MetricPoint] = field(default_factory=list)
    telemetry_totals: dict[str, int] = field(default_factory=dict)
    _audit: Any = None
    _telemetry: Any = None
    _cache: Any = None
    _handles: list[Any] = field(default_factory=list)
    _reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    _meter_provider: MeterProvider | None = None
    _fanout: _Fanout | None = None
    _live_spans: list[ReadableSpan] = field(default_factory=list)
    _closed: bool = False

    # ---- what to hand to the code under test -------------------------------------------

    @property
    def meter_provider(self) -> MeterProvider:
        """A provider whose metrics end up in :attr:`metrics`."""
        if self._meter_provider is None:
            self._meter_provider = MeterProvider(metric_readers=[self._reader])
        return self._meter_provider

    @property
    def audit(self) -> Any:
        """An ``AuditLogger`` writing into the capture."""
        if self._audit is None:
            from mcp_otel.audit import AuditLogger

            self._audit = AuditLogger(self.directory / "audit")
        return self._audit

    @property
    def telemetry(self) -> Any:
        """A ``TelemetryEmitter`` writing into the capture."""
        if self._telemetry is None:
            from mcp_otel.telemetry import TelemetryEmitter

            # The capture reads its files back as flat lines, whatever format a deployment
            # chose for its own (MCP_OTEL_JSONL_FORMAT=otlp made capture() raise KeyError).
            self._telemetry = TelemetryEmitter(
                output_dir=self.directory / "telemetry", format="flat"
            )
        return self._telemetry

    @property
    def cache(self) -> Any:
        """A ``DiscoveryCache`` in the capture's directory, counting into :attr:`metrics`."""
        if self._cache is None:
            from mcp_otel.cache import DiscoveryCache

            self._cache = DiscoveryCache(self.directory / "cache",
                                         meter_provider=self.meter_provider)
        return self._cache

    def instrument(self, server: Any, **kwargs: Any) -> Any:
        """:func:`mcp_otel.instrument` wired to this capture; undone when the block ends."""
        from mcp_otel._instrument import instrument

        kwargs.setdefault("audit", self.audit)
        kwargs.setdefault("telemetry", self.telemetry)
        kwargs.setdefault("cache", self.cache)
        kwargs.setdefault("meter_provider", self.meter_provider)
        handle = instrument(server, **kwargs)
        self._handles.append(handle)
        return handle

    # ---- reading back ------------------------------------------------------------------

    def span_names(self) -> list[str]:
        return [s.name for s in self.spans]

    def metric_points(self, name: str,
                      attributes: Mapping[str, Any] | None = None) -> list[MetricPoint]:
        """Points of ``name`` whose attributes include ``attributes``."""
        want = dict(attributes or {})
        return [p for p in self.metrics if p.name == name
                and all(p.attributes.get(k) == v for k, v in want.items())]

    def metric_value(self, name: str, attributes: Mapping[str, Any] | None = None) -> float:
        """Sum of the matching counter values (histograms: of their counts)."""
        total = 0.0
        for p in self.metric_points(name, attributes):
            total += p.value if p.value is not None else (p.count or 0)
        return total

    def audit_events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.audit_records if r.get("event") == event]

    # ---- lifecycle ---------------------------------------------------------------------

    def _start(self) -> None:
        from mcp_otel._instrument._core import ensure_global_tracer_provider

        provider = ensure_global_tracer_provider()
        if isinstance(provider, SdkTracerProvider):
            self._fanout = _fanout_for(provider)
            self._fanout.add(self._live_spans)

    def close(self) -> None:
        """Undo instrumentation, flush every sink and read everything back. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for handle in self._handles:
                handle.uninstrument()
            if self._audit is not None:
                self._audit.shutdown()
            if self._telemetry is not None:
                self.telemetry_totals = dict(self._telemetry.metrics)
                self._telemetry.shutdown()
            with contextlib.suppress(Exception):  # must not hide the test's outcome
                _setup.force_flush()
            if self._fanout is not None:
                self._fanout.remove(self._live_spans)
            self.spans = list(self._live_spans)
            self._read_back()
        finally:
            if self._meter_provider is not None:
                with contextlib.suppress(Exception):  # must not hide the test's outcome
                    self._meter_provider.shutdown()
            if not self.keep:
                shutil.rmtree(self.directory, ignore_errors=True)

    def _read_back(self) -> None:
        from mcp_otel.reader import metric_attributes, read_records

        for path in sorted((self.directory / "audit").glob("*.jsonl")):
            self.audit_records.extend(read_records(path))
        telemetry_dir = self.directory / "telemetry"
        for path in sorted(telemetry_dir.glob("mcp_telemetry_*.jsonl")):
            self.telemetry_events.extend(read_records(path))
        points: list[MetricPoint] = []
        # The emitter's snapshots are cumulative: the last point of a series is its total.
        latest: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
        for path in sorted(telemetry_dir.glob("mcp_metrics_*.jsonl")):
            for rec in read_records(path):
                attrs = metric_attributes(rec)
                series = tuple(sorted((k, repr(v)) for k, v in attrs.items()))
                key = (str(rec.get("metric")), series)
                latest[key] = {**rec, "_attrs": attrs}
        for rec in latest.values():
            points.append(MetricPoint(name=str(rec["metric"]), attributes=rec["_attrs"],
                                      value=rec.get("value"), count=rec.get("count"),
                                      sum=rec.get("sum")))
        if self._meter_provider is not None:
            points.extend(_points_from_reader(self._reader))
        self.metrics = points

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Capture:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        import asyncio

        await asyncio.to_thread(self.close)


def _points_from_reader(reader: InMemoryMetricReader) -> Iterator[MetricPoint]:
    data = reader.get_metrics_data()
    if data is None:
        return
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in getattr(metric.data, "data_points", ()):
                    attrs = dict(p.attributes or {})
                    if isinstance(metric.data, Histogram):
                        yield MetricPoint(metric.name, attrs, count=p.count, sum=p.sum)
                    elif isinstance(metric.data, Sum) or hasattr(p, "value"):
                        yield MetricPoint(metric.name, attrs, value=p.value)


def capture(*, keep: bool = False, directory: str | Path | None = None) -> Capture:
    """Open a capture; use it as ``with capture() as cap:`` (or ``async with``).

    ``directory`` (default: a new private temporary directory) is where the audit trail,
    telemetry and cache files are written during the block.
    """
    path = Path(directory) if directory is not None else Path(
        tempfile.mkdtemp(prefix="mcp-otel-capture-"))
    cap = Capture(directory=path, keep=keep or directory is not None)
    cap._start()
    return cap
