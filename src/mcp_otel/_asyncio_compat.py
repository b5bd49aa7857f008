"""The one module that touches asyncio event-loop internals.

The audit writer thread wakes the event loops whose callers wait for a batch. The public
``loop.call_soon_threadsafe`` does it with ``socket.send`` on the loop's self-pipe, which
releases the GIL around a system call of a few microseconds; with several event-loop
threads queueing for the GIL, each such hand-off can cost the writer a wait behind another
thread's loop iteration, and every caller waiting for the next batch waits with it. So
:mod:`mcp_otel.audit._wakeup` does the same two steps itself, the send without
releasing the GIL (see ``_load_send_keeping_gil`` there), for a stock selector loop.
Measured with benchmarks/bench_audit.py (8 threads x 64 in flight, ``wait="written"``,
six alternating pairs of runs on a 2-core machine at load 6-9): a median 48 CPU µs per
record this way against 54 with the public route (``MCP_OTEL_AUDIT_PLAIN_WAKEUP=1``), with
overlapping ranges (43-66 against 46-59). A small gain on that machine, not a conclusive
one: re-measure on a quiet one before deciding to drop it.

Private names relied on (CPython's ``asyncio.selector_events.BaseSelectorEventLoop`` and
``asyncio.base_events.BaseEventLoop``), and why:

* ``loop._csock``: the write end of the loop's self-pipe, the socket
  ``call_soon_threadsafe`` writes a byte to. :func:`self_pipe_fd` dups it, so the writer
  owns a descriptor that cannot be closed and reused under it.
* ``loop._call_soon(callback, args, context)``: what ``call_soon_threadsafe`` runs before
  its wake-up write: append a handle to the loop's ready queue (a ``deque.append``, safe
  from another thread). :func:`call_soon_unwoken` calls it.

Any other loop (uvloop, Proactor, a subclass without these, debug mode) takes the public
``call_soon_threadsafe``; ``tests/test_otel_compat.py`` fails when either name moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Any

__all__ = ["call_soon_unwoken", "self_pipe_fd"]


def self_pipe_fd(loop: asyncio.AbstractEventLoop) -> int:
    """A ``dup`` of ``loop``'s self-pipe write socket, or -1 where it has none (not a
    stock selector loop). The caller owns (and must close) the descriptor."""
    if not isinstance(loop, asyncio.BaseEventLoop):
        return -1
    csock = getattr(loop, "_csock", None)
    if csock is None:
        return -1
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.dup(csock.fileno())
    return -1


def call_soon_unwoken(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any],
                      args: tuple[Any, ...]) -> None:
    """Queue ``callback(*args)`` on ``loop`` without waking it: the caller then writes to
    the loop's self-pipe (:func:`self_pipe_fd`), as ``call_soon_threadsafe`` does."""
    loop._call_soon(callback, args, None)  # type: ignore[attr-defined]
