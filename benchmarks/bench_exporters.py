"""Throughput of log exporters behind the SDK's BatchLogRecordProcessor.

Records per second *written and verified* (the file is read back after the provider's
shutdown: every line parses and the count is exact) for:

* ``flat``     -- mcp-otel ``JsonlLogExporter(format="flat")`` (locked, one write per batch)
* ``otlp``     -- mcp-otel ``JsonlLogExporter(format="otlp")``
* ``official`` -- ``opentelemetry-exporter-otlp-json-file`` ``FileLogExporter``
* ``naive``    -- open(path, "a") + json.dumps + write per record (the Osiris pattern)
* ``discard``  -- an exporter that drops everything: the ceiling set by the SDK's batch
  processor and ``Logger.emit`` themselves

All with the same processor settings (queue large enough never to evict), 1 and 8
emitting threads, alternating runs, medians. Usage::

    python benchmarks/bench_exporters.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource

from _common import DiscardExporter, cpu_model, median_ratio
from mcp_otel.exporters import JsonlLogExporter

BATCH = 512


class NaiveExporter(LogRecordExporter):
    """open-append-write per record, json.dumps, one thread lock: the Osiris pattern."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        for r in batch:
            rec = r.log_record
            line = json.dumps(
                {
                    "timestamp": rec.timestamp or rec.observed_timestamp,
                    "event_name": rec.event_name,
                    "body": rec.body,
                    **dict(rec.attributes or {}),
                }
            )
            with self._lock, open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class CpuTimed(LogRecordExporter):
    """Adds up the exporter thread's CPU time inside ``export``: a per-record cost that,
    unlike wall-clock throughput, hardly moves when other jobs load the machine."""

    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner
        self.cpu = 0.0

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        start = time.thread_time()
        try:
            return self.inner.export(batch)
        finally:
            self.cpu += time.thread_time() - start

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _official(path: Path) -> LogRecordExporter:
    from opentelemetry.exporter.otlp.json.file._log_exporter import FileLogExporter

    return FileLogExporter(path)


def _count_lines(path: Path, per_line: Callable[[dict[str, Any]], int]) -> int:
    total = 0
    with open(path, "rb") as f:
        for line in f:
            total += per_line(json.loads(line))
    return total


def _flat_count(_doc: dict[str, Any]) -> int:
    return 1


def _otlp_count(doc: dict[str, Any]) -> int:
    return sum(
        len(s.get("logRecords", ()))
        for r in doc.get("resourceLogs", ())
        for s in r.get("scopeLogs", ())
    )


def run_once(kind: str, records: int, threads: int, workdir: Path) -> tuple[float, float]:
    """One timed run; returns (verified records per second, export CPU us per record)."""
    path = workdir / f"{kind}-{threads}-{time.monotonic_ns()}.jsonl"
    discard: DiscardExporter | None = None
    exporter: LogRecordExporter
    if kind == "flat":
        exporter = JsonlLogExporter(path, format="flat", fsync="interval")
    elif kind == "otlp":
        exporter = JsonlLogExporter(path, format="otlp", fsync="interval")
    elif kind == "official":
        exporter = _official(path)
    elif kind == "naive":
        exporter = NaiveExporter(path)
    else:
        exporter = discard = DiscardExporter()
    timed = CpuTimed(exporter)
    provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(timed, max_queue_size=records + 1, max_export_batch_size=BATCH)
    )
    logger = provider.get_logger("bench")
    per_thread = records // threads
    barrier = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            logger.emit(
                body="tool call finished",
                event_name="tool_call",
                attributes={
                    "session_id": "mcp_1764220000_abc123",
                    "tool": "discovery.request",
                    "seq": i,
                    "thread": t,
                    "duration_ms": 12.5,
                    "bytes_in": 512,
                    "bytes_out": 2048,
                    "status": "ok",
                },
            )

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    start = time.perf_counter()
    for th in pool:
        th.join()
    provider.shutdown()  # flushes the queue through the exporter
    elapsed = time.perf_counter() - start
    expected = per_thread * threads
    if discard is not None:
        got = discard.count
    else:
        got = _count_lines(path, _otlp_count if kind in ("otlp", "official") else _flat_count)
        path.unlink()
    if got != expected:
        raise SystemExit(f"{kind}/{threads}: verified {got} of {expected} records")
    return expected / elapsed, timed.cpu / expected * 1e6


def machine() -> str:
    python = platform.python_version()
    return f"{os.cpu_count()} CPUs ({cpu_model()}), Python {python}, {platform.system()}"


KINDS = ["flat", "otlp", "official", "naive", "discard"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="records per run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    parser.add_argument("--threads", default="1,8", help="comma-separated thread counts")
    args = parser.parse_args(argv)
    threads_list = [int(t) for t in args.threads.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="mcp-otel-bench-"))
    results: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    try:
        for rnd in range(args.rounds):
            for threads in threads_list:
                order = KINDS[rnd % len(KINDS) :] + KINDS[: rnd % len(KINDS)]  # alternate
                for kind in order:
                    rate, us = run_once(kind, args.records, threads, workdir)
                    results.setdefault((kind, threads), []).append(rate)
                    cpu.setdefault((kind, threads), []).append(us)
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"# bench_exporters  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {machine()}")
    print(
        f"# {args.records} records/run, BatchLogRecordProcessor(max_export_batch_size={BATCH}),"
        f" median of {args.rounds} alternating rounds; records/s written and verified"
    )
    print(
        "# ratios: median over rounds of the ratio within the round (robust to load drifting"
        " between rounds)"
    )
    print("# export CPU: the exporter thread's CPU time inside export() per record (median)")
    print()
    print(
        "| exporter | threads | records/s (median) | min..max | vs official | vs discard"
        " | export CPU µs/record |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for threads in threads_list:
        for kind in KINDS:
            runs = results[(kind, threads)]
            official = results[("official", threads)]
            discard = results[("discard", threads)]
            vs_official = median_ratio(runs, official)
            vs_discard = median_ratio(runs, discard)
            print(
                f"| {kind} | {threads} | {statistics.median(runs):,.0f}"
                f" | {min(runs):,.0f}..{max(runs):,.0f}"
                f" | {vs_official:.2f}x | {vs_discard:.0%}"
                f" | {statistics.median(cpu[(kind, threads)]):.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
