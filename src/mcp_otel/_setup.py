"""The one place that configures OpenTelemetry for the whole package.

Every mcp-otel component (telemetry, cache, instrumentation; the audit trail keeps its own
pipeline) gets its providers and exporters here, so that the resource, the local JSONL
files, OTLP and sampling are decided once and the same way for all of them.

* **A component writes files only where it was told to.** The shared providers write their
  local files under the data directory (``MCP_OTEL_DIR``, default ``./mcp-otel-data``). A
  component given a directory of its own (``AuditLogger(log_dir)``,
  ``DiscoveryCache(cache_dir)``) gets its providers from :func:`component_tracer_provider`
  / :func:`component_meter_provider`, which start that shared pipeline only when the data
  directory is the user's choice (``MCP_OTEL_DIR`` set, or the component's directory
  inside it) or it writes no file (``MCP_OTEL_LOCAL_EXPORT=false``); otherwise they use
  what is already running (the application's SDK providers, shared ones started by
  ``instrument()``/``configure()``), else OTLP alone when an endpoint is set, else nothing.

Rules this module keeps:

* **An application's own SDK providers win.** When the host application already installed
  an SDK ``TracerProvider``/``LoggerProvider`` as the global one, mcp-otel adds its local
  JSONL sink to it instead of creating a second provider; for an SDK ``MeterProvider``
  (whose readers are fixed at construction) mcp-otel simply records into it.
* **Standard variables only** for OTLP: ``OTEL_EXPORTER_OTLP_*`` are read by the SDK's own
  OTLP exporters; this module only picks the protocol and whether a signal is configured.
  ``OTEL_TRACES_SAMPLER(_ARG)``, ``OTEL_METRIC_EXPORT_INTERVAL/TIMEOUT``, ``OTEL_BSP_*`` and
  ``OTEL_BLRP_*`` are likewise honoured by the SDK classes built here.
* **One series per process.** The resource's ``service.instance.id`` comes from the SDK's
  process-dependent detector (a fresh UUID after ``fork``). Because an SDK provider copied
  into a forked child still holds the parent's accumulated counts, every exporter built here
  is wrapped by :func:`fork_safe` (inert in any process but the one that built it) and the
  shared providers are rebuilt lazily in the child.
* ``OTEL_SDK_DISABLED=true`` turns everything into the API's no-op providers.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from mcp_otel import _fork, _settings
from mcp_otel._otel_compat import (
    BatchLogRecordProcessor,
    LoggerProvider,
    LogRecordExporter,
    LogRecordExportResult,
    logs_api,
    metric_exporter_preferences,
    otlp_log_exporter,
)
from mcp_otel.exporters import _config

DEFAULT_DIR = _config.DEFAULT_DIR
DEFAULT_SERVICE_NAME = "mcp-server"
SIGNALS = ("traces", "metrics", "logs")
_PROTOCOLS = ("grpc", "http/protobuf")

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- environment


# One rule for the whole package (the exporters read the same variables): the data
# directory is ``MCP_OTEL_DIR`` (stripped), else ``./mcp-otel-data``; ``OTEL_SDK_DISABLED``
# is true when set to "true" in any case.
data_dir = _config.data_dir
sdk_disabled = _config.sdk_disabled


def local_export_enabled() -> bool:
    """Whether the shared providers write local JSONL files (``MCP_OTEL_LOCAL_EXPORT``).

    Off switches only the shared spans/metrics/logs files; the telemetry emitter's own
    Osiris-compatible files follow its ``enabled`` flag instead.
    """
    return env_flag("MCP_OTEL_LOCAL_EXPORT", True)


def otlp_configured(signal: str | None = None) -> bool:
    """True when an OTLP endpoint is configured (generic or for ``signal``).

    ``OTEL_{SIGNAL}_EXPORTER=none`` (the standard switch) turns a signal's OTLP export off
    even when an endpoint is set.
    """
    names = ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    if signal:
        exporter_choice = (_settings.env_text(f"OTEL_{signal.upper()}_EXPORTER") or "").lower()
        if exporter_choice == "none":
            return False
        names.append(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    return any(_settings.env_text(n) for n in names)


def otlp_protocol(signal: str) -> str:
    """The OTLP protocol for ``signal``: per-signal variable, then generic, then ``grpc``.

    ``grpc`` is the Python OTel default (opentelemetry-distro); ``http/json`` has no Python
    exporter, so it falls back to ``http/protobuf`` with a warning.
    """
    value = (
        _settings.env_text(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or _settings.env_text("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).lower()
    if value in _PROTOCOLS:
        return value
    _log.warning("mcp-otel: OTLP protocol %r is not supported, using http/protobuf", value)
    return "http/protobuf"


def build_resource(attributes: Mapping[str, Any] | None = None) -> Resource:
    """The resource every mcp-otel provider uses.

    ``service.name`` comes from ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` and
    defaults to ``mcp-server`` (not the SDK's ``unknown_service``, which would make every
    MCP server the same Prometheus ``job``). ``service.instance.id`` is the SDK's per-process
    UUID (renewed after fork), so each process is its own series. ``attributes`` are
    defaults that the environment overrides.
    """
    base = dict(attributes or {})
    env_attributes = OTELResourceDetector().detect().attributes
    if not env_attributes.get(SERVICE_NAME):
        base.setdefault(SERVICE_NAME, DEFAULT_SERVICE_NAME)
    for key in env_attributes:
        base.pop(key, None)
    return Resource.create(base)


# --------------------------------------------------------------------------- exporters


class _ForkSafe:
    """Forwards to ``inner`` only in the process that built it; elsewhere succeeds inertly.

    ``export`` and ``shutdown`` pass their arguments through unchanged (the wrapped
    exporter's defaults apply); ``force_flush`` keeps each SDK interface's default timeout.
    """

    _success: Any

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._pid = os.getpid()

    def export(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        if os.getpid() != self._pid:
            return self._success
        return self.inner.export(batch, *args, **kwargs)

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        if os.getpid() != self._pid:
            return True
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        if os.getpid() == self._pid:
            self.inner.shutdown(*args, **kwargs)


class _ForkSafeSpanExporter(_ForkSafe, SpanExporter):
    _success = SpanExportResult.SUCCESS


class _ForkSafeLogExporter(_ForkSafe, LogRecordExporter):
    _success = LogRecordExportResult.SUCCESS


class _ForkSafeMetricExporter(_ForkSafe, MetricExporter):
    _success = MetricExportResult.SUCCESS

    def __init__(self, inner: MetricExporter) -> None:
        temporality, aggregation = metric_exporter_preferences(inner)
        MetricExporter.__init__(
            self, preferred_temporality=temporality, preferred_aggregation=aggregation
        )
        _ForkSafe.__init__(self, inner)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return super().force_flush(timeout_millis)


def fork_safe(exporter: Any) -> Any:
    """Wrap an exporter so it does nothing in a process other than the one that built it.

    The SDK restarts batch and periodic-reader threads in a forked child, and those would
    export the parent's queued records and accumulated counts a second time (now under
    the child's ``service.instance.id``). The wrapper turns the inherited copy inert; its
    ``shutdown`` in the child does not touch the parent's files or channels either.
    """
    if isinstance(exporter, SpanExporter):
        return _ForkSafeSpanExporter(exporter)
    if isinstance(exporter, MetricExporter):
        return _ForkSafeMetricExporter(exporter)
    if isinstance(exporter, LogRecordExporter):
        return _ForkSafeLogExporter(exporter)
    raise TypeError(f"not an OpenTelemetry SDK exporter: {type(exporter).__name__}")


#: Every OTLP exporter built by :func:`otlp_exporter`, so that a signal-triggered exit can
#: stop their retries (:func:`abandon_otlp`).
_otlp_built: weakref.WeakSet[Any] = weakref.WeakSet()


def otlp_exporter(signal: str) -> Any | None:
    """The SDK's OTLP exporter for ``signal`` when one is configured, else ``None``.

    Endpoint, headers, timeout, compression, certificates and temporality come from the
    standard ``OTEL_EXPORTER_OTLP_*`` variables, read by the SDK exporter itself. Import is
    lazy: grpc is slow to import and unused without an endpoint.
    """
    if signal not in SIGNALS:
        raise ValueError(f"unknown signal {signal!r}, expected one of {SIGNALS}")
    if sdk_disabled() or not otlp_configured(signal):
        return None
    exporter = _build_otlp_exporter(signal)
    if exporter is not None:
        _otlp_built.add(exporter)
    return exporter


def abandon_otlp() -> None:
    """Shut down every OTLP exporter built here, ending their retry loops at once.

    For an exit that cannot wait (:mod:`mcp_otel._lifecycle`, after its deadline): what
    they still hold was meant for a collector that did not answer in time; the local
    JSONL files never went through them.
    """
    for exporter in list(_otlp_built):
        try:
            exporter.shutdown()
        except Exception as exc:
            _log.warning("mcp-otel: OTLP exporter shutdown failed: %s", exc)


def _build_otlp_exporter(signal: str) -> Any | None:
    try:
        if otlp_protocol(signal) == "grpc":
            if signal == "traces":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter,
                )

                return OTLPSpanExporter()
            if signal == "metrics":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                    OTLPMetricExporter,
                )

                return OTLPMetricExporter()
            return otlp_log_exporter("grpc")
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpSpanExporter,
            )

            return HttpSpanExporter()
        if signal == "metrics":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpMetricExporter,
            )

            return HttpMetricExporter()
        return otlp_log_exporter("http/protobuf")
    except Exception as exc:  # a bad OTEL_EXPORTER_OTLP_* value must not crash the host
        _log.warning("mcp-otel: OTLP %s exporter not available: %s", signal, exc)
        return None


def jsonl_exporter(
    signal: str, path: str | os.PathLike[str] | None = None, **options: Any
) -> Any | None:
    """mcp-otel's locked JSONL exporter for ``signal`` (``None`` if it cannot be built).

    ``path`` may contain ``{date}``; ``None`` means the exporter's own default under
    ``MCP_OTEL_DIR``. A failure to build it is logged as a warning and leaves the other
    sinks working rather than raising into the host server (write failures later are the
    exporter's to count and report). ``options`` go to the
    exporter's constructor (e.g. ``include_resource=True``).
    """
    try:
        from mcp_otel import exporters

        cls = {
            "traces": exporters.JsonlSpanExporter,
            "metrics": exporters.JsonlMetricExporter,
            "logs": exporters.JsonlLogExporter,
        }[signal]
        return cls(path, **options)
    except Exception as exc:
        _log.warning("mcp-otel: local JSONL %s exporter not available: %s", signal, exc)
        return None


def metric_readers(
    exporters: Sequence[Any],
    reader_class: type[PeriodicExportingMetricReader] | None = None,
    **reader_kwargs: Any,
) -> list[MetricReader]:
    """Periodic readers (interval from ``OTEL_METRIC_EXPORT_INTERVAL``) around fork-safe
    exporters; ``reader_class`` lets a caller add behaviour (e.g. a lock around collect)."""
    cls = reader_class or PeriodicExportingMetricReader
    return [
        _guarded(cls, fork_safe(e), reader_kwargs, _READER_DEFAULTS)
        for e in exporters if e is not None
    ]


# The OpenTelemetry defaults, passed explicitly (which overrides the environment) when an
# OTEL_BSP_* / OTEL_BLRP_* / OTEL_METRIC_EXPORT_* value makes the SDK's constructor raise.
_BATCH_DEFAULTS: dict[str, Any] = {
    "max_queue_size": 2048, "max_export_batch_size": 512, "export_timeout_millis": 30_000,
}
_SPAN_BATCH_DEFAULTS = {**_BATCH_DEFAULTS, "schedule_delay_millis": 5_000}
_LOG_BATCH_DEFAULTS = {**_BATCH_DEFAULTS, "schedule_delay_millis": 1_000}
_READER_DEFAULTS: dict[str, Any] = {
    "export_interval_millis": 60_000, "export_timeout_millis": 30_000,
}


def _guarded(cls: Any, exporter: Any, kwargs: dict[str, Any], defaults: dict[str, Any]) -> Any:
    """``cls(exporter, **kwargs)``, or with the OTel defaults when the environment holds a
    value the SDK rejects: the SDK raises ``ValueError`` from these constructors (a batch
    larger than its queue, an interval of 0), which would reach the host through
    ``instrument()``, ``AuditLogger()`` or the first span. A warning names the problem."""
    try:
        return cls(exporter, **kwargs)
    except ValueError as exc:
        _log.warning("mcp-otel: %s (from the OTEL_* environment); using the OpenTelemetry "
                     "defaults for this %s", exc, cls.__name__)
        return cls(exporter, **{**defaults, **kwargs})


#: How long an ended span waits for export when ``OTEL_BSP_SCHEDULE_DELAY`` is not set (the
#: SDK's default is 5 s).
SPAN_SCHEDULE_DELAY_MS = 50


def batch_span_processor(exporter: Any) -> BatchSpanProcessor:
    """The SDK's ``BatchSpanProcessor``, never raising over a bad ``OTEL_BSP_*`` value.

    Why a 50 ms schedule delay by default: a span waiting seconds in the queue survives
    the garbage collector's young generations with its attributes, events and locks, and
    the oldest generation's growth triggers full collections. On an MCP server (about
    100,000 objects) each one stopped every thread for 60-77 ms, every 4-7 s at 130 tool
    calls/s, and made the p99 latency of instrumented calls 5-9x that of uninstrumented
    ones; exported within 50 ms, spans die young (docs/usage.md, benchmark). The cost is
    the export thread waking 20 times a second.
    """
    kwargs = ({} if _settings.env_text("OTEL_BSP_SCHEDULE_DELAY")
              else {"schedule_delay_millis": SPAN_SCHEDULE_DELAY_MS})
    return _guarded(BatchSpanProcessor, exporter, kwargs, _SPAN_BATCH_DEFAULTS)  # type: ignore[no-any-return]


def batch_log_processor(exporter: Any, **kwargs: Any) -> BatchLogRecordProcessor:
    """The SDK's ``BatchLogRecordProcessor``, never raising over a bad ``OTEL_BLRP_*`` value."""
    return _guarded(BatchLogRecordProcessor, exporter, kwargs, _LOG_BATCH_DEFAULTS)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- shared providers

_lock = threading.RLock()
_state_pid = os.getpid()
_tracer_provider: TracerProvider | None = None
_meter_provider: MeterProvider | None = None
_logger_provider: LoggerProvider | None = None
_augmented: weakref.WeakSet[Any] = weakref.WeakSet()
#: Providers this module built (in this process or, before a fork, in the parent). One of
#: them found as the global provider is not "the application's": after a fork it is the
#: parent's, whose exporters are inert here, so the child's shared provider is used.
_ours: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _lock, _tracer_provider, _meter_provider, _logger_provider, _state_pid, _augmented
    global _otlp_only, _started_in_parent
    _lock = threading.RLock()
    # A component's choice (see component_meter_provider) made in the parent holds here.
    _started_in_parent = {
        signal
        for signal, provider in (("traces", _tracer_provider), ("metrics", _meter_provider))
        if provider is not None
    } | _started_in_parent
    _tracer_provider = _meter_provider = _logger_provider = None
    _otlp_only = {}
    # The JSONL exporters added to an application's providers are inert in the child
    # (fork-safe wrappers): forget them so that the child adds its own.
    _augmented = weakref.WeakSet()
    _state_pid = os.getpid()


_fork.register(_fork.PIPELINE, after_in_child=_after_fork_in_child)


def _check_pid() -> None:
    if _state_pid != os.getpid():  # a fork without at-fork hooks (should not happen)
        _after_fork_in_child()


def _spans_path() -> Path:
    return data_dir() / "traces" / "mcp_spans_{date}.jsonl"


def _shared_exporters(signal: str, path: Path | None = None, **options: Any) -> list[Any]:
    """A shared provider's exporters for ``signal``: the local JSONL file (unless
    ``MCP_OTEL_LOCAL_EXPORT`` is off), then OTLP when configured; any that could not be
    built are left out."""
    exporters = []
    if local_export_enabled():
        exporters.append(jsonl_exporter(signal, path, **options))
    exporters.append(otlp_exporter(signal))
    return [e for e in exporters if e is not None]


def _masking(exporter: Any) -> Any:
    """Span exporters mcp-otel attaches mask secrets in exception texts first."""
    from mcp_otel._span_masking import MaskingSpanExporter

    return MaskingSpanExporter(exporter)


def get_tracer_provider() -> trace.TracerProvider:
    """The application's SDK tracer provider if it set one, else mcp-otel's shared one.

    To an application's SDK provider mcp-otel adds (once) its local JSONL span file; the
    application's own exporters are left as they are.
    """
    if sdk_disabled():
        return trace.NoOpTracerProvider()
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider) and current not in _ours:
        _augment_tracer_provider(current)
        return current
    return _shared_tracer_provider()


def _augment_tracer_provider(provider: TracerProvider) -> None:
    with _lock:
        if provider in _augmented or not local_export_enabled():
            return
        _augmented.add(provider)
        exporter = jsonl_exporter("traces", _spans_path())
        if exporter is not None:
            provider.add_span_processor(batch_span_processor(fork_safe(_masking(exporter))))


def _shared_tracer_provider() -> TracerProvider:
    global _tracer_provider
    _check_pid()
    with _lock:
        if _tracer_provider is None:
            # sampler=None: the SDK reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG.
            provider = TracerProvider(resource=build_resource())
            for exporter in _shared_exporters("traces", _spans_path()):
                provider.add_span_processor(batch_span_processor(fork_safe(_masking(exporter))))
            _ours.add(provider)
            _tracer_provider = provider
        return _tracer_provider


def get_meter_provider() -> metrics.MeterProvider:
    """The application's SDK meter provider if it set one, else mcp-otel's shared one.

    The shared provider exports to ``<dir>/metrics/metrics_{date}.jsonl`` (unless
    ``MCP_OTEL_LOCAL_EXPORT=false``) and over OTLP when configured.
    """
    if sdk_disabled():
        return metrics.NoOpMeterProvider()
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider) and current not in _ours:
        return current
    return _shared_meter_provider()


def provider_in_this_process(provider: Any) -> Any:
    """``provider``, unless it is mcp-otel's shared meter provider inherited through a fork:
    then this process's own (the inherited copy's exporters are inert in the child, so a
    component still holding it would count into nothing)."""
    with _lock:
        inherited = provider in _ours and provider is not _meter_provider
    if inherited and isinstance(provider, MeterProvider):
        return get_meter_provider()
    return provider


def _shared_meter_provider() -> MeterProvider:
    global _meter_provider
    _check_pid()
    with _lock:
        if _meter_provider is None:
            _meter_provider = MeterProvider(
                # Every line names its process (service.instance.id): the one metrics file
                # of a data directory holds several processes' cumulative series.
                metric_readers=metric_readers(_shared_exporters("metrics", include_resource=True)),
                resource=build_resource(),
            )
            _ours.add(_meter_provider)
        return _meter_provider


def get_logger_provider() -> logs_api.LoggerProvider:
    """The application's SDK logger provider if it set one, else mcp-otel's shared one."""
    if sdk_disabled():
        return logs_api.NoOpLoggerProvider()
    current = logs_api.get_logger_provider()
    if isinstance(current, LoggerProvider) and current not in _ours:
        with _lock:
            if current not in _augmented:
                _augmented.add(current)
                exporter = jsonl_exporter("logs") if local_export_enabled() else None
                if exporter is not None:
                    current.add_log_record_processor(batch_log_processor(fork_safe(exporter)))
        return current
    return _shared_logger_provider()


def _shared_logger_provider() -> LoggerProvider:
    global _logger_provider
    _check_pid()
    with _lock:
        if _logger_provider is None:
            provider = LoggerProvider(resource=build_resource())
            for exporter in _shared_exporters("logs"):
                provider.add_log_record_processor(batch_log_processor(fork_safe(exporter)))
            _ours.add(provider)
            _logger_provider = provider
        return _logger_provider


def configure(*, set_global: bool = False) -> None:
    """Set up mcp-otel's shared providers (idempotent).

    With ``set_global=True`` they also become the global OTel providers, but only for the
    signals where the application has not installed an SDK provider of its own (so that
    libraries such as the ``mcp`` SDK, which use the global tracer, land in the same files).
    """
    if sdk_disabled():
        return
    with _lock:
        tracer_provider = get_tracer_provider()
        meter_provider = get_meter_provider()
        logger_provider = get_logger_provider()
        if not set_global:
            return
        # The API accepts a global provider only once per process: only where none is set.
        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            trace.set_tracer_provider(tracer_provider)
        if not isinstance(metrics.get_meter_provider(), MeterProvider):
            metrics.set_meter_provider(meter_provider)
        if not isinstance(logs_api.get_logger_provider(), LoggerProvider):
            logs_api.set_logger_provider(logger_provider)


def force_flush(timeout_millis: int = 10_000) -> bool:
    """Flush mcp-otel's shared providers (not an application's own)."""
    ok = True
    for provider in (_tracer_provider, _meter_provider, _logger_provider, *_otlp_only.values()):
        if provider is None:
            continue
        try:
            ok = bool(provider.force_flush(timeout_millis)) and ok
        except Exception as exc:
            _log.warning("mcp-otel: flush failed: %s", exc)
            ok = False
    return ok


def shutdown() -> None:
    """Flush and stop mcp-otel's shared providers; the next ``get_*`` builds fresh ones.

    A shared provider that became the global OTel provider (``configure(set_global=True)``
    or ``instrument()``) is flushed and kept instead: the API accepts a global provider
    only once per process, so a stopped one could never be replaced and every later span
    (the ``mcp`` SDK's included) would be dropped. The providers also shut down by
    themselves at interpreter exit (the SDK's atexit hook).
    """
    global _tracer_provider, _meter_provider, _logger_provider, _otlp_only
    installed = {id(trace.get_tracer_provider()), id(metrics.get_meter_provider()),
                 id(logs_api.get_logger_provider())}
    with _lock:
        providers = (_tracer_provider, _meter_provider, _logger_provider)
        kept = [p if p is not None and id(p) in installed else None for p in providers]
        _tracer_provider, _meter_provider, _logger_provider = kept
        providers += tuple(_otlp_only.values())  # never global: always shut down
        kept += [None] * len(_otlp_only)
        _otlp_only = {}
    for provider, keep in zip(providers, kept, strict=True):
        if provider is None:
            continue
        try:
            if keep is not None:
                provider.force_flush()
            else:
                provider.shutdown()
        except Exception as exc:
            _log.warning("mcp-otel: shutdown failed: %s", exc)


# --------------------------------------------------------------------------- components

#: Providers exporting over OTLP only (no local file), for components that may not start
#: the shared pipeline (see :func:`component_meter_provider`); one per signal.
_otlp_only: dict[str, Any] = {}
#: Signals whose shared provider an ancestor process had started (rebuilt here on demand).
_started_in_parent: set[str] = set()


def _may_write_data_dir(own_dir: str | os.PathLike[str]) -> bool:
    """Whether a component living in ``own_dir`` may start the shared pipeline, i.e. create
    files in the data directory: when the user chose that directory (``MCP_OTEL_DIR`` set),
    when ``own_dir`` is inside it (the component's files go there anyway), or when the
    shared pipeline writes no file at all (``MCP_OTEL_LOCAL_EXPORT=false``)."""
    if _settings.env_text("MCP_OTEL_DIR") or not local_export_enabled():
        return True
    own = Path(os.path.abspath(own_dir))
    root = Path(os.path.abspath(data_dir()))
    return own == root or root in own.parents


def component_tracer_provider(own_dir: str | os.PathLike[str]) -> trace.TracerProvider:
    """The tracer provider of a component whose files go to ``own_dir``.

    Like :func:`get_tracer_provider` when :func:`_may_write_data_dir` allows it or mcp-otel
    already writes spans to the data directory; otherwise the application's SDK provider
    as it is (no span file of mcp-otel's added), else an OTLP-only provider when an endpoint
    is set, else the no-op provider.
    """
    if sdk_disabled():
        return trace.NoOpTracerProvider()
    _check_pid()
    current = trace.get_tracer_provider()
    app = isinstance(current, TracerProvider) and current not in _ours
    with _lock:
        started = (
            current in _augmented
            if app
            else _tracer_provider is not None or "traces" in _started_in_parent
        )
    if started or _may_write_data_dir(own_dir):
        return get_tracer_provider()
    if app:
        return current
    return _otlp_only_provider("traces") or trace.NoOpTracerProvider()  # type: ignore[no-any-return]


def component_meter_provider(own_dir: str | os.PathLike[str]) -> metrics.MeterProvider:
    """The meter provider of a component whose files go to ``own_dir``.

    The application's SDK provider when it installed one; mcp-otel's shared provider when
    it is already running or :func:`_may_write_data_dir` allows starting it; else an
    OTLP-only provider when an endpoint is set, else the no-op provider. So
    ``AuditLogger("./logs/audit")`` alone creates nothing outside ``./logs/audit``.
    """
    if sdk_disabled():
        return metrics.NoOpMeterProvider()
    _check_pid()
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider) and current not in _ours:
        return current
    with _lock:
        started = _meter_provider is not None or "metrics" in _started_in_parent
    if started or _may_write_data_dir(own_dir):
        return _shared_meter_provider()
    return _otlp_only_provider("metrics") or metrics.NoOpMeterProvider()  # type: ignore[no-any-return]


def _otlp_only_provider(signal: str) -> Any | None:
    """A provider exporting ``signal`` over OTLP only, or None without an endpoint."""
    with _lock:
        provider = _otlp_only.get(signal)
        if provider is not None:
            return provider
        exporter = otlp_exporter(signal)
        if exporter is None:
            return None
        if signal == "traces":
            provider = TracerProvider(resource=build_resource())
            provider.add_span_processor(batch_span_processor(fork_safe(_masking(exporter))))
        else:
            provider = MeterProvider(
                metric_readers=metric_readers([exporter]), resource=build_resource()
            )
        _ours.add(provider)
        _otlp_only[signal] = provider
        return provider


def env_flag(name: str, default: bool) -> bool:
    """A boolean environment variable (the rule of :mod:`mcp_otel._settings`)."""
    return _settings.env_bool(name, default)
