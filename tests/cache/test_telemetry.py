"""Spans, span events and counters of the cache, read back from the SDK's own sinks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import orjson
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from mcp_otel.cache import DiscoveryCache
from tests._otlp_sink import GrpcSink

SECRET_CONN = "postgres://admin:hunter2@db.internal/prod"

ZERO_REQUESTS = {("hit", "memory"): 0, ("hit", "disk"): 0, ("miss", "none"): 0}
ZERO_EVENTS = dict.fromkeys(
    [
        "expired", "memory_evicted", "disk_evicted", "stale_dropped", "corrupt_removed",
        "identity_mismatch",
    ],
    0,
)  # fmt: skip


def _all_attribute_values(spans) -> list[str]:
    values = []
    for s in spans:
        values += [str(v) for v in s.attributes.values()]
        for e in s.events:
            values += [e.name] + [str(v) for v in e.attributes.values()]
    return values


async def test_counters_have_zero_points_at_start(make_cache, telemetry) -> None:
    make_cache()
    assert telemetry.requests() == ZERO_REQUESTS
    assert telemetry.events() == ZERO_EVENTS
    data = telemetry.reader.get_metrics_data()
    units = {
        m.name: (m.unit, m.data.is_monotonic)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert units == {
        "mcp_otel.cache.requests": ("{request}", True),
        "mcp_otel.cache.coherency_events": ("{event}", True),
    }


async def test_every_operation_is_a_span_with_hashed_ids(make_cache, telemetry) -> None:
    cache = make_cache()
    disc = await cache.set(SECRET_CONN, "comp", 3, {"t": [1, 2]}, None, timedelta(minutes=2))
    await cache.get(SECRET_CONN, "comp", 3)  # memory
    await make_cache().get(SECRET_CONN, "comp", 3)  # disk
    await cache.get(SECRET_CONN, "missing", 3)  # miss
    await cache.clear_expired()
    await cache.invalidate_connection(SECRET_CONN)
    await cache.clear_all()

    names = [s.name for s in telemetry.finished()]
    assert names == [
        "cache.set", "cache.get", "cache.get", "cache.get",
        "cache.clear_expired", "cache.invalidate", "cache.clear_all",
    ]  # fmt: skip
    set_span, mem, disk, miss, clear_expired, inval, clear_all = telemetry.finished()
    assert not (cache.cache_dir / f"{disc}.json").exists()  # removed by invalidate
    assert set_span.attributes["mcp_otel.cache.discovery_id"] == disc
    assert set_span.attributes["mcp_otel.cache.key"].startswith("cache_")
    assert set_span.attributes["mcp_otel.cache.ttl_s"] == 120.0
    assert set_span.attributes["mcp_otel.cache.entry_size"] > 0
    for span, tier in ((mem, "memory"), (disk, "disk")):
        assert span.attributes["cache.hit"] is True
        assert span.attributes["mcp_otel.cache.tier"] == tier
        assert span.attributes["mcp_otel.cache.discovery_id"] == disc
        assert (
            span.attributes["mcp_otel.cache.entry_size"]
            == (set_span.attributes["mcp_otel.cache.entry_size"])
        )
        assert span.attributes["mcp_otel.cache.ttl_s"] == 120
    assert miss.attributes["cache.hit"] is False
    assert miss.attributes["mcp_otel.cache.tier"] == "none"
    assert "mcp_otel.cache.entry_size" not in miss.attributes
    assert clear_expired.attributes["mcp_otel.cache.removed"] == 0
    assert inval.attributes["mcp_otel.cache.removed"] == 1
    assert inval.attributes["mcp_otel.cache.connection_hash"].startswith("conn_")
    assert [e.name for e in inval.events] == [
        "cache.disk_evicted", "cache.memory_evicted",
    ]  # fmt: skip
    assert clear_all.attributes["mcp_otel.cache.removed"] == 0
    # The connection string (a secret here) is on no span, attribute or event.
    assert not [v for v in _all_attribute_values(telemetry.finished()) if "hunter2" in v]
    assert not [v for v in _all_attribute_values(telemetry.finished()) if "prod" in v]
    # Exactly one request counted per get, by tier.
    assert telemetry.requests() == {("hit", "memory"): 1, ("hit", "disk"): 1, ("miss", "none"): 1}


async def test_get_span_is_a_child_of_the_callers_span(make_cache, telemetry) -> None:
    cache = make_cache()
    tracer = telemetry.tracer_provider.get_tracer("server")
    with tracer.start_as_current_span("tools/call discover") as parent:
        await cache.set("c", "k", 0, {})
        await cache.get("c", "k")
    spans = {s.name: s for s in telemetry.finished()}
    for name in ("cache.set", "cache.get"):
        assert spans[name].parent.span_id == parent.get_span_context().span_id
        assert spans[name].context.trace_id == parent.get_span_context().trace_id


async def test_coherency_events_on_spans_and_counters(make_cache, cache_dir, telemetry) -> None:
    a, b = make_cache(), make_cache()
    disc = await a.set("c", "k", 0, {"v": 1})
    await a.get("c", "k")
    await b.set("c", "k", 0, {"v": 2})
    await a.get("c", "k")  # stale_dropped + memory_evicted, then a disk hit
    (cache_dir / f"{disc}.json").write_bytes(b"{broken")
    await make_cache().get("c", "k")  # corrupt_removed + disk_evicted
    events = telemetry.events()
    assert events == {
        "expired": 0, "memory_evicted": 1, "disk_evicted": 1,
        "stale_dropped": 1, "corrupt_removed": 1, "identity_mismatch": 0,
    }  # fmt: skip
    gets = telemetry.finished("cache.get")
    assert [[e.name for e in span.events] for span in gets] == [
        [], ["cache.stale_dropped", "cache.memory_evicted"],
        ["cache.corrupt_removed", "cache.disk_evicted"],
    ]  # the same events on the spans of the gets that made them
    for span in gets:
        for event in span.events:
            assert event.attributes["mcp_otel.cache.discovery_id"] == disc
            assert event.attributes["mcp_otel.cache.event"] == event.name.removeprefix("cache.")


class _CountingNoOpProvider(trace.NoOpTracerProvider):
    """A no-op provider that would notice any tracer use."""

    calls = 0

    def get_tracer(self, *args, **kwargs):  # type: ignore[override]
        type(self).calls += 1
        return super().get_tracer(*args, **kwargs)


async def test_tracing_off_does_no_tracer_work(cache_dir, telemetry) -> None:
    off = DiscoveryCache(
        cache_dir, tracer_provider=_CountingNoOpProvider(), meter_provider=telemetry.meter_provider
    )
    await off.set("c", "k", 0, {})
    for _ in range(10):
        assert await off.get("c", "k") is not None
    await off.clear_all()
    assert _CountingNoOpProvider.calls == 0
    # An SDK provider that samples nothing is "off" as well: no span is started.
    exporter = InMemorySpanExporter()
    sampled_out = TracerProvider(sampler=ALWAYS_OFF)
    sampled_out.add_span_processor(SimpleSpanProcessor(exporter))
    cache = DiscoveryCache(
        cache_dir, tracer_provider=sampled_out, meter_provider=telemetry.meter_provider
    )
    await cache.set("c", "k", 0, {})
    assert await cache.get("c", "k") is not None
    assert exporter.get_finished_spans() == ()
    # Counters still count with tracing off.
    assert telemetry.requests()[("hit", "memory")] == 11


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, env={**os.environ, **env}
    )


_DEFAULT_PIPELINE = r"""
import asyncio
from mcp_otel import _setup
from mcp_otel.cache import DiscoveryCache

