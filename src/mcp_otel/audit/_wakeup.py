"""How the audit writer thread wakes the callers that wait for a write (or for room).

A waiter is an ``asyncio`` future of whichever event loop its caller runs on (several
threads may each run their own loop), so the writer, another thread, must resolve it on
that loop: one ``call_soon_threadsafe`` per loop per batch, not per future. For a stock
selector loop the wake-up is done without releasing the GIL (``_load_send_keeping_gil``
says why; :mod:`mcp_otel._asyncio_compat` holds the loop internals it needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp_otel import _asyncio_compat, _settings

if TYPE_CHECKING:
    from mcp_otel.audit._processor import _Item


def _resolve(batch: list[_Item], ok: bool) -> None:
    """Resolve the batch's waiters with ``ok``.

    Futures of the loop running in the calling thread are resolved directly: a caller
    that wrote its own record (``write_inline``) then finds its future done and does not
    suspend, which saves the self-pipe wake-up and a whole loop iteration per record.
    The writer thread runs no loop, so its batches take the thread-safe wake-up.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
    for _, w in batch:
        if w is not None:
            try:
                loop = w.get_loop()
            except Exception:
                continue
            by_loop.setdefault(loop, []).append(w)
    if not by_loop:  # nobody waits (``queued``): no loop lookup on the writer's path
        return
    try:
        here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    for loop, futs in by_loop.items():
        if loop is here:
            _set_all(futs, ok)
        else:
            _call_soon_threadsafe(loop, _set_all, futs, ok)


def _wake(waiters: list[asyncio.Future[None]], value: Any) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
    for w in waiters:
        by_loop.setdefault(w.get_loop(), []).append(w)
    for loop, futs in by_loop.items():
        _call_soon_threadsafe(loop, _set_all, futs, value)


def _load_send_keeping_gil() -> Callable[..., int] | None:
    """libc ``send`` called *without* releasing the GIL (``ctypes.PyDLL``), or None.

    Why: ``loop.call_soon_threadsafe`` wakes a loop with ``socket.send``, which gives up
    the GIL around a system call of a few microseconds. The writer wakes up to one loop
    per thread per batch; with 8 event-loop threads queueing for the GIL, each of those
    hand-offs cost the writer a wait behind another thread's loop iteration (0.1-5 ms),
    and every caller waiting for the *next* batch waited with it. A one-byte
    ``MSG_DONTWAIT`` send to a loop's self-pipe cannot block, so keeping the GIL is safe.
    ``MCP_OTEL_AUDIT_PLAIN_WAKEUP=1`` turns it off.
    """
    if os.name != "posix" or _settings.env_bool("MCP_OTEL_AUDIT_PLAIN_WAKEUP", False):
        return None
    try:
        import ctypes

        send = ctypes.PyDLL(None).send
        send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
        send.restype = ctypes.c_ssize_t
    except (ImportError, OSError, AttributeError):
        return None
    return send  # type: ignore[no-any-return]


_send_keeping_gil = _load_send_keeping_gil()
_SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)
_WAKE_FD = "_mcp_otel_audit_wake_fd"


def register_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Give ``loop`` a private wake-up descriptor: a ``dup`` of its self-pipe socket.

    Call it on the loop's own thread while it runs (the audit logger does, when it makes
    a waiter): the loop cannot close its self-pipe meanwhile, so the dup names the right
    socket. Owning the descriptor means the writer can never send to a number that was
    closed and reused for another file; it is closed when the loop is collected.
    """
    if _send_keeping_gil is None or getattr(loop, _WAKE_FD, None) is not None:
        return
    fd = _asyncio_compat.self_pipe_fd(loop)
    try:
        setattr(loop, _WAKE_FD, fd)
    except AttributeError:  # a loop class with __slots__: use the public method
        if fd >= 0:
            os.close(fd)
        return
    if fd >= 0:
        weakref.finalize(loop, os.close, fd)


def _call_soon_threadsafe(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any],
                          *args: Any) -> None:
    """``loop.call_soon_threadsafe(callback, *args)`` without dropping the GIL, for a
    stock selector loop that :func:`register_loop` prepared.

    It does what ``call_soon_threadsafe`` does (append to the loop's ready deque, then one
    byte to its self-pipe; see :mod:`mcp_otel._asyncio_compat`), minus the GIL release. A full pipe
    (``EAGAIN``) means the loop is awake anyway. Other loops (uvloop, Proactor, debug
    mode, unregistered, closed) take the public method.
    """
    fd = getattr(loop, _WAKE_FD, -1)
    if fd >= 0 and not loop.is_closed() and not loop.get_debug():
        _asyncio_compat.call_soon_unwoken(loop, callback, args)
        _send_keeping_gil(fd, b"\0", 1, _SEND_FLAGS)  # type: ignore[misc]
        return
    with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
        loop.call_soon_threadsafe(callback, *args)


def _set_all(futs: list[asyncio.Future], value: Any) -> None:
    for f in futs:
        if not f.done():
            f.set_result(value)
