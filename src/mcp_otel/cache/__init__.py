"""A coherent two-tier (memory + disk) discovery cache whose every operation is a span.

``DiscoveryCache`` is a drop-in for the Osiris MCP server's cache (same constructor, key and
id derivation, entry fields, file layout and methods), rebuilt so that several server
processes can share one cache directory without ever serving stale data (RC-004).

Design
======

Disk is the truth; memory is a cache of disk.

* **Files.** One entry per ``<cache_dir>/<discovery_id>.json`` (``discovery_id`` is
  ``"disc_"`` + 16 hex of a SHA-256 over the length-prefixed connection, component and
  samples, see :func:`._identity._digests`), so no connection or component name ever reaches a path.
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
* **Expiry.** Every hit, from either tier, checks ``expires_at`` against the clock (the
  constructor's ``clock``, :func:`time.time` unless a test gives a settable one). An
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

Layout
======

=====================  ===================================================================
``_cache.py``          ``DiscoveryCache``: arguments, which tier answers, worker threads
``_identity.py``       keys, ``discovery_id``/``cache_key`` derivation, identity checks
``_store.py``          the disk tier: entry format, bounded reads, atomic writes, and every
                       locked change of an entry file
``_coherency.py``      the generation file, the stripe locks, when a memory record is
                       current
``_memory.py``         the memory tier: bounded records, eviction
``_observe.py``        spans, span events and the observable counters
=====================  ===================================================================
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
