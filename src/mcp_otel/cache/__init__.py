"""A coherent two-tier (memory + disk) discovery cache whose every operation is a span.

``DiscoveryCache`` is a drop-in for the Osiris MCP server's cache (same constructor, key and
id derivation, entry fields, file layout and methods), rebuilt so that several server
processes can share one cache directory without ever serving stale data (RC-004).

Design
======

Disk is the truth; memory is a cache of disk. Each point below is done by one module of
this package, whose docstring says how.

* **Files** (``_store``). One entry per ``<cache_dir>/<discovery_id>.json``
  (``discovery_id`` is ``"disc_"`` + 16 hex of a SHA-256 over the length-prefixed
  connection, component and samples, see ``_identity._digests``), so no connection or
  component name ever reaches a path. Writes are atomic (temporary file, ``fsync``,
  ``os.replace``, ``fsync`` of the directory): a reader sees the old entry or the new one,
  never a partial one, even if the writer is killed mid-write.
* **Locks** (``_coherency``). Every change of a disk entry happens under an exclusive
  ``flock`` on the lock stripe of its ``discovery_id`` (64 stripes); the kernel releases it
  when a holder dies. Readers take no lock.
* **Generations** (``_coherency``). A shared, ``mmap``'d file of 4096 64-bit counters; the
  slot of a ``discovery_id`` is bumped after every change of its file, and a memory record
  (``_memory``) is served only while its slot still holds the value read before its file
  was: one 8-byte read instead of a system call.
* **Expiry.** Every hit, from either tier, checks ``expires_at`` against the clock (the
  constructor's ``clock``, :func:`time.time` unless a test gives a settable one). An
  expired entry is dropped from memory and its file removed under the lock (after checking
  again that the file still holds an expired entry), so expiry removes it from both tiers.
* **Identity** (``_identity``). Each key field is length-prefixed before hashing (Osiris'
  ``|`` join made ``("a|b", "c")`` and ``("a", "b|c")`` one entry), and ``get`` serves an
  entry (memory or disk) only when its stored connection, component, samples and
  idempotency key are the request's: anything else is a miss and an ``identity_mismatch``
  event, never another request's data.
* **Corruption** (``_store``). A file that cannot be parsed, is not an entry, names another
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
files) runs in a worker thread through :func:`asyncio.to_thread` (``_cache``).

Telemetry
=========

Spans ``cache.get``, ``cache.set``, ``cache.invalidate``, ``cache.clear_expired``,
``cache.clear_all``; coherency actions are span events (``cache.expired``,
``cache.memory_evicted``, ``cache.disk_evicted``, ``cache.stale_dropped``,
``cache.corrupt_removed``, ``cache.identity_mismatch``) and points of the observable
counter ``mcp_otel.cache.coherency_events``; lookups count into ``mcp_otel.cache.requests``
(``_observe``).

Layout
======

=================  =======================================================================
``_cache.py``      ``DiscoveryCache``: arguments, which tier answers, worker threads
``_identity.py``   keys, ``discovery_id``/``cache_key`` derivation, identity checks
``_store.py``      the disk tier: entry format, bounded reads, atomic writes, and every
                   locked change of an entry file (each followed by a generation bump)
``_coherency.py``  the generation file, the stripe locks, when a memory record is current
``_memory.py``     the memory tier: bounded records, oldest evicted first
``_observe.py``    spans, span events and the observable counters
=================  =======================================================================
"""

from __future__ import annotations

from mcp_otel.cache._cache import DiscoveryCache

# The span attribute and event names stay importable from here, where they always were.
from mcp_otel.cache._observe import (  # noqa: F401
    A_CONN,
    A_EVENT,
    A_HIT,
    A_ID,
    A_KEY,
    A_REMOVED,
    A_RESULT,
    A_SIZE,
    A_TIER,
    A_TTL,
    EVENTS,
)

__all__ = ["DiscoveryCache"]
