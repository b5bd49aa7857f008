"""Subprocess body for the exporter tests: emit records through the SDK's batch processor.

Run as ``python _writer.py MODE PATH ...``; prints one JSON status line on stdout. Kept
separate from the tests so each process is a fresh interpreter (real cross-process
locking, real rlimits, real uid changes), not a fork of pytest.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from mcp_otel.exporters import JsonlLogExporter

BIG = "x" * (70 * 1024)  # > 64 KiB: larger than a pipe buffer and PIPE_BUF


def records(proc: int, n: int, big_every: int) -> None:
    """``n`` records from process ``proc`` through a BatchLogRecordProcessor."""
    path = sys.argv[3]
    max_bytes = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] != "0" else None
    exporter = JsonlLogExporter(path, fsync="none", max_bytes=max_bytes)
    provider = LoggerProvider(resource=Resource.create({"service.name": "writer"}))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, max_queue_size=n + 1, max_export_batch_size=256)
    )
    logger = provider.get_logger("writer")
    for i in range(n):
        attrs: dict[str, Any] = {"proc": proc, "seq": i}
        if big_every and i % big_every == 0:
            attrs["big"] = BIG
        logger.emit(body="r", attributes=attrs, event_name="w")
    provider.shutdown()
    print(json.dumps({"failed": exporter.failed_records, "written": exporter.written_records}))


def _batch(exporter: JsonlLogExporter, start: int, n: int) -> list[ReadableLogRecord]:
    from opentelemetry._logs import LogRecord

    return [
        ReadableLogRecord(
            LogRecord(body="b" * 200, attributes={"seq": start + i}),
            resource=Resource.create({}),
        )
        for i in range(n)
    ]


def fsize(limit: int) -> None:
    """Export under RLIMIT_FSIZE until batches fail, then lift the limit and export again.

    A real, kernel-enforced limit (``write`` stops at ``limit`` bytes, then fails with
    ``EFBIG``; SIGXFSZ is ignored): the same short write a full disk gives.
    """
    import os
    import signal

    path = sys.argv[3]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    exporter = JsonlLogExporter(path, fsync="batch")
    results = []
    seq = 0
    for _ in range(200):  # bounded
        ok = exporter.export(_batch(exporter, seq, 50)).name
        results.append(ok)
        seq += 50
        if ok == "FAILURE" and results.count("FAILURE") >= 3:
            break
    size_at_limit = os.path.getsize(path)
    written_at_limit = exporter.written_records
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    after = exporter.export(_batch(exporter, seq, 50)).name
    exporter.shutdown()
    print(json.dumps({
        "results": results, "after": after, "failed": exporter.failed_records,
        "written": exporter.written_records, "size_at_limit": size_at_limit,
        "written_at_limit": written_at_limit, "after_seq": seq,
    }))


def readonly() -> None:
    """Export into a directory we cannot write, wait for the parent to fix it, retry."""
    path = sys.argv[3]
    exporter = JsonlLogExporter(path, fsync="none")
    first = [exporter.export(_batch(exporter, i * 10, 10)).name for i in range(3)]
    print(json.dumps({"first": first, "failed": exporter.failed_records}), flush=True)
    sys.stdin.readline()  # the parent makes the directory writable, then answers
    after = exporter.export(_batch(exporter, 1000, 10)).name
    exporter.shutdown()
    print(json.dumps({"after": after, "failed": exporter.failed_records}), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "records":
        records(int(sys.argv[2]), int(sys.argv[4]), int(sys.argv[5]))
    elif mode == "fsize":
        fsize(int(sys.argv[2]))
    elif mode == "readonly":
        readonly()
    else:
        raise SystemExit(f"unknown mode {mode}")
