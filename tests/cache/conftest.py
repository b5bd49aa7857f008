"""Fixtures for the discovery cache tests: real SDK providers with in-memory sinks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

from mcp_otel.cache import DiscoveryCache
from tests.cache._clock import Clock


@dataclass
class Telemetry:
    """Real providers whose output the tests read back."""

    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    meter_provider: MeterProvider
    reader: InMemoryMetricReader

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> dict[tuple[tuple[str, object], ...], int]:
        """Current value of every point of one metric, keyed by its sorted attributes."""
        data = self.reader.get_metrics_data()
        out: dict[tuple[tuple[str, object], ...], int] = {}
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        for p in m.data.data_points:
                            out[tuple(sorted(p.attributes.items()))] = int(p.value)
        return out

    def events(self) -> dict[str, int]:
        return {
            dict(k)["mcp_otel.cache.event"]: v
            for k, v in self.points("mcp_otel.cache.coherency_events").items()
        }

    def requests(self) -> dict[tuple[str, str], int]:
        out = {}
        for k, v in self.points("mcp_otel.cache.requests").items():
            attrs = dict(k)
            out[(attrs["mcp_otel.cache.result"], attrs["mcp_otel.cache.tier"])] = v
        return out


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    yield Telemetry(tp, exporter, mp, reader)
    tp.shutdown()
    mp.shutdown()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "root" / "cache"


@pytest.fixture
def make_cache(cache_dir: Path, telemetry: Telemetry) -> Callable[..., DiscoveryCache]:
    """Caches on one directory, each with its own memory tier (like separate processes)."""

    def make(traced: bool = True, **kwargs: object) -> DiscoveryCache:
        return DiscoveryCache(
            cache_dir,
            tracer_provider=telemetry.tracer_provider if traced else NoOpTracerProvider(),
            meter_provider=telemetry.meter_provider,
            **kwargs,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture
def clock() -> Clock:
    return Clock()
