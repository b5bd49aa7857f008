"""``written`` records written by their caller while the writer is idle (write_inline).

The caller seals and exports its own record under the writer's lock, so no hand-off to
the writer thread (and no wait for the GIL behind a busy event loop) is left on its
path; what its one attempt cannot write goes, sealed, to the writer's retries.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExportResult

from mcp_otel import integrity
from mcp_otel.audit import AuditLogger, RetryPolicy
from mcp_otel.exporters import JsonlLogExporter

from .conftest import read_records


class _Recording(JsonlLogExporter):
    """The real exporter, noting which thread wrote each batch; ``refuse`` makes the
    next attempt made on that thread write nothing (a refused write, as on a full disk)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, format="flat")
        self.threads: list[str] = []
        self.refuse: str | None = None

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        return super().export(batch)

    def export_prefix(self, batch: Sequence[Any], *, count_failed: bool = True) -> int:
        name = threading.current_thread().name
        if name == self.refuse:
            self.refuse = None
            return 0
        self.threads.append(name)
        return super().export_prefix(batch, count_failed=count_failed)


def _logger(make_audit: Callable[..., AuditLogger], log_dir: Path) -> tuple[AuditLogger,
                                                                              _Recording]:
    made: list[_Recording] = []

    def factory() -> _Recording:
        made.append(_Recording(str(log_dir / "mcp_audit_{date}.jsonl")))
        return made[-1]

    audit = make_audit(log_dir, wait="written", exporter_factory=factory,
                       retry=RetryPolicy(attempts=5, initial_delay=0.001))
    return audit, made


async def test_an_idle_writer_leaves_the_write_to_the_caller(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    log_dir = tmp_path / "audit"
    audit, made = _logger(make_audit, log_dir)
    me = threading.current_thread().name
    for i in range(20):  # one at a time: the writer is idle between them
        await audit.log_tool_call("t", {"i": i})
    exporter = made[0]
    assert me in exporter.threads  # at least some written on the caller's thread
    audit.shutdown()
    recs = read_records(log_dir)
    assert [r["seq"] for r in recs] == list(range(1, 22))
    assert [r["arguments"]["i"] for r in recs[:-1]] == list(range(20))
    assert integrity.verify_paths([log_dir], strict=True).ok


async def test_what_the_callers_attempt_cannot_write_the_writer_retries(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    log_dir = tmp_path / "audit"
    audit, made = _logger(make_audit, log_dir)
    me = threading.current_thread().name
    for i in range(3):
        await audit.log_tool_call("warm", {"i": i})
    exporter = made[0]
    refused = 0
    for i in range(20):  # until an attempt on this thread is refused and handed over
        exporter.refuse = me
        assert await audit.log_tool_call("t", {"i": i})  # True: in the file
        if exporter.refuse is None:
            refused += 1
            break
    assert refused == 1
    # the refused record was written by the writer thread, after its retry
    assert exporter.threads[-1] != me
    await audit.log_tool_call("after", {})
    audit.shutdown()
    recs = read_records(log_dir)
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert audit.get_session_summary()["records_lost"] == 0
    report = integrity.verify_paths([log_dir], strict=True)
    assert report.ok, report.to_dict()


def _note(ran: list[int], i: int, seen: asyncio.Future[None]) -> None:
    ran.append(i)
    seen.set_result(None)


async def test_a_record_written_by_its_caller_does_not_suspend_it(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    # Its future is resolved on the spot, not through the loop's self-pipe: the await
    # finds it done, so a callback scheduled before the call has not run when it returns
    # (a whole loop iteration saved per record, twice per tool call).
    loop = asyncio.get_running_loop()
    log_dir = tmp_path / "audit"
    audit, made = _logger(make_audit, log_dir)
    me = threading.current_thread().name
    inline = 0
    for i in range(20):
        ran: list[int] = []
        seen: asyncio.Future[None] = loop.create_future()
        loop.call_soon(_note, ran, i, seen)
        before = made[0].threads.count(me) if made else 0
        assert await audit.log_tool_call("t", {"i": i})
        if made[0].threads.count(me) > before:  # this one was written on our thread
            inline += 1
            assert ran == []
        await seen  # the loop runs it before the next call
        assert ran == [i]
    assert inline > 0
    audit.shutdown()
    assert integrity.verify_paths([log_dir], strict=True).ok
