"""``AuditLogger``: a drop-in for Osiris' audit logger on OpenTelemetry logs.

Why not the application's ``LoggerProvider``: its ``BatchLogRecordProcessor`` evicts under
load, loses what is queued at ``os._exit`` and never retries. The audit trail has its own
provider and an audit-grade processor, seals every record into a hash chain
(:mod:`mcp_otel.integrity`) in the writer thread, and writes flat JSONL through
:class:`mcp_otel.exporters.JsonlLogExporter` to ``<log_dir>/mcp_audit_{date}.jsonl``.
See docs/audit.md for behaviour and guarantees.

The parts, one concept per module (a lower one never imports a higher one):

* :mod:`._logger` -- :class:`AuditLogger` itself: settings, and each record's fields from
  whatever the caller passed, capped, masked and never raising;
* :mod:`._session` -- one session: its id, its chain and the private OTel pipeline that
  writes it, and what runs in the writer thread (seal, commit, declared losses);
* :mod:`._processor` -- the audit-grade ``LogRecordProcessor``: bounded queue without
  eviction, group commit, retries, the final record;
* :mod:`._wakeup` -- how the writer thread wakes the event loops whose callers wait;
* :mod:`._process` -- per process: the live loggers, the exit, multiprocessing and fork
  hooks;
* :mod:`._values` -- small helpers that turn odd values into safe fields.
"""

from __future__ import annotations

# The settings' names and the file name stay importable from here, where they always were.
from mcp_otel.audit._logger import (  # noqa: F401
    AUDIT_FILE_TEMPLATE,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_QUEUE_TIMEOUT,
    ENV_FSYNC,
    ENV_OTLP,
    ENV_PREVIEW,
    ENV_QUEUE_SIZE,
    ENV_QUEUE_TIMEOUT,
    ENV_WAIT,
    AuditLogger,
    WaitMode,
)
from mcp_otel.audit._process import install_sigterm_handler
from mcp_otel.audit._processor import RetryPolicy
from mcp_otel.audit._session import EVENT_PREFIX  # noqa: F401

__all__ = ["AuditLogger", "RetryPolicy", "install_sigterm_handler"]
