"""Cross-process coherency: the generation file, the stripe locks, and when memory may answer.

Disk is the truth; memory is a cache of disk.

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
  write produced). A memory hit is served only if the slot still holds that value
  (:func:`_current`): one 8-byte read from shared memory, about 40 ns, far cheaper than one
  ``os.stat`` (and immune to ext4 reusing inode numbers at once or mtime being coarse). Two
  ids sharing a slot only cost an extra disk read, never a stale answer. Because the bump
  follows the file change and the reader reads the slot before the file, a reader that saw
  the new slot value also sees the new file; one that saw the old value re-validates on
  its next hit.
* **Re-check.** Once a second (by the cache's clock) a process checks that the generation
  file is still the one it mapped; deleting it while processes run is noticed within that
  second (they re-map it and drop their memory tier).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mcp_otel.exporters._file import make_private_dirs

if TYPE_CHECKING:
    from mcp_otel.cache._memory import _Record

_log = logging.getLogger("mcp_otel.cache")

_STATE_DIR = ".mcp_otel"
_GEN_FILE = "generations"
_SLOTS = 4096  # generation counters in the shared file
_STRIPES = 64  # lock files; slot s is always guarded by stripe s % _STRIPES
_RECHECK_GEN_FILE_S = 1.0
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class _Generations:
    """The shared, mmap'd file of generation counters (see the module docstring)."""

    def __init__(self, state_dir: Path, clock: Callable[[], float]) -> None:
        self._path = state_dir / _GEN_FILE
        self._clock = clock
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
        self.recheck_at = self._clock() + _RECHECK_GEN_FILE_S

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
            self.recheck_at = self._clock() + _RECHECK_GEN_FILE_S
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


def _current(rec: _Record, generations: _Generations) -> bool:
    """Whether a memory record still matches disk: its slot holds the generation it saw.

    (``DiscoveryCache.get`` inlines this test on its hot path.)
    """
    return rec.generation == generations.view[rec.slot]


class _StripeLocks:
    """The ``flock`` stripes of one cache directory: ``locked(stripe)`` excludes every other
    holder of that stripe, in this process (other threads) and in others."""

    def __init__(self, state_dir: Path) -> None:
        self._paths = [state_dir / f"lock.{i:02d}" for i in range(_STRIPES)]

    @contextlib.contextmanager
    def locked(self, stripe: int) -> Iterator[None]:
        # A fresh open file description per acquisition: flock then also excludes other
        # threads of this process and survives fork; closing releases it.
        flags = os.O_RDWR | os.O_CREAT | _O_CLOEXEC | _O_NOFOLLOW
        try:
            fd = os.open(self._paths[stripe], flags, 0o600)
        except FileNotFoundError:
            # The directory was removed under us (rm -rf of the cache): recreate, go on.
            make_private_dirs(self._paths[stripe].parent)
            fd = os.open(self._paths[stripe], flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
