"""What the three exporters share: configuration, the locked file, counters, shutdown."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from mcp_otel import _fork
from mcp_otel.exporters import _config
from mcp_otel.exporters._file import LockedJsonlFile, RotationPolicy, _stderr

_EXPORTERS: weakref.WeakSet[_JsonlExporterBase] = weakref.WeakSet()


def _after_fork_child() -> None:
    # A fork while another thread held the counters' lock must not deadlock the child.
    for exporter in list(_EXPORTERS):
        exporter._counts_lock = threading.Lock()


_fork.register(_fork.EXPORTERS, after_in_child=_after_fork_child)


class _JsonlExporterBase:
    """Configuration and bookkeeping; subclasses add the SDK interface and the encoding."""

    _signal: str = "logs"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        format: _config.LineFormat | None = None,
        fsync: _config.FsyncPolicy | None = None,
        file_mode: int = 0o600,
        dir_mode: int = 0o700,
        max_bytes: int | None = None,
        max_files: int | None = None,
        max_age: timedelta | float | None = None,
        compress: bool | None = None,
        include_resource: bool | None = None,
        disabled: bool | None = None,
        rotation: RotationPolicy | None = None,
    ) -> None:
        resolved = os.path.abspath(
            os.fspath(path) if path is not None else _config.default_path(self._signal)
        )
        # ``rotation`` fixes the whole policy and ignores the environment: a system of
        # record (the audit trail) must not be rotated or pruned by a deployment variable.
        if rotation is None:
            rotation = _config.resolve_rotation(max_bytes, max_files, max_age, compress)
        elif any(v is not None for v in (max_bytes, max_files, max_age, compress)):
            raise TypeError("pass either rotation= or max_bytes/max_files/max_age/compress")
        self.config = _config.ExporterConfig(
            path=resolved,
            format=_config.resolve_format(format),
            fsync=_config.resolve_fsync(fsync),
            file_mode=file_mode,
            dir_mode=dir_mode,
            rotation=rotation,
            include_resource=_config.resolve_bool(
                include_resource, _config.ENV_RESOURCE, arg="include_resource"
            ),
            disabled=_config.sdk_disabled() if disabled is None else bool(disabled),
        )
        self._file = LockedJsonlFile(
            resolved,
            fsync=self.config.fsync,
            file_mode=file_mode,
            dir_mode=dir_mode,
            rotation=rotation,
            label=f"mcp-otel {self._signal} exporter",
        )
        self._counts_lock = threading.Lock()
        self._written = 0
        self._failed = 0
        self._shutdown = False
        self._disabled_reported = False
        _EXPORTERS.add(self)

    # ---------------------------------------------------------------- read side
    @property
    def failed_records(self) -> int:
        """Records (log records, spans, metric points) that did not reach the file."""
        return self._failed

    @property
    def written_records(self) -> int:
        return self._written

    @property
    def path(self) -> str:
        """The configured path (``{date}`` unexpanded)."""
        return self.config.path

    def path_for(self, now: datetime | float | None = None) -> Path:
        """The file a write at ``now`` (default: now) goes to, ``{date}`` expanded."""
        return self._file.path_for(now)

    @property
    def current_path(self) -> Path:
        return self._file.path_for()

    @property
    def file(self) -> LockedJsonlFile:
        """The underlying locked file (shared by reusers such as the audit trail)."""
        return self._file

    # ---------------------------------------------------------------- helpers
    def _write(
        self,
        encode: Callable[[], tuple[bytes | bytearray, int]],
        fallback_count: int,
        *,
        count_failed: bool = True,
    ) -> tuple[int, int]:
        """Encode, then write every leading record that fits; count; never raise.

        Returns (records written, records in the batch). On a full disk the records that
        fit are written and counted as written, only the rest as failed: in the ``flat``
        format a record is a line, so the file's whole-line prefix is a record prefix; an
        ``otlp`` batch is one line, written whole or not at all. ``count_failed=False``
        leaves the failures uncounted, for a caller that retries and counts a record
        once, when it gives up on it (the audit processor).
        """
        if self._shutdown:
            if count_failed:
                self._count(False, fallback_count)
            return 0, fallback_count
        if self.config.disabled:
            if not self._disabled_reported:
                self._disabled_reported = True
                _stderr(
                    f"mcp-otel {self._signal} exporter: OTEL_SDK_DISABLED=true, discarding "
                    f"records for {self.config.path} (construct with disabled=False to write "
                    "anyway)\n"
                )
            return fallback_count, fallback_count
        try:
            payload, count = encode()
        except Exception as exc:  # a bug or an odd SDK object must not reach the host
            if count_failed:
                self._count(False, fallback_count)
            self._file._report(f"encode:{type(exc).__name__}", str(exc), 0)
            return 0, fallback_count
        if not payload:
            return count, count
        done = self._file.write_prefix(payload)
        written = count if done == len(payload) else payload.count(b"\n", 0, done)
        with self._counts_lock:
            self._written += written
            if count_failed:
                self._failed += count - written
        return written, count

    def _count(self, ok: bool, n: int) -> None:
        with self._counts_lock:
            if ok:
                self._written += n
            else:
                self._failed += n

    def _force_flush(self) -> bool:
        if self.config.disabled:
            return True
        return self._file.flush()

    def _do_shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._file.close()
        if self._failed:
            _stderr(
                f"mcp-otel {self._signal} exporter: {self._failed} record(s) were not "
                f"written to {self.config.path}\n"
            )
