"""Mask secrets the SDK copies from exceptions into spans, before any span sink.

Why: when a tool or resource handler raises, the MCP SDK (and any instrumentation) sets
the span status to the exception's message and records an ``exception`` event with the
message and the stack trace. Those texts are the application's own words and hold
whatever it put there: ``cannot connect to postgresql://bob:hunter2@db/x``, a validation
error quoting the arguments. The audit trail masks such text before writing it; the spans
mcp-otel exports (the local JSONL span file and OTLP) must not write it in clear either.

:class:`MaskingSpanExporter` wraps every span exporter mcp-otel attaches. It passes a
span through untouched unless its status description or an event attribute changes under
:meth:`mcp_otel.redaction.Redactor.mask_text` / :meth:`~mcp_otel.redaction.Redactor.clean`,
and then exports a copy built with the SDK's public ``ReadableSpan`` constructor. Span
attributes are left as the instrumentation set them (semantic-convention values, not free
text). It runs in the exporting thread, never on the caller's. Unless given a redactor, it
applies the process's redaction policy (:func:`mcp_otel.redaction.policy`) as it is at
export time, so secret names configured once reach spans too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from mcp_otel import redaction
from mcp_otel.redaction import Redactor

__all__ = ["MaskingSpanExporter"]


class MaskingSpanExporter(SpanExporter):
    """A span exporter that masks status descriptions and event attributes, then delegates."""

    def __init__(self, inner: SpanExporter, redactor: Redactor | None = None) -> None:
        self._inner = inner
        self._fixed = redactor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([self._masked(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def __getattr__(self, name: str) -> Any:  # the wrapped exporter's own extras (paths, counts)
        return getattr(self._inner, name)

    def _masked(self, span: ReadableSpan) -> ReadableSpan:
        try:
            redactor = self._fixed or redaction.policy()
            status = span.status
            description = status.description
            new_description = (
                redactor.mask_text(description) if description else description
            )
            events = list(span.events)
            changed = new_description != description
            for i, event in enumerate(events):
                attrs = dict(event.attributes or {})
                if not attrs:
                    continue
                cleaned = redactor.clean(attrs)
                if cleaned != attrs:
                    events[i] = Event(event.name, cleaned, event.timestamp)
                    changed = True
            if not changed:
                return span
            return _with_texts(span, events, Status(status.status_code, new_description))
        except Exception:  # never lose a span over masking; never write it unmasked either
            return _with_texts(span, [Event(e.name, {}, e.timestamp) for e in span.events],
                               Status(span.status.status_code))


def _with_texts(span: ReadableSpan, events: Sequence[Event], status: Status) -> ReadableSpan:
    """A copy of ``span`` with other events and status, the rest as it is."""
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=span.attributes, events=events, links=span.links, kind=span.kind,
        status=status, start_time=span.start_time, end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
