"""The disk tier: entry files, their format, and every change of one under its lock.

One entry per ``<cache_dir>/<discovery_id>.json`` (Osiris' layout and fields). Writes are
atomic: a ``0600`` temporary file in the same directory, ``fsync``, ``os.replace``, then
``fsync`` of the directory, so a reader sees the old entry or the new one, never a partial
one, even if the writer is killed mid-write. Readers take no lock and never follow a
symlink nor block on a FIFO; a file that cannot be parsed, is not an entry, names another
``discovery_id``, is a symlink or cannot be read is corrupt (:class:`_Corrupt`). Every
change of a file (write, removal, clean-up of a dead writer's temporary file) happens
under the stripe lock of its ``discovery_id`` and, for entries, is followed by a bump of
its generation slot (see :mod:`mcp_otel.cache._coherency`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from mcp_otel import _json, _settings, limits
from mcp_otel.cache._coherency import (
    _O_CLOEXEC,
    _O_NOFOLLOW,
    _STATE_DIR,
    _Generations,
    _StripeLocks,
)
from mcp_otel.cache._identity import _belongs_to, _Key, _key_of, _reachable
from mcp_otel.exporters._file import make_private_dirs

_log = logging.getLogger("mcp_otel.cache")

_ENV_FSYNC = "MCP_OTEL_CACHE_FSYNC"  # false: atomic and coherent, but not durable
_INLINE_READ_MAX = 256 * 1024  # bigger entries are read in a worker thread
_ENTRY_NAME = re.compile(r"(disc_[0-9a-f]{16})\.json")
_TMP_NAME = re.compile(r"\.tmp\.(disc_[0-9a-f]{16})\.\d+\.[0-9a-f]{8}")
_KEPT_FRESH = -2  # reap: nothing removed, the file holds an entry that has not expired


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A disk entry that passed validation."""

    entry: dict[str, Any]
    expires: float


class _Corrupt(Exception):
    """A disk entry that is not a valid entry of its file name."""


