"""What the cache shows of itself: its spans, their coherency events and two counters.

Spans are ``cache.get``, ``cache.set``, ``cache.invalidate``, ``cache.clear_expired`` and
``cache.clear_all`` (scope ``mcp_otel.cache``); every coherency action is a span event
``cache.<event>`` and a point of ``mcp_otel.cache.coherency_events``. Only hashed ids
reach them. When the tracer provider cannot record (no-op provider, SDK disabled,
``ALWAYS_OFF`` sampler) the cache holds no tracer and makes no tracer call at all.

The counters are observable counters over process-wide integers because a synchronous SDK
``Counter.add`` costs several microseconds, more than a whole memory hit. Several caches
may share one meter provider; the callbacks of one instrument would overwrite each other,
so all caches of a provider add into one :class:`_Counts`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics as _metrics_api
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, Status, StatusCode

from mcp_otel import _setup

if TYPE_CHECKING:
    from mcp_otel.cache._memory import _Record

_SCOPE = "mcp_otel.cache"

# Attribute and event names (see docs/architecture.md for the metric ones).
A_HIT = "cache.hit"
A_TIER = "mcp_otel.cache.tier"
A_KEY = "mcp_otel.cache.key"
A_ID = "mcp_otel.cache.discovery_id"
A_TTL = "mcp_otel.cache.ttl_s"
A_SIZE = "mcp_otel.cache.entry_size"
A_REMOVED = "mcp_otel.cache.removed"
A_CONN = "mcp_otel.cache.connection_hash"
A_EVENT = "mcp_otel.cache.event"
A_RESULT = "mcp_otel.cache.result"
EVENTS = (
    "expired",
    "memory_evicted",
    "disk_evicted",
    "stale_dropped",
    "corrupt_removed",
    "identity_mismatch",
)


# --------------------------------------------------------------------------- metrics


@dataclass
class _Counts:
    """Process-wide counts behind the observable counters of one meter provider."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    hit_memory: int = 0
    hit_disk: int = 0
    miss: int = 0
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENTS, 0))

    def event(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.events[name] += n

    def reset_after_fork(self) -> None:
        """A forked child is a new series (new ``service.instance.id``): start at zero."""
        self.lock = threading.Lock()
        self.hit_memory = self.hit_disk = self.miss = 0
        self.events = dict.fromkeys(EVENTS, 0)

    def absorb(self, other: _Counts) -> None:
        """Add what ``other`` counted (used when a child switches to its own provider)."""
        with other.lock:
            values = (other.hit_memory, other.hit_disk, other.miss, dict(other.events))
        with self.lock:
            self.hit_memory += values[0]
            self.hit_disk += values[1]
            self.miss += values[2]
            for name, n in values[3].items():
                self.events[name] += n

    def _requests(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            values = (self.hit_memory, self.hit_disk, self.miss)
        yield Observation(values[0], {A_RESULT: "hit", A_TIER: "memory"})
        yield Observation(values[1], {A_RESULT: "hit", A_TIER: "disk"})
        yield Observation(values[2], {A_RESULT: "miss", A_TIER: "none"})

    def _events(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self.lock:
            values = dict(self.events)
        for name, value in values.items():
            yield Observation(value, {A_EVENT: name})


_COUNTS: dict[int, tuple[object, _Counts]] = {}
_COUNTS_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    """Fresh locks and zeroed counts in a forked child (called by the cache's fork hook)."""
    global _COUNTS_LOCK
    _COUNTS_LOCK = threading.Lock()
    for _provider, counts in _COUNTS.values():
        counts.reset_after_fork()


def _counts_for(provider: _metrics_api.MeterProvider) -> _Counts:
    with _COUNTS_LOCK:
        known = _COUNTS.get(id(provider))
        if known is not None and known[0] is provider:
            return known[1]
        counts = _Counts()
        meter = provider.get_meter(_SCOPE, _version())
        meter.create_observable_counter(
            "mcp_otel.cache.requests",
            callbacks=[counts._requests],
            unit="{request}",
            description="Discovery cache lookups by result and answering tier",
        )
        meter.create_observable_counter(
            "mcp_otel.cache.coherency_events",
            callbacks=[counts._events],
            unit="{event}",
            description="Discovery cache coherency actions",
        )
        _COUNTS[id(provider)] = (provider, counts)
        return counts


def _version() -> str:
    from mcp_otel import __version__

    return __version__


# --------------------------------------------------------------------------- tracing


def _tracer_for(provider: trace.TracerProvider | None, cache_dir: Path) -> trace.Tracer | None:
    """A tracer, or None when this provider can never record (then no tracer work at all)."""
    if provider is None:
        provider = _setup.component_tracer_provider(cache_dir)
    if isinstance(provider, trace.NoOpTracerProvider):
        return None
    tracer = provider.get_tracer(_SCOPE, _version())
    if isinstance(tracer, trace.NoOpTracer):
        return None
    sampler = getattr(provider, "sampler", None)
    if sampler is not None:
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

        if sampler is ALWAYS_OFF:
            return None
    return tracer


def _event(span: Span | None, name: str, discovery_id: str, **attrs: Any) -> None:
    if span is not None:
        span.add_event(f"cache.{name}", {A_EVENT: name, A_ID: discovery_id, **attrs})


class _Operation:
    """The span of one cache operation, as a ``with`` block.

    ``live`` is the span when it records, else None (callers set attributes and events
    only on ``live``). With ``record_errors`` an exception leaving the block is recorded on
    the span and marks it failed. The span always ends.
    """

    __slots__ = ("_record_errors", "live", "span")

    def __init__(self, tracer: trace.Tracer | None, name: str, record_errors: bool) -> None:
        self.span = None if tracer is None else tracer.start_span(name)
        self.live = self.span if self.span is not None and self.span.is_recording() else None
        self._record_errors = record_errors

    def __enter__(self) -> _Operation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self.span
        if span is None:
            return
        if exc is not None and self._record_errors:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        span.end()


class _Observer:
    """One cache's tracer and the counts it adds into.

    ``counts`` follows the meter provider: a forked child of a process that used
    mcp-otel's shared provider counts into the child's rebuilt provider
    (:meth:`follow_provider_after_fork`).
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: _metrics_api.MeterProvider | None,
        cache_dir: Path,
    ) -> None:
        # Files only under cache_dir: see _setup (component providers).
        self._cache_dir = cache_dir
        self.tracer = _tracer_for(tracer_provider, cache_dir)
        self._meter_provider = meter_provider or _setup.component_meter_provider(cache_dir)
        self._auto_meter = meter_provider is None
        self.counts = _counts_for(self._meter_provider)

    def after_fork_in_child(self) -> None:
        self.counts.reset_after_fork()

    def follow_provider_after_fork(self) -> None:
        """mcp-otel's shared provider is rebuilt in a child; count into the new one."""
        if not self._auto_meter:
            return
        provider = _setup.component_meter_provider(self._cache_dir)
        if provider is not self._meter_provider:
            counts = _counts_for(provider)
            if counts is not self.counts:
                counts.absorb(self.counts)
                self._meter_provider, self.counts = provider, counts

    def operation(self, name: str, record_errors: bool = False) -> _Operation:
        return _Operation(self.tracer, name, record_errors)

    def note(self, span: Span | None, name: str, discovery_id: str, **attrs: Any) -> None:
        """Count one coherency action and show it as an event of ``span``."""
        self.counts.event(name)
        _event(span, name, discovery_id, **attrs)

    def memory_hit(self, rec: _Record, now: float) -> None:
        """The hot traced path: one span call with attributes prepared once per record."""
        attrs = rec.hit_attributes
        if attrs is None:
            attrs = rec.hit_attributes = rec.span_attributes("memory")
        span = self.tracer.start_span(  # type: ignore[union-attr]
            "cache.get", attributes=attrs, start_time=int(now * 1e9)
        )
        span.end()

    def answered(
        self, span: Span | None, rec: _Record | None, tier: str
    ) -> dict[str, Any] | None:
        """Count a lookup's answer, show it on ``span`` and return the entry (or None)."""
        counts = self.counts
        with counts.lock:
            if rec is None:
                counts.miss += 1
            elif tier == "memory":
                counts.hit_memory += 1
            else:
                counts.hit_disk += 1
        if span is not None:
            if rec is None:
                span.set_attributes({A_HIT: False, A_TIER: tier})
            else:
                span.set_attributes(rec.span_attributes(tier))
        return None if rec is None else rec.entry
