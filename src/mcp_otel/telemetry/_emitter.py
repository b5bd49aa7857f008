"""``TelemetryEmitter``: Osiris' telemetry API with exact counts, OTel export and a
synchronous event file.

Why it is built this way (docs/telemetry.md has the user-facing guarantees):

* **Counts are integers under one lock** (:class:`~._instruments.Tally`), exported through
  OTel observable counters that read one consistent snapshot per collection; durations go
  to the SDK histogram. ``metrics`` and ``get_session_summary()`` copy the totals under
  that lock: exact at any thread count, never torn (RC-002).
* **Events are in the file when ``emit_*`` returns**: one locked append per event
  through the JSONL exporter's file (:mod:`._events`), safe across threads and
  processes (RC-003).
* **Counting never depends on exporting.** ``enabled=False`` (and ``OTEL_SDK_DISABLED``)
  keeps only the tally: exact counts, nothing written or exported.
* **A forked child starts at zero** with a new session id and resource (:mod:`._pipeline`).
* **The host server never crashes because of telemetry.** Bad values are transformed in a
  documented way (:mod:`._values`); any internal failure is logged, never raised. The one
  deliberate error is a missing directory at construction (Osiris' rule: no silent
  fallback).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

from mcp_otel import _fork, limits
from mcp_otel._context import span_ids
from mcp_otel.exporters._config import resolve_format
from mcp_otel.telemetry import _pipeline as _pipelines
from mcp_otel.telemetry._events import EVENT_PREFIX, SEVERITY_INFO, SEVERITY_WARN
from mcp_otel.telemetry._instruments import DURATION_BATCH, Cell
from mcp_otel.telemetry._pipeline import Pipeline
from mcp_otel.telemetry._values import (
    MAX_ERROR_TYPES,
    MAX_TOOL_NAMES,
    MAX_VALUE,
    _as_count,
    _bounded_label,
    _clean,
    _is_error,
    _seconds,
    _stamps,
)

_log = logging.getLogger("mcp_otel.telemetry")

ENV_DIR = "MCP_OTEL_DIR"
_MAX_NAME = limits.MAX_NAME_CHARS


def _shutdown_box(box: list[Pipeline]) -> None:
    if box:
        box[0].shutdown()


_live: weakref.WeakSet[TelemetryEmitter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Only fresh locks here (one may have been held by another thread at fork time);
    # the pipeline is rebuilt lazily on first use, after all the SDK's own fork hooks.
    for emitter in list(_live):
        emitter._build_lock = threading.Lock()


_fork.register(_fork.COMPONENTS, after_in_child=_after_fork_in_child)


def resolve_output_dir(output_dir: Path | str | os.PathLike[str] | None, enabled: bool) -> Path:
    """``output_dir``, else ``$MCP_OTEL_DIR/telemetry``; ``ValueError`` when an enabled
    emitter has neither (Osiris' rule against silent fallbacks, as ``AuditLogger``)."""
    if output_dir is not None:
        path = Path(output_dir)
        if "\x00" in str(path):
            raise ValueError("output_dir must not contain NUL")
        return path
    env_dir = os.environ.get(ENV_DIR, "").strip()
    if env_dir:
        return Path(env_dir) / "telemetry"
    if enabled:
        raise ValueError("output_dir is required")
    # A disabled emitter writes nothing; the path only names where it would write.
    return Path(os.path.abspath("mcp-otel-data")) / "telemetry"


class TelemetryEmitter:
    """Drop-in for Osiris' ``TelemetryEmitter`` with exact, thread- and fork-safe counts.

    ``enabled=False`` still counts (``metrics`` is exact) but writes and exports nothing.
    ``output_dir`` is required when enabled unless ``MCP_OTEL_DIR`` is set (then
    ``$MCP_OTEL_DIR/telemetry``); it is created (0700) by the constructor. Events go to
    ``mcp_telemetry_{date}.jsonl`` there, each written before its ``emit_*`` returns;
    metric snapshots (every ``OTEL_METRIC_EXPORT_INTERVAL`` ms and at flush/shutdown) to
    ``mcp_metrics_{date}.jsonl``; both also over OTLP when an endpoint is configured.
    ``events=False`` (an extension) keeps the metrics and writes no events. ``format``
    (an extension): the line format of both files, ``flat`` or ``otlp``; ``None`` reads
    ``MCP_OTEL_JSONL_FORMAT`` (default ``flat``). ``meter_provider`` (an extension): the
    counters and histograms live on that provider and are exported by its readers, and no
    ``mcp_metrics`` file is written (``instrument()`` passes the provider of the data
    directory's one metrics file).
    """

    def __init__(
        self,
        enabled: bool = True,
        output_dir: Path | None = None,
        *,
        events: bool = True,
        format: Literal["flat", "otlp"] | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.enabled = limits.truth(enabled, True)  # a truth value that raises: the default
        self.output_dir = resolve_output_dir(output_dir, self.enabled)
        self._events = limits.truth(events, True)
        # Checked now (a bad argument is the caller's error), else MCP_OTEL_JSONL_FORMAT.
        self._format = resolve_format(format)
        self._meter_provider = meter_provider
        self.session_id = self._new_session_id()
        self._build_lock = threading.Lock()
        self._closed = False
        self._box: list[Pipeline] = [self._build_pipeline()]
        self._finalizer = weakref.finalize(self, _shutdown_box, self._box)
        _live.add(self)

    # ----------------------------------------------------------------- Osiris API

    @property
    def telemetry_file(self) -> Path:
        """Today's event file (the name follows the UTC date, so it rotates at midnight)."""
        return self.output_dir / f"mcp_telemetry_{time.strftime('%Y%m%d', time.gmtime())}.jsonl"

    @property
    def metrics_file(self) -> Path | None:
        """Today's metric snapshot file; ``None`` when the metrics go to a ``meter_provider``
        given to the constructor."""
        if self._meter_provider is not None:
            return None
        return self.output_dir / f"mcp_metrics_{time.strftime('%Y%m%d', time.gmtime())}.jsonl"

    @property
    def resource(self) -> Resource | None:
        """This process's resource (``service.name``, ``service.instance.id``), or ``None``
        when the SDK is disabled."""
        return self._pipeline().resource

    @property
    def events_lost(self) -> int:
        """Events that could not be written to this process's event file."""
        return self._pipeline().events_lost

    @property
    def metrics(self) -> dict[str, int]:
        """Osiris' five totals: a fresh, consistent copy."""
        return self._pipeline().tally.read()

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
        """Count one tool call and write its event (in the file when this returns).

        ``status == "error"`` counts an error; ``error_type`` (an extension; default
        ``tool_error`` as the MCP conventions say for a failed tool result) becomes the
        low-cardinality ``error.type`` attribute. ``error`` itself (free text) goes only
        on the event line, never on a metric.
        """
        try:
            pipeline = self._box[0]
            if pipeline.pid != _fork.pid():
                pipeline = self._pipeline()
            plain_status = type(status) is str and len(status) <= _MAX_NAME
            is_error = status == "error" if plain_status else _is_error(status)
            # The common case inline (exact ints in range); anything else: _as_count.
            bad_duration = bad_in = bad_out = False
            if type(duration_ms) is int and 0 <= duration_ms <= MAX_VALUE:
                duration = duration_ms
            else:
                duration, bad_duration = _as_count(duration_ms)
            if type(bytes_in) is int and 0 <= bytes_in <= MAX_VALUE:
                size_in = bytes_in
            else:
                size_in, bad_in = _as_count(bytes_in)
            if type(bytes_out) is int and 0 <= bytes_out <= MAX_VALUE:
                size_out = bytes_out
            else:
                size_out, bad_out = _as_count(bytes_out)
            # Cut before the cell cache: its keys must not hold a client's 50 MB name.
            tool_name = (
                tool if type(tool) is str and len(tool) <= _MAX_NAME
                else limits.cut(limits.safe_str(tool), _MAX_NAME)
            )
            if error_type is not None:
                error_type = limits.cut(limits.safe_str(error_type), _MAX_NAME)
            cell = pipeline.attrs.get((tool_name, is_error, error_type))
            if cell is None:
                cell = self._cell(pipeline, tool_name, is_error, error_type)
            tally = pipeline.tally
            timed = pipeline.operation_duration is not None
            # Kept until the next drain (up to a second or more): the span's identity as
            # integers, for exemplars, never the live span (see mcp_otel._context).
            ids = span_ids()
            with tally.lock:
                if timed:
                    tally.pending.append(
                        (duration / 1000.0 if type(duration_ms) is int
                         else _seconds(duration_ms, duration), cell.index, ids)
                    )
                cell.calls += 1
                cell.bytes_in += size_in
                cell.bytes_out += size_out
                cell.duration += duration
            if timed and len(tally.pending) >= DURATION_BATCH:
                tally.drain(wait=False)
        except Exception:
            _log.exception("mcp-otel telemetry: emit_tool_call failed to count")
            return
        events, logger = pipeline.events, pipeline.logger
        if events is None and logger is None:
            return
        try:
            now = time.time_ns()
            if (
                logger is None and plain_status and error is None and metadata is None
                and not (bad_duration or bad_in or bad_out)
            ):  # the common line, assembled without a dict (same bytes)
                events.write_tool_call(  # type: ignore[union-attr]  # logger is None
                    self.session_id, now, tool_name, status, duration, size_in, size_out,
                    is_error, ids,
                )
                return
            iso, otel_timestamp = _stamps(now)
            event: dict[str, Any] = {
                "event": "tool_call",
                "session_id": self.session_id,
                "timestamp": iso,
                "timestamp_ms": now // 1_000_000,
                "tool": tool_name,
                "status": status
                if plain_status
                else limits.cut(limits.safe_str(status), _MAX_NAME),
                "duration_ms": duration,
                "bytes_in": size_in,
                "bytes_out": size_out,
            }
            if error is not None and limits.truth(error, True):
                event["error"] = _clean(limits.safe_str(error), limits.MAX_TEXT_CHARS)
            if metadata is not None and limits.truth(metadata, True):
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
            if logger is not None:
                self._log_event(logger, event, _TOOL_CALL, is_error, now, copy=events is not None)
            if events is not None:
                events.write(event, _TOOL_CALL, is_error, otel_timestamp, ids)
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
                {"reason": _clean(reason, limits.MAX_TEXT_CHARS),
                 "metrics": pipeline.tally.read()},
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
            tally = pipeline.tally
            with tally.lock:
                tally.handshakes["ok" if ok else "error"] += 1
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
            if pipeline.session_duration is not None and value >= 0 and value == value:
                pipeline.session_duration.record(value)
        except Exception:
            _log.exception("mcp-otel telemetry: record_session_duration failed")

    def get_session_summary(self) -> dict[str, Any]:
        """Osiris' summary: session id, a consistent copy of the totals, file, enabled."""
        return {
            "session_id": self.session_id,
            "metrics": self.metrics,
            "telemetry_file": str(self.telemetry_file) if self.enabled else None,
            "enabled": self.enabled,
        }

    # ----------------------------------------------------------------- lifecycle

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Sync the event file and export a metric snapshot now (all sinks).

        Events are already in the file; this makes them durable (fsync, unless
        ``MCP_OTEL_FSYNC=none``). A ``timeout_millis`` that is not a non-negative number
        uses the default.
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

    def _pipeline(self) -> Pipeline:
        pipeline = self._box[0]
        if pipeline.pid != _fork.pid():
            self._forked()
            pipeline = self._box[0]
        return pipeline

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

    def _build_pipeline(self) -> Pipeline:
        return _pipelines.build(
            self.output_dir,
            exporting=self.enabled and not self._closed,
            events=self._events,
            version=_version(),
            line_format=self._format,
            meter_provider=self._meter_provider,
        )

    def _cell(
        self, pipeline: Pipeline, tool: str, is_error: bool, error_type: str | None
    ) -> Cell:
        """The cell of (tool, outcome): labels bounded in number, cached by raw key."""
        key = (tool, is_error, error_type)
        with self._build_lock:
            name = _bounded_label(tool, pipeline.tool_names, MAX_TOOL_NAMES)
            etype = _bounded_label(error_type or "tool_error", pipeline.error_types,
                                   MAX_ERROR_TYPES) if is_error else ""
            label_key = (name, is_error, etype)
            cell = pipeline.cells.get(label_key)
            if cell is None:
                cell = Cell(name, is_error, etype or "tool_error")
                pipeline.tally.add_cell(cell)
                pipeline.cells[label_key] = cell
            if len(pipeline.attrs) < 4 * (MAX_TOOL_NAMES + MAX_ERROR_TYPES):
                pipeline.attrs[key] = cell
            return cell

    def _emit_event(
        self, pipeline: Pipeline, event: str, fields: Mapping[str, Any], *, error: bool = False
    ) -> None:
        if pipeline.events is None and pipeline.logger is None:
            return
        now = time.time_ns()
        iso, otel_timestamp = _stamps(now)
        attributes = {
            "event": event,
            "session_id": self.session_id,
            "timestamp": iso,
            "timestamp_ms": now // 1_000_000,
            **fields,
        }
        self._write_event(pipeline, attributes, EVENT_PREFIX + event, error, now, otel_timestamp)

    @staticmethod
    def _write_event(
        pipeline: Pipeline,
        attributes: dict[str, Any],
        event_name: str,
        error: bool,
        now: int,
        otel_timestamp: str,
    ) -> None:
        """To the file (in it when this returns) and, when configured, to OTLP."""
        logger, events = pipeline.logger, pipeline.events
        if logger is not None:
            TelemetryEmitter._log_event(logger, attributes, event_name, error, now,
                                        copy=events is not None)  # fmt: skip
        if events is not None:
            events.write(attributes, event_name, error, otel_timestamp, span_ids())

    @staticmethod
    def _log_event(
        logger: Any, attributes: dict[str, Any], event_name: str, error: bool, now: int, *,
        copy: bool,
    ) -> None:
        logger.emit(
            timestamp=now,
            observed_timestamp=now,
            severity_number=SEVERITY_WARN if error else SEVERITY_INFO,
            severity_text="WARN" if error else "INFO",
            event_name=event_name,
            # the file's writer adds its envelope to the dict it is given
            attributes=dict(attributes) if copy else attributes,
        )


_TOOL_CALL = EVENT_PREFIX + "tool_call"


def _version() -> str:
    try:
        from mcp_otel import __version__

        return __version__
    except Exception:  # pragma: no cover
        return "0"
