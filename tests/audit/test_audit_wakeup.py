"""The audit writer's wake-up of waiting event loops, on its own."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from typing import Any

import pytest

from mcp_otel import _settings
from mcp_otel.audit import _wakeup


def _inode(fd: int) -> int | None:
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return None


@pytest.mark.skipif(os.name != "posix"
                    or _settings.env_bool("MCP_OTEL_AUDIT_PLAIN_WAKEUP", False),
                    reason="the GIL-keeping send is POSIX-only and turned off here")
def test_gil_keeping_wakeup_reaches_a_sleeping_loop_from_another_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's wake-up (no GIL release) must wake a loop blocked in select, exactly
    like call_soon_threadsafe; the loop's private dup is closed with the loop."""
    assert _wakeup._send_keeping_gil is not None  # on POSIX it loads, or the test fails
    loop = asyncio.new_event_loop()

    async def wait() -> Any:
        _wakeup.register_loop(asyncio.get_running_loop())
        fut = asyncio.get_running_loop().create_future()
        waker = threading.Thread(target=_wakeup._resolve, args=([(None, fut)], True))
        waker.start()  # resolves while this loop sleeps in select (or just before)
        try:
            return await asyncio.wait_for(fut, 10)  # fails after 10 s if never woken
        finally:
            waker.join()

    assert loop.run_until_complete(wait()) is True
    fd = getattr(loop, _wakeup._WAKE_FD)
    ino = _inode(fd)
    assert fd >= 0 and ino is not None
    loop.close()
    late: list[str] = []
    sent: list[int] = []
    real_send = _wakeup._send_keeping_gil
    monkeypatch.setattr(_wakeup, "_send_keeping_gil",
                        lambda fd, *args: sent.append(fd) or real_send(fd, *args))
    _wakeup._call_soon_threadsafe(loop, late.append, "late")  # closed: swallowed, never sent
    assert late == [] and sent == []
    del loop
    gc.collect()
    assert _inode(fd) != ino  # our dup is closed (the number may be reused by now)


def test_plain_wakeup_for_an_unregistered_loop() -> None:
    """A loop nobody registered (or a non-selector loop) gets call_soon_threadsafe."""
    loop = asyncio.new_event_loop()
    try:
        fut = loop.create_future()
        t = threading.Thread(target=_wakeup._resolve, args=([(None, fut)], False))
        t.start()
        t.join()
        assert loop.run_until_complete(asyncio.wait_for(fut, 10)) is False
        assert getattr(loop, _wakeup._WAKE_FD, None) is None
    finally:
        loop.close()
