"""Process lifecycle: a SIGTERM or SIGINT leaves a complete trail, in bounded time.

Why here and not in each component: ``docker stop``, systemd and Kubernetes send SIGTERM,
whose default action ends the process without running Python's exit hooks, so the audit
session never gets its end record and the span and metric batches still in memory are
gone. One handler per signal, installed once per process by ``instrument()`` and by
``AuditLogger()``, flushes everything mcp-otel holds (and the application's own global SDK
providers, where mcp-otel's spans go when the application installed them, as
``opentelemetry-instrument`` does) and then does what the process would have done without
us:

* a Python handler that was there before (uvicorn's, the application's, the default
  SIGINT handler raising ``KeyboardInterrupt``) is called next;
* the default action is re-raised, so the process still ends *by the signal* (exit status
  143 for SIGTERM), as it would uninstrumented;
* an ignored signal stays ignored: the trail is flushed (sessions end, as at exit) and
  the process goes on; what it logs next starts a new session.

The flush runs in a helper thread joined with a deadline (``MCP_OTEL_SHUTDOWN_TIMEOUT``,
5 s by default): the signal may have interrupted this very thread inside a lock the flush
needs. When the deadline passes (an unreachable collector keeps the OTLP exporters in
their retry loop), the OTLP exporters mcp-otel built are shut down, so that nothing at
interpreter exit waits on them either; the local JSONL files do not depend on them.

Opt out with ``MCP_OTEL_HANDLE_SIGNALS=false`` (or ``instrument(..., handle_signals=False)``
/ ``AuditLogger(handle_sigterm=False)``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from mcp_otel import _settings, _setup

__all__ = ["DEFAULT_SHUTDOWN_TIMEOUT", "install_signal_handlers", "shutdown_timeout",
           "signals_enabled"]

ENV_HANDLE_SIGNALS = "MCP_OTEL_HANDLE_SIGNALS"
ENV_SHUTDOWN_TIMEOUT = "MCP_OTEL_SHUTDOWN_TIMEOUT"
#: Seconds a signal-triggered flush may take before the OTLP exporters are abandoned.
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_log = logging.getLogger("mcp_otel")
_lock = threading.Lock()
_previous: dict[int, Any] = {}


def signals_enabled() -> bool:
    """``MCP_OTEL_HANDLE_SIGNALS`` (default on)."""
    return _settings.env_bool(ENV_HANDLE_SIGNALS, True)


def shutdown_timeout() -> float:
    """``MCP_OTEL_SHUTDOWN_TIMEOUT`` in seconds; a value that is not a positive number
    keeps the default, with a warning."""
    return _settings.env_number(
        ENV_SHUTDOWN_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, float, minimum=0, inclusive=False
    )


def install_signal_handlers(signals: tuple[int, ...] = _SIGNALS) -> bool:
    """Install the flushing handler for ``signals``, once per process (main thread only).

    Returns True when every requested signal is handled by us afterwards; False from a
    thread other than the main one, where Python cannot set signal handlers.
    """
    global _flusher
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        if _flusher is None or _flusher.pid != os.getpid():
            _flusher = _Flusher()
        for signum in signals:
            current = signal.getsignal(signum)
            if current is _on_signal:
                continue
            _previous[signum] = current
            signal.signal(signum, _on_signal)
    return True


def flush_all(timeout: float) -> bool:
    """End every audit session (session-end records) and flush telemetry, the shared
    providers and the application's global SDK providers, within ``timeout`` seconds in
    total; True when everything was flushed."""
    deadline = time.monotonic() + timeout
    from mcp_otel import telemetry
    from mcp_otel.audit import _process as audit_process

    audit_process._shutdown_all(max(0.1, deadline - time.monotonic()))
    ok = True
    emitter = telemetry.get_telemetry()
    if emitter is not None:
        try:
            ok = bool(emitter.force_flush(_millis(deadline))) and ok
        except Exception as exc:
            _log.warning("mcp-otel: telemetry flush failed: %s", exc)
            ok = False
    ok = _setup.force_flush(_millis(deadline)) and ok
    return _flush_application_providers(deadline) and ok


def _flush_application_providers(deadline: float) -> bool:
    """Flush the application's own global SDK providers too (the ones
    ``opentelemetry-instrument`` installs, for example): mcp-otel's spans and metrics of
    an instrumented server are in them when the application set them, and the default
    action that follows ends the process without their exit hooks. They are only
    flushed, never shut down; mcp-otel's shared providers were flushed already."""
    from opentelemetry import metrics, trace

    from mcp_otel._otel_compat import logs_api

    ours = {id(p) for p in (_setup._tracer_provider, _setup._meter_provider,
                            _setup._logger_provider) if p is not None}
    ok = True
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(),
                     logs_api.get_logger_provider()):
        flush = getattr(provider, "force_flush", None)
        if id(provider) in ours or flush is None or not callable(flush):
            continue
        try:
            ok = flush(_millis(deadline)) is not False and ok
        except Exception as exc:
            _log.warning("mcp-otel: flush of the application's provider failed: %s", exc)
            ok = False
    return ok


