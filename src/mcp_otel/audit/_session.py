"""One audit session: its id, its hash chain and the private OTel pipeline that writes it.

A session is what a chain covers: it starts with the first record (or in a forked child)
and ends with the session-end record that :meth:`AuditLogger.shutdown` asks for. The
logger (``_logger``) builds each record's attributes; the session turns them into log
records and owns everything that runs in the processor's writer thread (``_processor``):
the seal (masking a payload left for the writer, then the chain), the commit and loss
bookkeeping, and handing records that raced its end to the logger's next session.
"""

from __future__ import annotations

import os
import secrets
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import TraceFlags

from mcp_otel import integrity, redaction
from mcp_otel._context import span_ids
from mcp_otel._otel_compat import (
    BatchLogRecordProcessor,
    LoggerProvider,
    LogRecord,
    LogRecordLimits,
    NoOpLogger,
    ReadWriteLogRecord,
    SeverityNumber,
    UnboundedLogRecord,
)
from mcp_otel.audit import _processor as _ap
from mcp_otel.audit._values import _iso, _redact
from mcp_otel.audit._wakeup import _resolve

if TYPE_CHECKING:
    from mcp_otel.audit._logger import AuditLogger

EVENT_PREFIX = "mcp.audit."
_SCOPE = integrity.AUDIT_SCOPE
#: Pinned limits: no OTEL_*_LIMIT variable may drop or truncate a sealed attribute.
_LIMITS_MAX_ATTRIBUTES = 1024


class _AuditLogRecord(LogRecord):
    """The API's ``LogRecord``, set up directly: its constructor's keyword handling cost a
    sixth of a ``queued`` call. Same attributes, same values (a test compares them with the
    API constructor's, so an SDK that adds one fails the test, not production)."""

    def __init__(self, now: int, severity: SeverityNumber, event_name: str,
                 attributes: dict[str, Any]) -> None:
        # The span's identity as numbers, not the live span nor even a context holding its
        # identity: a queued record (it waits up to the writer's linger) must hold no
        # object of the request's, or the request's objects reach the oldest garbage
        # collector generation with it (see mcp_otel._context). Nothing reads the
        # record's context: the session's provider has no processor but the audit one,
        # and exporters read the three fields.
        ids = span_ids()
        self.timestamp = now
        self.observed_timestamp = now
        self.context = None
        if ids is None:
            self.trace_id = self.span_id = 0
            self.trace_flags = _FLAGS[0]
        else:
            self.trace_id, self.span_id, flags = ids
            self.trace_flags = _FLAGS[flags] if flags < 2 else TraceFlags(flags)
        self.severity_text = _SEVERITY_TEXT[severity]
        self.severity_number = severity
        self.body = None
        self.attributes = attributes
        self.event_name = event_name
        self.exception = None


class _AuditRecord(_ap.AuditRecord, UnboundedLogRecord):
    """A record whose attributes are already encoded (see :mod:`redaction`).

    The SDK wraps attributes in ``BoundedAttributes``, which re-cleans every nested value
    and may drop or truncate by ``OTEL_*_LIMIT``. An audit record is encoded before emit
    and sealed by value, so it skips that pass (:class:`UnboundedLogRecord`): nothing can
    change it after the redactor, and the hash covers exactly what is written. In
    ``queued`` mode a payload is still a :class:`redaction.Snapshot` (JSON bytes, unmasked)
    between emit and the writer's seal, which masks it: only the audit processor sees the
    record in between (the audit ``LoggerProvider`` is private to the session and has no
    other processor).
    """


class _DirectLogger:
    """What the SDK's ``Logger.emit`` does with a ``ReadWriteLogRecord``: hand it to the
    processor. Used only when ``OTEL_SDK_DISABLED`` makes the provider's loggers no-ops."""

    __slots__ = ("_processor",)

    def __init__(self, processor: _ap.AuditLogRecordProcessor) -> None:
        self._processor = processor

    def emit(self, record: ReadWriteLogRecord) -> None:
        self._processor.on_emit(record)


