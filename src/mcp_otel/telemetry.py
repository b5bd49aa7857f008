"""``TelemetryEmitter``: Osiris' telemetry API on OpenTelemetry metrics and log records.

Why it is built this way (see docs/telemetry.md for the user-facing guarantees):

* **The counts live in OTel instruments, not in a dict.** Osiris' ``self.metrics[...] += n``
  lost 35-55% of updates under threads (RC-002). The SDK aggregates each instrument
  atomically; ``metrics`` and ``get_session_summary()`` read the values back from the SDK's
  own aggregation, through a reader on the emitter's *own* ``MeterProvider`` (so two
  emitters never mix their counts): the snapshot file's periodic reader when there is one
  (one aggregation serves both), else an ``InMemoryMetricReader``.
* **One lock makes the five totals consistent with each other.** Every call's updates
  happen under ``self._lock``, and so does every collection (the read-back, and the
  exporting readers through :class:`_ConsistentPeriodicReader`): a reader never sees
  ``tool_calls`` incremented without the matching bytes, in-process or in an exported
  snapshot.
* **Counting never depends on exporting.** ``enabled=False`` keeps an in-memory reader and
  drops every exporter and file, so the report's ``TelemetryEmitter(enabled=False)`` test
  sees exact counts. With ``OTEL_SDK_DISABLED=true`` the SDK hands out no-op instruments,
  so the emitter falls back to a locked dict: still exact, nothing exported.
* **A forked child starts at zero.** The SDK copies a provider's accumulated state into a
  child; exporting it again (under the child's new ``service.instance.id``) would count the
  parent's calls twice in a backend. After ``fork`` the emitter builds a fresh pipeline
  (new resource, zero counts, new session id); the inherited exporters are inert
  (``_setup.fork_safe``).
* **Events are OTel log records.** ``server_start``, ``server_stop``, ``handshake`` and
  ``tool_call`` carry Osiris' fields as attributes, written by the locked JSONL exporter
  (flat format: one line, Osiris' fields at top level) through the audit trail's
  no-eviction processor, and sent over OTLP (SDK batch processor) when configured.
* **The host server never crashes because of telemetry.** Bad values are transformed in a
  documented way (``_as_count``) and any internal failure is logged, never raised.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableGauge,
)
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import DropAggregation
from opentelemetry.sdk.resources import Resource

from mcp_otel import _fork, _json, _setup, limits

__all__ = ["TelemetryEmitter", "get_telemetry", "init_telemetry"]

_log = logging.getLogger(__name__)

#: Bucket boundaries (seconds) recommended by the OTel MCP semantic conventions.
MCP_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300,
)  # fmt: skip
#: Distinct tool names (and error types) an emitter puts on metrics; later ones share
#: ``_OTHER``. Keeps series bounded when a client invents tool names. (The caps live in
#: :mod:`mcp_otel.limits`, with every other one.)
MAX_TOOL_NAMES = limits.MAX_TOOL_NAMES
MAX_ERROR_TYPES = limits.MAX_ERROR_TYPES
MAX_NAME_LENGTH = limits.MAX_LABEL_CHARS
#: Largest value one call adds to a counter (exact in JSON doubles and OTLP int64 sums).
MAX_VALUE = 2**53 - 1
_OTHER = "_other"
#: Queue of the telemetry event processors; large so a burst is written, not dropped.
EVENT_QUEUE_SIZE = 65_536
#: How long an event waits for room in a full file queue before it is given up (logged).
EVENT_QUEUE_TIMEOUT_S = 2.0

METRIC_KEYS = ("tool_calls", "total_bytes_in", "total_bytes_out", "total_duration_ms", "errors")
_READBACK = {
    "mcp_otel.tool.calls": "tool_calls",
    "mcp_otel.tool.input": "total_bytes_in",
    "mcp_otel.tool.output": "total_bytes_out",
    "mcp_otel.tool.duration": "total_duration_ms",
    "mcp_otel.tool.errors": "errors",
}
EVENT_PREFIX = "mcp.telemetry."
_SCOPE = "mcp_otel.telemetry"


# --------------------------------------------------------------------------- helpers


def _as_count(value: Any) -> tuple[int, bool]:
    """A non-negative int for a counter, and whether ``value`` had to be transformed.

    Counters only go up, and the SDK silently drops a negative ``add`` (which would leave
    ``tool_calls`` counted but ``bytes`` not). So: ints are kept, finite floats rounded,
    numeric strings parsed; negatives, NaN/inf and anything else count as 0, and values
    above 2**53 - 1 (beyond what JSON and OTLP backends hold exactly) are capped there.
    The event line lists every transformed field under ``mcp_otel.invalid_fields``.
    Subclasses are read through their base type (``int.__int__``, ...), so no override of
    theirs can raise here; a numeric string longer than :data:`MAX_COUNT_TEXT` counts 0.
    """
    if type(value) is int and 0 <= value <= MAX_VALUE:
        return value, False
    if isinstance(value, bool):
        return int(value), True
    if isinstance(value, int):
        number: int = int.__int__(value)
    elif isinstance(value, float):
        real = float.__float__(value)
        if real != real or real in (float("inf"), float("-inf")):
            return 0, True
        number = round(real)
        if number == real and 0 <= number <= MAX_VALUE:
            return number, False
    elif isinstance(value, str):
        text = str.__str__(value)
        if len(text) > MAX_COUNT_TEXT:
            return 0, True
        text = text.strip()
        try:
            number = int(text)
        except ValueError:
            try:  # "12.7": a numeric string is parsed as a number, then rounded like one
                parsed = float(text)
            except ValueError:
                return 0, True
            if parsed != parsed or parsed in (float("inf"), float("-inf")):
                return 0, True
            number = round(parsed)
    else:
        return 0, True
    return min(max(number, 0), MAX_VALUE), True


#: Longest numeric string :func:`_as_count` parses (a count has at most 16 digits).
MAX_COUNT_TEXT = 64


def _is_error(status: Any) -> bool:
    """Osiris' ``status == "error"``, without calling a foreign ``__eq__``."""
    return isinstance(status, str) and str.__eq__(status, "error") is True