def _millis(deadline: float) -> int:
    return max(1, int((deadline - time.monotonic()) * 1000))


def bounded(work: Any, timeout: float | None = None) -> bool:
    """Run ``work()`` (a flush) for at most ``timeout`` seconds (``MCP_OTEL_SHUTDOWN_TIMEOUT``).

    It runs in a helper thread: the caller may be a signal handler that interrupted this
    very thread inside a lock the flush needs. When it does not finish in time, or
    reports failure (most likely an unreachable collector holding the OTLP exporters in
    their retry loop), the OTLP exporters are shut down, so that neither this flush nor
    any later one (the SDK's own at interpreter exit) waits on them again; the local
    files never go through them. True when the work finished and succeeded.
    """
    limit = shutdown_timeout() if timeout is None else timeout
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(work())
        except Exception as exc:
            _log.warning("mcp-otel: flush failed: %s", exc)
            result.append(False)

    worker = threading.Thread(target=run, name="mcp-otel-bounded-flush", daemon=True)
    worker.start()
    worker.join(limit)
    ok = bool(result) and result[0] is not False
    if not ok:
        _setup.abandon_otlp()
    return ok


class _Flusher:
    """A thread started at install time that flushes when a signal asks it to.

    Why not a thread started in the handler: ``Thread.start()`` takes ``threading``'s own
    locks and waits for the new thread, and the signal may have interrupted the main
    thread while it held one of them (a deadlock the process never leaves). Setting an
    ``Event`` and waiting on another with a timeout is all the handler does.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.timeout = DEFAULT_SHUTDOWN_TIMEOUT
        self.request = threading.Event()
        self.done = threading.Event()
        self.ok = False
        threading.Thread(target=self._run, name="mcp-otel-signal-flush", daemon=True).start()

    def _run(self) -> None:
        while True:
            self.request.wait()
            self.request.clear()
            try:
                self.ok = flush_all(self.timeout)
            except Exception as exc:
                _log.warning("mcp-otel: flush failed: %s", exc)
                self.ok = False
            self.done.set()

    def flush(self, timeout: float) -> bool:
        self.timeout = timeout
        self.ok = False
        self.done.clear()
        self.request.set()
        return self.done.wait(timeout + 0.5) and self.ok


_flusher: _Flusher | None = None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    timeout = shutdown_timeout()
    flusher = _flusher
    if flusher is not None and flusher.pid == os.getpid():
        if not flusher.flush(timeout):
            _setup.abandon_otlp()
    else:  # a forked child: the parent's flusher thread does not exist here
        bounded(lambda: flush_all(timeout), timeout + 0.5)
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    # The default action: end by the signal itself, as the process would have without us.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