_SEVERITY_TEXT = {s: s.name for s in SeverityNumber}  # Enum.name is a slow property
_FLAGS = (TraceFlags(0), TraceFlags(1))  # shared: one object fewer per queued record
_LIMITS = LogRecordLimits(
    max_attributes=_LIMITS_MAX_ATTRIBUTES,
    max_attribute_length=LogRecordLimits.UNSET,
    max_log_record_attributes=_LIMITS_MAX_ATTRIBUTES,
    max_log_record_attribute_length=LogRecordLimits.UNSET,
)


class _Session:
    """One writer: a session id, its chain, and the OTel pipeline that writes it."""

    def __init__(self, owner: AuditLogger) -> None:
        from mcp_otel import _setup
        from mcp_otel.exporters import JsonlLogExporter, RotationPolicy

        self.pid = os.getpid()
        self.session_id = "mcp_" + secrets.token_hex(6)
        self.chain = integrity.Chain(self.session_id, owner._key)
        self.redactor = owner._redactor
        self.written = 0
        self.lost = 0
        self.unqueued_lost = 0
        self._owner = weakref.ref(owner)
        if owner._exporter_factory is not None:
            exporter = owner._exporter_factory()
        else:
            # Every option explicit: no MCP_OTEL_JSONL_* deployment variable may rotate,
            # prune, compress or reshape the audit trail.
            exporter = JsonlLogExporter(
                owner._path_template, format="flat", fsync=owner._fsync,
                file_mode=0o600, dir_mode=0o700, disabled=False,
                rotation=RotationPolicy(), include_resource=False,
            )
        self.exporter = exporter
        self.otlp: BatchLogRecordProcessor | None = None
        if owner._otlp:
            otlp_exporter = _setup.otlp_exporter("logs")
            if otlp_exporter is not None:
                self.otlp = _setup.batch_log_processor(_setup.fork_safe(otlp_exporter))
        self.processor = _ap.AuditLogRecordProcessor(
            exporter,
            max_queue_size=owner._queue_size,
            max_batch_size=owner._batch_size,
            queue_timeout=owner._queue_timeout,
            linger=owner._linger,
            retry=owner._retry,
            seal=self._seal,
            on_committed=self._committed,
            on_lost=self._lost,
            on_late=self._late,
        )
        self.provider = LoggerProvider(
            resource=_setup.build_resource(),
            shutdown_on_exit=False,
            meter_provider=owner._meter_provider,
            log_record_limits=_LIMITS,
        )
        self.provider.add_log_record_processor(self.processor)
        self.resource = self.provider.resource
        self.scope = InstrumentationScope(_SCOPE)
        logger = self.provider.get_logger(_SCOPE)
        if isinstance(logger, NoOpLogger):
            # The audit trail is the system of record, not telemetry: OTEL_SDK_DISABLED
            # turns off the OTLP copy (see _setup.otlp_exporter), never the local file.
            # A disabled provider hands out no-op loggers, so records go straight to the
            # audit processor, as the SDK's Logger.emit would pass them.
            logger = _DirectLogger(self.processor)
        self.logger: Any = logger
        self.closed = False

    def record(self, now: int, severity: SeverityNumber, attrs: dict[str, Any]) -> _AuditRecord:
        rec = _AuditLogRecord(now, severity, EVENT_PREFIX + attrs["event"], attrs)
        return _AuditRecord(rec, self.resource, self.scope, _LIMITS)

    # Hooks run in the processor's writer thread.
    def _seal(self, record: ReadWriteLogRecord) -> None:
        attrs = record.log_record.attributes
        for name, value in attrs.items():  # type: ignore[union-attr]
            if type(value) is redaction.Snapshot:  # masked here, before any sink
                attrs[name] = _redact(self.redactor, value).value  # type: ignore[index]
        if attrs.get("event") == integrity.END_EVENT:  # type: ignore[union-attr]
            # The losses as of now, in the writer: the figure taken at shutdown() missed
            # the records still queued then, which can be lost by the final flush.
            attrs["lost"] = self.lost + self.unqueued_lost  # type: ignore[index]
        self.chain.seal(attrs)  # type: ignore[arg-type]

    def _committed(self, records: Sequence[ReadWriteLogRecord]) -> None:
        """``records``, a leading part of the batch being written or all of it, are in the
        file. On a full disk the rest of the batch may still be lost, so the chain's
        written head is the last of *these* records, not the last record sealed; and a
        pending loss counts as declared only if the record that carries the declaration
        is among them."""
        attrs = [r.log_record.attributes or {} for r in records]
        if any(integrity.F_LOST in a for a in attrs):
            self.chain.committed()
        head = attrs[-1].get(integrity.F_HASH) if attrs else None
        if isinstance(head, str):
            self.chain.written_head = head
        else:  # a record that could not be sealed: as before, the head of the chain
            self.chain.committed()
        self.written += len(records)
        owner = self._owner()
        if owner is not None:
            owner._m_records.add(len(records))
        if self.otlp is not None:
            for r in records:
                self.otlp.on_emit(r)

    def _lost(self, records: Sequence[ReadWriteLogRecord], error: BaseException | None) -> None:
        seqs = [r.log_record.attributes.get(integrity.F_SEQ) for r in records]  # type: ignore[union-attr]
        nums = [s for s in seqs if isinstance(s, int)]
        n = len(records)
        self.lost += n
        if nums:
            self.chain.lost(min(nums), max(nums))
        owner = self._owner()
        if owner is not None:
            owner._m_lost.add(n)
        cause = f": {error!r}" if error is not None else " (exporter reported failure)"
        rng = f" (seq {min(nums)}..{max(nums)})" if nums else ""
        _ap._stderr(
            f"mcp-otel audit: LOST {n} audit record(s){rng} of session {self.session_id} "
            f"after {owner._retry.attempts if owner else '?'} attempts{cause}; the loss is "
            "declared in the next record of the session"
        )

    def _late(self, items: list[tuple[ReadWriteLogRecord, Any]]) -> None:
        """Records that raced this session's end: they go to the logger's next session."""
        owner = self._owner()
        if owner is None:
            raise RuntimeError("audit logger is gone")
        nxt = owner._current()
        if nxt is self:
            raise RuntimeError("no next session")
        for i, (record, waiter) in enumerate(items):
            try:
                nxt.processor.put(record, waiter)
            except Exception as exc:  # no room in time, or that session ended too
                # Only the records not handed over are lost: they never got a seq, so
                # the next session declares them by count (``unqueued``), like a call
                # that found no room; raising would count the handed-over ones too.
                rest = items[i:]
                for _ in rest:
                    nxt.lost_unqueued(owner, exc)
                _resolve(rest, False)
                return

    def lost_unqueued(self, owner: AuditLogger, exc: BaseException) -> None:
        self.unqueued_lost += 1
        self.chain.lost_unqueued()
        owner._m_lost.add(1)
        _ap._stderr(f"mcp-otel audit: LOST 1 audit record of session {self.session_id}: {exc}")

    def close(self, end_attrs: dict[str, Any] | None, timeout: float) -> None:
        if self.closed:
            return
        self.closed = True
        if end_attrs is not None and os.getpid() == self.pid:
            now = time.time_ns()
            end_attrs.setdefault("timestamp", _iso(now))
            record = self.record(now, SeverityNumber.INFO, end_attrs)
            record.final = True
            try:
                self.logger.emit(record)
            except Exception as exc:
                _ap._stderr(f"mcp-otel audit: cannot write the session-end record: {exc!r}")
        self.processor.shutdown(int(timeout * 1000))
        if self.otlp is not None and os.getpid() == self.pid:
            self.otlp.force_flush(int(min(timeout, 5.0) * 1000))
            self.otlp.shutdown()
