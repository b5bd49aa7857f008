"""``AuditLogger``: the Osiris-compatible API over the parts of this package.

The class reads its settings (argument, else environment variable, else default) and
builds each record's attributes from whatever the caller passed, capped, masked and never
raising; the parts do the rest: the session with its chain and OTel pipeline
(``_session``), the writer (``_processor``), the exit and fork hooks (``_process``). Why
the audit trail has its own pipeline is in the package docstring (:mod:`mcp_otel.audit`).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from opentelemetry.metrics import MeterProvider

from mcp_otel import _fork, _json, _lifecycle, _settings, _setup, integrity, limits, redaction
from mcp_otel._otel_compat import SeverityNumber
from mcp_otel.audit import _process
from mcp_otel.audit import _processor as _ap
from mcp_otel.audit._session import _SCOPE, _Session
from mcp_otel.audit._values import _flag, _given, _iso, _redact
from mcp_otel.audit._wakeup import register_loop
from mcp_otel.exporters._file import FSYNC_POLICIES, make_private_dirs

WaitMode = Literal["written", "queued"]
AUDIT_FILE_TEMPLATE = "mcp_audit_{date}.jsonl"

ENV_WAIT = "MCP_OTEL_AUDIT_WAIT"
ENV_FSYNC = "MCP_OTEL_AUDIT_FSYNC"
ENV_QUEUE_SIZE = "MCP_OTEL_AUDIT_QUEUE_SIZE"
ENV_QUEUE_TIMEOUT = "MCP_OTEL_AUDIT_QUEUE_TIMEOUT"
ENV_LINGER = "MCP_OTEL_AUDIT_LINGER"
ENV_PREVIEW = "MCP_OTEL_AUDIT_PREVIEW_BYTES"
ENV_OTLP = "MCP_OTEL_AUDIT_OTLP"

DEFAULT_QUEUE_SIZE = 8192
_NAME_CACHE_SIZE = 1024
_NAME_CACHE_LEN = 256
_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1  # redaction keeps ints in [_I64_MIN, _U64_MAX] as numbers
DEFAULT_QUEUE_TIMEOUT = 30.0
#: Seconds an idle writer waits before it writes records nobody waits for (``queued``).
DEFAULT_LINGER = 0.05


class AuditLogger:
    """Osiris-compatible audit logger that never silently loses a record.

    ``log_dir``: the directory (else ``MCP_OTEL_DIR``/audit, else ``ValueError``).
    ``wait``: ``"written"`` (default) returns once the record is in the file, sharing one
    write with concurrent callers; ``"queued"`` returns once it is queued.
    ``key``: HMAC key for the chain (else ``MCP_OTEL_AUDIT_KEY``; else plain SHA-256).
    ``fsync``: ``"none" | "interval" | "batch"`` (else ``MCP_OTEL_AUDIT_FSYNC``, else the
    exporter's ``MCP_OTEL_FSYNC`` default). ``handle_sigterm``: flush on SIGTERM and SIGINT,
    chaining to the handler already installed (default: on unless
    ``MCP_OTEL_HANDLE_SIGNALS=false``; see :mod:`mcp_otel._lifecycle`). The rest tunes
    the queue, retries and redaction.
    """

    def __init__(
        self,
        log_dir: Path | str | None = None,
        *,
        wait: WaitMode | None = None,
        key: str | bytes | None = None,
        fsync: Literal["none", "interval", "batch"] | None = None,
        max_queue_size: int | None = None,
        max_batch_size: int = 8192,
        queue_timeout: float | None = None,
        linger: float | None = None,
        retry: _ap.RetryPolicy | None = None,
        secret_keys: Iterable[str] = (),
        allow_keys: Iterable[str] = (),
        preview_bytes: int | None = None,
        otlp: bool | None = None,
        handle_sigterm: bool | None = None,
        meter_provider: MeterProvider | None = None,
        exporter_factory: Any = None,
    ) -> None:
        if log_dir is None:
            env_dir = _settings.env_text("MCP_OTEL_DIR")
            if not env_dir:
                raise ValueError("log_dir is required (or set MCP_OTEL_DIR)")
            log_dir = Path(env_dir) / "audit"
        self.log_dir = Path(log_dir)
        if "\x00" in str(self.log_dir):
            raise ValueError("log_dir must not contain NUL")
        wait = _settings.choice_setting(  # type: ignore[assignment]
            wait, ENV_WAIT, ("written", "queued"), "written", arg="wait"
        )
        self.wait: WaitMode = wait  # type: ignore[assignment]
        self._wait_written = wait == "written"
        # None: the exporter's own default (it checks an explicit value itself).
        self._fsync = (
            fsync if fsync is not None else _settings.env_choice(ENV_FSYNC, FSYNC_POLICIES, None)
        )
        self._key = integrity.load_key(key)
        self._queue_size = _settings.number_setting(
            max_queue_size, ENV_QUEUE_SIZE, DEFAULT_QUEUE_SIZE, int, minimum=1,
            arg="max_queue_size",
        )
        self._batch_size = max_batch_size
        # 0 is a value: never wait for room (raise at once when the queue is full).
        self._queue_timeout = _settings.number_setting(
            queue_timeout, ENV_QUEUE_TIMEOUT, DEFAULT_QUEUE_TIMEOUT, float, minimum=0,
            arg="queue_timeout",
        )
        # Why 50 ms: each wake-up of the writer hands the GIL back and forth with the
        # event loop (about 20 futex calls per tool call at 130 calls/s with 2 ms); records
        # with a waiter (``written``), flushes and shutdown still wake it at once.
        self._linger = _settings.number_setting(
            linger, ENV_LINGER, DEFAULT_LINGER, float, minimum=0, arg="linger",
        )
        self._retry = retry or _ap.RetryPolicy()
        preview = _settings.number_setting(
            preview_bytes, ENV_PREVIEW, redaction.DEFAULT_PREVIEW_LIMIT, int, minimum=0,
            arg="preview_bytes",
        )
        # Secret names given here join the process's one policy, so spans, telemetry
        # events and error texts mask them too, not only this trail.
        redaction.configure(secret_keys=secret_keys, allow_keys=allow_keys)
        self._redactor = redaction.Redactor(
            preview_limit=preview,
            preview_head=min(redaction.DEFAULT_PREVIEW_HEAD, preview),
        )
        self._otlp = _settings.bool_setting(otlp, ENV_OTLP, True, arg="otlp")
        self._exporter_factory = exporter_factory
        self._path_template = str(self.log_dir / AUDIT_FILE_TEMPLATE)
        # Counters never make the audit logger create files outside log_dir: no shared
        # metrics pipeline under MCP_OTEL_DIR unless the user chose one (see _setup).
        self._meter_provider = meter_provider or _setup.component_meter_provider(self.log_dir)
        meter = self._meter_provider.get_meter(_SCOPE)
        self._m_records = meter.create_counter(
            "mcp_otel.audit.records", unit="{record}", description="Audit records written"
        )
        self._m_lost = meter.create_counter(
            "mcp_otel.audit.lost", unit="{record}",
            description="Audit records that could not be written (declared in the chain)",
        )
        self._m_records.add(0)
        self._m_lost.add(0)
        self._lock = threading.Lock()
        self._names: dict[str, Any] = {}
        self._session: _Session | None = None
        self._ended_session: _Session | None = None
        self.tool_call_counter = 0
        make_private_dirs(self.log_dir)
        self._session = _Session(self)
        _process._add_live(self)
        _process._install_process_hooks()
        if _lifecycle.signals_enabled() if handle_sigterm is None else handle_sigterm:
            _lifecycle.install_signal_handlers()

    # -- Osiris surface ----------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self._current().session_id

    @property
    def log_file(self) -> Path:
        """Today's audit file (the name follows the UTC date at write time)."""
        return Path(self._path_template.replace("{date}", _today()))

    def make_correlation_id(self) -> str:
        sess = self._current()
        with self._lock:
            self.tool_call_counter += 1
            n = self.tool_call_counter
        return f"mcp_{sess.session_id}_{n}"

    async def log_tool_call(
        self,
        tool: str | None = None,
        params_bytes: int | Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        tool_name: str | None = None,
        arguments: Any = None,
    ) -> str:
        """Record a tool call before it runs; returns the correlation id.

        Never raises for any value (see "Caps and safe forms" in docs/audit.md); a given
        ``correlation_id`` is returned unchanged, whatever is written for it.
        """
        cid: Any = correlation_id
        try:
            if params_bytes is not None and not (
                isinstance(params_bytes, int) and not isinstance(params_bytes, bool)
            ):
                if arguments is None:
                    arguments = params_bytes  # Osiris' own tests pass the arguments here
                params_bytes = None
            name = self._name(tool_name if _given(tool_name) else tool)
            if not _given(correlation_id):  # None or "" (as before): a fresh id
                cid = self.make_correlation_id()
                clean_cid = cid  # ours: nothing to mask
            else:
                clean_cid = self._field(correlation_id, limits.MAX_ID_CHARS)
            value, size, truncated = self._freeze(arguments)
            attrs: dict[str, Any] = {
                "event": "tool_call",
                "event_type": "tool_call_started",
                "tool": name,
                "tool_name": name,
                "correlation_id": clean_cid,
                "bytes_in": size if params_bytes is None
                else self._field(params_bytes, limits.MAX_VALUE_CHARS),
                "arguments": value,
            }
            if truncated:
                attrs["arguments_truncated"] = True
        except Exception as exc:
            self._unencodable(exc)
            return cid  # type: ignore[no-any-return]
        await self._log(attrs, SeverityNumber.INFO)
        return cid  # type: ignore[no-any-return]

    async def log_tool_result(
        self,
        tool: str | None = None,
        duration_ms: int | float | None = None,
        result_bytes: int | None = None,
        correlation_id: str | None = None,
        event_id: str | None = None,
        success: bool | None = None,
        payload_bytes: int | None = None,
        result: Any = None,
    ) -> None:
        """Record a tool's result. Never raises for any value."""
        try:
            size = result_bytes if result_bytes is not None else payload_bytes
            value, measured, truncated = self._freeze(result)
            attrs: dict[str, Any] = {
                "event": "tool_result",
                "event_type": "tool_call_completed",
                "tool": self._name(tool),
                "correlation_id": self._cid(correlation_id, event_id),
                "duration_ms": self._field(duration_ms, limits.MAX_VALUE_CHARS),
                "bytes_out": measured if size is None
                else self._field(size, limits.MAX_VALUE_CHARS),
                "result": value,
            }
            if success is not None:
                attrs["success"] = _flag(success)
            if truncated:
                attrs["result_truncated"] = True
        except Exception as exc:
            self._unencodable(exc)
            return
        await self._log(attrs, SeverityNumber.INFO)

    async def log_tool_error(
        self,
        tool: str | None = None,
        duration_ms: int | float | None = None,
        error_code: str | None = None,
        correlation_id: str | None = None,
        event_id: str | None = None,
        error: Any = None,
    ) -> None:
        """Record a failed tool call; secrets inside the error text are masked. Never
        raises for any value."""
        try:
            if error_code is None:
                error_code = "ERROR" if limits.truth(error, True) else "UNKNOWN"
            value, _, truncated = self._freeze(self._error_text(error))
            attrs: dict[str, Any] = {
                "event": "tool_error",
                "event_type": "tool_call_failed",
                "tool": self._name(tool),
                "correlation_id": self._cid(correlation_id, event_id),
                "duration_ms": self._field(duration_ms, limits.MAX_VALUE_CHARS),
                "error_code": self._field(error_code, limits.MAX_NAME_CHARS),
                "error": value,
            }
            if truncated:
                attrs["error_truncated"] = True
        except Exception as exc:
            self._unencodable(exc)
            return
        await self._log(attrs, SeverityNumber.ERROR)

    async def log_resource_access(self, resource_uri: str, operation: str, success: bool) -> None:
        """Record a resource read/write. Never raises for any value; a ``success`` whose
        truth value cannot be taken is written as ``status: "unknown"``."""
        now = time.time_ns()
        try:
            ok = _flag(success)
            attrs: dict[str, Any] = {
                "event": "resource_access",
                "timestamp_ms": now // 1_000_000,
                "resource_uri": self._field(resource_uri, limits.MAX_URI_CHARS),
                "operation": self._field(operation, limits.MAX_NAME_CHARS),
                "status": "ok" if ok is True else "error" if ok is False else "unknown",
            }
        except Exception as exc:
            self._unencodable(exc)
            return
        await self._log(attrs, SeverityNumber.INFO if ok is True else SeverityNumber.WARN, now)

    def get_session_summary(self) -> dict[str, Any]:
        """The current session; after :meth:`shutdown`, the session that just ended (its
        id, counts and losses, ``ended: True``) until a new one starts."""
        sess = self._session
        ended = self._ended_session
        pid = _fork.pid()
        if (sess is None or sess.pid != pid) and ended is not None and ended.pid == pid:
            sess = ended
        else:
            sess = self._current()
        return {
            "session_id": sess.session_id,
            "tool_calls": self.tool_call_counter,
            "audit_file": str(self.log_file),
            "wait": self.wait,
            "records_written": sess.written,
            "records_lost": sess.lost + sess.unqueued_lost,
            "records_queued": sess.processor.queued(),
            "callers_waiting": sess.processor.waiting(),  # for room: a stuck sink
            "ended": sess.closed,
        }

    # -- lifecycle ---------------------------------------------------------------------

    def force_flush(self, timeout: float = 30.0) -> bool:
        """Block until every record logged so far is in the file (or declared lost)."""
        sess = self._session
        if sess is None or sess.pid != os.getpid():
            return True
        timeout = limits.safe_timeout(timeout, 30.0)
        return sess.processor.force_flush(int(timeout * 1000))

    async def flush(self, timeout: float = 30.0) -> bool:
        """Awaitable :meth:`force_flush`; the waiting happens off the event loop."""
        return await asyncio.to_thread(self.force_flush, timeout)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Flush, write the session-end record, stop the writer. Idempotent.

        A later log call starts a new session (new ``session_id`` and chain).
        """
        timeout = limits.safe_timeout(timeout, 30.0)
        with self._lock:
            sess, self._session = self._session, None
        _process._discard_live(self)
        if sess is None or sess.pid != os.getpid() or sess.closed:
            return
        self._ended_session = sess  # get_session_summary() describes it from now on
        end = {
            "event": integrity.END_EVENT,
            "event_type": "session_ended",
            "session_id": sess.session_id,
            "tool_calls": self.tool_call_counter,
            "lost": sess.lost + sess.unqueued_lost,
        }  # written only if the session wrote anything (decided by the processor)
        sess.close(end, timeout)

    async def ashutdown(self, timeout: float = 30.0) -> None:
        await asyncio.to_thread(self.shutdown, timeout)

    def __enter__(self) -> AuditLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    async def __aenter__(self) -> AuditLogger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ashutdown()

    # -- internals ---------------------------------------------------------------------

    def _name(self, value: Any) -> Any:
        """:meth:`_field` for tool names: a small vocabulary repeated on every call, so
        cleaned once per name (bounded)."""
        if type(value) is not str:
            return self._field(value, limits.MAX_NAME_CHARS)
        cleaned = self._names.get(value)
        if cleaned is None:
            cleaned = self._field(value, limits.MAX_NAME_CHARS)
            if len(self._names) < _NAME_CACHE_SIZE and len(value) <= _NAME_CACHE_LEN:
                self._names[value] = cleaned
        return cleaned

    def _cid(self, correlation_id: Any, event_id: Any) -> Any:
        """Osiris' ``correlation_id or event_id``, written as a capped field."""
        return self._field(correlation_id if _given(correlation_id) else event_id,
                           limits.MAX_ID_CHARS)

    def _field(self, value: Any, cap: int) -> Any:
        """A scalar field as written: secrets masked, JSON-safe, at most ``cap`` characters
        (plus the cut marker); never raises (:func:`mcp_otel._json.clean_bounded`).

        The common values (short text, 64-bit ints, finite floats, None, bools) take a
        shorter path with the same result: these fields are on every call's hot path.
        """
        t = type(value)
        if t is str and len(value) <= cap:
            cleaned = self._redactor.clean(value)
            return cleaned if len(cleaned) <= cap else limits.cut(cleaned, cap)
        if (value is None or t is bool or (t is int and _I64_MIN <= value <= _U64_MAX)
                or (t is float and math.isfinite(value))):
            return value
        return _json.clean_bounded(self._redactor.clean, value, cap)

    def _error_text(self, error: Any) -> Any:
        """:meth:`Redactor.error_text` on a value whose odd parts are made plain JSON first
        (a mapping whose ``items()`` raises must not lose the record)."""
        if error is None or type(error) is str:
            return error
        if isinstance(error, int) and not isinstance(error, bool):
            return limits.safe_str(error)  # str() of a huge int raises
        if isinstance(error, Mapping | list | tuple | set | frozenset):
            error = _json.to_jsonable(error)
        return self._redactor.error_text(error)

    def _unencodable(self, exc: BaseException) -> None:
        """A record that could not even be built (a bug, not a value: every value has a safe
        form): counted and declared lost like one that found no room, never raised."""
        cause = RuntimeError(f"cannot build the audit record: {type(exc).__name__}")
        try:
            self._current().lost_unqueued(self, cause)
        except Exception as again:
            _ap._stderr(f"mcp-otel audit: LOST 1 audit record: {cause}; and cannot count it: "
                        f"{type(again).__name__}")

    def _freeze(self, value: Any) -> tuple[Any, int, bool]:
        """What a record carries for a payload, its original JSON size, and whether it was cut.

        The payload is frozen as JSON now (:func:`redaction.snapshot`: one C call that
        also measures it). In ``queued`` mode a small one is masked later in the writer
        thread (:meth:`_Session._seal`), before any sink sees it, so the caller does not
        pay for redaction. In ``written`` mode it is masked here: every caller of a batch
        waits for the whole batch, so work in the writer delays them all, work here only
        its own caller. A payload over the preview limit is masked and cut here, so the
        queue holds previews, never whole large values.
        """
        if value is None:
            return None, 4, False
        snap = redaction.snapshot(value)
        size = len(snap.json)
        if size <= self._redactor.preview_limit and not self._wait_written:
            return snap, size, False
        red = _redact(self._redactor, snap)
        return red.value, size, red.truncated

    def _current(self) -> _Session:
        sess = self._session
        if sess is not None and sess.pid == _fork.pid():
            return sess
        with self._lock:
            sess = self._session
            if sess is None or sess.pid != _fork.pid():
                if sess is not None:  # forked child: a new session, a new chain
                    self.tool_call_counter = 0
                sess = self._session = _Session(self)
        _process._add_live(self)
        return sess

    async def _log(self, attrs: dict[str, Any], severity: SeverityNumber,
                   now: int | None = None) -> bool:
        """Emit one record; in ``written`` mode, return once it is in the file.

        Returns False when the record was lost (already counted, reported and declared).
        """
        now = now or time.time_ns()
        attrs["timestamp"] = _iso(now)
        fut: asyncio.Future[bool] | None = None
        if self._wait_written:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            register_loop(loop)  # here, on the loop's own thread (see register_loop)
        for attempt in (1, 2):
            sess = self._current()
            attrs["session_id"] = sess.session_id
            record = sess.record(now, severity, attrs)
            record.waiter = fut
            record.defer = True
            try:
                sess.logger.emit(record)
            except RuntimeError as exc:  # shut down under our feet: use the next session
                if attempt == 2:
                    sess.lost_unqueued(self, exc)
                    return False
                continue
            if record.parked:
                try:
                    await sess.processor.put_async(record, fut)
                except _ap.QueueFullTimeout as exc:
                    sess.lost_unqueued(self, exc)
                    return False
                except RuntimeError as exc:  # shut down while waiting for room: same
                    if attempt == 2:
                        sess.lost_unqueued(self, exc)
                        return False
                    continue
            break
        if fut is None:
            return True
        return await fut


def _today() -> str:
    return time.strftime("%Y%m%d", time.gmtime())
