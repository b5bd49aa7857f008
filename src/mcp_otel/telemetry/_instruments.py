"""The emitter's metrics: counts aggregated in-process, exported by observable instruments.

Why counts are not SDK ``Counter``s: Osiris' ``self.metrics[...] += n`` lost 35-55% of
updates under threads (RC-002), and the exact fix is a lock around plain integers. A
synchronous OTel counter is exact too, but each ``add`` costs several microseconds (the
SDK validates and hashes the attributes for every reader's storage), and five of them per
tool call made telemetry slower than the SDK work it stands for. So :class:`Tally` keeps
the five totals, and the per-attribute sums behind them, under one lock (a few integer
additions per call), and the OTel SDK reads them through ``ObservableCounter`` callbacks,
its public API for values kept elsewhere.

Why one snapshot per collection: the SDK calls each observable instrument's callback in
turn. If each took its own copy, a call counted between two callbacks would show in
``tool_calls`` but not in the bytes of the same export. The first callback of a
collection copies everything under the lock; the other callbacks of that collection (on
the same thread: the SDK collects one reader on one thread) read the same copy.

Durations go to the SDK ``Histogram`` (``mcp.server.operation.duration``), the one
instrument per call that needs the SDK's bucket aggregation; :func:`operation_duration`
and :func:`session_duration` are the only definitions of the MCP semantic-convention
histograms in mcp-otel (``mcp_otel.instrument`` uses them too).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from mcp_otel._context import SpanIds, context_of

#: Bucket boundaries (seconds) recommended by the OTel MCP semantic conventions.
MCP_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300,
)  # fmt: skip

#: Durations recorded into the SDK histogram together (see Tally.drain).
DURATION_BATCH = 256
#: Osiris' five totals, in :attr:`Tally.totals` order.
METRIC_KEYS = ("tool_calls", "total_bytes_in", "total_bytes_out", "total_duration_ms", "errors")
SCOPE = "mcp_otel.telemetry"

# Indices of the observable counters in a snapshot (see Tally.snapshot).
_CALLS, _ERRORS, _INPUT, _OUTPUT, _DURATION, _HANDSHAKES = range(6)
#: name, unit, description of each observable counter, in snapshot order.
COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("mcp_otel.tool.calls", "{call}", "Tool calls by tool and status"),
    ("mcp_otel.tool.errors", "{error}", "Failed tool calls"),
    ("mcp_otel.tool.input", "By", "Bytes of tool arguments (JSON)"),
    ("mcp_otel.tool.output", "By", "Bytes of tool results (JSON)"),
    ("mcp_otel.tool.duration", "ms", "Total tool call time, exact integer milliseconds"),
    ("mcp_otel.handshakes", "{handshake}", "MCP initialize handshakes"),
)


def operation_duration(meter: Meter) -> Histogram:
    """``mcp.server.operation.duration`` as the MCP semantic conventions define it."""
    return meter.create_histogram(
        "mcp.server.operation.duration",
        unit="s",
        description="MCP request or notification duration as observed on the server.",
        explicit_bucket_boundaries_advisory=list(MCP_DURATION_BUCKETS),
    )


def session_duration(meter: Meter) -> Histogram:
    """``mcp.server.session.duration`` as the MCP semantic conventions define it."""
    return meter.create_histogram(
        "mcp.server.session.duration",
        unit="s",
        description="Duration of an MCP session as observed on the server.",
        explicit_bucket_boundaries_advisory=list(MCP_DURATION_BUCKETS),
    )


class Cell:
    """The sums of one (tool label, status, error type label): updated under the tally's
    lock, with the attribute dicts of its series built once."""

    __slots__ = (
        "a_calls", "a_error", "a_operation", "a_tool", "bytes_in", "bytes_out", "calls",
        "duration", "index", "is_error", "k_calls", "k_error", "k_tool",
    )  # fmt: skip

    def __init__(self, tool: str, is_error: bool, error_type: str) -> None:
        status = "error" if is_error else "ok"
        #: Its place in :attr:`Tally.cells` (set by :meth:`Tally.add_cell`).
        self.index = -1
        self.is_error = is_error
        self.calls = self.bytes_in = self.bytes_out = self.duration = 0
        self.k_calls = (tool, status)
        self.k_tool = tool
        self.k_error = (tool, error_type)
        self.a_calls = {"gen_ai.tool.name": tool, "mcp_otel.status": status}
        self.a_tool = {"gen_ai.tool.name": tool}
        self.a_error = {"gen_ai.tool.name": tool, "error.type": error_type}
        self.a_operation = {"mcp.method.name": "tools/call", "gen_ai.tool.name": tool}
        if is_error:
            self.a_operation["error.type"] = error_type


class Tally:
    """One emitter's counts in one process: per-series sums under one lock.

    ``cells`` hold the per-attribute sums the observable counters export; Osiris' five
    totals (``metrics``) are their sums, added up by :meth:`read` under the same lock
    rather than kept twice (five fewer additions per tool call), so :meth:`read` and
    :meth:`snapshot` are consistent.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.cells: list[Cell] = []
        self.handshakes = {"ok": 0, "error": 0}
        #: Durations not yet in the SDK histogram: (seconds, the cell's index in
        #: :attr:`cells`, the caller's span identity for exemplars, see mcp_otel._context).
        #: Numbers only, on purpose: a tuple holding anything else (even an attribute
        #: dict the collector does not track) stays tracked, and a duration can wait a
        #: second or more, long enough to be promoted to the oldest generation, whose
        #: growth sets off the full collections that set an MCP server's p99 latency.
        #: A tuple of numbers is untracked at its first collection.
        self.pending: list[tuple[float, int, SpanIds | None]] = []
        self.histogram: Histogram | None = None
        self._draining = threading.Lock()  # one drain (or collection) records at a time
        self._collecting = threading.local()

    def drain(self, *, wait: bool = True) -> None:
        """Record the pending durations into the SDK histogram, in one go.

        Why batches: one ``Histogram.record`` between a tool call's other work costs about
        twice what it costs in a loop of records (the SDK's code and data are cold by the
        time the next call comes). The caller's span identity is kept per duration, so
        exemplars still point at the span the call ran in. ``wait=False`` (an emitting
        thread) gives up when another drain or a collection is running: the durations
        stay pending for the next one.
        """
        if self.histogram is None:
            return
        if not self._draining.acquire(blocking=wait):
            return
        try:
            with self.lock:
                batch, self.pending = self.pending, []
            self._record(batch)
        finally:
            self._draining.release()

    def add_cell(self, cell: Cell) -> None:
        """Count ``cell``'s series from now on (under the lock: a snapshot may be running)."""
        with self.lock:
            cell.index = len(self.cells)
            self.cells.append(cell)

    def _record(self, batch: list[tuple[float, int, SpanIds | None]]) -> None:
        histogram = self.histogram
        if histogram is not None:
            record = histogram.record
            cells = self.cells
            for seconds, index, ids in batch:
                record(seconds, cells[index].a_operation, context_of(ids))

    def read(self) -> dict[str, int]:
        """A consistent copy of the five totals (in :data:`METRIC_KEYS` order)."""
        with self.lock:
            sums = [(c.calls, c.bytes_in, c.bytes_out, c.duration, c.is_error)
                    for c in self.cells]  # fmt: skip
        totals = (
            sum(s[0] for s in sums), sum(s[1] for s in sums), sum(s[2] for s in sums),
            sum(s[3] for s in sums), sum(s[0] for s in sums if s[4]),
        )  # fmt: skip
        return dict(zip(METRIC_KEYS, totals, strict=True))

    def snapshot(self) -> list[list[Observation]]:
        """Observations of every counter, copied under the lock in one go.

        The pending durations are taken in the same locked step and recorded before this
        returns, and no other drain is half done meanwhile: the SDK collects the histogram
        after the observable callbacks, so an export never counts a call whose duration
        it lacks.
        """
        with self._draining:
            with self.lock:
                sums = [(c, c.calls, c.bytes_in, c.bytes_out, c.duration) for c in self.cells]
                handshakes = list(self.handshakes.items())
                batch, self.pending = self.pending, []
            self._record(batch)
        calls: dict[Any, list[Any]] = {}
        errors: dict[Any, list[Any]] = {}
        tools: dict[Any, list[Any]] = {}
        for cell, n, b_in, b_out, ms in sums:
            entry = calls.setdefault(cell.k_calls, [cell.a_calls, 0])
            entry[1] += n
            if cell.is_error:
                entry = errors.setdefault(cell.k_error, [cell.a_error, 0])
                entry[1] += n
            entry = tools.setdefault(cell.k_tool, [cell.a_tool, 0, 0, 0])
            entry[1] += b_in
            entry[2] += b_out
            entry[3] += ms
        # A zero point without attributes on every counter: a dashboard query for errors
        # matches before the first error.
        zero = Observation(0, {})
        out: list[list[Observation]] = [[zero] for _ in COUNTERS]
        out[_CALLS] += [Observation(n, a) for a, n in calls.values()]
        out[_ERRORS] += [Observation(n, a) for a, n in errors.values()]
        for a, b_in, b_out, ms in tools.values():
            out[_INPUT].append(Observation(b_in, a))
            out[_OUTPUT].append(Observation(b_out, a))
            out[_DURATION].append(Observation(ms, a))
        out[_HANDSHAKES] += [
            Observation(n, {"mcp_otel.status": status}) for status, n in handshakes if n
        ]
        return out

    def observe(self, index: int) -> list[Observation]:
        """The callback body of counter ``index``: one snapshot per collection.

        A snapshot serves one callback of each counter; the first callback of the next
        collection (a counter whose value this thread already read) takes a new one.
        In a forked child, an inherited reader (the SDK restarts its thread there) gets
        nothing: the child counts in a fresh tally of its own, and this one's lock may have
        been held by a parent thread at fork time.
        """
        if os.getpid() != self.pid:
            return []
        local = self._collecting
        snapshot = getattr(local, "snapshot", None)
        used: set[int] | None = getattr(local, "used", None)
        if snapshot is None or used is None or index in used:
            snapshot = local.snapshot = self.snapshot()
            used = local.used = set()
        used.add(index)
        return snapshot[index]


def _callback(tally: Tally, index: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        return tally.observe(index)

    return observe


def register(meter: Meter, tally: Tally, started: Callable[[], float | None]) -> None:
    """Create the observable counters reading ``tally`` and the uptime gauge.

    ``started`` returns the monotonic start time (``None`` once the owner is gone).
    """
    for index, (name, unit, description) in enumerate(COUNTERS):
        meter.create_observable_counter(
            name, callbacks=[_callback(tally, index)], unit=unit, description=description
        )

    def uptime(_options: CallbackOptions) -> Iterable[Observation]:
        since = started()
        return [] if since is None else [Observation(time.monotonic() - since)]

    meter.create_observable_gauge(
        "mcp_otel.server.uptime",
        callbacks=[uptime],
        unit="s",
        description="Seconds since the server (or this process) started",
    )


def weak_start(owner: Any) -> Callable[[], float | None]:
    """``owner.started``, without keeping ``owner`` alive from the SDK's callback list."""
    ref = weakref.ref(owner)

    def started() -> float | None:
        current = ref()
        return None if current is None else current.started

    return started
