"""What the audit trail does per process rather than per logger: flush at exit, in a
multiprocessing child and on SIGTERM; start over in a forked child.

Why a registry of live loggers: a logger the application dropped must still write what
it queued, at exit or when a multiprocessing child leaves through ``os._exit`` (which
skips ``atexit``). The registry holds strong references; :meth:`AuditLogger.shutdown`
removes its logger, and :func:`_shutdown_all` ends every session still open.
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import TYPE_CHECKING

from mcp_otel import _fork, _lifecycle, _settings

if TYPE_CHECKING:
    from mcp_otel.audit._logger import AuditLogger

_stderr = _settings.stderr_line

# Strong references (see the module docstring); ``AuditLogger.shutdown()`` removes one.
_LIVE: set[AuditLogger] = set()
_LIVE_LOCK = threading.Lock()


def _add_live(logger: AuditLogger) -> None:
    with _LIVE_LOCK:
        _LIVE.add(logger)


def _discard_live(logger: AuditLogger) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(logger)


_hooks_installed = False


class _AfterForkOwner:
    """Weak-referenceable owner of the multiprocessing after-fork hook (module lifetime)."""


_MP_AFTER_FORK_OWNER = _AfterForkOwner()


def _register_mp_finalizer(_owner: object) -> None:
    import multiprocessing.util as mp_util

    mp_util.Finalize(None, _shutdown_all, exitpriority=100)


def _install_process_hooks() -> None:
    """atexit flush, multiprocessing-child flush, fork reset: once per process."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_shutdown_all)
    try:
        import multiprocessing.util as mp_util

        # multiprocessing children leave through os._exit, which skips atexit.
        mp_util.Finalize(None, _shutdown_all, exitpriority=100)
        # A child started by fork clears the finalizer registry it inherited
        # (BaseProcess._after_fork), dropping the one above: register it again there.
        mp_util.register_after_fork(_MP_AFTER_FORK_OWNER, _register_mp_finalizer)
    except Exception:  # pragma: no cover
        pass
    _fork.register(_fork.COMPONENTS, after_in_child=_after_fork_child)


def _live() -> list[AuditLogger]:
    with _LIVE_LOCK:
        return list(_LIVE)


_SHUTDOWN_PASSES = 3


def _shutdown_all(timeout: float = 10.0) -> None:
    # More than one pass: a record that raced a session's end is handed to the logger's
    # next session (see _Session._late), which puts the logger back in _LIVE; a single
    # pass over the list taken before would leave that session's queue to a daemon
    # thread the interpreter is about to kill. Bounded: a thread still logging at exit
    # cannot keep us here, and the later passes only get what is left of ``timeout``
    # (the first pass gives each logger ``timeout``, as a single pass did).
    deadline = time.monotonic() + timeout
    for attempt in range(_SHUTDOWN_PASSES):
        live = _live()
        if not live:
            return
        budget = timeout if attempt == 0 else deadline - time.monotonic()
        if budget <= 0:
            _stderr(f"mcp-otel audit: exit flush out of time; {len(live)} audit "
                    "logger(s) started new sessions during it and were not flushed")
            return
        for logger in live:
            try:
                logger.shutdown(budget)
            except Exception as exc:
                _stderr(f"mcp-otel audit: flush at exit failed: {exc!r}")


def _after_fork_child() -> None:
    global _LIVE_LOCK
    _LIVE_LOCK = threading.Lock()
    for logger in list(_LIVE):
        logger._lock = threading.Lock()


def install_sigterm_handler(timeout: float | None = None) -> bool:
    """Flush everything mcp-otel holds on SIGTERM and SIGINT, then chain to the handler
    that was there before (:mod:`mcp_otel._lifecycle`). Kept for compatibility: the
    ``timeout`` now comes from ``MCP_OTEL_SHUTDOWN_TIMEOUT``."""
    del timeout
    return _lifecycle.install_signal_handlers()
