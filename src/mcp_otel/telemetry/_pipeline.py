"""Everything of one emitter that belongs to one process, and how it is built.

Why per process: the OTel SDK copies a provider's accumulated state into a forked child;
exporting it again (under the child's new ``service.instance.id``) would count the
parent's calls twice in a backend. So after ``fork`` the emitter builds a fresh
:class:`Pipeline` (new resource, zero counts); the inherited one is only stopped.

What is built depends on what is exported: ``enabled=False`` (or ``OTEL_SDK_DISABLED``)
is a :class:`~._instruments.Tally` alone (exact counts, no SDK objects); ``enabled=True``
adds a ``MeterProvider`` whose periodic readers (snapshot file, OTLP) read the tally
through observable counters, the duration histograms, the event file and, when OTLP logs
are configured, a ``LoggerProvider`` with the SDK's batch processor for the events.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.metrics import Histogram
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource

from mcp_otel import _settings, _setup
from mcp_otel.telemetry import _instruments
from mcp_otel.telemetry._events import EventFile
from mcp_otel.telemetry._instruments import Cell, Tally

_log = logging.getLogger("mcp_otel.telemetry")

#: Queue of the OTLP event processor; large so a burst is sent, not dropped.
EVENT_QUEUE_SIZE = 65_536


@dataclass
class Pipeline:
    """One emitter's sinks and counts in one process (rebuilt after fork).

    The tally lives as long as the emitter, so counting goes on after
    :meth:`TelemetryEmitter.shutdown`; only the exporting parts (periodic readers, the
    event file, the logger provider) are flushed and stopped.
    """

    pid: int
    started: float
    tally: Tally = field(default_factory=Tally)
    resource: Resource | None = None
    meter_provider: MeterProvider | None = None
    operation_duration: Histogram | None = None
    session_duration: Histogram | None = None
    exporting_readers: list[MetricReader] = field(default_factory=list)
    #: A provider given to the emitter (``meter_provider=``): flushed, never shut down.
    external_provider: Any = None
    events: EventFile | None = None
    otlp_file_exporter: Any = None
    logger_provider: LoggerProvider | None = None
    logger: Any = None
    #: (tool name as cut, is_error, error type as cut) -> its cell; bounded in size.
    attrs: dict[tuple[str, bool, str | None], Cell] = field(default_factory=dict)
    #: (tool label, is_error, error type label) -> cell: one cell per series.
    cells: dict[tuple[str, bool, str], Cell] = field(default_factory=dict)
    tool_names: set[str] = field(default_factory=set)
    error_types: set[str] = field(default_factory=set)

    @property
    def events_lost(self) -> int:
        lost = self.events.lost if self.events is not None else 0
        if self.otlp_file_exporter is not None:
            lost += int(self.otlp_file_exporter.failed_records)
        return lost

    def flush(self, timeout_millis: int) -> bool:
        self.tally.drain()
        ok = True
        sinks: list[Any] = [self.events, self.logger_provider, *self.exporting_readers]
        if hasattr(self.external_provider, "force_flush"):  # an SDK provider, not the API's
            sinks.append(self.external_provider)
        for sink in sinks:
            if sink is None:
                continue
            try:
                if sink is self.events:
                    ok = sink.flush() and ok
                else:
                    ok = bool(sink.force_flush(timeout_millis=timeout_millis)) and ok
            except Exception as exc:
                _log.warning("mcp-otel telemetry: flush failed: %s", exc)
                ok = False
        return ok

    def shutdown(self) -> None:
        if self.pid != os.getpid():
            # An inherited copy: its exporters are inert, but the SDK restarted its periodic
            # readers' threads in this child; stop them (their collections are empty here).
            readers, self.exporting_readers = self.exporting_readers, []
            for reader in readers:
                try:
                    reader.shutdown()
                except Exception as exc:
                    _log.warning("mcp-otel telemetry: shutdown failed: %s", exc)
            return
        sinks: list[Any] = [*self.exporting_readers, self.logger_provider, self.events]
        self.logger = self.logger_provider = self.events = None
        self.exporting_readers = []
        for sink in sinks:
            if sink is None:
                continue
            try:
                sink.shutdown()
            except Exception as exc:
                _log.warning("mcp-otel telemetry: shutdown failed: %s", exc)


def build(
    output_dir: Path,
    *,
    exporting: bool,
    events: bool,
    version: str,
    line_format: str,
    meter_provider: Any = None,
) -> Pipeline:
    """A fresh pipeline for this process: exporting ones create ``output_dir`` now.

    With ``meter_provider`` the counters and histograms live on that provider (its readers
    export them with everything else it holds) and the emitter writes no metrics file of
    its own: one metrics file per data directory, not one per component.
    """
    pipeline = Pipeline(pid=os.getpid(), started=time.monotonic())
    if _setup.sdk_disabled():
        return pipeline
    resource = pipeline.resource = _setup.build_resource()
    if not exporting:
        return pipeline
    _make_dir(output_dir)
    if meter_provider is not None:
        provider = pipeline.external_provider = _setup.provider_in_this_process(meter_provider)
        _instrument_meter(pipeline, provider.get_meter(_instruments.SCOPE, version))
        if events:
            _build_events(pipeline, output_dir, resource, version, line_format)
        return pipeline
    # With the resource, snapshots of several processes sharing the file stay apart (one
    # series per service.instance.id, as in a backend).
    snapshots = _setup.jsonl_exporter(
        "metrics", output_dir / "mcp_metrics_{date}.jsonl", include_resource=True,
        format=line_format,
    )
    # _setup.metric_readers: fork-safe exporters, and the OTel default interval (with a
    # warning) when OTEL_METRIC_EXPORT_INTERVAL holds a value the SDK rejects.
    pipeline.exporting_readers = _setup.metric_readers(
        [snapshots, _setup.otlp_exporter("metrics")]
    )
    provider = MeterProvider(
        metric_readers=pipeline.exporting_readers, resource=resource, shutdown_on_exit=False
    )
    pipeline.meter_provider = provider
    _instrument_meter(pipeline, provider.get_meter(_instruments.SCOPE, version))
    if events:
        _build_events(pipeline, output_dir, resource, version, line_format)
    return pipeline


def _instrument_meter(pipeline: Pipeline, meter: Any) -> None:
    _instruments.register(meter, pipeline.tally, _instruments.weak_start(pipeline))
    pipeline.operation_duration = pipeline.tally.histogram = _instruments.operation_duration(meter)
    pipeline.session_duration = _instruments.session_duration(meter)


def _make_dir(output_dir: Path) -> None:
    """Osiris creates its directory in the constructor; so do we (0700). A directory that
    cannot be created is logged, not raised: every event is then counted as lost."""
    try:
        from mcp_otel.exporters._file import make_private_dirs

        make_private_dirs(output_dir)
    except Exception as exc:
        _log.warning("mcp-otel telemetry: cannot create %s: %s", output_dir, exc)


def _build_events(
    pipeline: Pipeline, output_dir: Path, resource: Resource, version: str, line_format: str
) -> None:
    exporter = _setup.jsonl_exporter(
        "logs", output_dir / "mcp_telemetry_{date}.jsonl", format=line_format
    )
    otlp = _setup.otlp_exporter("logs")
    otlp_file = exporter is not None and exporter.config.format == "otlp"
    if exporter is not None and not otlp_file:
        pipeline.events = EventFile(exporter, resource.attributes)
    if otlp is None and not otlp_file:
        return
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
    if otlp_file:
        # One synchronous export per event into the same locked file: still written when
        # emit_* returns, in the OTLP line format asked for.
        pipeline.otlp_file_exporter = exporter
        provider.add_log_record_processor(SimpleLogRecordProcessor(_setup.fork_safe(exporter)))
    if otlp is not None:
        queue_size = max(
            EVENT_QUEUE_SIZE, _settings.env_number("OTEL_BLRP_MAX_QUEUE_SIZE", 0, int)
        )
        # never raising over an OTEL_BLRP_* value the SDK rejects (see _setup); a collector
        # that is down never slows the host server
        provider.add_log_record_processor(
            _setup.batch_log_processor(_setup.fork_safe(otlp), max_queue_size=queue_size)
        )
    pipeline.logger_provider = provider
    pipeline.logger = provider.get_logger(_instruments.SCOPE, version)
