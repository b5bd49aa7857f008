"""``DiscoveryCache``: the Osiris-compatible API over the parts of this package.

The class checks arguments, decides which tier answers and runs the blocking work in a
worker thread; the parts do the rest: keys and identity checks (``_identity``), the entry
files and their locked changes (``_store``), the generation file (``_coherency``), the
memory tier (``_memory``), spans and counters (``_observe``). The design and guarantees
are in the package docstring (:mod:`mcp_otel.cache`).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from opentelemetry import metrics as _metrics_api
from opentelemetry import trace
from opentelemetry.trace import Span

from mcp_otel import _fork, _setup, limits
from mcp_otel.cache import _observe
from mcp_otel.cache._coherency import _current
from mcp_otel.cache._identity import (
    _MISMATCH,
    _SAME,
    _check_identity,
    _connection_hash,
    _Key,
    _key_of,
    _Keys,
)
from mcp_otel.cache._memory import _MemoryTier, _Record
from mcp_otel.cache._observe import A_CONN, A_ID, A_KEY, A_REMOVED, A_SIZE, A_TIER, A_TTL
from mcp_otel.cache._store import (
    _KEPT_FRESH,
    _clock_reading,
    _Corrupt,
    _DiskStore,
    _new_entry,
    _parse,
)

_NEEDS_THREAD = object()

_CACHES: weakref.WeakSet[DiscoveryCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _observe._after_fork_in_child()
    for cache in list(_CACHES):
        cache._after_fork_in_child()


_fork.register(_fork.COMPONENTS, after_in_child=_after_fork_in_child)


class DiscoveryCache:
    """Drop-in for Osiris' ``DiscoveryCache``: coherent across processes, traced.

    Entries returned by :meth:`get` are shared with the memory tier (as in Osiris): treat
    them as read-only.

    ``clock`` (keyword only, not in Osiris) is the time source for everything the cache
    decides by time: ``created_at``/``expires_at`` of a ``set``, expiry on every hit and in
    :meth:`clear_expired`/:meth:`get_cache_stats`, and the once-a-second re-check of the
    generation file. It returns seconds since the epoch, like the default
    :func:`time.time`: entries are shared with other processes, whose clocks must agree.
    A test passes a settable clock so that expiry happens when the test moves it, not
    after a wait.
    """

    def __init__(
        self,
        cache_dir: Path | None = None,
        default_ttl_hours: int = 24,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: _metrics_api.MeterProvider | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not callable(clock):
            raise TypeError("clock must be a callable returning seconds since the epoch")
        _clock_reading(clock)  # a clock that gives no time fails here, not in get()
        if isinstance(default_ttl_hours, bool) or not isinstance(default_ttl_hours, int | float):
            raise TypeError("default_ttl_hours must be a number of hours")
        if not default_ttl_hours > 0:
            raise ValueError("default_ttl_hours must be positive")
        try:
            default_ttl = timedelta(hours=default_ttl_hours)
        except OverflowError:  # inf, or beyond timedelta's 999,999,999 days
            raise ValueError("default_ttl_hours is too large") from None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _setup.data_dir() / "cache"
        self.default_ttl = default_ttl
        self._clock = clock
        self._disk = _DiskStore(self.cache_dir, clock)
        self._gens = self._disk.generations  # read directly on the hot path
        self._observer = _observe._Observer(tracer_provider, meter_provider, self.cache_dir)
        self._memory = _MemoryTier(self._observer)
        self._records = self._memory.records  # read directly on the hot path
        self._keys = _Keys()
        self._forked = False
        _CACHES.add(self)

    def _after_fork_in_child(self) -> None:
        self._memory.after_fork_in_child()
        self._gens.after_fork_in_child()  # forces the next get through _maintain()
        self._observer.after_fork_in_child()
        self._forked = True

    def _maintain(self, span: Span | None) -> None:
        """Once a second, and first thing after a fork: the checks kept off the hot path."""
        if self._gens.replaced():
            self._memory.drop_all(span)
        if self._forked:
            self._forked = False
            self._observer.follow_provider_after_fork()

    # ------------------------------------------------------------------ get

    async def get(
        self,
        connection: str,
        component: str,
        samples: int = 0,
        idempotency_key: str | None = None,
    ) -> dict[str, Any] | None:
        """The whole entry, from memory (re-validated) or disk, or None; never raises on I/O."""
        key = self._keys.key(connection, component, samples, idempotency_key)
        rec = self._records.get(key.cache_key)
        if rec is not None:
            now = self._clock()
            if (
                now < rec.expires
                and rec.generation == self._gens.view[rec.slot]  # _coherency._current
                and now < self._gens.recheck_at
                and rec.identity == key.identity
            ):
                observer = self._observer
                counts = observer.counts
                with counts.lock:
                    counts.hit_memory += 1
                if observer.tracer is not None:
                    observer.memory_hit(rec, now)
                return rec.entry
        if self._observer.tracer is not None:
            return await self._get_traced(key)
        return await self._lookup_async(key, None)

    async def _get_traced(self, key: _Key) -> dict[str, Any] | None:
        with self._observer.operation("cache.get", record_errors=True) as op:
            if op.live is not None:
                op.live.set_attributes({A_KEY: key.cache_key, A_ID: key.discovery_id})
            return await self._lookup_async(key, op.live)

    async def _lookup_async(self, key: _Key, span: Span | None) -> dict[str, Any] | None:
        result = self._lookup(key, span, blocking=False)
        if result is _NEEDS_THREAD:
            result = await asyncio.to_thread(self._lookup, key, span, True)
        return result  # type: ignore[return-value]

    def _lookup(self, key: _Key, span: Span | None, blocking: bool, again: bool = True) -> Any:
        """Memory, then disk. Without ``blocking`` returns _NEEDS_THREAD instead of waiting.

        When the reap of an expired, corrupt or unreadable entry finds it replaced by a
        fresh one (another ``set`` landed meanwhile), the lookup runs ``again`` once and
        answers from that entry.
        """
        if self._clock() >= self._gens.recheck_at:
            self._maintain(span)
        answered = self._observer.answered
        rec = self._memory.records.get(key.cache_key)
        if rec is not None and rec.identity != key.identity:
            # Another request's record under the same 64-bit cache_key: never served; it
            # stays (it is valid for its own request) unless the disk entry replaces it.
            self._observer.note(span, "identity_mismatch", key.discovery_id,
                                **{A_TIER: "memory"})
            rec = None
        if rec is not None:
            if self._clock() >= rec.expires:
                if not blocking:
                    return _NEEDS_THREAD
                self._memory.forget(key.cache_key, rec, span, "expired")
                return self._reap_and_answer(key, span, blocking, again)
            if _current(rec, self._gens):
                return answered(span, rec, "memory")
            self._memory.forget(key.cache_key, rec, span, "stale_dropped")
        generation = self._gens.view[key.slot]  # read BEFORE the file: see _coherency
        try:
            raw = self._disk.read(key.discovery_id, blocking)
        except FileNotFoundError:
            return answered(span, None, "none")
        except OSError:  # unreadable (a symlink, a FIFO, ...): reaped as corrupt
            if not blocking:
                return _NEEDS_THREAD
            return self._reap_and_answer(key, span, blocking, again)
        if raw is None:
            return _NEEDS_THREAD  # too large to read on the event loop
        try:
            parsed = _parse(raw, key.discovery_id)
        except _Corrupt:
            if not blocking:
                return _NEEDS_THREAD
            return self._reap_and_answer(key, span, blocking, again)
        if self._clock() >= parsed.expires:
            if not blocking:
                return _NEEDS_THREAD
            return self._reap_and_answer(key, span, blocking, again)
        verdict = _check_identity(parsed.entry, key)
        if verdict is not _SAME:
            if verdict is _MISMATCH:
                # Not this request's entry (another name hashing alike, an edited file):
                # a miss, never another request's data. The file is left to its owner.
                self._observer.note(span, "identity_mismatch", key.discovery_id,
                                    **{A_TIER: "disk"})
            return answered(span, None, "none")  # or: same id, other idempotency key
        rec = _Record(
            parsed.entry,
            parsed.expires,
            generation,
            key.slot,
            len(raw),
            key.discovery_id,
            key.identity,  # type: ignore[arg-type]  # always set by _Keys
        )
        self._memory.remember(key.cache_key, rec, span)
        return answered(span, rec, "disk")

    def _reap_and_answer(self, key: _Key, span: Span | None, blocking: bool, again: bool) -> Any:
        """Reap the entry the lookup could not serve, then answer a miss, or look up
        ``again`` when the reap found a fresh entry in its place."""
        if self._reap(key, span) == _KEPT_FRESH and again:
            return self._lookup(key, span, blocking, again=False)
        return self._observer.answered(span, None, "none")

    def _reap(self, key: _Key, span: Span | None, unreachable: bool = False) -> int:
        """Remove the entry file if it is (still) expired, corrupt or, with
        ``unreachable``, unreadable by any request; count and show why. Returns what
        :meth:`_DiskStore.reap` does (the size removed, -1 or ``_KEPT_FRESH``)."""
        size, why = self._disk.reap(key, unreachable)
        if why:
            self._observer.note(span, why, key.discovery_id, **{A_TIER: "disk"})
            self._observer.note(span, "disk_evicted", key.discovery_id, reason=why)
        return size

    # ------------------------------------------------------------------ set

    async def set(
        self,
        connection: str,
        component: str,
        samples: int,
        data: dict[str, Any],
        idempotency_key: str | None = None,
        ttl: timedelta | None = None,
    ) -> str:
        """Store an entry durably in both tiers and return its discovery id.

        Raises ``OSError`` (after leaving the cache as it was) when the entry cannot be
        written; argument errors raise ``TypeError``/``ValueError``.
        """
        key = self._keys.key(connection, component, samples, idempotency_key)
        if ttl is None:
            ttl = self.default_ttl
        elif not isinstance(ttl, timedelta):
            raise TypeError("ttl must be a datetime.timedelta or None")
        elif ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        payload, stored, expires = _new_entry(
            key, connection, component, samples, idempotency_key, data, ttl, self._clock
        )
        # Memory holds exactly what disk holds (and not the caller's mutable ``data``).
        rec = _Record(
            stored,
            expires,
            0,
            key.slot,
            len(payload),
            key.discovery_id,
            key.identity,  # type: ignore[arg-type]  # always set by _Keys
        )
        with self._observer.operation("cache.set", record_errors=True) as op:
            if op.live is not None:
                op.live.set_attributes(
                    {
                        A_KEY: key.cache_key,
                        A_ID: key.discovery_id,
                        A_TTL: ttl.total_seconds(),
                        A_SIZE: len(payload),
                    }
                )
            await asyncio.to_thread(self._write, key, payload, rec, op.live)
            return key.discovery_id

    def _write(self, key: _Key, payload: bytes, rec: _Record, span: Span | None) -> None:
        self._maintain(span)  # writers always check (a stat): they must bump the live file

        def written(generation: int) -> None:
            rec.generation = generation
            self._memory.remember(key.cache_key, rec, span)

        self._disk.write(key, payload, written)

    # ------------------------------------------------------------------ maintenance

    async def _maintenance(
        self,
        name: str,
        work: Callable[..., tuple[int, int]],
        *args: Any,
        conn: str | None = None,
    ) -> int:
        """``work(*args, live_span)`` in a worker thread under span ``name`` (with the
        hashed ``conn`` when given, and the entries and bytes removed); returns entries."""
        with self._observer.operation(name) as op:
            live = op.live
            if live is not None and conn is not None:
                live.set_attribute(A_CONN, _connection_hash(conn))
            removed, size = await asyncio.to_thread(work, *args, live)
            if live is not None:
                live.set_attribute(A_REMOVED, removed)
                live.set_attribute(A_SIZE, size)
            return removed

    async def invalidate_connection(self, connection: str) -> int:
        """Remove every entry of ``connection`` from both tiers; returns how many entries."""
        if not isinstance(connection, str):
            raise TypeError("connection must be str")
        connection = str.__str__(connection)
        return await self._maintenance(
            "cache.invalidate", self._invalidate, connection, conn=connection
        )

    def _invalidate(self, connection: str, span: Span | None) -> tuple[int, int]:
        """Exactly ``connection``'s entries: equal names, never a prefix or a substring."""
        self._maintain(span)  # writers always check (a stat): they must bump the live file
        ids: set[str] = set()
        size = 0

        def removed(disc: str, length: int) -> None:
            nonlocal size
            ids.add(disc)
            size += length
            self._observer.note(span, "disk_evicted", disc, reason="invalidated")

        self._disk.remove_connection(connection, removed)
        for cache_key, rec in list(self._memory.records.items()):
            if rec.identity[0] != connection:
                continue
            if self._memory.forget(cache_key, rec, span, "invalidated"):
                ids.add(rec.discovery_id)
        return len(ids), size

    async def clear_expired(self) -> int:
        """Remove expired, corrupt and unreachable entries (whose stored identity does not
        hash to their file: older key formats, edited files) and abandoned temporary
        files; returns entries."""
        return await self._maintenance("cache.clear_expired", self._clear_expired)

    def _clear_expired(self, span: Span | None) -> tuple[int, int]:
        self._maintain(span)  # writers always check (a stat): they must bump the live file
        now = self._clock()
        removed = size = 0
        for cache_key, rec in list(self._memory.records.items()):
            if now >= rec.expires:
                self._memory.forget(cache_key, rec, span, "expired")
        for disc in self._disk.doubtful():
            gone = self._reap(_key_of(disc), span, unreachable=True)
            if gone >= 0:
                removed += 1
                size += gone
        self._disk.remove_abandoned_temporaries()
        return removed, size

    async def clear_all(self) -> int:
        """Remove every entry from both tiers; returns the number of files removed."""
        return await self._maintenance("cache.clear_all", self._clear_all)

    def _clear_all(self, span: Span | None) -> tuple[int, int]:
        self._maintain(span)  # writers always check (a stat): they must bump the live file
        removed = size = 0

        def gone(disc: str, length: int) -> None:
            nonlocal removed, size
            removed += 1
            size += length
            self._observer.note(span, "disk_evicted", disc, reason="clear_all")

        self._disk.remove_all(gone)
        for cache_key in list(self._memory.records):
            self._memory.forget(cache_key, None, span, "clear_all")
        self._disk.remove_abandoned_temporaries()
        return removed, size

    # ------------------------------------------------------------------ sync helpers

    def get_cache_stats(self) -> dict[str, Any]:
        """Osiris' statistics: memory entries, expired ones, disk files and bytes."""
        now = self._clock()
        records = list(self._memory.records.values())
        files, size = self._disk.usage()
        return {
            "memory_entries": len(records),
            "expired_entries": sum(1 for r in records if now >= r.expires),
            "disk_files": files,
            "disk_size_bytes": size,
            "cache_directory": str(self.cache_dir),
        }

    def get_discovery_uri(self, discovery_id: str, artifact_type: str) -> str:
        """The Osiris resource URI of one discovery artifact (never raises: a value whose
        ``str()`` raises gives its safe form, see :func:`mcp_otel.limits.safe_str`)."""
        return (f"osiris://mcp/discovery/{limits.safe_str(discovery_id)}/"
                f"{limits.safe_str(artifact_type)}.json")
