"""Code that runs in the child processes of test_processes.py (importable for spawn)."""

from __future__ import annotations

import asyncio
import random
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

from mcp_otel.cache import DiscoveryCache

KEYS = [("conn-a", "c0"), ("conn-a", "c1"), ("conn-b", "c0"), ("conn-b", "c1")]


def _metric_points(reader: InMemoryMetricReader, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    for p in m.data.data_points:
                        out["/".join(str(v) for _, v in sorted(p.attributes.items()))] = p.value
    return out


def _providers(traced: bool) -> tuple[Any, MeterProvider, InMemoryMetricReader, Any]:
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    if not traced:
        return NoOpTracerProvider(), mp, reader, None
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp, mp, reader, exporter


def hammer(
    cache_dir: str,
    index: int,
    traced: bool,
    threads: int,
    ops: int,
    now: Any,
    version: Any,
    floor: Any,
    locks: list[Any],
    barrier: Any,
    queue: Any,
) -> None:
    """Random set/get/invalidate with TTLs of 15-60 ms, checking every answer.

    Time is ``now``, a clock shared by every process (a ``multiprocessing.Value`` of epoch
    seconds) that each operation of any thread moves 1 ms before it starts: an entry lives
    for 15-60 operations of the whole run, however fast or loaded the machine is, so the
    run expires entries by the hundred on any machine, with no wait.

    Invariant: writes of one key are ordered by the test's own per-key lock and carry a
    globally increasing ``version``; once a write has returned, its version is published
    in ``floor``. A get that started after that must answer None or a version >= floor,
    and never an entry whose ``expires_at`` had passed when the get started.
    """
    tp, mp, reader, exporter = _providers(traced)
    cache = DiscoveryCache(
        Path(cache_dir), tracer_provider=tp, meter_provider=mp, clock=lambda: now.value
    )
    tally = {"hits": 0, "misses": 0, "sets": 0, "invalidations": 0, "gets": 0}
    violations: list[tuple[Any, ...]] = []
    tally_lock = threading.Lock()

    def next_version() -> int:
        with version.get_lock():
            version.value += 1
            return version.value

    async def run(seed: int) -> None:
        rng = random.Random(seed)
        mine = dict.fromkeys(tally, 0)
        for _ in range(ops):  # a count, not a time budget: the same run on any machine
            with now.get_lock():
                now.value += 0.001
            k = rng.randrange(len(KEYS))
            conn, comp = KEYS[k]
            r = rng.random()
            if r < 0.12:
                with locks[k]:
                    v = next_version()
                    ttl = timedelta(milliseconds=rng.randint(15, 60))
                    await cache.set(conn, comp, 0, {"version": v, "by": index}, None, ttl)
                    with floor.get_lock():
                        floor[k] = max(floor[k], v)
                mine["sets"] += 1
            elif r < 0.15:
                group = [j for j, (c, _) in enumerate(KEYS) if c == conn]
                for j in group:
                    locks[j].acquire()
                try:
                    v = next_version()
                    await cache.invalidate_connection(conn)
                    with floor.get_lock():
                        for j in group:
                            floor[j] = max(floor[j], v)
                finally:
                    for j in reversed(group):
                        locks[j].release()
                mine["invalidations"] += 1
            else:
                with floor.get_lock():
                    f = floor[k]
                t0 = now.value
                entry = await cache.get(conn, comp)
                mine["gets"] += 1
                if entry is None:
                    mine["misses"] += 1
                    continue
                mine["hits"] += 1
                seen = entry["data"]["version"]
                if seen < f:
                    violations.append(("superseded", k, seen, f))
                if datetime.fromisoformat(entry["expires_at"]).timestamp() <= t0:
                    violations.append(("expired", k, seen, entry["expires_at"], t0))
                if (entry["connection_id"], entry["component_id"]) != (conn, comp):
                    violations.append(("wrong-key", k, entry["connection_id"]))
        with tally_lock:
            for name, n in mine.items():
                tally[name] += n

    def thread_main(seed: int) -> None:
        try:
            asyncio.run(run(seed))
        except BaseException as exc:  # reported to the parent, never lost
            violations.append(("exception", repr(exc)))

    workers = [
        threading.Thread(target=thread_main, args=(index * 1000 + t,)) for t in range(threads)
    ]
    barrier.wait(60)
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    spans = exporter.get_finished_spans() if exporter is not None else ()
    queue.put(
        {
            "index": index,
            "violations": violations[:20],
            "n_violations": len(violations),
            "tally": tally,
            "requests": _metric_points(reader, "mcp_otel.cache.requests"),
            "events": _metric_points(reader, "mcp_otel.cache.coherency_events"),
            "span_names": sorted({s.name for s in spans}),
            "get_spans": sum(1 for s in spans if s.name == "cache.get"),
            "alive": sum(1 for w in workers if w.is_alive()),
        }
    )


def same_key_writer(
    cache_dir: str,
    index: int,
    threads: int,
    sets: int,
    start: Any,
    done: Any,
    queue: Any,
) -> None:
    """Many threads of this process set one key concurrently, then read it back."""
    tp, mp, _reader, _exporter = _providers(traced=False)
    cache = DiscoveryCache(Path(cache_dir), tracer_provider=tp, meter_provider=mp)
    errors: list[str] = []

    async def write(t: int) -> None:
        rng = random.Random(index * 100 + t)
        for i in range(sets):
            size = rng.randint(1, 40_000)
            data = {"writer": f"{index}-{t}", "seq": i, "len": size, "blob": "x" * size}
            await cache.set("shared-conn", "shared-comp", 0, data)

    def thread_main(t: int) -> None:
        try:
            asyncio.run(write(t))
        except BaseException as exc:
            errors.append(repr(exc))

    start.wait(60)
    workers = [threading.Thread(target=thread_main, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    done.wait(120)  # every process' sets have returned
    entry = asyncio.run(cache.get("shared-conn", "shared-comp"))
    data = None if entry is None else {k: v for k, v in entry["data"].items() if k != "blob"}
    blob_ok = entry is not None and len(entry["data"]["blob"]) == entry["data"]["len"]
    queue.put({"index": index, "errors": errors, "data": data, "blob_ok": blob_ok})
