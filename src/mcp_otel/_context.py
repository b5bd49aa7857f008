"""Trace context that outlives a request without keeping the request's objects alive.

Queued audit records and durations waiting for the histogram keep the span they were
made in (log records carry its identity; exemplars need it). The current context holds
the live span, and a live SDK span drags its attributes, events, links and locks along:
held past the request, all of that survives a garbage collection or two and is promoted
to the oldest generation, whose growth triggers full collections. On an MCP server
(about 100,000 objects after start) each full collection stopped every thread for 65-77
ms, every 7 s at 130 calls/s, and set the p99 latency of instrumented calls
(docs/usage.md, benchmark). So what waits keeps only :func:`span_ids`: three integers in
a tuple, which the collector stops tracking at its first pass; :func:`context_of` turns
them back into a context (a non-recording span) when the SDK needs one.
"""

from __future__ import annotations

from opentelemetry.context import Context, get_current
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.span import SpanContext, TraceFlags

__all__ = ["EMPTY", "context_of", "span_ids"]

#: A span's identity: trace id, span id, trace flags.
SpanIds = tuple[int, int, int]

#: A context whose span is the invalid span (exemplars: never sampled; logs: no trace
#: id). Not the empty ``Context()``: that is falsy, and the SDK's instruments replace a
#: falsy context with the current one, which, on a thread recording another call's
#: duration, would give this duration that call's span as its exemplar.
EMPTY = set_span_in_context(INVALID_SPAN, Context())

# The last span context and its identity: a tool call's records and duration share one.
_last_span: tuple[SpanContext | None, SpanIds | None] = (None, None)


def span_ids() -> SpanIds | None:
    """The current span's identity as plain integers, or None outside any (valid) span."""
    global _last_span
    context = get_current()
    if not context:  # nothing set at all (no span): the common case outside a server
        return None
    span_context = get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return None
    cached_for, ids = _last_span  # one tuple, read and replaced atomically
    if cached_for is span_context:
        return ids
    ids = (span_context.trace_id, span_context.span_id, int(span_context.trace_flags))
    _last_span = (span_context, ids)
    return ids


# The last identity and its context: consecutive durations usually share one.
_last_ids: tuple[SpanIds | None, Context] = (None, EMPTY)


def context_of(ids: SpanIds | None) -> Context:
    """A context holding a non-recording span with identity ``ids`` (see :func:`span_ids`)."""
    global _last_ids
    if ids is None:
        return EMPTY
    cached_for, cached = _last_ids
    if cached_for == ids:
        return cached
    trace_id, span_id, flags = ids
    light = set_span_in_context(
        NonRecordingSpan(SpanContext(trace_id, span_id, False, TraceFlags(flags))), EMPTY)
    _last_ids = (ids, light)
    return light