async def main():
    cache = DiscoveryCache()
    await cache.set("conn", "comp", 0, {"v": 1})
    await cache.get("conn", "comp")
    await cache.get("conn", "other")

asyncio.run(main())
assert _setup.force_flush()
"""


def test_spans_and_counters_reach_the_default_jsonl_files(tmp_path: Path) -> None:
    env = {"MCP_OTEL_DIR": str(tmp_path), "OTEL_SDK_DISABLED": "false"}
    env.update({k: "" for k in os.environ if k.startswith("OTEL_EXPORTER_OTLP")})
    out = _run(_DEFAULT_PIPELINE, env)
    assert out.returncode == 0, out.stderr.decode()
    assert len(list((tmp_path / "cache").glob("disc_*.json"))) == 1
    span_files = list((tmp_path / "traces").glob("mcp_spans_*.jsonl"))
    assert len(span_files) == 1
    spans = [orjson.loads(line) for line in span_files[0].read_bytes().splitlines()]
    gets = [s for s in spans if s["name"] == "cache.get"]
    assert [s["name"] for s in spans].count("cache.set") == 1 and len(gets) == 2
    assert sorted(s["mcp_otel.cache.tier"] for s in gets) == ["memory", "none"]
    metric_lines = b"".join(p.read_bytes() for p in (tmp_path / "metrics").glob("*.jsonl"))
    assert b"mcp_otel.cache.requests" in metric_lines


_FORKED = r"""
import asyncio, os, sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import NoOpTracerProvider
from mcp_otel.cache import DiscoveryCache

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
cache = DiscoveryCache(sys.argv[1], tracer_provider=NoOpTracerProvider())

