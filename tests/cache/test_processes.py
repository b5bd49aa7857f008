"""Coherency across real processes: hammering, concurrent writers, a writer killed."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from opentelemetry.trace import NoOpTracerProvider

from mcp_otel.cache import DiscoveryCache
from tests.cache import _workers

_CTX = multiprocessing.get_context("spawn")  # no fork of a threaded pytest process


def _collect(procs: list, queue, n: int) -> list[dict]:
    results = []
    try:
        for _ in range(n):
            results.append(queue.get(timeout=120))
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join(10)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return results


def _assert_only_valid_entries(cache_dir: Path) -> None:
    names = os.listdir(cache_dir)
    assert [n for n in names if n.startswith(".tmp")] == []
    for name in names:
        if name.startswith("disc_"):
            entry = orjson.loads((cache_dir / name).read_bytes())
            assert entry["discovery_id"] + ".json" == name


def test_two_processes_hammering_never_see_expired_or_superseded(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    DiscoveryCache(cache_dir, tracer_provider=NoOpTracerProvider())
    now = _CTX.Value("d", time.time())  # the cache's clock in every process (_workers.hammer)
    version = _CTX.Value("q", 0)
    floor = _CTX.Array("q", len(_workers.KEYS))
    locks = [_CTX.Lock() for _ in _workers.KEYS]
    barrier = _CTX.Barrier(2)
    queue = _CTX.Queue()
    procs = [
        _CTX.Process(
            target=_workers.hammer,
            args=(str(cache_dir), i, i == 1, 3, 4000, now, version, floor, locks, barrier,
                  queue),
        )
        for i in range(2)
    ]
    for p in procs:
        p.start()
    results = _collect(procs, queue, 2)
    for r in results:
        assert r["n_violations"] == 0, r["violations"]
        assert r["alive"] == 0
        t = r["tally"]
        assert t["sets"] > 20 and t["invalidations"] > 0
        # Exact accounting: one request per get, split by tier, nothing lost.
        req = r["requests"]
        assert req["hit/memory"] + req["hit/disk"] == t["hits"]
        assert req["miss/none"] == t["misses"]
        assert t["hits"] + t["misses"] == t["gets"]
    traced = next(r for r in results if r["index"] == 1)
    assert traced["get_spans"] == traced["tally"]["gets"]
    assert set(traced["span_names"]) == {"cache.get", "cache.set", "cache.invalidate"}
    # The run really exercised the coherency paths it claims to check.
    total = {
        name: sum(r["events"][name] for r in results)
        for name in ("expired", "stale_dropped", "disk_evicted", "memory_evicted")
    }
    assert all(v > 0 for v in total.values()), total
    assert total["expired"] >= 20, total  # the shared clock expires entries on any machine
    assert sum(r["requests"]["hit/memory"] for r in results) > 50
    assert sum(r["requests"]["hit/disk"] for r in results) > 10
    _assert_only_valid_entries(cache_dir)


def test_concurrent_sets_of_one_key_leave_exactly_one_complete_entry(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    n_procs, threads, sets = 3, 4, 12
    start, done = _CTX.Barrier(n_procs), _CTX.Barrier(n_procs)
    queue = _CTX.Queue()
    procs = [
        _CTX.Process(
            target=_workers.same_key_writer,
            args=(str(cache_dir), i, threads, sets, start, done, queue),
        )
        for i in range(n_procs)
    ]
    for p in procs:
        p.start()
    results = _collect(procs, queue, n_procs)
    assert all(r["errors"] == [] for r in results), results
    files = sorted(cache_dir.glob("disc_*.json"))
    assert len(files) == 1
    entry = orjson.loads(files[0].read_bytes())
    data = entry["data"]
    assert len(data["blob"]) == data["len"]
    writer, _, thread = data["writer"].partition("-")
    assert 0 <= int(writer) < n_procs and 0 <= int(thread) < threads and 0 <= data["seq"] < sets
    # Every process, once all sets have returned, answers the one surviving entry.
    expected = {k: v for k, v in data.items() if k != "blob"}
    assert [r["data"] for r in results] == [expected] * n_procs
    assert all(r["blob_ok"] for r in results)
    _assert_only_valid_entries(cache_dir)


_KILLED_WRITER = r"""
import asyncio, os, sys
from pathlib import Path
from opentelemetry.trace import NoOpTracerProvider
from mcp_otel.cache import DiscoveryCache

