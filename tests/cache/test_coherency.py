"""Coherency inside one machine: instances with separate memory tiers on one directory
behave like separate processes (the multi-process tests are in test_processes.py)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider

from mcp_otel import _json
from mcp_otel.cache import DiscoveryCache
from mcp_otel.limits import MAX_CACHE_ID_CHARS
from tests.cache._clock import Clock


def _expires(entry: dict) -> float:
    return datetime.fromisoformat(entry["expires_at"]).timestamp()


def _entry_file(cache_dir: Path, disc: str) -> Path:
    return cache_dir / f"{disc}.json"


async def test_report_scenario_memory_deleted_disk_stale(
    make_cache, cache_dir, telemetry, clock
) -> None:
    """RC-004: a process dropped an expired entry from memory and died before the disk;
    the expired file left behind must not be served, and must be removed."""
    writer = make_cache(clock=clock)
    disc = await writer.set("conn", "comp", 0, {"v": "old"}, None, timedelta(seconds=30))
    expires = _expires(orjson.loads(_entry_file(cache_dir, disc).read_bytes()))
    assert expires == pytest.approx(clock.now + 30, abs=1e-6)  # the TTL runs on this clock
    clock.move_to(expires - 0.001)  # a millisecond before expiry: still served, both tiers
    assert (await make_cache(clock=clock).get("conn", "comp"))["data"] == {"v": "old"}
    assert (await writer.get("conn", "comp"))["data"] == {"v": "old"}
    clock.move_to(expires)
    # The crashed process' leftovers: an expired but well-formed file; a fresh process.
    reader = make_cache(clock=clock)
    assert await reader.get("conn", "comp") is None
    assert not _entry_file(cache_dir, disc).exists()
    span = telemetry.finished("cache.get")[-1]
    assert [e.name for e in span.events] == ["cache.expired", "cache.disk_evicted"]
    assert span.attributes["cache.hit"] is False
    # And the memory tier of the original writer does not serve it either.
    assert await writer.get("conn", "comp") is None
    assert telemetry.events()["expired"] == 2  # once on disk, once in memory


async def test_expiry_removes_both_tiers(make_cache, cache_dir, telemetry, clock) -> None:
    cache = make_cache(clock=clock)
    disc = await cache.set("conn", "comp", 0, {"v": 1}, None, timedelta(seconds=30))
    assert (await cache.get("conn", "comp"))["data"] == {"v": 1}  # the clock has not moved
    clock.move_to(_expires(orjson.loads(_entry_file(cache_dir, disc).read_bytes())))
    assert await cache.get("conn", "comp") is None
    assert cache.get_cache_stats()["memory_entries"] == 0
    assert not _entry_file(cache_dir, disc).exists()
    events = [e.name for e in telemetry.finished("cache.get")[-1].events]
    assert events == [
        "cache.expired", "cache.memory_evicted", "cache.expired", "cache.disk_evicted",
    ]  # fmt: skip


async def test_superseded_memory_entry_is_never_served(make_cache, telemetry) -> None:
    a, b = make_cache(), make_cache()
    await a.set("conn", "comp", 0, {"v": 1})
    assert (await a.get("conn", "comp"))["data"] == {"v": 1}  # a holds v1 in memory
    await b.set("conn", "comp", 0, {"v": 2})
    assert (await a.get("conn", "comp"))["data"] == {"v": 2}
    span = telemetry.finished("cache.get")[-1]
    assert span.attributes["mcp_otel.cache.tier"] == "disk"
    assert [e.name for e in span.events] == ["cache.stale_dropped", "cache.memory_evicted"]
    # Another idempotency key replaces the one file: the old key's memory copy goes stale.
    await b.set("conn", "comp", 0, {"v": 3}, "idem")
    assert await a.get("conn", "comp") is None
    assert (await a.get("conn", "comp", 0, "idem"))["data"] == {"v": 3}
    assert telemetry.events()["stale_dropped"] == 2


async def test_invalidation_reaches_other_memory_tiers(make_cache) -> None:
    a, b = make_cache(traced=False), make_cache(traced=False)
    await a.set("conn", "comp", 0, {"v": 1})
    assert await b.get("conn", "comp") is not None
    assert await a.invalidate_connection("conn") == 1
    assert await b.get("conn", "comp") is None
    await b.set("conn", "comp", 0, {"v": 2})
    assert await a.clear_all() == 1
    assert await b.get("conn", "comp") is None


async def test_memory_hit_costs_no_file_access(make_cache, cache_dir) -> None:
    """The hit path revalidates through the mmap'd generation counter only: it neither
    opens nor reads the entry (so a file changed behind the cache's back without the
    protocol is not seen), while a real write through another cache is seen at once."""
    a, b = make_cache(traced=False), make_cache(traced=False)
    disc = await a.set("conn", "comp", 0, {"v": 1})
    path = _entry_file(cache_dir, disc)
    forged = orjson.loads(path.read_bytes())
    forged["data"] = {"v": "forged"}
    path.write_bytes(orjson.dumps(forged))  # no lock, no generation bump
    opened: list[str] = []
    watching = True

    def hook(event: str, args: tuple) -> None:
        if watching and event == "open":
            opened.append(str(args[0]))

    sys.addaudithook(hook)
    for _ in range(200):
        assert (await a.get("conn", "comp"))["data"] == {"v": 1}
    watching = False
    assert opened == []
    await b.set("conn", "comp", 0, {"v": 2})
    assert (await a.get("conn", "comp"))["data"] == {"v": 2}


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"\x00\xffnot json", id="garbage"),
        pytest.param(b'{"discovery_id": "disc_', id="truncated"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(b"", id="empty"),
        pytest.param("other-id", id="entry-of-another-file"),
        pytest.param("no-expiry", id="bad-expires_at"),
        pytest.param("symlink", id="symlink"),
    ],
)
async def test_corrupt_entry_is_removed_counted_and_traced(
    content, make_cache, cache_dir, telemetry, tmp_path
) -> None:
    cache = make_cache()
    disc = await cache.set("conn", "comp", 0, {"v": 1})
    path = _entry_file(cache_dir, disc)
    good = orjson.loads(path.read_bytes())
    if content == "other-id":
        content = orjson.dumps({**good, "discovery_id": "disc_0000000000000000"})
    elif content == "no-expiry":
        content = orjson.dumps({**good, "expires_at": "tomorrow"})
    if content == "symlink":
        outside = tmp_path / "outside.json"
        outside.write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(outside)
    else:
        path.write_bytes(content)
    reader = make_cache()  # a process without the entry in memory
    assert await reader.get("conn", "comp") is None
    assert not os.path.lexists(path)
    span = telemetry.finished("cache.get")[-1]
    assert [e.name for e in span.events] == ["cache.corrupt_removed", "cache.disk_evicted"]
    assert span.events[0].attributes["mcp_otel.cache.discovery_id"] == disc
    assert telemetry.events()["corrupt_removed"] == 1
    if content == "symlink":
        assert (tmp_path / "outside.json").exists()  # the link went, not its target
    # The cache keeps working for that key.
    await reader.set("conn", "comp", 0, {"v": 2})
    assert (await cache.get("conn", "comp"))["data"] == {"v": 2}


async def test_unremovable_entry_is_a_miss_not_an_error(make_cache, cache_dir) -> None:
    cache = make_cache()
    disc = await cache.set("conn", "comp", 0, {"v": 1})
    path = _entry_file(cache_dir, disc)
    path.unlink()
    path.mkdir()  # a directory squatting the entry's name
    reader = make_cache()
    assert await reader.get("conn", "comp") is None
    assert await reader.clear_expired() == 0
    assert path.is_dir()


async def test_clear_expired_removes_expired_corrupt_and_keeps_fresh(
    make_cache, cache_dir, telemetry, clock
) -> None:
    cache = make_cache(clock=clock)
    await cache.set("conn", "fresh", 0, {"v": 1})
    short = await cache.set("conn", "short", 0, {"v": 2}, None, timedelta(seconds=20))
    bad = await cache.set("conn", "bad", 0, {"v": 3})
    _entry_file(cache_dir, bad).write_bytes(b"{")
    assert await cache.clear_expired() == 1  # only the corrupt one: nothing has expired
    assert cache.get_cache_stats()["expired_entries"] == 0
    clock.move_to(_expires(orjson.loads(_entry_file(cache_dir, short).read_bytes())))
    assert cache.get_cache_stats()["expired_entries"] == 1  # the memory copy of "short"
    bad = await cache.set("conn", "bad", 0, {"v": 3})
    _entry_file(cache_dir, bad).write_bytes(b"{")
    assert await cache.clear_expired() == 2
    assert sorted(p.name for p in cache_dir.glob("disc_*")) == [
        f"{(await cache.get('conn', 'fresh'))['discovery_id']}.json"
    ]
    span = telemetry.finished("cache.clear_expired")[-1]
    assert span.attributes["mcp_otel.cache.removed"] == 2
    names = sorted(e.name for e in span.events)
    assert names.count("cache.expired") == 2  # memory copy and file of "short"
    assert names.count("cache.corrupt_removed") == 1


@pytest.mark.parametrize(
    "connection",
    [
        "../../../../etc/passwd",
        "/absolute/path",
        "a\x00b",
        "x" * MAX_CACHE_ID_CHARS,
        "..",
        "名前/../\u202e",
    ],
    ids=["dotdot", "absolute", "nul", "very-long", "dots", "unicode"],
)
async def test_hostile_names_stay_inside_the_cache_directory(
    connection, make_cache, cache_dir, tmp_path
) -> None:
    cache = make_cache()
    disc = await cache.set(connection, connection, 0, {"v": 1}, connection)
    assert disc.startswith("disc_") and len(disc) == 21
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["root"]
    assert sorted(p.name for p in cache_dir.parent.iterdir()) == ["cache"]
    assert sorted(os.listdir(cache_dir)) == [".mcp_otel", f"{disc}.json"]
    entry = await make_cache().get(connection, connection, 0, connection)
    # written whole: its identity is checked by re-hashing it
    assert entry is not None and entry["connection_id"] == connection
    assert await cache.invalidate_connection(connection) == 1
    assert list(cache_dir.glob("disc_*")) == []


async def test_a_name_over_the_cap_is_refused_and_nothing_is_written(
    make_cache, cache_dir
) -> None:
    cache = make_cache()
    long = "x" * (MAX_CACHE_ID_CHARS + 1)
    for call in (cache.set(long, "c", 0, {"v": 1}), cache.set("c", "c", 0, {"v": 1}, long),
                 cache.get("c", long)):
        with pytest.raises(ValueError, match="at most 1024 characters"):
            await call
    assert list(cache_dir.glob("disc_*")) == []


async def test_lone_surrogate_is_hashed_and_stored_with_a_replacement(make_cache) -> None:
    cache = make_cache()
    await cache.set("bad\ud800", "comp", 0, {"v": 1})
    entry = await make_cache().get("bad\ud800", "comp")
    # The stored name takes mcp_otel._json's documented safe form; lookups still match.
    assert entry is not None and entry["connection_id"] == _json.to_jsonable("bad\ud800")
    assert "\ud800" not in entry["connection_id"]
    assert await cache.invalidate_connection("bad\ud800") == 1


def _lock_path(cache_dir: Path, disc: str) -> Path:
    slot = int(disc[5:13], 16) % 4096
    return cache_dir / ".mcp_otel" / f"lock.{slot % 64:02d}"


async def test_set_waits_for_the_lock_without_blocking_the_event_loop(
    make_cache, cache_dir, monkeypatch
) -> None:
    cache = make_cache(traced=False)
    disc = await cache.set("conn", "comp", 0, {"v": 1})
    lock_file = _lock_path(cache_dir, disc)
    asked = threading.Event()  # the set's own flock on this key's stripe was called
    real_flock = fcntl.flock

    def watched_flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX and os.path.samestat(os.fstat(fd), os.stat(lock_file)):
            asked.set()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", watched_flock)
    fd = os.open(lock_file, os.O_RDWR)
    try:
        real_flock(fd, fcntl.LOCK_EX)  # another process is in this key's critical section
        task = asyncio.create_task(cache.set("conn", "comp", 0, {"v": 2}))
        # The loop keeps running while the set waits for the lock on a worker thread.
        assert await asyncio.to_thread(asked.wait, 30)
        # Reads never wait for the lock either, and the set has not got past it.
        assert (await cache.get("conn", "comp"))["data"] == {"v": 1}
        assert not task.done()
        assert (await make_cache().get("conn", "comp"))["data"] == {"v": 1}  # disk too
    finally:
        os.close(fd)
    assert await asyncio.wait_for(task, 30) == disc
    assert (await make_cache().get("conn", "comp"))["data"] == {"v": 2}


async def test_many_threads_one_instance_exact_counts(make_cache, telemetry) -> None:
    """Threads with their own event loops share one cache: counts are exact."""
    import threading

    cache = make_cache(traced=False)
    await cache.set("conn", "comp", 0, {"v": 1})
    threads, per = 8, 500
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run() -> None:
        async def loop() -> None:
            start.wait()
            for _ in range(per):
                assert (await cache.get("conn", "comp"))["data"] == {"v": 1}
                assert await cache.get("conn", "missing") is None

        try:
            asyncio.run(loop())
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert errors == [] and not any(w.is_alive() for w in workers)
    requests = telemetry.requests()
    assert requests[("hit", "memory")] == threads * per
    assert requests[("miss", "none")] == threads * per
    assert requests[("hit", "disk")] == 0


class _SteppingClock(Clock):
    """A clock that moves ``step`` seconds at every reading: time passes inside the
    cache's own code, between its checks, at a point the test chooses by the TTL."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def test_entry_expiring_during_a_get_is_never_returned(make_cache) -> None:
    """With the clock moving 1 ms per reading, TTLs of 1..40 ms make the entry expire at
    every reading of ``set`` and ``get`` in turn, in the memory tier (the writer) and on
    disk (a reader with no memory copy). An entry is served only if it had not expired
    when the ``get`` began."""
    clock = _SteppingClock(step=0.001)
    writer = make_cache(traced=False, clock=clock)
    outcomes: dict[str, set[bool]] = {"memory": set(), "disk": set()}
    for ttl_ms in range(1, 41):
        comp = f"comp{ttl_ms}"
        await writer.set("conn", comp, 0, {"ttl_ms": ttl_ms}, None,
                         timedelta(milliseconds=ttl_ms))
        for tier, cache in (("memory", writer), ("disk", make_cache(traced=False, clock=clock))):
            began = clock.now
            entry = await cache.get("conn", comp)
            outcomes[tier].add(entry is not None)
            if entry is not None:
                assert entry["data"] == {"ttl_ms": ttl_ms}
                assert _expires(entry) > began, (tier, ttl_ms)
    # Both answers happened in both tiers: the expiry point really moved across the checks.
    assert outcomes == {"memory": {False, True}, "disk": {False, True}}
    clock.advance(0.041)  # past every TTL
    for ttl_ms in range(1, 41):
        assert await writer.get("conn", f"comp{ttl_ms}") is None
    assert writer.get_cache_stats()["disk_files"] == 0  # each expired file was removed


