"""Osiris' audit logger (``AuditLogger``) on OpenTelemetry logs."""

from __future__ import annotations

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
    EVENT_PREFIX,
    AuditLogger,
    WaitMode,
    install_sigterm_handler,
)

__all__ = ["AuditLogger", "install_sigterm_handler"]
