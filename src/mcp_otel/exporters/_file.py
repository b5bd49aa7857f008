"""The locked, append-only JSONL file every mcp-otel sink writes through.

Why a hand-made writer and not ``open(path, "a")``: Python's buffered file objects split
large writes, and no stock OpenTelemetry file exporter locks across processes, so several
MCP server processes sharing one audit file interleave and tear lines (see the Osiris
race-conditions report). The rules implemented here:

* one ``threading.Lock`` per file object plus an exclusive ``flock`` on the open file
  description, so threads and processes take turns;
* the caller hands over a whole batch, already serialised, and it goes to the kernel in
  one ``os.write`` on an ``O_APPEND`` descriptor; a short write (disk full, file-size
  limit) is cut back with ``ftruncate`` while the lock is still held, so readers never
  see a torn line: to the length before the batch (``write``), or to the last whole line
  that fit (``write_prefix``, which also splits a refused batch until every line that
  fits is in);
* after taking the lock the path is checked to still name the locked inode: if logrotate
  (or another process rotating) renamed or removed it, the file is reopened;
* ``{date}`` in the path is the UTC date at write time (``YYYYMMDD``);
* files are created with ``file_mode`` (0600) and directories with ``dir_mode`` (0700);
  a data directory or file that already exists with looser modes is tightened to them
  (or, if it is not ours, reported once on stderr); only regular files are written;
* the data directory is opened once (``O_DIRECTORY | O_NOFOLLOW``) and files are opened
  relative to it with ``O_NOFOLLOW``: a symlink planted at the file path, or in place of
  the directory or any directory above it after start, is refused (a counted failure
  reported once), never followed;
* with the ``interval`` fsync policy the periodic ``fdatasync`` runs in a background
  syncer thread on a ``dup``'d descriptor, never inside ``write``: a sync can take
  10-200 ms on a busy disk, and inside the write path it stalled every caller waiting for
  that batch (an audit ``wait="written"`` caller waits for the write, not for the disk).
  ``flush``/``close``/rotation still sync inline, after any background sync in flight;
* at ``fork()`` the lock is taken so that no write is half done, and the child drops the
  inherited descriptor (whose ``flock`` belongs to the parent) and reopens on first use;
* errors never raise: ``write`` returns ``False``, counts, and reports each distinct cause
  once on stderr (not through ``logging``, which may itself be exported and loop).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import re
import shutil
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from mcp_otel import _fork
from mcp_otel._settings import stderr_line

try:
    import fcntl
    from fcntl import LOCK_EX, LOCK_UN, flock
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

FsyncPolicy = Literal["none", "interval", "batch"]
FSYNC_POLICIES: frozenset[str] = frozenset({"none", "interval", "batch"})
FSYNC_INTERVAL_S = 1.0
#: How long :meth:`LockedJsonlFile.append_line` trusts that the path still names the open
#: file before checking again (a rotation by another process is seen within this time).
NAME_RECHECK_S = 0.25
_DATE = "{date}"
_ROTATED_TS = "%Y%m%dT%H%M%S%fZ"
_MAX_ATTEMPTS = 16
# Errors that mean "no room": a write refused with one of these is split, so that every
# line that still fits is written (see LockedJsonlFile.write_prefix).
_NO_ROOM = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class UnsupportedPlatformError(RuntimeError):
    """Raised at construction where no cross-process file lock is available."""


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """When to rotate the active file and which old files to keep.

    ``max_bytes``: rotate before a batch would grow the file beyond this size (a single
    batch larger than the limit still goes into one file, alone).
    ``max_files``: keep at most this many old files (rotated or from earlier dates).
    ``max_age``: delete old files whose last write is older than this.
    ``compress``: gzip files right after rotating them.
    """

    max_bytes: int | None = None
    max_files: int | None = None
    max_age: timedelta | None = None
    compress: bool = False

    @property
    def retention(self) -> bool:
        return self.max_files is not None or self.max_age is not None


def _utc_date(now: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(now))


_stderr = stderr_line


def _datasync(fd: int) -> None:
    """Flush a file's data to stable storage, as well as the platform allows.

    Linux: ``fdatasync``. macOS has no ``fdatasync`` and its ``fsync`` leaves data in the
    drive's cache, so ``F_FULLFSYNC`` first. Looked up at call time (tests spy on it).
    """
    if sys.platform == "darwin" and hasattr(fcntl, "F_FULLFSYNC"):  # pragma: no cover
        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
            return
        except OSError:
            pass
    sync = getattr(os, "fdatasync", None) or os.fsync
    sync(fd)


class _ShortWriteError(OSError):
    pass


def _exists_at(dfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


class _BackgroundSync:
    """One interval sync in flight: a ``dup`` of the file's descriptor and its outcome.

    The dup keeps the inode reachable even if the writer closes or reopens its own
    descriptor meanwhile (rotation), and its number can never be reused under us.
    """

    __slots__ = ("done", "error", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.done = threading.Event()
        self.error: OSError | None = None


class _Syncer:
    """A process-wide daemon thread that runs the ``interval`` policy's ``fdatasync`` calls.

    Started lazily, restarted lazily in a forked child (threads do not survive ``fork``).
    It never takes a file's lock: the outcome is left on the job and picked up by the
    file's next locked operation.
    """

    def __init__(self) -> None:
        self._jobs: list[_BackgroundSync] = []
        self._running: _BackgroundSync | None = None
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, job: _BackgroundSync) -> None:
        with self._cond:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="mcp-otel-fsync", daemon=True
                )
                self._thread.start()
            self._jobs.append(job)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    self._cond.wait()
                job = self._running = self._jobs.pop(0)
            try:
                _datasync(job.fd)
            except OSError as exc:
                job.error = exc
            except Exception as exc:  # a spy or an odd platform: never kill the syncer
                job.error = OSError(errno.EIO, repr(exc))
            finally:
                self._running = None  # first: a child forked now must not close the number
                with contextlib.suppress(OSError):
                    os.close(job.fd)
                job.done.set()

    def after_fork_child(self) -> None:
        # The parent's jobs are the parent's: close our copies of their descriptors.
        self._cond = threading.Condition(threading.Lock())
        running = [self._running] if self._running is not None else []
        for job in self._jobs + running:
            with contextlib.suppress(OSError):
                os.close(job.fd)
        self._jobs = []
        self._running = None
        self._thread = None
        self._pid = os.getpid()


_SYNCER = _Syncer()


_INSTANCES: weakref.WeakSet[LockedJsonlFile] = weakref.WeakSet()
_INSTANCES_LOCK = threading.Lock()


def _before_fork() -> None:
    _INSTANCES_LOCK.acquire()
    for f in list(_INSTANCES):
        f._lock.acquire()


def _after_fork_parent() -> None:
    for f in list(_INSTANCES):
        f._lock.release()
    _INSTANCES_LOCK.release()


def _after_fork_child() -> None:
    _SYNCER.after_fork_child()
    for f in list(_INSTANCES):
        f._reset_after_fork()
    _INSTANCES_LOCK.release()


_fork.register(
    _fork.FILES,
    before=_before_fork,
    after_in_parent=_after_fork_parent,
    after_in_child=_after_fork_child,
)


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | _O_NOFOLLOW
_loose_reported: set[str] = set()
_loose_lock = threading.Lock()


def _report_loose_once(path: str, message: str) -> None:
    with _loose_lock:
        if path in _loose_reported:
            return
        _loose_reported.add(path)
    _stderr(f"mcp-otel: {path}: {message}\n")


def tighten_mode(fd: int, path: str, mode: int, st: os.stat_result | None = None) -> None:
    """Take away the permission bits ``mode`` does not grant from a directory or file
    that existed before us (a 0777 directory becomes 0700, a 0666 file 0600).

    Why: a directory or audit file someone else created with loose modes would let any
    local user read the trail or swap files in it; creating ours 0700/0600 is not enough
    when the path already exists. Done on the open descriptor (no path race). Only on
    what this process owns, and never on a shared sticky directory such as ``/tmp``;
    otherwise the looseness is reported once on stderr and left alone.
    """
    st = st or os.fstat(fd)
    current = stat.S_IMODE(st.st_mode)
    loose = current & 0o777 & ~mode
    if not loose:
        return
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
    if st.st_mode & stat.S_ISVTX:
        _report_loose_once(path, f"{kind} is mode {current:04o} (shared, sticky); left as "
                           f"it is: use a private {kind} of mode {mode:04o}")
        return
    if st.st_uid != os.geteuid():
        _report_loose_once(path, f"{kind} is mode {current:04o} and owned by uid "
                           f"{st.st_uid}, not by this process: cannot tighten it to "
                           f"{current & mode:04o}; fix its mode")
        return
    try:
        os.fchmod(fd, current & ~loose)
    except OSError as exc:
        _report_loose_once(path, f"{kind} is mode {current:04o}; cannot tighten it: "
                           f"{exc.strerror or exc}")
        return
    _report_loose_once(path, f"{kind} was mode {current:04o}; tightened to "
                       f"{current & ~loose:04o}")


def make_private_dirs(directory: str | os.PathLike[str], mode: int = 0o700) -> None:
    """Create ``directory`` and any missing parents with exactly ``mode``.

    Every sink uses this (exporters, audit trail, cache), so that no directory of ours is
    left at the umask's mode. ``directory`` itself, if it already exists, is tightened to
    ``mode`` (see :func:`tighten_mode`); parents that exist are left as they are (they
    may be shared: ``/tmp``, a home directory).
    """
    directory = os.fspath(directory)
    if os.path.isdir(directory):
        real = os.path.realpath(directory)  # a symlink configured before start is fine
        try:
            dfd = os.open(real, _O_DIR)
        except OSError:
            return  # not ours to open: the write that needs it reports why
        try:
            tighten_mode(dfd, directory, mode)
        finally:
            os.close(dfd)
        return
    missing: list[str] = []
    d = directory
    while d and not os.path.isdir(d):
        missing.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            continue
        # Exact mode whatever the umask, on the directory we just made (never through a
        # symlink swapped in meanwhile: O_NOFOLLOW; portable, unlike lchmod).
        dfd = os.open(d, _O_DIR)
        try:
            os.fchmod(dfd, mode)
        finally:
            os.close(dfd)


class LockedJsonlFile:
    """An append-only file shared safely by threads and processes.

    ``write(payload)`` appends bytes that must already be whole ``\\n``-terminated lines;
    it returns ``True`` once they are in the file (and on disk, per the fsync policy),
    ``False`` when nothing of them is. The audit trail reuses this class directly.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy = "interval",
        file_mode: int = 0o600,
        dir_mode: int = 0o700,
        rotation: RotationPolicy | None = None,
        label: str = "mcp-otel",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise UnsupportedPlatformError(
                "mcp-otel's JSONL exporters need POSIX flock() for cross-process locking; "
                "this platform has none. Use the OTLP exporter instead."
            )
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {sorted(FSYNC_POLICIES)}, not {fsync!r}")
        template = os.fspath(path)
        if not isinstance(template, str) or not template:
            raise ValueError("path must be a non-empty str or os.PathLike[str]")
        if "\x00" in template:
            raise ValueError("path must not contain NUL")
        # Absolute now: a relative path must not follow a later chdir() of the host.
        template = os.path.abspath(template)
        rotation = rotation or RotationPolicy()
        if rotation.max_bytes is not None and rotation.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if rotation.max_files is not None and rotation.max_files < 0:
            raise ValueError("max_files must be >= 0")
        if rotation.max_age is not None and rotation.max_age.total_seconds() < 0:
            raise ValueError("max_age must be >= 0")
        self._template = template
        self._fsync = fsync
        self._file_mode = file_mode & 0o7777
        self._dir_mode = dir_mode & 0o7777
        self._rotation = rotation
        self._label = label
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._fd_path: str | None = None
        # The data directory, held open: files are opened relative to it (dir_fd), so a
        # directory swapped for a symlink after start is never followed (see _dir_for).
        self._dir_fd: int | None = None
        self._dir_path: str | None = None
        self._dir_id: tuple[int, int] = (0, 0)
        self._dir_real: dict[str, str] = {}  # what each directory path resolved to at first
        self._fd_readable = False
        self._retained_for: str | None = None
        # File size right after our last write: when the file has another size at our next
        # write, someone else wrote in between, and may have died mid-line.
        self._end: int | None = None
        self._day: int | None = None
        self._day_path = ""
        self._last_sync = monotonic()
        self._dirty = False
        self._bg_sync: _BackgroundSync | None = None  # interval sync in flight, if any
        self._fast_until = 0.0  # append_line's fast path is allowed until then
        self._closed = False
        self._reported: set[tuple[str, str]] = set()
        self._op = "write"
        self.last_error: str | None = None
        self._last_path = self._template
        self.failed_writes = 0
        self.failed_bytes = 0
        self._retention_re = self._build_retention_re()
        with _INSTANCES_LOCK:
            _INSTANCES.add(self)

    def __del__(self) -> None:
        # An exporter dropped without shutdown() must not leak its descriptor.
        for name in ("_fd", "_dir_fd"):
            fd = getattr(self, name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # ----------------------------------------------------------------- read side
    @property
    def template(self) -> str:
        """The configured path, ``{date}`` unexpanded."""
        return self._template

    @property
    def fsync_policy(self) -> FsyncPolicy:
        return self._fsync  # type: ignore[return-value]

    def path_for(self, now: datetime | float | None = None) -> Path:
        """The file a write at ``now`` (default: now) goes to."""
        if now is None:
            ts = self._clock()
        elif isinstance(now, datetime):
            ts = (now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp()
        else:
            ts = float(now)
        return Path(self._template.replace(_DATE, _utc_date(ts)))

    @property
    def current_path(self) -> Path:
        return self.path_for()

    @property
    def closed(self) -> bool:
        return self._closed

    # ----------------------------------------------------------------- write side
    def write(self, payload: bytes | bytearray | memoryview) -> bool:
        """Append ``payload`` (whole lines) in one ``write``; ``False`` if it is not there."""
        if not payload:
            return True
        return self._write(payload, partial=False) == len(payload)

    def write_prefix(self, payload: bytes | bytearray | memoryview) -> int:
        """Append as many whole leading lines of ``payload`` as fit; return their byte count.

        Why: on a full disk (or at a file-size limit) an all-or-nothing batch loses every
        record although most would fit: a 3,000-record burst onto a nearly empty 256 KiB
        tmpfs wrote none. Here the part of a short write that ends on a line boundary is
        kept (the kernel said exactly what fits) and a write refused outright with
        ``ENOSPC``/``EFBIG``/``EDQUOT`` is retried with the first half of the lines,
        bisecting down to one line, so every line that fits is written, in order, before
        the call gives up on the rest. The result is always a prefix that ends with
        ``\n`` (never a torn line); the lines after it are counted as failed and the cause
        reported once. Other errors, and a failed ``batch`` fsync, write nothing (0).
        """
        if not payload:
            return 0
        return self._write(payload, partial=True)

    def append_line(self, line: bytes) -> bool:
        """Append one whole line, synchronously, under the same two locks as :meth:`write`.

        Why: a caller that appends one small line per call (the telemetry emitter, whose
        events must be in the file when ``emit_*`` returns) pays :meth:`write`'s per-call
        checks as much as the write itself. Here, once :meth:`write` has opened the file
        and checked that the path names it, the next calls for
        :data:`NAME_RECHECK_S` only take the thread lock and the ``flock``, read the end
        offset (``lseek``: torn-tail repair and short-write rollback as in :meth:`write`),
        ``write`` and unlock. What is not checked on each call is whether another process
        renamed the file (rotation, logrotate): a line may land in the renamed file up to
        :data:`NAME_RECHECK_S` after it was rotated -- whole, never torn or lost. With a
        ``max_bytes`` rotation or the ``batch`` fsync policy, at a new UTC date and after
        any failure, calls take :meth:`write`'s full path.
        ``False``: the line is not in the file.
        """
        fd = self._fd
        now = self._monotonic()
        if fd is None or now >= self._fast_until:
            return self._append_checked(line)
        with self._lock:
            if fd == self._fd and not self._closed:
                try:
                    flock(fd, LOCK_EX)
                    try:
                        size = os.lseek(fd, 0, os.SEEK_END)
                        if size != self._end and size > 0 and self._torn_tail(fd, size):
                            line = b"\n" + line  # a writer died mid-line: see _write_locked
                        self._append_all(fd, size, line)
                        self._end = size + len(line)
                    finally:
                        flock(fd, LOCK_UN)
                except OSError as exc:
                    self._fast_until = 0.0
                    self._close_fd()
                    self._report_os_error(exc, len(line))
                    return False
                self._dirty = True
                if now - self._last_sync >= FSYNC_INTERVAL_S:
                    self._sync_locked(force=False)
                return True
        return self._append_checked(line)  # the file changed under us: the full path

    def _append_checked(self, line: bytes) -> bool:
        """:meth:`write`, then allow :meth:`append_line`'s fast path for a while: for
        :data:`NAME_RECHECK_S`, and never past the next UTC midnight (the ``{date}`` in
        the path), unless the policy needs every write checked."""
        ok = self.write(line)
        if ok and self._fsync != "batch" and self._rotation.max_bytes is None:
            to_midnight = 86_400.0 - self._clock() % 86_400.0
            self._fast_until = self._monotonic() + min(NAME_RECHECK_S, to_midnight - 0.001)
        else:
            self._fast_until = 0.0
        return ok

    def _write(self, payload: bytes | bytearray | memoryview, *, partial: bool) -> int:
        with self._lock:
            if self._closed:
                self._report("closed", "write after close", len(payload))
                return 0
            self._op = "write"
            try:
                done, exc = self._write_locked(payload, partial=partial)
            except OSError as exc:
                self._close_fd()
                self._report_os_error(exc, len(payload), what=self._op)
                return 0
            except Exception as exc:  # never raise into the host server
                self._close_fd()
                self._report(type(exc).__name__, str(exc), len(payload))
                return 0
            if exc is not None and done < len(payload):  # the rest did not fit: count it
                self._report_os_error(exc, len(payload) - done, what="write")
            return done

    def flush(self) -> bool:
        """fsync what was written (never under the policy ``none``); ``True`` on success."""
        with self._lock:
            return self._sync_locked(force=self._fsync != "none")

    def close(self) -> None:
        """fsync (policy permitting) and close; later writes fail and are counted."""
        with self._lock:
            if self._closed:
                return
            self._sync_locked(force=self._fsync != "none")
            self._close_fd()
            self._close_dir()
            self._closed = True

    # ----------------------------------------------------------------- internals
    def _path_now(self) -> str:
        if _DATE not in self._template:
            return self._template
        now = self._clock()
        day = int(now // 86400)
        if day != self._day:
            self._day = day
            self._day_path = self._template.replace(_DATE, _utc_date(now))
        return self._day_path

    def _write_locked(
        self, payload: bytes | bytearray | memoryview, *, partial: bool
    ) -> tuple[int, OSError | None]:
        """Write under the lock; return the payload bytes written and, when that is not
        all of them (``partial`` only), why the rest was not."""
        path = self._path_now()
        self._last_path = path
        if self._fd is not None and self._fd_path != path:
            self._sync_locked(force=self._fsync != "none")
            self._close_fd()
        if self._rotation.retention and self._retained_for != path:
            # Once per active path and process, not only after a rotation: a short-lived
            # server (one stdio session) may never rotate, and must still prune.
            self._retained_for = path
            self._apply_retention(path)
        for _ in range(_MAX_ATTEMPTS):
            if self._fd is None:
                self._op = "open"
                self._open(path)
            fd = self._fd
            assert fd is not None
            self._op = "lock"
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                st = os.fstat(fd)
                if not self._still_named(path, st):
                    self._close_fd()  # releases our flock with the descriptor
                    continue
                size = st.st_size
                limit = self._rotation.max_bytes
                if limit is not None and size > 0 and size + len(payload) > limit:
                    self._op = "rotate"
                    rotated = self._rotate_locked(path)
                    self._close_fd()
                    if rotated is not None:
                        self._after_rotation(path, rotated)
                    continue
                lead = b""
                if size > 0 and size != self._end and self._torn_tail(fd, size):
                    # Another writer died mid-line: start on a fresh line, or our first
                    # record would be glued to its fragment and lost with it.
                    lead = b"\n"
                    _stderr(
                        f"{self._label}: {path} ended with an incomplete line (a writer "
                        "died mid-write); continuing on a fresh line\n"
                    )
                self._op = "write"
                if partial:
                    data = payload if isinstance(payload, bytes | bytearray) else bytes(payload)
                    done, cause = self._append_lines(fd, size, lead, data)
                    end = size + len(lead) + done if done else size
                else:
                    done, cause = self._append_all(fd, size, lead + bytes(payload) if lead
                                                   else payload), None
                    done -= len(lead)
                    end = size + len(lead) + done
                if not done:
                    assert cause is not None
                    raise cause
                self._end = end
                if self._fsync == "batch":
                    self._op = "fsync"
                    try:
                        _datasync(fd)
                    except OSError:
                        # FAILURE must mean "not in the file": a caller that retries
                        # (the audit trail does) must not find its batch there twice.
                        os.ftruncate(fd, size)
                        self._end = size
                        raise
            finally:
                if self._fd == fd:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            self._dirty = self._fsync != "batch"
            if self._fsync == "interval":
                self._sync_locked(force=False)  # hands the sync to the syncer thread
            return done, cause
        raise OSError(errno.EAGAIN, "the file kept being replaced while we tried to lock it")

    @staticmethod
    def _append_all(fd: int, size: int, data: bytes | bytearray | memoryview) -> int:
        """One ``write`` of everything, or none of it (rolled back to ``size``)."""
        try:
            written = os.write(fd, data)
        except OSError:
            os.ftruncate(fd, size)  # an error may follow a partial write
            raise
        if written != len(data):
            os.ftruncate(fd, size)
            raise _ShortWriteError(
                errno.EIO,
                f"short write ({written} of {len(data)} bytes: disk full or "
                "file size limit); the batch was rolled back",
            )
        return written

    @staticmethod
    def _append_lines(
        fd: int, size: int, lead: bytes, data: bytes | bytearray
    ) -> tuple[int, OSError | None]:
        """Append the longest run of whole leading lines of ``data`` that fits (see
        :meth:`write_prefix`); return its length and why the rest did not fit.

        ``lead`` (a newline ending another writer's torn line) goes first and is kept
        only if some of ``data`` follows it. On return the file is exactly ``size`` plus
        what was kept: a partial line is always truncated away.
        """
        end = size
        if lead:
            try:
                if os.write(fd, lead) != len(lead):
                    raise _ShortWriteError(errno.ENOSPC, "no room for one byte")
            except OSError as exc:
                os.ftruncate(fd, size)
                return 0, exc
            end += len(lead)
        total = len(data)
        lo, hi = 0, total  # data[:lo] is in the file; data[lo:hi] (whole lines) is tried next
        cause: OSError | None = None
        while lo < total:
            try:
                written = os.write(fd, data if hi - lo == total else memoryview(data)[lo:hi])
            except OSError as exc:
                os.ftruncate(fd, end)  # an error may follow a partial write
                if exc.errno not in _NO_ROOM:
                    if lo:  # keep what is in; the caller retries the rest
                        cause = exc
                        break
                    os.ftruncate(fd, size)
                    raise
                cause, written = exc, 0
            else:
                if not written:  # nothing taken and no error: treat as no room
                    cause = _ShortWriteError(errno.ENOSPC, "the write took no bytes")
            if written == hi - lo:
                lo, end, hi = hi, end + written, total
                continue
            if written:
                # A short write: the kernel took what fits. Keep its whole lines.
                cut = data.rfind(b"\n", lo, lo + written) + 1
                kept = cut - lo if cut > lo else 0
                os.ftruncate(fd, end + kept)
                cause = _ShortWriteError(
                    errno.ENOSPC,
                    f"short write ({written} of {hi - lo} bytes: disk full or file size "
                    "limit); the whole lines that fit were kept",
                )
                if not kept:
                    break  # not even the next line fits
                lo, end, hi = lo + kept, end + kept, total
                continue
            # Refused outright: try the first half of the lines, down to a single line.
            first = data.find(b"\n", lo) + 1 or total  # (an unterminated tail: one line)
            if hi <= first:
                break  # the next line alone does not fit
            mid = data.rfind(b"\n", lo, lo + (hi - lo) // 2) + 1
            hi = mid if mid > lo else first
        if not lo and lead:
            os.ftruncate(fd, size)
        return lo, cause

    def _torn_tail(self, fd: int, size: int) -> bool:
        if not self._fd_readable:
            return False
        try:
            return os.pread(fd, 1, size - 1) != b"\n"
        except OSError:
            return False

    def _still_named(self, path: str, st: os.stat_result) -> bool:
        try:
            cur = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return cur.st_ino == st.st_ino and cur.st_dev == st.st_dev

    def _open(self, path: str) -> None:
        directory, name = os.path.split(path)
        dfd = self._dir_for(directory or ".")
        # O_NONBLOCK: opening a FIFO planted at the path must fail (ENXIO), not hang.
        # O_RDWR only so that the last byte can be checked for a torn line (see _torn_tail).
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NONBLOCK | _O_NOFOLLOW
        created = False
        try:
            fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, self._file_mode, dir_fd=dfd)
            created = True
        except FileExistsError:
            try:
                try:
                    fd = os.open(name, flags, dir_fd=dfd)
                except PermissionError:  # a write-only file: append without the tail check
                    fd = os.open(name, (flags & ~os.O_RDWR) | os.O_WRONLY, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise OSError(
                        errno.ELOOP, "refusing to follow a symlink at the file path", path
                    ) from None
                raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", path)
            os.set_blocking(fd, True)
            if created:
                os.fchmod(fd, self._file_mode)  # exact mode, whatever the umask
                if self._fsync == "batch":
                    with contextlib.suppress(OSError):
                        os.fsync(dfd)
            else:
                tighten_mode(fd, path, self._file_mode, st)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._fd_path = path
        self._fd_readable = (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) == os.O_RDWR
        self._end = None

    def _dir_for(self, directory: str) -> int:
        """A descriptor on ``directory``, still the directory it named when first opened.

        Why: ``O_NOFOLLOW`` covers only a path's last component. If the data directory,
        or any directory above it, is swapped for a symlink after start, opening
        ``<dir>/<file>`` by name would follow it and write the trail wherever it points.
        So the directory is opened once (at its real path, with ``O_NOFOLLOW``) and every
        file is opened, renamed and removed relative to that descriptor. When the path
        stops leading to the held directory (a rename, a removal, a swap), it is opened
        again only if it still resolves to the same real location as at first (removed
        and recreated: fine); a path that now resolves elsewhere is refused with
        ``ELOOP``: a counted, reported failure, never a write through the symlink.
        """
        dfd = self._dir_fd
        if dfd is not None and self._dir_path == directory:
            try:
                st = os.stat(directory)
                if (st.st_dev, st.st_ino) == self._dir_id:
                    return dfd
            except OSError:
                pass
        self._close_dir()
        real = os.path.realpath(directory)
        first = self._dir_real.setdefault(directory, real)
        if real != first:
            raise self._swapped(directory, real, first)
        self._make_dirs(real)
        dfd = os.open(real, _O_DIR)
        try:
            st = os.fstat(dfd)
            now = os.path.realpath(directory)  # swapped between the check and the open?
            if now != first:
                raise self._swapped(directory, now, first)
            tighten_mode(dfd, directory, self._dir_mode, st)
        except BaseException:
            os.close(dfd)
            raise
        self._dir_fd, self._dir_path, self._dir_id = dfd, directory, (st.st_dev, st.st_ino)
        return dfd

    @staticmethod
    def _swapped(directory: str, real: str, first: str) -> OSError:
        return OSError(
            errno.ELOOP,
            f"the data directory now resolves to {real}, not {first} as when it was first "
            "opened (a symlink planted in the path?); refusing to follow it",
            directory,
        )

    def _close_dir(self) -> None:
        dfd, self._dir_fd, self._dir_path = self._dir_fd, None, None
        if dfd is not None:
            with contextlib.suppress(OSError):
                os.close(dfd)

    def _make_dirs(self, directory: str) -> None:
        make_private_dirs(directory, self._dir_mode)

    def _sync_locked(self, *, force: bool) -> bool:
        """Sync what was written. ``force``: now, inline; else per the interval, by the
        background syncer (the caller never waits for the disk). ``none`` never syncs."""
        if self._fsync == "none":
            return True
        if force:
            self._finish_bg_sync(wait=True)  # its outcome covers what it was handed
        elif not self._finish_bg_sync(wait=False):
            return True  # one background sync at a time; the next write dispatches again
        if self._fd is None or not self._dirty:
            return True
        now = self._monotonic()
        if not force:
            if now - self._last_sync < FSYNC_INTERVAL_S:
                return True
            if self._fsync != "interval":  # "none" at close/flush: as before, inline
                return self._sync_inline(now)
            try:
                job = _BackgroundSync(os.dup(self._fd))
            except OSError as exc:
                self._report_os_error(exc, 0, what="fsync")
                return False
            self._bg_sync = job
            self._last_sync = now
            self._dirty = False  # set again if the background sync fails
            _SYNCER.submit(job)
            return True
        return self._sync_inline(now)

    def _sync_inline(self, now: float) -> bool:
        assert self._fd is not None
        try:
            _datasync(self._fd)
        except OSError as exc:
            self._report_os_error(exc, 0)
            return False
        self._last_sync = now
        self._dirty = False
        return True

    def _finish_bg_sync(self, *, wait: bool) -> bool:
        """Collect the background sync's outcome; ``False`` if it is still running.

        Called under ``self._lock``. A failed background sync is reported here and marks
        the file dirty again, so the data is synced by the next attempt.
        """
        job = self._bg_sync
        if job is None:
            return True
        if wait:
            job.done.wait()
        elif not job.done.is_set():
            return False
        self._bg_sync = None
        if job.error is not None:
            self._dirty = True
            self._report_os_error(job.error, 0, what="fsync")
        return True

    def wait_background_sync(self, timeout: float | None = None) -> bool:
        """Wait for the ``interval`` policy's sync in flight, if any (tests, shutdown)."""
        job = self._bg_sync
        return True if job is None else job.done.wait(timeout)

    def _close_fd(self) -> None:
        fd, self._fd, self._fd_path = self._fd, None, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _reset_after_fork(self) -> None:
        # The inherited descriptor shares its open file description -- and so its flock --
        # with the parent: never unlock it, just drop our reference. The parent held our
        # lock across fork(), so no write was half done; the child gets a fresh lock.
        self._lock = threading.Lock()
        fd, self._fd, self._fd_path = self._fd, None, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirty = False
        self._fast_until = 0.0
        self._bg_sync = None  # the parent's; its dup was closed by _SYNCER.after_fork_child

    # ----------------------------------------------------------------- rotation
    def _rotate_locked(self, path: str) -> str | None:
        """Rename the active file aside while holding its flock; return the new name."""
        stamp = datetime.fromtimestamp(self._clock(), UTC).strftime(_ROTATED_TS)
        directory, name = os.path.split(path)
        dfd = self._dir_for(directory or ".")
        base, ext = os.path.splitext(name)
        target = f"{base}.{stamp}{ext}"
        n = 0
        while _exists_at(dfd, target) or _exists_at(dfd, target + ".gz"):
            n += 1
            target = f"{base}.{stamp}.{n}{ext}"
        os.rename(name, target, src_dir_fd=dfd, dst_dir_fd=dfd)
        target = os.path.join(directory, target)
        if self._fd is not None:
            if self._fsync != "none":
                _datasync(self._fd)
            self._dirty = False
        return target

    def _after_rotation(self, path: str, rotated: str) -> None:
        if self._rotation.compress:
            self._compress(rotated)
        if self._rotation.retention:
            self._apply_retention(path)

    def _compress(self, rotated: str) -> None:
        directory, name = os.path.split(rotated)
        tmp = name + ".gz.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _O_NOFOLLOW
        dfd: int | None = None
        try:
            dfd = self._dir_for(directory or ".")
            src_fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | _O_NOFOLLOW, dir_fd=dfd)
            with os.fdopen(src_fd, "rb") as src:
                dst_fd = os.open(tmp, flags, self._file_mode, dir_fd=dfd)
                try:
                    os.fchmod(dst_fd, self._file_mode)
                except BaseException:
                    os.close(dst_fd)  # no file object owns it yet
                    raise
                with (
                    os.fdopen(dst_fd, "wb") as raw,
                    gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=0) as gz,
                ):
                    shutil.copyfileobj(src, gz, 1 << 20)
                    gz.flush()
                if self._fsync != "none":
                    fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC | _O_NOFOLLOW, dir_fd=dfd)
                    try:
                        _datasync(fd)
                    finally:
                        os.close(fd)
            os.rename(tmp, name + ".gz", src_dir_fd=dfd, dst_dir_fd=dfd)
            with contextlib.suppress(FileNotFoundError):  # retention may have beaten us
                os.unlink(name, dir_fd=dfd)
        except OSError as exc:
            self._report_os_error(exc, 0, what="compress")
            if dfd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)

    def _build_retention_re(self) -> re.Pattern[str]:
        name = os.path.basename(self._template)
        stem, ext = os.path.splitext(name)
        stem_re = re.escape(stem).replace(re.escape(_DATE), r"\d{8}")
        ext_re = re.escape(ext).replace(re.escape(_DATE), r"\d{8}")
        return re.compile(rf"^{stem_re}(?:\.\d{{8}}T\d{{12}}Z(?:\.\d+)?)?{ext_re}(?:\.gz)?$")

    def _apply_retention(self, active: str) -> None:
        policy = self._rotation
        directory = os.path.dirname(active) or "."
        active_name = os.path.basename(active)
        now = self._clock()
        try:
            dfd = self._dir_for(directory)
            entries = []
            # scandir on a fresh open of the directory: a descriptor inherited across
            # fork shares its read position with the other process.
            scan_fd = os.open(".", _O_DIR, dir_fd=dfd)
            try:
                with os.scandir(scan_fd) as it:
                    for entry in it:
                        if entry.name == active_name or not self._retention_re.match(
                            entry.name
                        ):
                            continue
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        entries.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
            finally:
                os.close(scan_fd)
        except OSError as exc:
            self._report_os_error(exc, 0, what="retention scan")
            return
        entries.sort(reverse=True)  # newest first
        doomed: list[str] = []
        for i, (mtime, name) in enumerate(entries):
            too_many = policy.max_files is not None and i >= policy.max_files
            too_old = policy.max_age is not None and now - mtime > policy.max_age.total_seconds()
            if too_many or too_old:
                doomed.append(name)
        for name in doomed:
            try:
                os.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._report_os_error(exc, 0, what="retention")

    # ----------------------------------------------------------------- reporting
    def _report_os_error(self, exc: OSError, nbytes: int, *, what: str = "write") -> None:
        if isinstance(exc, _ShortWriteError):
            name = "short-write"
        else:
            name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        detail = exc.strerror or str(exc)
        self._report(f"{what}:{name}", detail, nbytes)

    def _report(self, cause: str, detail: str, nbytes: int) -> None:
        if nbytes:
            self.failed_writes += 1
            self.failed_bytes += nbytes
        self.last_error = f"{cause}: {detail}"
        key = (cause, self._template)
        if key in self._reported:
            return
        self._reported.add(key)
        _stderr(
            f"{self._label}: cannot write {self._last_path}: {cause}: {detail} "
            "(failed batches are counted; this cause is reported once)\n"
        )
