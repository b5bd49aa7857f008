"""The audit-grade processor on its own, in a plain SDK LoggerProvider."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
)

from mcp_otel.audit._processor import AuditLogRecordProcessor, RetryPolicy


def test_sync_emitters_wait_for_room_and_nothing_is_evicted() -> None:
    exporter = InMemoryLogRecordExporter()
    batches: list[int] = []
    processor = AuditLogRecordProcessor(
        exporter, max_queue_size=8, max_batch_size=5,
        on_committed=lambda recs: batches.append(len(recs)))
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(processor)
    logger = provider.get_logger("t")

    def run(k: int) -> None:
        for i in range(500):
            logger.emit(attributes={"k": k, "i": i}, event_name="e")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert processor.force_flush(10_000)
    got = [(r.log_record.attributes["k"], r.log_record.attributes["i"])
           for r in exporter.get_finished_logs()]
    assert len(got) == 4000 and len(set(got)) == 4000
    for k in range(8):  # each thread's records keep their order
        assert [i for kk, i in got if kk == k] == list(range(500))
    assert max(batches) <= 5 and sum(batches) == 4000
    assert processor.written == 4000 and processor.lost == 0
    provider.shutdown()


class _Flaky(LogRecordExporter):
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.records: list[Any] = []

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("disk hiccup")
        self.records.extend(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_retries_then_reports_loss() -> None:
    lost: list[tuple[int, str]] = []
    ok = _Flaky(failures=2)
    p = AuditLogRecordProcessor(ok, retry=RetryPolicy(attempts=3, initial_delay=0.001),
                                on_lost=lambda recs, exc: lost.append((len(recs), repr(exc))))
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(p)
    provider.get_logger("t").emit(attributes={"a": 1})
    assert p.force_flush(10_000)
    assert (ok.calls, len(ok.records), lost) == (3, 1, [])
    provider.shutdown()

    bad = _Flaky(failures=10)
    p = AuditLogRecordProcessor(bad, retry=RetryPolicy(attempts=3, initial_delay=0.001),
                                on_lost=lambda recs, exc: lost.append((len(recs), repr(exc))))
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(p)
    provider.get_logger("t").emit(attributes={"a": 1})
    assert p.force_flush(10_000)
    assert bad.calls == 3 and lost == [(1, "OSError('disk hiccup')")] and p.lost == 1
    provider.shutdown()


def test_retry_policy_backoff() -> None:
    assert RetryPolicy(attempts=6, initial_delay=0.05, max_delay=0.3).delays() == [
        0.05, 0.1, 0.2, 0.3, 0.3]
    assert RetryPolicy(attempts=1).delays() == []


def test_final_record_is_last_and_racing_records_go_to_on_late() -> None:
    exporter = InMemoryLogRecordExporter()
    late: list[Any] = []
    p = AuditLogRecordProcessor(exporter, on_late=late.extend)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(p)
    logger = provider.get_logger("t")
    gate = threading.Event()
    original = exporter.export

    def slow_export(batch: Any) -> Any:
        gate.wait(10)
        return original(batch)

    exporter.export = slow_export  # type: ignore[method-assign]
    logger.emit(attributes={"n": 1})
    assert p.force_flush(100) is False  # the writer is held at the gate
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadWriteLogRecord

    def rec(n: int) -> ReadWriteLogRecord:
        return ReadWriteLogRecord(LogRecord(attributes={"n": n}))

    p.put_final(rec(99))
    # A producer that passed the open door just before it closed appends behind the end:
    p._queue.append((rec(2), None))
    gate.set()
    assert p.force_flush(10_000)
    written = [r.log_record.attributes["n"] for r in exporter.get_finished_logs()]
    assert written == [1, 99]  # the final record is the last one written
    assert [r.log_record.attributes["n"] for r, _ in late] == [2]
    with pytest.raises(RuntimeError):  # a closed processor accepts no record
        p.put(rec(3))
    provider.shutdown()


def test_async_waiter_registering_while_the_writer_drains_is_not_left_waiting() -> None:
    """The writer pops a batch and looks for room waiters (without the lock) just while a
    producer, having found the queue full, registers: the producer must still get in."""
    processor = AuditLogRecordProcessor(InMemoryLogRecordExporter(), max_queue_size=2,
                                        queue_timeout=5.0)
    processor._worker = threading.current_thread()  # type: ignore[assignment]  # no writer:
    processor._queue.extend([("a", None), ("b", None)])  # type: ignore[arg-type]  # played here
    drained: list[Any] = []

    class Waiters(list):  # type: ignore[type-arg]
        def append(self, fut: Any) -> None:
            if not drained:  # the writer runs right as the producer registers
                drained.append(processor._take_batch(block=False))
            super().append(fut)

    processor._room_waiters = Waiters()

    async def main() -> None:
        await processor.put_async("rec", None)  # type: ignore[arg-type]

    asyncio.run(main())  # raised QueueFullTimeout after 5 s with the room there all along
    assert drained == [[("a", None), ("b", None)]]
    assert list(processor._queue) == [("rec", None)] and not processor._room_waiters


def test_a_dozing_writer_is_woken_by_waiters_and_flushes_not_by_queued_records() -> None:
    """After a batch the writer dozes for ``linger``: a record nobody waits for must not
    wake it (no futex call on the caller's path), a waiting caller and a flush must."""
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadWriteLogRecord

    exporter = InMemoryLogRecordExporter()
    p = AuditLogRecordProcessor(exporter, linger=60.0)  # dozes far longer than the test
    dozing = threading.Event()
    notified: list[int] = []

    class Watched(threading.Condition):
        def wait(self, timeout: float | None = None) -> bool:
            if timeout == 60.0:
                dozing.set()
            return super().wait(timeout)

        def notify(self, n: int = 1) -> None:
            notified.append(n)
            super().notify(n)

    p._not_empty = Watched(p._lock)

    def rec(n: int) -> ReadWriteLogRecord:
        return ReadWriteLogRecord(LogRecord(attributes={"n": n}))

    def written() -> list[int]:
        return [r.log_record.attributes["n"] for r in exporter.get_finished_logs()]

    p.put(rec(1))  # starts the writer, which writes it and then dozes
    assert dozing.wait(10)
    dozing.clear()
    assert p.force_flush(10_000)  # a flush wakes it at once (else: 60 s)
    assert written() == [1]
    assert dozing.wait(10)  # dozing again after the flush
    before = len(notified)
    p.put(rec(2))  # nobody waits for it: no wake-up
    assert len(notified) == before and written() == [1]

    async def waited() -> bool:
        fut = asyncio.get_running_loop().create_future()
        p.put(rec(3), fut)  # a waiting caller wakes the writer
        return bool(await asyncio.wait_for(fut, 10))

    assert asyncio.run(waited())
    assert len(notified) == before + 1
    assert written() == [1, 2, 3]  # record 2 went with the woken batch, in order
    p.shutdown()


@pytest.mark.parametrize("side", ["thread", "event loop"])
def test_a_full_queue_never_waits_out_the_linger(side: str) -> None:
    """Callers that find the queue full wake a dozing writer: with an hour of linger the
    records still go through at once (before: one doze per queue-full of records)."""
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadWriteLogRecord

    exporter = InMemoryLogRecordExporter()
    p = AuditLogRecordProcessor(exporter, max_queue_size=2, max_batch_size=1, linger=3600.0,
                                queue_timeout=60.0)

    def rec(n: int) -> ReadWriteLogRecord:
        return ReadWriteLogRecord(LogRecord(attributes={"n": n}))

    def produce() -> None:
        if side == "thread":
            for n in range(40):
                p.put(rec(n))
        else:
            async def main() -> None:
                for n in range(40):
                    await p.put_async(rec(n))
            asyncio.run(main())

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(30)  # the bound of a failure, not a pause: this returns when done
    assert not producer.is_alive(), "the callers waited out the writer's linger"
    assert p.force_flush(10_000)
    assert [r.log_record.attributes["n"] for r in exporter.get_finished_logs()] == list(range(40))
    p.shutdown()
