"""The memory tier: this process's copies of disk entries, bounded, oldest evicted first.

A record carries what is needed to re-validate it without a system call (its expiry, the
generation of its slot when it was read, and the request it answers), so a memory hit
costs a dictionary lookup and one 8-byte read of the shared generation file. Reads take no
lock (one dictionary lookup is atomic); every compound change does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span

from mcp_otel import _settings
from mcp_otel.cache._identity import _Identity
from mcp_otel.cache._observe import A_HIT, A_ID, A_KEY, A_SIZE, A_TIER, A_TTL, _Observer

_ENV_MAX_MEMORY = "MCP_OTEL_CACHE_MAX_MEMORY_ENTRIES"
_DEFAULT_MAX_MEMORY = 4096


def _max_memory_entries() -> int:
    return _settings.env_number(_ENV_MAX_MEMORY, _DEFAULT_MAX_MEMORY, int, minimum=1)


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


class _MemoryTier:
    """``records``: ``cache_key`` -> record, in insertion order (the oldest first), at most
    ``MCP_OTEL_CACHE_MAX_MEMORY_ENTRIES`` of them. A plain dict, so that the hot path's
    lookup is an exact ``dict.get`` (the interpreter's fast path; a dict subclass loses it).
    Changes go through the methods, which count and show every record that leaves
    (``memory_evicted`` and why) through the cache's observer."""

    __slots__ = ("_lock", "_max", "_observer", "records")

    def __init__(self, observer: _Observer) -> None:
        self.records: dict[str, _Record] = {}
        self._lock = threading.Lock()  # guards compound changes, not reads
        self._max = _max_memory_entries()
        self._observer = observer

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def remember(self, cache_key: str, rec: _Record, span: Span | None) -> None:
        """Store ``rec`` as the newest record, evicting the oldest beyond capacity."""
        records = self.records
        evicted: list[_Record] = []
        with self._lock:
            records.pop(cache_key, None)
            records[cache_key] = rec
            while len(records) > self._max:
                oldest = next(iter(records))
                evicted.append(records.pop(oldest))
        for old in evicted:
            self._observer.note(span, "memory_evicted", old.discovery_id, reason="capacity")

    def forget(self, cache_key: str, rec: _Record | None, span: Span | None, why: str) -> bool:
        """Drop one record (only ``rec`` itself when given) and count why."""
        with self._lock:
            current = self.records.get(cache_key)
            if current is None or (rec is not None and current is not rec):
                return False
            del self.records[cache_key]
        if why in ("expired", "stale_dropped"):
            self._observer.note(span, why, current.discovery_id, **{A_TIER: "memory"})
        self._observer.note(span, "memory_evicted", current.discovery_id, reason=why)
        return True

    def drop_all(self, span: Span | None) -> None:
        """Forget every record: disk may have changed in ways no generation shows."""
        with self._lock:
            dropped = list(self.records.values())
            self.records.clear()
        for rec in dropped:
            self._observer.note(
                span, "stale_dropped", rec.discovery_id, reason="generation file replaced"
            )