stage = sys.argv[2]
real = getattr(os, stage)

def stop_here(*args):
    if stage == "write":
        real(args[0], bytes(args[1])[: len(args[1]) // 2])  # a partial write
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()  # blocks until killed

setattr(os, stage, stop_here)
cache = DiscoveryCache(Path(sys.argv[1]), tracer_provider=NoOpTracerProvider())
asyncio.run(cache.set("conn", "comp", 0, {"v": "new", "pad": "y" * 50000}))
"""


@pytest.mark.parametrize("stage", ["write", "fsync", "replace"])
async def test_writer_killed_mid_write_leaves_a_valid_entry(stage: str, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache = DiscoveryCache(cache_dir, tracer_provider=NoOpTracerProvider())
    disc = await cache.set("conn", "comp", 0, {"v": "old"})
    before = (cache_dir / f"{disc}.json").read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(cache_dir), stage],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "writer never reached the kill point"
        assert proc.stdout.readline() == b"ready\n"
        temporaries = [n for n in os.listdir(cache_dir) if n.startswith(".tmp.")]
        assert len(temporaries) == 1 and disc in temporaries[0]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    # The old entry is intact on disk and served by old and new processes alike.
    assert (cache_dir / f"{disc}.json").read_bytes() == before
    assert (await cache.get("conn", "comp"))["data"] == {"v": "old"}
    fresh = DiscoveryCache(cache_dir, tracer_provider=NoOpTracerProvider())
    assert (await fresh.get("conn", "comp"))["data"] == {"v": "old"}
    # The dead writer's lock was released by the kernel: a new write goes through.
    await fresh.set("conn", "comp", 0, {"v": "after"})
    assert (await cache.get("conn", "comp"))["data"] == {"v": "after"}
    # Its abandoned temporary file is cleaned up.
    await cache.clear_expired()
    assert [n for n in os.listdir(cache_dir) if n.startswith(".tmp.")] == []
    assert cache.get_cache_stats()["disk_files"] == 1


async def test_expiry_and_invalidation_are_seen_by_another_process(tmp_path: Path) -> None:
    """A real second process reads an entry the first wrote; with its clock 31 s ahead it
    finds the entry expired (30 s TTL) and evicts it; a new entry the first process
    invalidates is a miss there too."""
    cache_dir = tmp_path / "cache"
    cache = DiscoveryCache(cache_dir, tracer_provider=NoOpTracerProvider())
    await cache.set("conn", "comp", 0, {"v": 1}, None, timedelta(seconds=30))
    script = (
        "import asyncio, sys, time; from pathlib import Path; "
        "from mcp_otel.cache import DiscoveryCache; "
        "ahead = float(sys.argv[2]); "
        "c = DiscoveryCache(Path(sys.argv[1]), clock=lambda: time.time() + ahead); "
        "entry = asyncio.run(c.get('conn', 'comp')); "
        "print('miss' if entry is None else entry['data']['v'])"
    )

    def other_process_reads(ahead_s: float) -> bytes:
        out = subprocess.run(
            [sys.executable, "-c", script, str(cache_dir), str(ahead_s)],
            capture_output=True, timeout=60, env={**os.environ, "OTEL_SDK_DISABLED": "true"},
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert other_process_reads(0) == b"1"
    assert other_process_reads(31) == b"miss"  # expired for a clock past the TTL...
    assert other_process_reads(0) == b"miss"  # ...and evicted from disk, for everyone
    await cache.set("conn", "comp", 0, {"v": 2}, None, timedelta(seconds=30))
    assert other_process_reads(0) == b"2"
    await cache.invalidate_connection("conn")
    assert other_process_reads(0) == b"miss"
