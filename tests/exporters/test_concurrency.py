"""Many threads and many processes into one file: every line whole, none lost or doubled."""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from mcp_otel.exporters import JsonlLogExporter
from tests.exporters._helpers import finish, read_lines, run_writer

BIG = "y" * (70 * 1024)


def test_16_threads_x_5000_through_batch_processor(tmp_path: Path) -> None:
    threads_n, per_thread = 16, 5000
    path = tmp_path / "logs.jsonl"
    exporter = JsonlLogExporter(path, fsync="none")
    provider = LoggerProvider()
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            exporter, max_queue_size=threads_n * per_thread, max_export_batch_size=512
        )
    )
    logger = provider.get_logger("t")
    start = threading.Barrier(threads_n)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            attrs = {"thread": t, "seq": i}
            if i % 1000 == 0:
                attrs["big"] = BIG
            logger.emit(body="m", attributes=attrs)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    provider.shutdown()

    lines = read_lines([path])
    keys = Counter((r["thread"], r["seq"]) for r in lines)
    assert len(lines) == threads_n * per_thread
    assert len(keys) == threads_n * per_thread  # no duplicate, none missing
    assert all(r["big"] == BIG for r in lines if r["seq"] % 1000 == 0)
    assert sum(1 for r in lines if "big" in r) == threads_n * 5
    assert exporter.failed_records == 0
    assert exporter.written_records == threads_n * per_thread


def test_8_processes_x_2000_into_one_file(tmp_path: Path) -> None:
    procs_n, per_proc = 8, 2000
    path = tmp_path / "shared_{date}.jsonl"
    procs = [run_writer("records", str(p), str(path), str(per_proc), "250") for p in range(procs_n)]
    statuses = [finish(p)[0] for p in procs]
    assert all(s == {"failed": 0, "written": per_proc} for s in statuses), statuses

    files = list(tmp_path.glob("shared_*.jsonl"))
    lines = read_lines(files)
    keys = Counter((r["proc"], r["seq"]) for r in lines)
    assert len(lines) == procs_n * per_proc
    assert set(keys) == {(p, i) for p in range(procs_n) for i in range(per_proc)}
    assert max(keys.values()) == 1
    assert sum(1 for r in lines if len(r.get("big", "")) == 70 * 1024) == procs_n * 8


def test_processes_rotating_one_file_lose_nothing(tmp_path: Path) -> None:
    """Rotation happens under the lock: writers in other processes follow the new file."""
    procs_n, per_proc = 4, 1500
    path = tmp_path / "rot.jsonl"
    procs = [
        run_writer("records", str(p), str(path), str(per_proc), "0", str(64 * 1024))
        for p in range(procs_n)
    ]
    statuses = [finish(p)[0] for p in procs]
    assert all(s["failed"] == 0 for s in statuses), statuses
    files = list(tmp_path.glob("rot*.jsonl"))
    assert len(files) > 3  # it did rotate
    for f in files:
        assert f.stat().st_size <= 64 * 1024
    lines = read_lines(files)
    keys = Counter((r["proc"], r["seq"]) for r in lines)
    assert len(lines) == procs_n * per_proc
    assert len(keys) == procs_n * per_proc


def test_forked_child_exports_while_parent_exports(tmp_path: Path) -> None:
    """fork() mid-export: the child neither deadlocks nor inherits a lock or a torn write."""
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource

    path = tmp_path / "fork.jsonl"
    exporter = JsonlLogExporter(path, fsync="none")
    res = Resource.create({})

    def batch(who: str, start: int, n: int = 100) -> list[ReadableLogRecord]:
        return [
            ReadableLogRecord(
                LogRecord(body=BIG[:5000], attributes={"who": who, "seq": start + i}), resource=res
            )
            for i in range(n)
        ]

    stop = threading.Event()
    parent_batches = 0
    parent_results: list[str] = []  # a failure in the thread must fail the test

    def parent_writer() -> None:
        nonlocal parent_batches
        while not stop.is_set() and parent_batches < 2000:  # bounded
            parent_results.append(exporter.export(batch("parent", parent_batches * 100)).name)
            parent_batches += 1

    writers = [threading.Thread(target=parent_writer) for _ in range(1)]
    for w in writers:
        w.start()
    children = []
    for c in range(3):
        pid = os.fork()
        if pid == 0:  # child: export through the inherited exporter, report by exit code
            code = 1
            try:
                ok = all(
                    exporter.export(batch(f"child{c}", b * 100)).name == "SUCCESS"
                    for b in range(20)
                )
                exporter.shutdown()
                code = 0 if ok else 2
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    stop.set()
    for w in writers:
        w.join()
    exporter.shutdown()

    lines = read_lines([path])
    keys = Counter((r["who"], r["seq"]) for r in lines)
    assert max(keys.values()) == 1
    for c in range(3):
        assert {s for (w, s) in keys if w == f"child{c}"} == set(range(2000))
    assert parent_batches > 0 and parent_results == ["SUCCESS"] * parent_batches
    assert len([k for k in keys if k[0] == "parent"]) == parent_batches * 100


def test_renames_during_a_threaded_run_lose_nothing(tmp_path: Path) -> None:
    """logrotate-style moves while 4 threads export: every record is in exactly one file."""
    from opentelemetry._logs import LogRecord
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource

    path = tmp_path / "live.jsonl"
    exporter = JsonlLogExporter(path, fsync="none")
    res = Resource.create({})
    threads_n, batches, per_batch = 4, 150, 20
    done = 0
    done_lock = threading.Lock()
    milestones = {k * 100: threading.Event() for k in range(1, 6)}

    def work(t: int) -> None:
        nonlocal done
        for b in range(batches):
            batch = [
                ReadableLogRecord(
                    LogRecord(body="x", attributes={"t": t, "seq": b * per_batch + i}),
                    resource=res,
                )
                for i in range(per_batch)
            ]
            assert exporter.export(batch).name == "SUCCESS"
            with done_lock:
                done += 1
                if done in milestones:
                    milestones[done].set()

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for th in pool:
        th.start()
    renamed = 0
    for k, event in sorted(milestones.items()):
        assert event.wait(timeout=60)
        try:  # on a very loaded machine the writers may be done already: nothing to move
            path.rename(tmp_path / f"live.jsonl.{k}")
            renamed += 1
        except FileNotFoundError:
            pass
    for th in pool:
        th.join()
    exporter.shutdown()

    files = list(tmp_path.iterdir())
    assert renamed >= 1 and len(files) >= renamed
    lines = read_lines(files)
    keys = Counter((r["t"], r["seq"]) for r in lines)
    assert len(lines) == threads_n * batches * per_batch
    assert len(keys) == len(lines)