class _DiskStore:
    """The entry files of one cache directory, with its stripe locks and generation file."""

    def __init__(self, cache_dir: Path, clock: Callable[[], float]) -> None:
        self.dir = cache_dir
        state = cache_dir / _STATE_DIR
        make_private_dirs(state)  # and the cache directory and its parents, all 0700
        self._locks = _StripeLocks(state)
        self.generations = _Generations(state, clock)
        self._clock = clock
        self._durable = _settings.env_bool(_ENV_FSYNC, True)

    def path(self, discovery_id: str) -> Path:
        return self.dir / f"{discovery_id}.json"

    def read(self, discovery_id: str, blocking: bool) -> bytes | None:
        """The entry file's bytes, or None if too big to read without ``blocking``."""
        return _read_entry_file(self.path(discovery_id), blocking)

    def write(self, key: _Key, payload: bytes, written: Callable[[int], None]) -> None:
        """Replace the entry atomically, bump its generation and, still under the lock,
        tell ``written`` the new generation (so that this process's memory record is in
        place before another writer of the key can change the file again)."""
        with self._locks.locked(key.stripe):
            try:
                _atomic_write(self.dir, self.path(key.discovery_id), key.discovery_id,
                              payload, self._durable)
            finally:
                # Bumped even on failure: the file may have changed (e.g. the directory
                # fsync failed after the replace), and a bump is never wrong, only costly.
                generation = self.generations.bump(key.slot)
            written(generation)

    def reap(self, key: _Key, unreachable: bool) -> tuple[int, str]:
        """Under the lock, remove the entry file if it is (still) expired or corrupt, or,
        with ``unreachable``, if no request can ever read it (see :func:`_reachable`).

        Returns the removed file's size and why it was removed (``expired``,
        ``corrupt_removed``, ``identity_mismatch``), or -1 when nothing was removed
        (``_KEPT_FRESH`` when the file now holds an entry that has not expired: another
        ``set`` replaced it).
        """
        path = self.path(key.discovery_id)
        with self._locks.locked(key.stripe):
            try:
                raw = _read_entry_file(path, blocking=True)
                assert raw is not None
                parsed = _parse(raw, key.discovery_id)
                why = "expired" if self._clock() >= parsed.expires else ""
                if not why and unreachable and not _reachable(parsed.entry, key.discovery_id):
                    why = "identity_mismatch"
            except FileNotFoundError:
                return -1, ""
            except (OSError, _Corrupt) as exc:
                raw, why = b"", "corrupt_removed"
                _log.warning("removing corrupt cache entry %s: %s", key.discovery_id, exc)
            if not why:
                return _KEPT_FRESH, ""  # replaced by a fresh entry meanwhile: keep it
            if not _unlink(path):
                return -1, ""
            self.generations.bump(key.slot)
        return len(raw), why

    def doubtful(self) -> Iterator[str]:
        """The ids of entries that look expired, corrupt or unreachable, read without the
        lock (each one's :meth:`reap` decides again under it)."""
        for disc, path in self.entry_files():
            try:
                raw = _read_entry_file(path, blocking=True)
                assert raw is not None
                parsed = _parse(raw, disc)
                if self._clock() < parsed.expires and _reachable(parsed.entry, disc):
                    continue
            except FileNotFoundError:
                continue
            except (OSError, _Corrupt):
                pass
            yield disc

    def remove_connection(self, connection: str, removed: Callable[[str, int], None]) -> None:
        """Remove exactly ``connection``'s entries (equal names, never a prefix or a
        substring), calling ``removed(discovery_id, size)`` after each."""
        stored_form = _json.to_jsonable(connection)
        for disc, path in self.entry_files():
            key = _key_of(disc)
            with self._locks.locked(key.stripe):
                try:
                    raw = _read_entry_file(path, blocking=True)
                    assert raw is not None
                    entry = _parse(raw, disc).entry
                except (OSError, _Corrupt):
                    continue  # gone meanwhile, or left for get/clear_expired to reap
                if not _belongs_to(entry, disc, connection, stored_form) or not _unlink(path):
                    continue
                self.generations.bump(key.slot)
            removed(disc, len(raw))

    def remove_all(self, removed: Callable[[str, int], None]) -> None:
        """Remove every entry file, calling ``removed(discovery_id, size)`` after each."""
        for disc, path in self.entry_files():
            key = _key_of(disc)
            with self._locks.locked(key.stripe):
                try:
                    length = os.lstat(path).st_size
                except OSError:
                    continue
                if not _unlink(path):
                    continue
                self.generations.bump(key.slot)
            removed(disc, length)

    def remove_abandoned_temporaries(self) -> None:
        """Temporary files of writers that died: any found while holding its lock is dead."""
        try:
            names = [e.name for e in os.scandir(self.dir)]
        except OSError:
            return
        for name in names:
            match = _TMP_NAME.fullmatch(name)
            if match is None:
                continue
            with self._locks.locked(_key_of(match.group(1)).stripe):
                _unlink(self.dir / name)

    def entry_files(self) -> list[tuple[str, Path]]:
        """``(discovery_id, path)`` of every entry file, sorted by name."""
        try:
            with os.scandir(self.dir) as it:
                names = [e.name for e in it]
        except OSError as exc:
            _log.warning("cannot list cache directory %s: %s", self.dir, exc)
            return []
        out = []
        for name in sorted(names):
            match = _ENTRY_NAME.fullmatch(name)
            if match is not None:
                out.append((match.group(1), self.dir / name))
        return out

    def usage(self) -> tuple[int, int]:
        """The number of entry files and their total size in bytes."""
        files = self.entry_files()
        size = 0
        for _disc, path in files:
            with contextlib.suppress(OSError):
                size += os.lstat(path).st_size
        return len(files), size


# --------------------------------------------------------------------------- entries


def _clock_reading(clock: Callable[[], float]) -> datetime:
    """One reading of ``clock`` as an aware datetime; ``ValueError`` when it is not a
    finite number of seconds since the epoch that ``datetime`` can represent."""
    reading = clock()
    try:
        if isinstance(reading, bool) or not isinstance(reading, int | float):
            raise TypeError
        return datetime.fromtimestamp(reading, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        text = limits.safe_str(reading)[:64]
        raise ValueError(
            f"the cache's clock returned {text!r}, not seconds since the epoch"
        ) from None


def _new_entry(
    key: _Key,
    connection: str,
    component: str,
    samples: int,
    idempotency_key: str | None,
    data: dict[str, Any],
    ttl: timedelta,
    clock: Callable[[], float],
) -> tuple[bytes, dict[str, Any], float]:
    """A new entry of ``key``, dated by ``clock``: its file bytes, the entry as a reader
    of those bytes gets it (not the caller's mutable ``data``) and its expiry (POSIX)."""
    now = _clock_reading(clock)
    try:
        expiry = now + ttl
    except OverflowError:  # beyond the year 9999: the entry never expires in practice
        expiry = datetime.max.replace(tzinfo=UTC)
    entry = {
        "discovery_id": key.discovery_id,
        "cache_key": key.cache_key,
        # whole (at most MAX_CACHE_ID_CHARS, checked by _Keys): the identity is re-hashed
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
    return payload, orjson.loads(payload), expiry.timestamp()


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
