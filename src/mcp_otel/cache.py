"""A coherent two-tier (memory + disk) discovery cache whose every operation is a span.

``DiscoveryCache`` is a drop-in for the Osiris MCP server's cache (same constructor, key and
id derivation, entry fields, file layout and methods), rebuilt so that several server
processes can share one cache directory without ever serving stale data (RC-004).

Design
======

Disk is the truth; memory is a cache of disk.

* **Files.** One entry per ``<cache_dir>/<discovery_id>.json`` (``discovery_id`` is
  ``"disc_"`` + 16 hex of a SHA-256 over the length-prefixed connection, component and
  samples, see :func:`_digests`), so no connection or component name ever reaches a path.
  Writes are atomic: a ``0600`` temporary file in the same directory, ``fsync``,
  ``os.replace``, then ``fsync`` of the directory. A reader therefore sees the old
  entry or the new one, never a partial one, even if the writer is killed mid-write.
* **Locks.** Every change of a disk entry (write, invalidation, removal of an expired or
  corrupt entry, clean-up of an abandoned temporary file) happens under an exclusive
  ``flock`` on ``.mcp_otel/lock.NN``, the lock stripe of that ``discovery_id`` (64
  stripes, so one key always maps to one lock). ``flock`` is released by the kernel when a
  holder dies, so a killed writer never wedges the others. Readers take no lock: atomic
  replacement is enough for them.
* **Generations.** ``.mcp_otel/generations`` is a small shared file of 4096 64-bit counters
  (32 KiB). The slot of a ``discovery_id`` is bumped, under its stripe lock, *after* every
  change of that entry's file. Each process maps the file read-only (``mmap``); a memory
  record remembers the slot value read *before* its file was read (or the value its own
  write produced). A memory hit is served only if the slot still holds that value: one
  8-byte read from shared memory, about 40 ns, far cheaper than one ``os.stat`` (and immune
  to ext4 reusing inode numbers at once or mtime being coarse). Two ids sharing a slot only
  cost an extra disk read, never a stale answer. Because the bump follows the file change
  and the reader reads the slot before the file, a reader that saw the new slot value also
  sees the new file; one that saw the old value re-validates on its next hit.
* **Expiry.** Every hit, from either tier, checks ``expires_at`` against the clock. An
  expired entry is dropped from memory and its file removed under the lock (after checking
  again that the file still holds an expired entry), so expiry removes it from both tiers.
* **Identity.** Osiris joined the key fields with ``|`` (``("a|b", "c")`` and
  ``("a", "b|c")`` were one entry); here each field is length-prefixed before hashing, and
  ``get`` serves an entry (memory or disk) only when its stored connection, component,
  samples and idempotency key are the request's: anything else is a miss and an
  ``identity_mismatch`` event, never another request's data.
* **Corruption.** A file that cannot be parsed, is not an entry, names another
  ``discovery_id``, is a symlink or cannot be read is removed under the lock (after reading
  it again there), counted and shown on the span; the caller just gets a miss.
* **Guarantees.** (1) An expired entry is never returned, from either tier. (2) Once
  ``set`` or ``invalidate_connection`` has returned in one process, no process returns the
  older entry afterwards. (3) Concurrent ``set``\\ s of one key from several processes leave
  exactly one complete entry. (4) A corrupt or unreadable entry is never raised to the
  caller. Limits: deleting ``.mcp_otel/generations`` while processes run is noticed within
  one second (the processes then re-map it and drop their memory tier), and files changed
  by hand without the lock are not noticed by memory tiers until their next generation
  change or expiry.

Event loop
==========

A memory hit is answered inline (a few microseconds). A disk read of a small entry (up to
256 KiB) is also done inline: it is one ``open``/``read`` of a page-cached file and never
waits on a lock. Everything that may wait (``flock``, ``fsync``, directory scans, large
files) runs in a worker thread through :func:`asyncio.to_thread`.

Telemetry
=========

Spans ``cache.get``, ``cache.set``, ``cache.invalidate``, ``cache.clear_expired``,
``cache.clear_all``; coherency actions are span events (``cache.expired``,
``cache.memory_evicted``, ``cache.disk_evicted``, ``cache.stale_dropped``,
``cache.corrupt_removed``, ``cache.identity_mismatch``). Only hashed ids reach spans. When
the tracer provider cannot record (no-op provider, SDK disabled, ``ALWAYS_OFF`` sampler) no
tracer call is made at all.
The counters ``mcp_otel.cache.requests`` and ``mcp_otel.cache.coherency_events`` are
observable counters over process-wide integers: a synchronous SDK ``Counter.add`` costs
several microseconds, more than a whole memory hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import mmap
import os
import re
import secrets
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import metrics as _metrics_api
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, Status, StatusCode

from mcp_otel import _json, _settings, _setup, limits
from mcp_otel.exporters._file import make_private_dirs

__all__ = ["DiscoveryCache"]

_log = logging.getLogger(__name__)

_SCOPE = "mcp_otel.cache"
_STATE_DIR = ".mcp_otel"
_GEN_FILE = "generations"
_SLOTS = 4096  # generation counters in the shared file
_STRIPES = 64  # lock files; slot s is always guarded by stripe s % _STRIPES
_INLINE_READ_MAX = 256 * 1024  # bigger entries are read in a worker thread
_RECHECK_GEN_FILE_S = 1.0
_KEY_MEMO_MAX = 4096
_ENV_MAX_MEMORY = "MCP_OTEL_CACHE_MAX_MEMORY_ENTRIES"
_ENV_FSYNC = "MCP_OTEL_CACHE_FSYNC"
_DEFAULT_MAX_MEMORY = 4096

_ENTRY_NAME = re.compile(r"(disc_[0-9a-f]{16})\.json")
_TMP_NAME = re.compile(r"\.tmp\.(disc_[0-9a-f]{16})\.\d+\.[0-9a-f]{8}")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

# Attribute and event names (see docs/architecture.md for the metric ones).
A_HIT = "cache.hit"
A_TIER = "mcp_otel.cache.tier"
A_KEY = "mcp_otel.cache.key"
A_ID = "mcp_otel.cache.discovery_id"
A_TTL = "mcp_otel.cache.ttl_s"
A_SIZE = "mcp_otel.cache.entry_size"
A_REMOVED = "mcp_otel.cache.removed"
A_CONN = "mcp_otel.cache.connection_hash"
A_EVENT = "mcp_otel.cache.event"
A_RESULT = "mcp_otel.cache.result"
EVENTS = (
    "expired",
    "memory_evicted",
    "disk_evicted",
    "stale_dropped",
    "corrupt_removed",
    "identity_mismatch",
)


# --------------------------------------------------------------------------- metrics


@dataclass
class _Counts:
    """Process-wide counts behind the observable counters of one meter provider.

    Several caches may share a provider; observable callbacks of one instrument would
    overwrite each other, so all caches of a provider add into one object.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    hit_memory: int = 0
    hit_disk: int = 0
    miss: int = 0
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENTS, 0))

    def event(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.events[name] += n

    def reset_after_fork(self) -> None:
        """A forked child is a new series (new ``service.instance.id``): start at zero."""
        self.lock = threading.Lock()
        self.hit_memory = self.hit_disk = self.miss = 0
        self.events = dict.fromkeys(EVENTS, 0)

    def absorb(self, other: _Counts) -> None:
        """Add what ``other`` counted (used when a child switches to its own provider)."""
        with other.lock:
            values = (other.hit_memory, other.hit_disk, other.miss, dict(other.events))
        with self.lock:
            self.hit_memory += values[0]
            self.hit_disk += values[1]
            self.miss += values[2]
            for name, n in values[3].items():
                self.events[name] += n

    def _requests(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            values = (self.hit_memory, self.hit_disk, self.miss)
        yield Observation(values[0], {A_RESULT: "hit", A_TIER: "memory"})
        yield Observation(values[1], {A_RESULT: "hit", A_TIER: "disk"})
        yield Observation(values[2], {A_RESULT: "miss", A_TIER: "none"})

    def _events(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            values = dict(self.events)
        for name, value in values.items():
            yield Observation(value, {A_EVENT: name})


_COUNTS: dict[int, tuple[object, _Counts]] = {}
_COUNTS_LOCK = threading.Lock()
_CACHES: weakref.WeakSet[DiscoveryCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _COUNTS_LOCK
    _COUNTS_LOCK = threading.Lock()
    for _provider, counts in _COUNTS.values():
        counts.reset_after_fork()
    for cache in list(_CACHES):
        cache._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _counts_for(provider: _metrics_api.MeterProvider) -> _Counts:
    with _COUNTS_LOCK:
        known = _COUNTS.get(id(provider))
        if known is not None and known[0] is provider:
            return known[1]
        counts = _Counts()
        meter = provider.get_meter(_SCOPE, _version())
        meter.create_observable_counter(
            "mcp_otel.cache.requests",
            callbacks=[counts._requests],
            unit="{request}",
            description="Discovery cache lookups by result and answering tier",
        )
        meter.create_observable_counter(
            "mcp_otel.cache.coherency_events",
            callbacks=[counts._events],
            unit="{event}",
            description="Discovery cache coherency actions",
        )
        _COUNTS[id(provider)] = (provider, counts)
        return counts


def _version() -> str:
    from mcp_otel import __version__

    return __version__


# --------------------------------------------------------------------------- tracing


def _tracer_for(provider: trace.TracerProvider | None, cache_dir: Path) -> trace.Tracer | None:
    """A tracer, or None when this provider can never record (then no tracer work at all)."""
    if provider is None:
        provider = _setup.component_tracer_provider(cache_dir)
    if isinstance(provider, trace.NoOpTracerProvider):
        return None
    tracer = provider.get_tracer(_SCOPE, _version())
    if isinstance(tracer, trace.NoOpTracer):
        return None
    sampler = getattr(provider, "sampler", None)
    if sampler is not None:
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

        if sampler is ALWAYS_OFF:
            return None
    return tracer


def _event(span: Span | None, name: str, discovery_id: str, **attrs: Any) -> None:
    if span is not None:
        span.add_event(f"cache.{name}", {A_EVENT: name, A_ID: discovery_id, **attrs})


# --------------------------------------------------------------------------- value objects


#: ``(connection, component, samples, idempotency_key or None)`` of a request, as given.
_Identity = tuple[str, str, int, "str | None"]


@dataclass(frozen=True, slots=True)
class _Key:
    """Hashed identity of one request; the hashes are the only thing that reaches files and
    spans. ``identity`` is the request itself and ``stored`` the form its fields take in an
    entry (``mcp_otel._json``'s): ``get`` serves only an entry whose fields equal
    ``stored``, and a memory record only to the ``identity`` it was stored for. Both are
    ``None`` for a key rebuilt from a file name (maintenance knows only the hash)."""

    cache_key: str
    discovery_id: str
    slot: int
    identity: _Identity | None = None
    stored: tuple[Any, Any, Any, Any] | None = None

    @property
    def stripe(self) -> int:
        return self.slot % _STRIPES


@dataclass(slots=True)
class _Record:
    """A memory-tier entry with what is needed to re-validate it without a syscall."""

    entry: dict[str, Any]
    expires: float  # POSIX seconds
    generation: int
    slot: int
    size: int
    discovery_id: str
    identity: _Identity  # the request it answers; invalidation compares its connection
    hit_attributes: dict[str, Any] | None = None  # built on the first traced hit

    def span_attributes(self, tier: str) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            A_KEY: str(self.entry.get("cache_key")),
            A_ID: self.discovery_id,
            A_HIT: True,
            A_TIER: tier,
            A_SIZE: self.size,
        }
        ttl = self.entry.get("ttl_seconds")
        if isinstance(ttl, int | float) and not isinstance(ttl, bool):
            attrs[A_TTL] = ttl
        return attrs


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A disk entry that passed validation."""

    entry: dict[str, Any]
    expires: float


class _Corrupt(Exception):
    """A disk entry that is not a valid entry of its file name."""


# --------------------------------------------------------------------------- generations


class _Generations:
    """The shared, mmap'd file of generation counters (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / _GEN_FILE
        self._lock = threading.Lock()
        self.recheck_at = 0.0
        self._open()

    def _open(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < _SLOTS * 8:
                    os.ftruncate(fd, _SLOTS * 8)  # only ever grows; new slots read 0
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            self._mmap = mmap.mmap(fd, _SLOTS * 8, access=mmap.ACCESS_READ)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        weakref.finalize(self, os.close, fd)  # the mmap keeps a descriptor of its own
        self.view = memoryview(self._mmap).cast("Q")
        self.recheck_at = time.time() + _RECHECK_GEN_FILE_S

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self.recheck_at = 0.0

    def bump(self, slot: int) -> int:
        """Increment one slot; the caller holds the slot's stripe lock."""
        offset = slot * 8
        value = int.from_bytes(os.pread(self._fd, 8, offset), sys.byteorder) + 1
        os.pwrite(self._fd, value.to_bytes(8, sys.byteorder), offset)
        return value

    def replaced(self) -> bool:
        """True (after re-mapping) when the file was deleted or replaced under us."""
        with self._lock:
            self.recheck_at = time.time() + _RECHECK_GEN_FILE_S
            try:
                st = os.stat(self._path, follow_symlinks=False)
                mine = os.fstat(self._fd)
                same = (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino) and mine.st_nlink
            except FileNotFoundError:
                same = False
            if same:
                return False
            _log.warning("cache generation file %s was replaced; re-mapping it", self._path)
            # The old descriptor and mapping are left open on purpose: another thread may
            # be using them right now, and closing would let the number be reused.
            make_private_dirs(self._path.parent)
            self._open()
            return True


# --------------------------------------------------------------------------- the cache


class DiscoveryCache:
    """Drop-in for Osiris' ``DiscoveryCache``: coherent across processes, traced.

    Entries returned by :meth:`get` are shared with the memory tier (as in Osiris): treat
    them as read-only.
    """

    def __init__(
        self,
        cache_dir: Path | None = None,
        default_ttl_hours: int = 24,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: _metrics_api.MeterProvider | None = None,
    ) -> None:
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
        state = self.cache_dir / _STATE_DIR
        make_private_dirs(state)  # and the cache directory and its parents, all 0700
        self._lock_paths = [state / f"lock.{i:02d}" for i in range(_STRIPES)]
        self._gens = _Generations(state)
        self._memory: dict[str, _Record] = {}
        self._mlock = threading.Lock()  # guards compound changes of _memory, not reads
        self._max_memory = _max_memory_entries()
        self._fsync = _settings.env_bool(_ENV_FSYNC, True)
        self._keys: dict[tuple[str, str, int, str | None], _Key] = {}
        # Files only under cache_dir: see _setup (component providers).
        self._tracer = _tracer_for(tracer_provider, self.cache_dir)
        self._meter_provider = meter_provider or _setup.component_meter_provider(self.cache_dir)
        self._auto_meter = meter_provider is None
        self._counts = _counts_for(self._meter_provider)
        self._forked = False
        _CACHES.add(self)

    def _after_fork_in_child(self) -> None:
        self._mlock = threading.Lock()
        self._gens.after_fork_in_child()  # forces the next get through _maintain()
        self._counts.reset_after_fork()
        self._forked = True

    def _maintain(self, span: Span | None) -> None:
        """Once a second, and first thing after a fork: the checks kept off the hot path."""
        if self._gens.replaced():
            self._drop_all_memory(span)
        if self._forked:
            self._forked = False
            if self._auto_meter:
                # mcp-otel's shared provider is rebuilt in a child; count into the new one.
                provider = _setup.component_meter_provider(self.cache_dir)
                if provider is not self._meter_provider:
                    counts = _counts_for(provider)
                    if counts is not self._counts:
                        counts.absorb(self._counts)
                        self._meter_provider, self._counts = provider, counts

    # ------------------------------------------------------------------ keys

    def _key(
        self, connection: str, component: str, samples: int, idempotency_key: str | None
    ) -> _Key:
        if samples.__class__ is not int:
            raise TypeError("samples must be an int")
        if (connection.__class__ is not str or component.__class__ is not str
                or (idempotency_key is not None and idempotency_key.__class__ is not str)):
            connection, component, idempotency_key = _exact_names(
                connection, component, idempotency_key)
        memo = (connection, component, samples, idempotency_key)
        key = self._keys.get(memo)
        if key is not None:
            return key
        if not isinstance(connection, str) or not isinstance(component, str):
            raise TypeError("connection and component must be str")
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise TypeError("idempotency_key must be str or None")
        cap = limits.MAX_CACHE_ID_CHARS
        # str.__len__: a str subclass's own __len__ is never called (nor trusted)
        if max(str.__len__(connection), str.__len__(component),
               0 if idempotency_key is None else str.__len__(idempotency_key)) > cap:
            raise ValueError(f"connection, component and idempotency_key are identifiers of "
                             f"at most {cap} characters")
        # Osiris: no key and an empty key are the same (no bool(): a subclass may raise)
        idem = None if idempotency_key is None or not str.__len__(idempotency_key) \
            else idempotency_key
        disc, full = _digests(connection, component, samples, idem)
        stored = _stored_identity(connection, component, samples, idem)
        key = _Key(
            f"cache_{full}",
            f"disc_{disc}",
            int(disc[:8], 16) % _SLOTS,
            (connection, component, samples, idem),
            stored,
        )
        if len(self._keys) >= _KEY_MEMO_MAX:
            self._keys.clear()
        self._keys[memo] = key
        return key

    # ------------------------------------------------------------------ get

    async def get(
        self,
        connection: str,
        component: str,
        samples: int = 0,
        idempotency_key: str | None = None,
    ) -> dict[str, Any] | None:
        """The whole entry, from memory (re-validated) or disk, or None; never raises on I/O."""
        key = self._key(connection, component, samples, idempotency_key)
        rec = self._memory.get(key.cache_key)
        if rec is not None:
            now = time.time()
            if (
                now < rec.expires
                and rec.generation == self._gens.view[rec.slot]
                and now < self._gens.recheck_at
                and rec.identity == key.identity
            ):
                counts = self._counts
                with counts.lock:
                    counts.hit_memory += 1
                if self._tracer is not None:
                    self._trace_memory_hit(rec, now)
                return rec.entry
        if self._tracer is not None:
            return await self._get_traced(key)
        return await self._lookup_async(key, None)

    def _trace_memory_hit(self, rec: _Record, now: float) -> None:
        # The hot traced path: one span call with attributes prepared once per record.
        attrs = rec.hit_attributes
        if attrs is None:
            attrs = rec.hit_attributes = rec.span_attributes("memory")
        span = self._tracer.start_span(  # type: ignore[union-attr]
            "cache.get", attributes=attrs, start_time=int(now * 1e9)
        )
        span.end()

    async def _get_traced(self, key: _Key) -> dict[str, Any] | None:
        span = self._tracer.start_span("cache.get")  # type: ignore[union-attr]
        try:
            live = span if span.is_recording() else None
            if live is not None:
                live.set_attributes({A_KEY: key.cache_key, A_ID: key.discovery_id})
            entry = await self._lookup_async(key, live)
            return entry
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()

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
        if time.time() >= self._gens.recheck_at:
            self._maintain(span)
        rec = self._memory.get(key.cache_key)
        if rec is not None and rec.identity != key.identity:
            # Another request's record under the same 64-bit cache_key: never served; it
            # stays (it is valid for its own request) unless the disk entry replaces it.
            self._counts.event("identity_mismatch")
            _event(span, "identity_mismatch", key.discovery_id, **{A_TIER: "memory"})
            rec = None
        if rec is not None:
            if time.time() >= rec.expires:
                if not blocking:
                    return _NEEDS_THREAD
                self._forget(key.cache_key, rec, span, "expired")
                if self._reap(key, span) == _KEPT_FRESH and again:
                    return self._lookup(key, span, blocking, again=False)
                return self._answer(span, None, "none")
            if rec.generation == self._gens.view[rec.slot]:
                return self._answer(span, rec, "memory")
            self._forget(key.cache_key, rec, span, "stale_dropped")
        generation = self._gens.view[key.slot]  # read BEFORE the file: see module docstring
        try:
            raw = _read_entry_file(self.cache_dir / f"{key.discovery_id}.json", blocking)
        except FileNotFoundError:
            return self._answer(span, None, "none")
        except OSError:
            if not blocking:
                return _NEEDS_THREAD
            if self._reap(key, span) == _KEPT_FRESH and again:
                return self._lookup(key, span, blocking, again=False)
            return self._answer(span, None, "none")
        if raw is None:
            return _NEEDS_THREAD  # too large to read on the event loop
        try:
            parsed = _parse(raw, key.discovery_id)
        except _Corrupt:
            if not blocking:
                return _NEEDS_THREAD
            if self._reap(key, span) == _KEPT_FRESH and again:
                return self._lookup(key, span, blocking, again=False)
            return self._answer(span, None, "none")
        if time.time() >= parsed.expires:
            if not blocking:
                return _NEEDS_THREAD
            if self._reap(key, span) == _KEPT_FRESH and again:
                return self._lookup(key, span, blocking, again=False)
            return self._answer(span, None, "none")
        verdict = _check_identity(parsed.entry, key)
        if verdict is not _SAME:
            if verdict is _MISMATCH:
                # Not this request's entry (another name hashing alike, an edited file):
                # a miss, never another request's data. The file is left to its owner.
                self._counts.event("identity_mismatch")
                _event(span, "identity_mismatch", key.discovery_id, **{A_TIER: "disk"})
            return self._answer(span, None, "none")  # or: same id, other idempotency key
        rec = _Record(
            parsed.entry,
            parsed.expires,
            generation,
            key.slot,
            len(raw),
            key.discovery_id,
            key.identity,  # type: ignore[arg-type]  # always set by _key()
        )
        self._remember(key.cache_key, rec, span)
        return self._answer(span, rec, "disk")

    def _answer(self, span: Span | None, rec: _Record | None, tier: str) -> dict[str, Any] | None:
        counts = self._counts
        with counts.lock:
            if rec is None:
                counts.miss += 1
            elif tier == "memory":
                counts.hit_memory += 1
            else:
                counts.hit_disk += 1
        if span is not None:
            if rec is None:
                span.set_attributes({A_HIT: False, A_TIER: tier})
            else:
                span.set_attributes(rec.span_attributes(tier))
        return None if rec is None else rec.entry

    # ------------------------------------------------------------------ memory tier

    def _remember(self, cache_key: str, rec: _Record, span: Span | None) -> None:
        evicted: list[_Record] = []
        with self._mlock:
            self._memory.pop(cache_key, None)
            self._memory[cache_key] = rec
            while len(self._memory) > self._max_memory:
                oldest = next(iter(self._memory))
                evicted.append(self._memory.pop(oldest))
        for old in evicted:
            self._counts.event("memory_evicted")
            _event(span, "memory_evicted", old.discovery_id, reason="capacity")

    def _forget(self, cache_key: str, rec: _Record | None, span: Span | None, why: str) -> bool:
        """Drop one memory record (only ``rec`` itself when given) and count why."""
        with self._mlock:
            current = self._memory.get(cache_key)
            if current is None or (rec is not None and current is not rec):
                return False
            del self._memory[cache_key]
        if why in ("expired", "stale_dropped"):
            self._counts.event(why)
            _event(span, why, current.discovery_id, **{A_TIER: "memory"})
        self._counts.event("memory_evicted")
        _event(span, "memory_evicted", current.discovery_id, reason=why)
        return True

    def _drop_all_memory(self, span: Span | None) -> None:
        with self._mlock:
            dropped = list(self._memory.values())
            self._memory.clear()
        for rec in dropped:
            self._counts.event("stale_dropped")
            _event(span, "stale_dropped", rec.discovery_id, reason="generation file replaced")

    # ------------------------------------------------------------------ disk tier (locked)

    @contextlib.contextmanager
    def _locked(self, stripe: int) -> Iterator[None]:
        # A fresh open file description per acquisition: flock then also excludes other
        # threads of this process and survives fork; closing releases it.
        flags = os.O_RDWR | os.O_CREAT | _O_CLOEXEC | _O_NOFOLLOW
        try:
            fd = os.open(self._lock_paths[stripe], flags, 0o600)
        except FileNotFoundError:
            # The directory was removed under us (rm -rf of the cache): recreate, go on.
            make_private_dirs(self._lock_paths[stripe].parent)
            fd = os.open(self._lock_paths[stripe], flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _reap(self, key: _Key, span: Span | None, unreachable: bool = False) -> int:
        """Under the lock, remove the entry file if it is (still) expired or corrupt, or,
        with ``unreachable``, if no request can ever read it (see :func:`_reachable`).

        Returns the removed file's size, or -1 when nothing was removed (``_KEPT_FRESH``
        when the file now holds an entry that has not expired: another ``set`` replaced it).
        """
        path = self.cache_dir / f"{key.discovery_id}.json"
        with self._locked(key.stripe):
            try:
                raw = _read_entry_file(path, blocking=True)
                assert raw is not None
                parsed = _parse(raw, key.discovery_id)
                why = "expired" if time.time() >= parsed.expires else ""
                if not why and unreachable and not _reachable(parsed.entry, key.discovery_id):
                    why = "identity_mismatch"
            except FileNotFoundError:
                return -1
            except (OSError, _Corrupt) as exc:
                raw, why = b"", "corrupt_removed"
                _log.warning("removing corrupt cache entry %s: %s", key.discovery_id, exc)
            if not why:
                return _KEPT_FRESH  # replaced by a fresh entry meanwhile: keep it
            if not _unlink(path):
                return -1
            self._gens.bump(key.slot)
        self._counts.event(why)
        _event(span, why, key.discovery_id, **{A_TIER: "disk"})
        self._counts.event("disk_evicted")
        _event(span, "disk_evicted", key.discovery_id, reason=why)
        return len(raw)

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
        key = self._key(connection, component, samples, idempotency_key)
        if ttl is None:
            ttl = self.default_ttl
        elif not isinstance(ttl, timedelta):
            raise TypeError("ttl must be a datetime.timedelta or None")
        elif ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        now = datetime.now(UTC)
        try:
            expiry = now + ttl
        except OverflowError:  # beyond the year 9999: the entry never expires in practice
            expiry = datetime.max.replace(tzinfo=UTC)
        entry = {
            "discovery_id": key.discovery_id,
            "cache_key": key.cache_key,
            # whole (at most MAX_CACHE_ID_CHARS, checked in _key): the identity is re-hashed
            "connection_id": str.__str__(connection),
            "component_id": str.__str__(component),
            "samples": samples,
            "idempotency_key": None if idempotency_key is None
            else str.__str__(idempotency_key),
            "data": data,
            "created_at": now.isoformat(),
            "expires_at": expiry.isoformat(),
            "ttl_seconds": int(ttl.total_seconds()),
        }
        payload = _json.dumps(entry)
        # Memory holds exactly what disk holds (and not the caller's mutable ``data``).
        stored = orjson.loads(payload)
        rec = _Record(
            stored,
            expiry.timestamp(),
            0,
            key.slot,
            len(payload),
            key.discovery_id,
            key.identity,  # type: ignore[arg-type]  # always set by _key()
        )
        span = self._start("cache.set")
        try:
            live = span if span is not None and span.is_recording() else None
            if live is not None:
                live.set_attributes(
                    {
                        A_KEY: key.cache_key,
                        A_ID: key.discovery_id,
                        A_TTL: ttl.total_seconds(),
                        A_SIZE: len(payload),
                    }
                )
            await asyncio.to_thread(self._write, key, payload, rec, live)
            return key.discovery_id
        except BaseException as exc:
            if span is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            if span is not None:
                span.end()

    def _write(self, key: _Key, payload: bytes, rec: _Record, span: Span | None) -> None:
        self._maintain(span)  # writers always check (a stat): they must bump the live file
        path = self.cache_dir / f"{key.discovery_id}.json"
        with self._locked(key.stripe):
            try:
                _atomic_write(self.cache_dir, path, key.discovery_id, payload, self._fsync)
            finally:
                # Bumped even on failure: the file may have changed (e.g. the directory
                # fsync failed after the replace), and a bump is never wrong, only costly.
                generation = self._gens.bump(key.slot)
            rec.generation = generation
            self._remember(key.cache_key, rec, span)

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
        span = self._start(name)
        try:
            live = span if span is not None and span.is_recording() else None
            if live is not None and conn is not None:
                conn_hash = hashlib.sha256(_utf8(conn)).hexdigest()[:16]
                live.set_attribute(A_CONN, f"conn_{conn_hash}")
            removed, size = await asyncio.to_thread(work, *args, live)
            if live is not None:
                live.set_attribute(A_REMOVED, removed)
                live.set_attribute(A_SIZE, size)
            return removed
        finally:
            if span is not None:
                span.end()

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
        stored_form = _json.to_jsonable(connection)
        ids: set[str] = set()
        size = 0
        for disc, path in self._entry_files():
            key = _key_of(disc)
            with self._locked(key.stripe):
                try:
                    raw = _read_entry_file(path, blocking=True)
                    assert raw is not None
                    entry = _parse(raw, disc).entry
                except (OSError, _Corrupt):
                    continue  # gone meanwhile, or left for get/clear_expired to reap
                if not _belongs_to(entry, disc, connection, stored_form) or not _unlink(path):
                    continue
                self._gens.bump(key.slot)
            ids.add(disc)
            size += len(raw)
            self._counts.event("disk_evicted")
            _event(span, "disk_evicted", disc, reason="invalidated")
        for cache_key, rec in list(self._memory.items()):
            if rec.identity[0] != connection:
                continue
            if self._forget(cache_key, rec, span, "invalidated"):
                ids.add(rec.discovery_id)
        return len(ids), size

    async def clear_expired(self) -> int:
        """Remove expired, corrupt and unreachable entries (whose stored identity does not
        hash to their file: older key formats, edited files) and abandoned temporary
        files; returns entries."""
        return await self._maintenance("cache.clear_expired", self._clear_expired)

    def _clear_expired(self, span: Span | None) -> tuple[int, int]:
        self._maintain(span)  # writers always check (a stat): they must bump the live file
        now = time.time()
        removed = size = 0
        for cache_key, rec in list(self._memory.items()):
            if now >= rec.expires:
                self._forget(cache_key, rec, span, "expired")
        for disc, path in self._entry_files():
            try:
                raw = _read_entry_file(path, blocking=True)
                assert raw is not None
                parsed = _parse(raw, disc)
                if time.time() < parsed.expires and _reachable(parsed.entry, disc):
                    continue
            except FileNotFoundError:
                continue
            except (OSError, _Corrupt):
                pass
            gone = self._reap(_key_of(disc), span, unreachable=True)
            if gone >= 0:
                removed += 1
                size += gone
        self._remove_abandoned_temporaries()
        return removed, size

    async def clear_all(self) -> int:
        """Remove every entry from both tiers; returns the number of files removed."""
        return await self._maintenance("cache.clear_all", self._clear_all)

    def _clear_all(self, span: Span | None) -> tuple[int, int]:
        self._maintain(span)  # writers always check (a stat): they must bump the live file
        removed = size = 0
        for disc, path in self._entry_files():
            key = _key_of(disc)
            with self._locked(key.stripe):
                try:
                    length = os.lstat(path).st_size
                except OSError:
                    continue
                if not _unlink(path):
                    continue
                self._gens.bump(key.slot)
            removed += 1
            size += length
            self._counts.event("disk_evicted")
            _event(span, "disk_evicted", disc, reason="clear_all")
        for cache_key in list(self._memory):
            self._forget(cache_key, None, span, "clear_all")
        self._remove_abandoned_temporaries()
        return removed, size

    def _remove_abandoned_temporaries(self) -> None:
        """Temporary files of writers that died: any found while holding its lock is dead."""
        try:
            names = [e.name for e in os.scandir(self.cache_dir)]
        except OSError:
            return
        for name in names:
            match = _TMP_NAME.fullmatch(name)
            if match is None:
                continue
            with self._locked(_key_of(match.group(1)).stripe):
                _unlink(self.cache_dir / name)

    def _entry_files(self) -> list[tuple[str, Path]]:
        try:
            with os.scandir(self.cache_dir) as it:
                names = [e.name for e in it]
        except OSError as exc:
            _log.warning("cannot list cache directory %s: %s", self.cache_dir, exc)
            return []
        out = []
        for name in sorted(names):
            match = _ENTRY_NAME.fullmatch(name)
            if match is not None:
                out.append((match.group(1), self.cache_dir / name))
        return out

    # ------------------------------------------------------------------ sync helpers

    def get_cache_stats(self) -> dict[str, Any]:
        """Osiris' statistics: memory entries, expired ones, disk files and bytes."""
        now = time.time()
        records = list(self._memory.values())
        files = self._entry_files()
        size = 0
        for _disc, path in files:
            with contextlib.suppress(OSError):
                size += os.lstat(path).st_size
        return {
            "memory_entries": len(records),
            "expired_entries": sum(1 for r in records if now >= r.expires),
            "disk_files": len(files),
            "disk_size_bytes": size,
            "cache_directory": str(self.cache_dir),
        }

    def get_discovery_uri(self, discovery_id: str, artifact_type: str) -> str:
        """The Osiris resource URI of one discovery artifact (never raises: a value whose
        ``str()`` raises gives its safe form, see :func:`mcp_otel.limits.safe_str`)."""
        return (f"osiris://mcp/discovery/{limits.safe_str(discovery_id)}/"
                f"{limits.safe_str(artifact_type)}.json")

    def _start(self, name: str) -> Span | None:
        return None if self._tracer is None else self._tracer.start_span(name)


# --------------------------------------------------------------------------- module helpers

_NEEDS_THREAD = object()
_KEPT_FRESH = -2  # _reap: nothing removed, the file holds an entry that has not expired


def _exact_names(
    connection: Any, component: Any, idempotency_key: Any
) -> tuple[str, str, str | None]:
    """The key's names as exact ``str`` (a subclass may override ``__format__``,
    ``__hash__`` or ``encode``, which the key derivation calls), or ``TypeError``."""
    if not isinstance(connection, str) or not isinstance(component, str):
        raise TypeError("connection and component must be str")
    if idempotency_key is not None and not isinstance(idempotency_key, str):
        raise TypeError("idempotency_key must be str or None")
    return (str.__str__(connection), str.__str__(component),
            None if idempotency_key is None else str.__str__(idempotency_key))


def _samples_text(samples: int) -> str:
    """``samples`` in the key: decimal, as Osiris derives it; hexadecimal (exact, and never
    equal to a decimal text) beyond ``limits.MAX_INT_BITS``, where ``str()`` raises.

    The choice depends on the value only, so every process derives the same key: a host
    that lowered ``sys.set_int_max_str_digits()`` still gets the decimal digits, converted
    in chunks the interpreter accepts (its minimum limit is 640 digits).
    """
    if samples.bit_length() > limits.MAX_INT_BITS:
        return hex(samples)
    try:
        return int.__repr__(samples)
    except ValueError:  # a lower digit limit in the host
        pass
    sign, rest = ("-", -samples) if samples < 0 else ("", samples)
    chunks: list[str] = []
    while rest:
        rest, chunk = divmod(rest, _DECIMAL_CHUNK)
        chunks.append(f"{chunk:0{_CHUNK_DIGITS}d}")
    return sign + "".join(reversed(chunks)).lstrip("0")


_CHUNK_DIGITS = 500
_DECIMAL_CHUNK = 10**_CHUNK_DIGITS


def _utf8(text: str) -> bytes:
    # Lone surrogates cannot be UTF-8 encoded strictly; hashing must still never fail.
    return text.encode("utf-8", "surrogatepass")


def _key_of(discovery_id: str) -> _Key:
    """The slot/stripe of a discovery id found on disk (its cache_key is unknown)."""
    return _Key("", discovery_id, int(discovery_id[5:13], 16) % _SLOTS)


# --------------------------------------------------------------------------- identity


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def _digests(
    connection: str, component: str, samples: int, idempotency_key: str | None
) -> tuple[str, str]:
    """The 16-hex digests of ``discovery_id`` and ``cache_key``.

    Each field is length-prefixed (8-byte big-endian byte count, then its UTF-8 bytes;
    ``samples`` as lowercase hexadecimal text, which never fails or takes quadratic time
    however large): no two different requests share an input, whatever characters their
    names hold. Osiris joined the fields with ``|``, so ``("a|b", "c")`` and
    ``("a", "b|c")`` were one entry.
    """
    head = _field(_utf8(connection)) + _field(_utf8(component)) + _field(_utf8(f"{samples:x}"))
    disc = hashlib.sha256(head).hexdigest()[:16]
    idem = "" if idempotency_key is None else idempotency_key
    full = hashlib.sha256(head + _field(_utf8(idem))).hexdigest()[:16]
    return disc, full


def _stored_identity(
    connection: str, component: str, samples: int, idempotency_key: str | None
) -> tuple[Any, Any, Any, Any]:
    """The identity fields as an entry holds them (``mcp_otel._json``'s forms)."""
    return (
        _json.to_jsonable(connection),
        _json.to_jsonable(component),
        _samples_stored(samples),
        _json.to_jsonable(idempotency_key) if idempotency_key else None,
    )


def _samples_stored(samples: int) -> Any:
    """``samples`` as an entry written with the interpreter's default digit limit holds it
    (decimal text beyond 64 bits), whatever limit this host set."""
    stored = _json.to_jsonable(samples)
    if isinstance(stored, str) and samples.bit_length() <= limits.MAX_INT_BITS:
        return _samples_text(samples)
    return stored


def _entry_identity(entry: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    return (
        entry.get("connection_id"),
        entry.get("component_id"),
        entry.get("samples"),
        entry.get("idempotency_key") or None,
    )


_SAME = object()
_OTHER_IDEMPOTENCY_KEY = object()
_MISMATCH = object()


def _check_identity(entry: dict[str, Any], key: _Key) -> object:
    """Whether a disk entry read for ``key`` is that request's entry.

    ``_OTHER_IDEMPOTENCY_KEY``: the same discovery with another idempotency key (a ``set``
    with another key replaced it; a plain miss). ``_MISMATCH``: anything else that is not
    the request's own entry.
    """
    stored = _entry_identity(entry)
    if stored[:3] != key.stored[:3]:  # type: ignore[index]
        return _MISMATCH
    if stored[3] != key.stored[3]:  # type: ignore[index]
        return _OTHER_IDEMPOTENCY_KEY
    return _SAME if entry.get("cache_key") == key.cache_key else _MISMATCH


# mcp_otel._json writes a lone surrogate as the six characters \udXXX (backslashreplace).
_ESCAPED_SURROGATE = re.compile(r"\\u(d[89a-f][0-9a-f]{2})")


def _names_stored_as(stored: Any) -> list[str]:
    """The names whose stored form is ``stored``: itself and, when it holds escaped lone
    surrogates, the name with them restored (a name mixing both is not recovered)."""
    if not isinstance(stored, str):
        return []
    if "\\u" not in stored:
        return [stored]
    restored = _ESCAPED_SURROGATE.sub(lambda m: chr(int(m.group(1), 16)), stored)
    return [stored] if restored == stored else [stored, restored]


def _samples_stored_as(stored: Any) -> list[int]:
    if stored.__class__ is int:
        return [stored]
    if isinstance(stored, str):  # beyond 64 bits mcp_otel._json writes decimal text
        try:
            return [int(stored)]
        except ValueError:  # not a number, or over Python's digit limit
            return []
    return []


def _hashes_to(
    entry: dict[str, Any], discovery_id: str, connections: list[str], check_cache_key: bool
) -> bool:
    """Whether one of ``connections`` with the entry's other stored fields hashes to the
    entry's ``discovery_id`` (and, with ``check_cache_key``, to its ``cache_key``)."""
    components = _names_stored_as(entry.get("component_id"))
    idem = entry.get("idempotency_key")
    keys = _names_stored_as(idem) if idem else [""]
    for samples in _samples_stored_as(entry.get("samples")):
        for connection in connections:
            for component in components:
                for idempotency_key in keys if check_cache_key else [""]:
                    disc, full = _digests(connection, component, samples, idempotency_key)
                    if f"disc_{disc}" != discovery_id:
                        break  # the discovery id does not depend on the idempotency key
                    if not check_cache_key or f"cache_{full}" == entry.get("cache_key"):
                        return True
    return False


def _reachable(entry: dict[str, Any], discovery_id: str) -> bool:
    """Whether some request can read this entry: its stored identity hashes to its file
    name and ``cache_key``. Entries written under another key format (Osiris' ``|``
    joined one) or edited by hand cannot be read by any ``get``. When the stored names
    hold escaped surrogates that cannot be restored unambiguously, the entry is kept."""
    connections = _names_stored_as(entry.get("connection_id"))
    if _hashes_to(entry, discovery_id, connections, check_cache_key=True):
        return True
    fields = (entry.get("connection_id"), entry.get("component_id"), entry.get("idempotency_key"))
    return any(isinstance(f, str) and _ESCAPED_SURROGATE.search(f) for f in fields)


def _belongs_to(
    entry: dict[str, Any], discovery_id: str, connection: str, stored_form: Any
) -> bool:
    """Whether a disk entry is ``connection``'s: equal stored names, never a prefix.

    Only a name holding a lone surrogate and the literal text of its escaped form share a
    stored form; then the hash decides. An entry that cannot be attributed to either
    (another key format) goes with the name it shows: removing is a later miss, never a
    wrong answer.
    """
    stored = entry.get("connection_id")
    if stored != stored_form:
        return False
    if not isinstance(stored, str) or "\\u" not in stored:
        return True  # the stored form is the name itself: no other name has it
    if _hashes_to(entry, discovery_id, [connection], check_cache_key=False):
        return True
    others = [name for name in _names_stored_as(stored) if name != connection]
    return not _hashes_to(entry, discovery_id, others, check_cache_key=False)


def _max_memory_entries() -> int:
    return _settings.env_number(_ENV_MAX_MEMORY, _DEFAULT_MAX_MEMORY, int, minimum=1)


def _read_entry_file(path: Path, blocking: bool) -> bytes | None:
    """The file's bytes (never following a symlink), or None if too big for the event loop.

    ``O_NONBLOCK`` and the type check: a FIFO planted under an entry's name must be an
    unreadable (corrupt) entry, not a read that blocks the event loop or a stripe lock.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _O_CLOEXEC | _O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        size = st.st_size
        if size > _INLINE_READ_MAX and not blocking:
            return None
        chunks = []
        while True:
            chunk = os.read(fd, max(size, 65536))
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _parse(raw: bytes, discovery_id: str) -> _Parsed:
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Corrupt(f"not JSON: {exc}") from None
    if not isinstance(entry, dict) or entry.get("discovery_id") != discovery_id:
        raise _Corrupt("not an entry of this file")
    if "data" not in entry:
        raise _Corrupt("no data")
    try:
        expires = datetime.fromisoformat(entry["expires_at"])
    except (KeyError, TypeError, ValueError):
        raise _Corrupt("bad expires_at") from None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)  # Osiris writes UTC
    return _Parsed(entry, expires.timestamp())


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        _log.warning("cannot remove cache file %s: %s", path, exc)
        return False


def _atomic_write(
    directory: Path, path: Path, discovery_id: str, payload: bytes, durable: bool
) -> None:
    tmp = directory / f".tmp.{discovery_id}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
    try:
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if not durable:
        return
    dfd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(dfd)
    except OSError as exc:  # some filesystems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(dfd)