async def gets(n):
    for _ in range(n):
        await cache.get("c", "k")

def hits():
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == "mcp_otel.cache.requests":
                    return sum(p.value for p in m.data.data_points)

asyncio.run(cache.set("c", "k", 0, {}))
asyncio.run(gets(3))
pid = os.fork()
if pid == 0:
    asyncio.run(gets(2))
    print("child", hits(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", hits(), flush=True)
"""


def test_forked_child_counts_only_its_own_requests(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _FORKED, str(tmp_path / "cache")], capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == ["child", "2", "parent", "3"]


async def test_sdk_disabled_means_no_tracer(cache_dir, monkeypatch, telemetry) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # reads OTEL_SDK_DISABLED at construction
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cache = DiscoveryCache(
        cache_dir, tracer_provider=provider, meter_provider=telemetry.meter_provider
    )
    await cache.set("c", "k", 0, {})
    assert await asyncio.wait_for(cache.get("c", "k"), 10) is not None
    assert exporter.get_finished_spans() == ()


def test_spans_and_counters_reach_a_real_otlp_receiver(tmp_path: Path) -> None:
    """With an OTLP endpoint configured, the default pipeline also sends cache spans and
    counters to a real gRPC OTLP receiver on 127.0.0.1 (oteltest's servicers)."""
    sink = GrpcSink.start()
    try:
        env = {k: "" for k in os.environ if k.startswith("OTEL_")}
        env.update(
            {
                "MCP_OTEL_DIR": str(tmp_path),
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
            }
        )
        out = _run(_DEFAULT_PIPELINE, env)
    finally:
        sink.stop()
    assert out.returncode == 0, out.stderr.decode()
    spans = sink.spans()
    gets = [s for s in spans if s.name == "cache.get"]
    assert [s.name for s in spans].count("cache.set") == 1 and len(gets) == 2
    tiers = sorted(
        a.value.string_value for s in gets for a in s.attributes if a.key == "mcp_otel.cache.tier"
    )
    assert tiers == ["memory", "none"]
    requests = {}
    for req in sink.metric_requests():
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == "mcp_otel.cache.requests":
                        for p in m.sum.data_points:
                            attrs = {a.key: a.value.string_value for a in p.attributes}
                            key = (attrs["mcp_otel.cache.result"], attrs["mcp_otel.cache.tier"])
                            requests[key] = p.as_int
    assert requests == {("hit", "memory"): 1, ("hit", "disk"): 0, ("miss", "none"): 1}