def test_constructor_needs_no_event_loop_and_prepares_the_directory(cache_dir) -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # the test really runs outside any event loop
    cache = DiscoveryCache(cache_dir, tracer_provider=NoOpTracerProvider(),
                           meter_provider=NoOpMeterProvider())
    state = cache_dir / ".mcp_otel"
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    generations = state / "generations"
    assert stat.S_IMODE(generations.stat().st_mode) == 0o600
    assert generations.stat().st_size == 4096 * 8  # the shared counters, all slots
    assert cache.get_cache_stats() == {
        "memory_entries": 0, "expired_entries": 0, "disk_files": 0, "disk_size_bytes": 0,
        "cache_directory": str(cache_dir),
    }  # fmt: skip


@pytest.mark.parametrize("clock", [None, "not a clock", 3.0])
def test_a_clock_that_is_not_callable_is_a_clear_error(cache_dir, clock) -> None:
    with pytest.raises(TypeError, match="clock must be a callable"):
        DiscoveryCache(cache_dir, clock=clock)


_NO_TIMES = [float("nan"), float("inf"), 1e300, "noon", True, None]


@pytest.mark.parametrize("reading", _NO_TIMES)
def test_a_clock_that_gives_no_time_is_refused_at_construction(cache_dir, reading) -> None:
    with pytest.raises(ValueError, match=r"clock returned '.*', not seconds since the epoch"):
        DiscoveryCache(cache_dir, clock=lambda: reading)