def _label(value: Any) -> str:
    text = limits.safe_str(value)
    if len(text) > MAX_NAME_LENGTH:
        text = text[:MAX_NAME_LENGTH]
    return text


def _bounded_label(value: Any, seen: set[str], limit: int) -> str:
    """``_label(value)``, or ``_OTHER`` once ``seen`` (the caller's set) holds ``limit``
    other labels: names come from clients, and metric series must stay bounded."""
    label = _label(value)
    if label not in seen:
        if len(seen) >= limit:
            return _OTHER
        seen.add(label)
    return label


def _iso(ns: int) -> str:
    """Osiris' ``datetime.now(UTC).isoformat()`` form, from the record's own timestamp."""
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = _dt.datetime.fromtimestamp(seconds, _dt.UTC).replace(microsecond=rest // 1000)
    return stamp.isoformat()




def _clean(value: Any, cap: int) -> Any:
    """Secrets masked, JSON-safe and at most ``cap`` characters, before any sink.

    Uses the audit trail's :class:`mcp_otel.redaction.Redactor` (Osiris' key rules plus
    URL/DSN passwords) through :func:`_json.clean_bounded`, as the audit trail's scalar
    fields do: a value that raises gets its safe form, text is cut before masking, a list
    or object whose JSON is longer than ``cap`` becomes that JSON text, cut.
    """
    from mcp_otel import redaction

    return _json.clean_bounded(redaction.policy().clean, value, cap)


class _ConsistentPeriodicReader(PeriodicExportingMetricReader):
    """A periodic exporting reader whose collection runs under the emitter's lock, and
    which can also be read back without exporting.

    Each instrument is atomic on its own; holding the same lock as ``emit_tool_call``
    while the SDK collects makes every snapshot consistent across instruments (``calls``
    and ``bytes`` of the same calls). Only the collection is locked, not the export, so a
    slow collector never blocks the host server.

    Read-back (:meth:`read_back`) reuses this reader's aggregation instead of a second
    in-memory reader: the SDK keeps one aggregation per reader, so every extra reader
    costs every ``add`` another storage update.
    """

    def __init__(self, exporter: Any, *, lock_of: Callable[[], Any], **reader_kwargs: Any) -> None:
        self._lock_of = lock_of
        self._capture = threading.local()
        self._owner_pid = os.getpid()
        super().__init__(exporter, **reader_kwargs)

    def _set_collect_callback(self, func: Any) -> None:  # type: ignore[override]
        if func is None:
            super()._set_collect_callback(func)
            return
        lock_of = self._lock_of
        owner_pid = self._owner_pid

        def locked(reader: Any, *args: Any, **kwargs: Any) -> Any:
            if os.getpid() != owner_pid:
                # An inherited copy in a forked child (the SDK restarts its thread there):
                # its exporter is inert, and collecting would take the child's lock and SDK
                # locks a parent thread may have held at fork time. Nothing to collect.
                return None
            with lock_of():
                return func(reader, *args, **kwargs)

        super()._set_collect_callback(locked)

    def read_back(self) -> MetricsData | None:
        """Collect (under the lock) and return the data instead of exporting it."""
        capture = self._capture
        capture.active, capture.data = True, None
        try:
            self.collect()
            return capture.data
        finally:
            capture.active, capture.data = False, None

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        if getattr(self._capture, "active", False):
            self._capture.data = metrics_data
            return
        super()._receive_metrics(metrics_data, timeout_millis=timeout_millis, **kwargs)


@dataclass
class _Instruments:
    calls: Counter
    errors: Counter
    bytes_in: Counter
    bytes_out: Counter
    duration: Counter
    handshakes: Counter
    operation_duration: Histogram
    session_duration: Histogram


@dataclass
class _Pipeline:
    """Everything of one emitter that belongs to one process (rebuilt after fork).

    The meter provider and its in-memory reader live as long as the emitter, so counting
    goes on after :meth:`TelemetryEmitter.shutdown`; only the exporting parts (periodic
    readers, the logger provider) are flushed and stopped.
    """

    pid: int
    started: float
    resource: Resource | None = None
    meter_provider: MeterProvider | None = None
    reader: MetricReader | None = None
    instruments: _Instruments | None = None
    exporting_readers: list[PeriodicExportingMetricReader] = field(default_factory=list)
    logger_provider: LoggerProvider | None = None
    logger: Any = None
    fallback: dict[str, int] | None = None
    attrs: dict[tuple[str, bool, str | None], tuple[dict[str, str], ...]] = field(
        default_factory=dict
    )
    tool_names: set[str] = field(default_factory=set)
    error_types: set[str] = field(default_factory=set)

    def flush(self, timeout_millis: int) -> bool:
        ok = True
        sinks: list[Any] = [self.logger_provider, *self.exporting_readers]
        for sink in sinks:
            if sink is None:
                continue
            try:
                ok = bool(sink.force_flush(timeout_millis=timeout_millis)) and ok
            except Exception as exc:
                _log.warning("mcp-otel telemetry: flush failed: %s", exc)
                ok = False
        return ok

    def shutdown(self) -> None:
        if self.pid != os.getpid():
            # An inherited copy: its exporters are inert, but the SDK restarted its periodic
            # readers' threads in this child; stop them (their collections are no-ops here).
            readers, self.exporting_readers = self.exporting_readers, []
            for reader in readers:
                try:
                    reader.shutdown()
                except Exception as exc:
                    _log.warning("mcp-otel telemetry: shutdown failed: %s", exc)
            return
        sinks: list[Any] = [self.logger_provider, *self.exporting_readers]
        self.logger = self.logger_provider = None
        self.exporting_readers = []
        for sink in sinks:
            if sink is None:
                continue
            try:
                sink.shutdown()
            except Exception as exc:
                _log.warning("mcp-otel telemetry: shutdown failed: %s", exc)


class _LockCell:
    """Holds an emitter's current lock, for its periodic readers' collections.

    The readers' threads keep their ``lock_of`` for as long as they run; a bound method of
    the emitter there would keep the emitter alive forever (its finaliser, which stops those
    threads and closes the files, would never run when the host drops it without
    ``shutdown()``). The cell references only the lock, never the emitter; after fork the
    emitter puts its fresh lock in it (:meth:`TelemetryEmitter._reset_locks`).
    """

    __slots__ = ("lock",)

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock

    def __call__(self) -> threading.Lock:
        return self.lock


def _shutdown_box(box: list[_Pipeline]) -> None:
    if box:
        box[0].shutdown()


_live: weakref.WeakSet[TelemetryEmitter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Only fresh locks here (one may have been held by another thread at fork time);
    # the pipeline is rebuilt lazily on first use, after all the SDK's own fork hooks.
    for emitter in list(_live):
        emitter._reset_locks()


_fork.register(_fork.COMPONENTS, after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- the emitter


class TelemetryEmitter:
    """Drop-in for Osiris' ``TelemetryEmitter`` with exact, thread- and fork-safe counts.

    ``enabled=False`` still counts (``metrics`` is exact) but writes and exports nothing.
    ``output_dir`` defaults to ``<MCP_OTEL_DIR>/telemetry``; events go to
    ``mcp_telemetry_{date}.jsonl`` and metric snapshots (every
    ``OTEL_METRIC_EXPORT_INTERVAL`` ms and at flush/shutdown) to
    ``mcp_metrics_{date}.jsonl`` there, plus OTLP when an endpoint is configured.
    """

    def __init__(self, enabled: bool = True, output_dir: Path | None = None) -> None:
        self.enabled = limits.truth(enabled, True)  # a truth value that raises: the default
        self.output_dir = (
            Path(output_dir) if output_dir is not None else _setup.data_dir() / "telemetry"
        )
        self.session_id = self._new_session_id()
        self._lock = threading.Lock()
        self._lock_cell = _LockCell(self._lock)
        self._build_lock = threading.Lock()
        self._closed = False
        self._event_file_processor: Any = None
        self._box: list[_Pipeline] = [self._build_pipeline()]
        self._finalizer = weakref.finalize(self, _shutdown_box, self._box)
        _live.add(self)

    # ----------------------------------------------------------------- Osiris API

    @property
    def telemetry_file(self) -> Path:
        """Today's event file (the name follows the UTC date, so it rotates at midnight)."""
        return self.output_dir / f"mcp_telemetry_{time.strftime('%Y%m%d', time.gmtime())}.jsonl"

    @property
    def metrics_file(self) -> Path:
        """Today's metric snapshot file."""
        return self.output_dir / f"mcp_metrics_{time.strftime('%Y%m%d', time.gmtime())}.jsonl"

    @property
    def resource(self) -> Resource | None:
        """This process's resource (``service.name``, ``service.instance.id``), or ``None``
        when the SDK is disabled."""
        return self._pipeline().resource

    @property
    def events_lost(self) -> int:
        """Events that could not be written to this process's event file (after retries)."""
        processor = self._event_file_processor
        return int(getattr(processor, "lost", 0)) if processor is not None else 0

    @property
    def metrics(self) -> dict[str, int]:
        """Osiris' five totals, read back from the SDK's aggregation (a fresh copy)."""
        return self._read_totals()

    def emit_tool_call(
        self,
        tool: str,
        status: str,
        duration_ms: int,
        bytes_in: int,
        bytes_out: int,
        error: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        error_type: str | None = None,
    ) -> None:
        """Count one tool call and write its event.

        ``status == "error"`` counts an error; ``error_type`` (an extension; default
        ``tool_error`` as the MCP conventions say for a failed tool result) becomes the
        low-cardinality ``error.type`` attribute. ``error`` itself (free text) goes only
        on the event line, never on a metric.
        """
        try:
            pipeline = self._pipeline()
            is_error = _is_error(status)
            duration, bad_duration = _as_count(duration_ms)
            size_in, bad_in = _as_count(bytes_in)
            size_out, bad_out = _as_count(bytes_out)
            if pipeline.fallback is not None:
                with self._lock:
                    totals = pipeline.fallback
                    totals["tool_calls"] += 1
                    totals["total_bytes_in"] += size_in
                    totals["total_bytes_out"] += size_out
                    totals["total_duration_ms"] += duration
                    if is_error:
                        totals["errors"] += 1
                return
            seconds = _seconds(duration_ms, duration)
            # Cut before the attribute cache: its keys must not hold a client's 50 MB name.
            tool_name = limits.cut(limits.safe_str(tool), limits.MAX_NAME_CHARS)
            if error_type is not None:
                error_type = limits.cut(limits.safe_str(error_type), limits.MAX_NAME_CHARS)
            cached = pipeline.attrs.get((tool_name, is_error, error_type))
            if cached is None:
                cached = self._attributes(pipeline, tool_name, is_error, error_type)
            a_calls, a_tool, a_error, a_operation = cached
            inst = pipeline.instruments
            assert inst is not None
            with self._lock:
                inst.calls.add(1, a_calls)
                inst.bytes_in.add(size_in, a_tool)
                inst.bytes_out.add(size_out, a_tool)
                inst.duration.add(duration, a_tool)
                if is_error:
                    inst.errors.add(1, a_error)
                inst.operation_duration.record(seconds, a_operation)
        except Exception:
            _log.exception("mcp-otel telemetry: emit_tool_call failed to count")
            return
        try:
            if pipeline.logger is None:
                return
            event: dict[str, Any] = {
                "tool": tool_name,
                "status": limits.cut(limits.safe_str(status), limits.MAX_NAME_CHARS),
                "duration_ms": duration,
                "bytes_in": size_in,
                "bytes_out": size_out,
            }
            if limits.truth(error, True):
                event["error"] = _clean(limits.safe_str(error), limits.MAX_TEXT_CHARS)
            if limits.truth(metadata, True):
                event["metadata"] = _clean(metadata, limits.MAX_STRUCT_CHARS)
            if bad_duration or bad_in or bad_out:
                event["mcp_otel.invalid_fields"] = [
                    name
                    for name, bad in (
                        ("duration_ms", bad_duration),
                        ("bytes_in", bad_in),
                        ("bytes_out", bad_out),
                    )
                    if bad
                ]
            self._emit_event(pipeline, "tool_call", event, error=is_error)
        except Exception:
            _log.exception("mcp-otel telemetry: emit_tool_call counted the call but could "
                           "not write its event")

    def emit_server_start(self, version: str, protocol_version: str) -> None:
        """Record the server start (and restart the uptime clock)."""
        try:
            pipeline = self._pipeline()
            pipeline.started = time.monotonic()
            self._emit_event(
                pipeline,
                "server_start",
                {"version": _clean(version, limits.MAX_NAME_CHARS),
                 "protocol_version": _clean(protocol_version, limits.MAX_NAME_CHARS)},
            )
        except Exception:
            _log.exception("mcp-otel telemetry: emit_server_start failed")

    def emit_server_stop(self, reason: str | None = None) -> None:
        """Record the stop with a copy of the totals, then flush events and a snapshot."""
        try:
            pipeline = self._pipeline()
            self._emit_event(
                pipeline,
                "server_stop",
                {"reason": _clean(reason, limits.MAX_TEXT_CHARS), "metrics": self._read_totals()},
            )
            pipeline.flush(10_000)
        except Exception:
            _log.exception("mcp-otel telemetry: emit_server_stop failed")

    def emit_handshake(
        self, duration_ms: int, success: bool, client_info: dict[str, Any] | None = None
    ) -> None:
        """Count an MCP initialize handshake (``mcp_otel.handshakes``) and write its event."""
        try:
            pipeline = self._pipeline()
            duration, bad_duration = _as_count(duration_ms)
            ok = limits.truth(success, False)  # a truth value that raises: a failure
            status = "ok" if ok else "error"
            if pipeline.instruments is not None:
                with self._lock:
                    pipeline.instruments.handshakes.add(1, {"mcp_otel.status": status})
            event: dict[str, Any] = {"duration_ms": duration, "success": ok}
            if limits.truth(client_info, True):
                event["client_info"] = _clean(client_info, limits.MAX_STRUCT_CHARS)
            if bad_duration:
                event["mcp_otel.invalid_fields"] = ["duration_ms"]
            self._emit_event(pipeline, "handshake", event, error=not ok)
        except Exception:
            _log.exception("mcp-otel telemetry: emit_handshake failed")

    def record_session_duration(self, seconds: float) -> None:
        """Record one finished MCP session in ``mcp.server.session.duration`` (seconds).

        An extension for :func:`mcp_otel.instrument`, for protocol versions with sessions.
        """
        try:
            pipeline = self._pipeline()
            value = float(seconds)
            if pipeline.instruments is not None and value >= 0 and value == value:
                with self._lock:
                    pipeline.instruments.session_duration.record(value)
        except Exception:
            _log.exception("mcp-otel telemetry: record_session_duration failed")

    def get_session_summary(self) -> dict[str, Any]:
        """Osiris' summary: session id, a consistent copy of the totals, file, enabled."""
        return {
            "session_id": self.session_id,
            "metrics": self._read_totals(),
            "telemetry_file": str(self.telemetry_file) if self.enabled else None,
            "enabled": self.enabled,
        }

    # ----------------------------------------------------------------- lifecycle

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Write pending events and export a metric snapshot now (all sinks).

        A ``timeout_millis`` that is not a non-negative number uses the default.
        """
        millis = int(limits.safe_timeout(timeout_millis, 10_000.0))
        return self._pipeline().flush(millis)

    def shutdown(self) -> None:
        """Flush and stop exporting; afterwards the emitter still counts in-process.

        Also runs at interpreter exit (or when the emitter is garbage collected).
        """
        self._closed = True
        self._finalizer()

    def __enter__(self) -> TelemetryEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ----------------------------------------------------------------- internals

    @staticmethod
    def _new_session_id() -> str:
        return "tel_" + secrets.token_hex(6)

    def _pipeline(self) -> _Pipeline:
        pipeline = self._box[0]
        if pipeline.pid != _fork.pid():
            self._forked()
            pipeline = self._box[0]
        return pipeline

    def _reset_locks(self) -> None:
        self._build_lock = threading.Lock()
        self._lock = self._lock_cell.lock = threading.Lock()

    def _forked(self) -> None:
        """In a forked child: fresh session, resource and zero counts."""
        with self._build_lock:
            if self._box[0].pid == os.getpid():
                return
            self.session_id = self._new_session_id()
            inherited = self._box[0]
            self._box[0] = self._build_pipeline()
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _shutdown_box, self._box)
        inherited.shutdown()  # out of the box now: only here can its reader threads be stopped

    def _build_pipeline(self) -> _Pipeline:
        self._event_file_processor = None
        pipeline = _Pipeline(pid=os.getpid(), started=time.monotonic())
        if _setup.sdk_disabled():
            pipeline.fallback = dict.fromkeys(METRIC_KEYS, 0)
            return pipeline
        exporting = self.enabled and not self._closed
        resource = pipeline.resource = _setup.build_resource()
        snapshots = otlp = None
        if exporting:
            # With the resource, snapshots of several processes sharing the file stay
            # apart (one series per service.instance.id, as in a backend).
            snapshots = _setup.jsonl_exporter(
                "metrics", self.output_dir / "mcp_metrics_{date}.jsonl", include_resource=True
            )
            otlp = _setup.otlp_exporter("metrics")
        reader: MetricReader
        # _setup.metric_readers: fork-safe exporters, and the OTel default interval (with a
        # warning) when OTEL_METRIC_EXPORT_INTERVAL holds a value the SDK rejects.
        if snapshots is not None:
            (reader,) = _setup.metric_readers(
                [snapshots], _ConsistentPeriodicReader, lock_of=self._lock_cell
            )
            pipeline.exporting_readers.append(reader)
        else:
            reader = InMemoryMetricReader(
                preferred_aggregation={
                    Histogram: DropAggregation(),
                    ObservableGauge: DropAggregation(),
                }
            )
        if otlp is not None:
            pipeline.exporting_readers.extend(
                _setup.metric_readers([otlp], _ConsistentPeriodicReader, lock_of=self._lock_cell)
            )
        provider = MeterProvider(
            metric_readers=[reader, *(r for r in pipeline.exporting_readers if r is not reader)],
            resource=resource,
            shutdown_on_exit=False,
        )
        pipeline.meter_provider = provider
        pipeline.reader = reader
        pipeline.instruments = self._create_instruments(provider, pipeline)
        if exporting:
            pipeline.logger_provider, pipeline.logger = self._build_logger(resource)
        return pipeline

    def _create_instruments(self, provider: MeterProvider, pipeline: _Pipeline) -> _Instruments:
        meter = provider.get_meter(_SCOPE, _version())
        weak_pipeline = weakref.ref(pipeline)

        def uptime(_options: CallbackOptions) -> Iterable[Observation]:
            current = weak_pipeline()
            if current is None:
                return []
            return [Observation(time.monotonic() - current.started)]

        inst = _Instruments(
            calls=meter.create_counter(
                "mcp_otel.tool.calls", unit="{call}", description="Tool calls by tool and status"
            ),
            errors=meter.create_counter(
                "mcp_otel.tool.errors", unit="{error}", description="Failed tool calls"
            ),
            bytes_in=meter.create_counter(
                "mcp_otel.tool.input", unit="By", description="Bytes of tool arguments (JSON)"
            ),
            bytes_out=meter.create_counter(
                "mcp_otel.tool.output", unit="By", description="Bytes of tool results (JSON)"
            ),
            duration=meter.create_counter(
                "mcp_otel.tool.duration",
                unit="ms",
                description="Total tool call time, exact integer milliseconds",
            ),
            handshakes=meter.create_counter(
                "mcp_otel.handshakes", unit="{handshake}", description="MCP initialize handshakes"
            ),
            operation_duration=meter.create_histogram(
                "mcp.server.operation.duration",
                unit="s",
                description="MCP request duration as observed on the server",
                explicit_bucket_boundaries_advisory=list(MCP_DURATION_BUCKETS),
            ),
            session_duration=meter.create_histogram(
                "mcp.server.session.duration",
                unit="s",
                description="MCP session duration as observed on the server",
                explicit_bucket_boundaries_advisory=list(MCP_DURATION_BUCKETS),
            ),
        )
        meter.create_observable_gauge(
            "mcp_otel.server.uptime",
            callbacks=[uptime],
            unit="s",
            description="Seconds since the server (or this process) started",
        )
        # Zero points: a dashboard query for errors matches before the first error.
        for counter in (
            inst.calls,
            inst.errors,
            inst.bytes_in,
            inst.bytes_out,
            inst.duration,
            inst.handshakes,
        ):
            counter.add(0)
        return inst

    def _build_logger(self, resource: Resource) -> tuple[LoggerProvider | None, Any]:
        """Events go to the JSONL file through a processor that waits instead of evicting
        (the file must hold every event), and to OTLP, when configured, through the SDK's
        batch processor (a collector that is down must never slow the host server)."""
        events_file = _setup.jsonl_exporter("logs", self.output_dir / "mcp_telemetry_{date}.jsonl")
        otlp = _setup.otlp_exporter("logs")
        if events_file is None and otlp is None:
            return None, None
        provider = LoggerProvider(
            resource=resource,
            shutdown_on_exit=False,
            # Pinned so OTEL_*_LIMIT variables cannot drop or cut Osiris' fields.
            log_record_limits=LogRecordLimits(
                max_attributes=128,
                max_attribute_length=LogRecordLimits.UNSET,
                max_log_record_attributes=128,
                max_log_record_attribute_length=LogRecordLimits.UNSET,
            ),
        )
        if events_file is not None:
            self._event_file_processor = _file_processor(_setup.fork_safe(events_file))
            provider.add_log_record_processor(self._event_file_processor)
        if otlp is not None:
            queue_size = max(EVENT_QUEUE_SIZE, _env_int("OTEL_BLRP_MAX_QUEUE_SIZE"))
            # never raising over an OTEL_BLRP_* value the SDK rejects (see _setup)
            provider.add_log_record_processor(
                _setup.batch_log_processor(_setup.fork_safe(otlp), max_queue_size=queue_size)
            )
        return provider, provider.get_logger(_SCOPE, _version())

    def _attributes(
        self, pipeline: _Pipeline, tool: str, is_error: bool, error_type: str | None
    ) -> tuple[dict[str, str], ...]:
        """Attribute dicts per (tool, outcome), cached: built once, bounded in number."""
        key = (tool, is_error, error_type)
        with self._build_lock:
            name = _bounded_label(tool, pipeline.tool_names, MAX_TOOL_NAMES)
            etype = _bounded_label(error_type or "tool_error", pipeline.error_types,
                                   MAX_ERROR_TYPES)
            status = "error" if is_error else "ok"
            a_tool = {"gen_ai.tool.name": name}
            a_calls = {"gen_ai.tool.name": name, "mcp_otel.status": status}
            a_error = {"gen_ai.tool.name": name, "error.type": etype}
            a_operation = {"mcp.method.name": "tools/call", "gen_ai.tool.name": name}
            if is_error:
                a_operation["error.type"] = etype
            cached = (a_calls, a_tool, a_error, a_operation)
            if len(pipeline.attrs) < 4 * (MAX_TOOL_NAMES + MAX_ERROR_TYPES):
                pipeline.attrs[key] = cached
            return cached

    def _emit_event(
        self, pipeline: _Pipeline, event: str, fields: Mapping[str, Any], *, error: bool = False
    ) -> None:
        logger = pipeline.logger
        if logger is None:
            return
        now = time.time_ns()
        attributes = {
            "event": event,
            "session_id": self.session_id,
            "timestamp": _iso(now),
            "timestamp_ms": now // 1_000_000,
            **fields,
        }
        logger.emit(
            timestamp=now,
            observed_timestamp=now,
            severity_number=_SEVERITY_WARN if error else _SEVERITY_INFO,
            severity_text="WARN" if error else "INFO",
            event_name=EVENT_PREFIX + event,
            attributes=attributes,
        )

    def _read_totals(self) -> dict[str, int]:
        pipeline = self._pipeline()
        if pipeline.fallback is not None:
            with self._lock:
                return dict(pipeline.fallback)
        totals = dict.fromkeys(METRIC_KEYS, 0)
        reader = pipeline.reader
        if isinstance(reader, _ConsistentPeriodicReader):
            data = reader.read_back()  # its collection takes the lock itself
        else:
            assert isinstance(reader, InMemoryMetricReader)
            with self._lock:
                data = reader.get_metrics_data()
        if data is None:
            return totals
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    key = _READBACK.get(metric.name)
                    if key is None:
                        continue
                    totals[key] += int(sum(point.value for point in metric.data.data_points))
        return totals


def _report_lost(records: Any, error: BaseException | None) -> None:
    _log.warning(
        "mcp-otel telemetry: %d events could not be written to the file: %r", len(records), error
    )


def _file_processor(exporter: Any) -> Any:
    """The audit trail's no-eviction processor (group commit; a full queue makes the caller
    wait up to ``EVENT_QUEUE_TIMEOUT_S`` rather than dropping the oldest event), with a
    short retry policy: telemetry must not hold a tool call for long when the disk fails.
    Falls back to the SDK's batch processor if it cannot be loaded."""
    try:
        from mcp_otel._audit_processor import AuditLogRecordProcessor, RetryPolicy

        class _EventFileProcessor(AuditLogRecordProcessor):
            def on_emit(self, log_record: Any) -> None:
                # Plain queueing: none of the audit logger's per-thread waiter protocol.
                self.put(log_record)

        return _EventFileProcessor(
            exporter,
            max_queue_size=EVENT_QUEUE_SIZE,
            queue_timeout=EVENT_QUEUE_TIMEOUT_S,
            retry=RetryPolicy(attempts=3, initial_delay=0.05, max_delay=0.5),
            on_lost=_report_lost,
            name="mcp-otel-telemetry-writer",
        )
    except Exception:  # pragma: no cover - ships with the package
        return BatchLogRecordProcessor(exporter, max_queue_size=EVENT_QUEUE_SIZE)


def _seconds(raw: Any, fallback_ms: int) -> float:
    """Histogram value in seconds: the exact float when the caller gave one."""
    if isinstance(raw, float):
        real = float.__float__(raw)
        if real >= 0 and real != float("inf"):
            return real / 1000.0
    return fallback_ms / 1000.0


def _env_int(name: str) -> int:
    try:
        return int(os.environ.get(name, "0"))
    except ValueError:
        return 0


def _version() -> str:
    try:
        from mcp_otel import __version__

        return __version__
    except Exception:  # pragma: no cover
        return "0"


def _severity() -> tuple[Any, Any]:
    from opentelemetry._logs import SeverityNumber

    return SeverityNumber.INFO, SeverityNumber.WARN


_SEVERITY_INFO, _SEVERITY_WARN = _severity()


# --------------------------------------------------------------------------- singleton

_telemetry: TelemetryEmitter | None = None
_telemetry_lock = threading.Lock()


def init_telemetry(enabled: bool = True, output_dir: Path | None = None) -> TelemetryEmitter:
    """The process-wide emitter; the first call's arguments win (thread-safe)."""
    global _telemetry
    if _telemetry is not None:
        return _telemetry
    with _telemetry_lock:
        if _telemetry is None:
            _telemetry = TelemetryEmitter(enabled=enabled, output_dir=output_dir)
        return _telemetry


def get_telemetry() -> TelemetryEmitter | None:
    """The emitter made by :func:`init_telemetry`, or ``None`` before it was called."""
    return _telemetry
