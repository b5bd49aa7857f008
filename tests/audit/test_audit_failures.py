"""No silent loss: waiting for room, retries, and declared losses."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mcp_otel import integrity
from mcp_otel.audit import AuditLogger, RetryPolicy
from mcp_otel.exporters import JsonlLogExporter

from .conftest import GatedExporter, counter_value, read_records


def _today_file(directory: Path) -> Path:
    return directory / f"mcp_audit_{time.strftime('%Y%m%d', time.gmtime())}.jsonl"


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


async def test_failed_write_is_retried_until_it_succeeds(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    log_dir = tmp_path / "audit"
    log_dir.mkdir()
    blocker = _today_file(log_dir)
    blocker.mkdir()  # a directory where the file should be: every write fails for real
    failed_twice = threading.Event()

    class Watched(JsonlLogExporter):
        """The real exporter; tells the test when two attempts have failed."""

        failures = 0

        def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
            result = super().export(batch)
            if result is LogRecordExportResult.FAILURE:
                self.failures += 1
                if self.failures >= 2:
                    failed_twice.set()
            return result

    a = make_audit(log_dir, retry=RetryPolicy(attempts=400, initial_delay=0.002,
                                              max_delay=0.02),
                   exporter_factory=lambda: Watched(str(log_dir / "mcp_audit_{date}.jsonl")))
    task = asyncio.create_task(a.log_tool_call("t", {"i": 1}))
    # Each failed attempt is a failed write of the file; the records are counted as
    # failed by the exporter only once, when the processor gives up on them.
    assert await asyncio.to_thread(failed_twice.wait, 20)
    assert not task.done()  # the caller is still waiting: written means written
    blocker.rmdir()
    await task
    recs = read_records(log_dir)
    assert [r["seq"] for r in recs] == [1] and "audit_lost" not in recs[0]
    assert a.get_session_summary()["records_lost"] == 0


async def test_write_that_keeps_failing_is_counted_reported_and_declared(
        make_audit: Callable[..., AuditLogger], tmp_path: Path,
        metric_reader: InMemoryMetricReader, capfd: pytest.CaptureFixture[str]) -> None:
    log_dir = tmp_path / "audit"
    log_dir.mkdir()
    blocker = _today_file(log_dir)
    blocker.mkdir()
    a = make_audit(log_dir, retry=RetryPolicy(attempts=3, initial_delay=0.001))
    await a.log_tool_call("lost_one", {"i": 1})  # returns: the host server goes on
    await a.log_tool_call("lost_two", {"i": 2})
    assert a.get_session_summary()["records_lost"] == 2
    assert counter_value(metric_reader, "mcp_otel.audit.lost") == 2
    err = capfd.readouterr().err
    assert "LOST 1 audit record(s) (seq 1..1)" in err and "(seq 2..2)" in err
    blocker.rmdir()
    await a.log_tool_call("kept", {"i": 3})
    a.shutdown()
    recs = read_records(log_dir)
    assert [r["seq"] for r in recs] == [3, 4]
    assert recs[0]["tool"] == "kept"
    assert recs[0]["audit_lost"] == {"count": 2, "seq_first": 1, "seq_last": 2}
    assert recs[0]["prev_hash"] == integrity.genesis_hash(recs[0]["session_id"])
    assert recs[1]["event"] == "session_end" and recs[1]["lost"] == 2
    report = integrity.verify_paths([log_dir])
    assert report.ok, report.to_dict()  # a known loss, not tampering
    assert [w.code for w in report.warnings] == ["declared_loss"]
    assert "seq 1..2 (2 records)" in report.warnings[0].message
    assert not integrity.verify_paths([log_dir], strict=True).ok


def test_full_queue_makes_callers_wait_never_evicts(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    a = make_audit(wait="queued", max_queue_size=4, max_batch_size=3)

    def run(k: int) -> None:
        async def main() -> None:
            for i in range(250):
                await a.log_tool_call(f"t{k}", {"i": i})
        asyncio.run(main())

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.force_flush()
    recs = read_records(tmp_path / "audit")
    assert len(recs) == 2000
    assert sorted((r["tool"], r["arguments"]["i"]) for r in recs) == sorted(
        (f"t{k}", i) for k in range(8) for i in range(250))


async def test_records_waiting_for_room_at_shutdown_go_to_the_next_session(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    """A shutdown while callers wait for queue room: they retry in the next session, as
    a caller whose emit meets a closed session does, instead of being lost undeclared."""
    log_dir = tmp_path / "audit"
    gates: list[GatedExporter] = []

    def factory() -> GatedExporter:
        gates.append(GatedExporter(str(log_dir / "mcp_audit_{date}.jsonl")))
        if len(gates) > 1:
            gates[-1].release.set()  # only the first session's disk is stuck
        return gates[-1]

    a = make_audit(log_dir, wait="queued", max_queue_size=2, max_batch_size=1,
                   exporter_factory=factory)
    await a.log_tool_call("first", {})
    await asyncio.to_thread(gates[0].entered.wait, 10)  # the writer is now stuck
    old = a._session
    assert old is not None
    tasks = [asyncio.create_task(a.log_tool_call(f"w{i}", {})) for i in range(5)]
    for _ in range(10_000):  # let the tasks run: 2 get queued, 3 wait for room
        if a.get_session_summary()["callers_waiting"] == 3:
            break
        await asyncio.sleep(0)
    summary = a.get_session_summary()
    assert summary["callers_waiting"] == 3 and summary["records_queued"] == 2
    closer = threading.Thread(target=a.shutdown)
    closer.start()
    await asyncio.to_thread(_wait_for, lambda: not old.processor.accepting)
    gates[0].release.set()
    await asyncio.gather(*tasks)
    await asyncio.to_thread(closer.join, 30)
    assert not closer.is_alive()
    a.shutdown()
    recs = read_records(log_dir)
    assert sorted(r["tool"] for r in recs if r["event"] == "tool_call") == \
        ["first"] + [f"w{i}" for i in range(5)]
    report = integrity.verify_paths([log_dir])
    assert report.ok and not report.warnings, report.to_dict()
    assert len(report.sessions) == 2 and all(s.ended for s in report.sessions.values())
    assert sum(s.declared_lost for s in report.sessions.values()) == 0


async def test_no_room_in_time_is_declared_not_silent(
        make_audit: Callable[..., AuditLogger], tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    log_dir = tmp_path / "audit"
    gates: list[GatedExporter] = []

    def factory() -> GatedExporter:
        gates.append(GatedExporter(str(log_dir / "mcp_audit_{date}.jsonl")))
        return gates[-1]

    a = make_audit(log_dir, wait="queued", max_queue_size=2, queue_timeout=0.2,
                   exporter_factory=factory)
    await a.log_tool_call("first", {})
    await asyncio.to_thread(gates[0].entered.wait, 10)  # the writer is now stuck
    await a.log_tool_call("q1", {})
    await a.log_tool_call("q2", {})
    t0 = time.monotonic()
    await a.log_tool_call("no_room", {})  # waits 0.2 s, then gives up (declared)
    assert time.monotonic() - t0 >= 0.19
    assert "LOST 1 audit record" in capfd.readouterr().err
    gates[0].release.set()
    await a.log_tool_call("after", {})
    a.shutdown()
    recs = read_records(log_dir)
    assert [r["tool"] for r in recs[:4]] == ["first", "q1", "q2", "after"]
    # Sealing happens at write time: the next record written after the loss declares it.
    assert "audit_lost" not in recs[0]
    assert recs[1]["audit_lost"] == {"count": 1, "unqueued": 1}
    assert [r["seq"] for r in recs] == [1, 2, 3, 4, 5]
    report = integrity.verify_paths([log_dir])
    assert report.ok and [w.code for w in report.warnings] == ["declared_loss"]