@pytest.mark.parametrize("reading", _NO_TIMES)
async def test_a_clock_that_stops_giving_time_fails_set_clearly(
    make_cache, cache_dir, clock, reading
) -> None:
    cache = make_cache(traced=False, clock=lambda: clock.now)
    await cache.set("conn", "good", 0, {"v": 1})
    clock.now = reading
    with pytest.raises(ValueError, match=r"clock returned '.*', not seconds since the epoch"):
        await cache.set("conn", "comp", 0, {"v": 1})
    assert [p.name for p in cache_dir.glob("disc_*")] == [  # nothing half-written
        f"{(await make_cache(traced=False).get('conn', 'good'))['discovery_id']}.json"
    ]


async def test_cache_directory_removed_under_running_caches(make_cache, cache_dir) -> None:
    import shutil

    a = make_cache()
    await a.set("conn", "comp", 0, {"v": 1})
    shutil.rmtree(cache_dir)
    assert await a.set("conn", "comp", 0, {"v": 2}) is not None  # recreated, no error
    assert (await a.get("conn", "comp"))["data"] == {"v": 2}
    b = make_cache()
    assert (await b.get("conn", "comp"))["data"] == {"v": 2}
    await b.set("conn", "comp", 0, {"v": 3})
    assert (await a.get("conn", "comp"))["data"] == {"v": 3}  # both on the new generations


def test_a_fifo_under_an_entry_name_is_corrupt_not_a_hang(make_cache, cache_dir) -> None:
    """A FIFO planted where an entry belongs must not block the event loop (or a lock)."""
    cache = make_cache()
    disc = asyncio.run(cache.set("conn", "comp", 0, {"v": 1}))
    path = _entry_file(cache_dir, disc)
    path.unlink()
    os.mkfifo(path, 0o600)
    result: list[object] = []

    def run() -> None:
        result.append(asyncio.run(make_cache().get("conn", "comp", 0)))

    import threading

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "get() blocked on a FIFO"
    assert result == [None]
    assert not path.exists()  # removed as a corrupt entry


def test_dropped_caches_leave_no_descriptor_open(make_cache) -> None:
    import gc

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    make_cache()
    gc.collect()
    before = open_fds()
    for _ in range(20):
        make_cache()
    gc.collect()
    assert open_fds() <= before


def test_every_directory_it_creates_is_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        DiscoveryCache(tmp_path / "data" / "cache", meter_provider=None)
    finally:
        os.umask(old)
    data = tmp_path / "data"
    for d in (data, data / "cache", data / "cache" / ".mcp_otel"):
        assert oct(d.stat().st_mode & 0o777) == oct(0o700), d
