"""Cost of one ``TelemetryEmitter.emit_tool_call`` against its baselines, same run.

Variants (microseconds per call, wall clock, all threads together):

* ``bare-sdk``    -- the OTel SDK instrument calls ``emit_tool_call`` makes (4 counter
  ``add`` + 1 histogram ``record``, same attributes, same provider and reader set-up),
  called directly: the floor for exact, thread-safe OTel metrics.
* ``mcp-otel``    -- ``TelemetryEmitter(enabled=False)``: those calls plus the lock that
  keeps the five totals consistent, value checks and attribute caching (the target:
  at most +50% over ``bare-sdk``).
* ``mcp-otel+events`` -- ``TelemetryEmitter(enabled=True)``: also one OTel log record per
  call, written by the locked JSONL exporter (batched) plus periodic metric snapshots.
* ``dict+lock``   -- the race-condition report's fix: a ``threading.Lock`` around five
  dict updates (exact, but no OTel, no export).
* ``dict+lock+file`` -- the report's fix with its per-call ``open(..., "a")`` +
  ``json.dumps`` + ``write`` under a file lock (Osiris' event file).

Every run is verified: the totals read back equal the calls made, and the event file of the
``+events``/``+file`` variants has exactly one line per call. Runs alternate between
variants; the table shows medians of ``--rounds`` rounds. Usage::

    python benchmarks/bench_telemetry.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from opentelemetry.sdk.metrics import Histogram, MeterProvider, ObservableGauge
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import DropAggregation

from _common import cpu_model
from mcp_otel.telemetry import MCP_DURATION_BUCKETS, TelemetryEmitter

Emit = Callable[[str, str, int, int, int], None]


class _BareSdk:
    """The instrument calls of ``emit_tool_call``, nothing else."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader(
            preferred_aggregation={Histogram: DropAggregation(), ObservableGauge: DropAggregation()}
        )
        self.provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        meter = self.provider.get_meter("bench")
        self.calls = meter.create_counter("mcp_otel.tool.calls", unit="{call}")
        self.bytes_in = meter.create_counter("mcp_otel.tool.input", unit="By")
        self.bytes_out = meter.create_counter("mcp_otel.tool.output", unit="By")
        self.duration = meter.create_counter("mcp_otel.tool.duration", unit="ms")
        self.histogram = meter.create_histogram(
            "mcp.server.operation.duration",
            unit="s",
            explicit_bucket_boundaries_advisory=list(MCP_DURATION_BUCKETS),
        )
        self.a_calls = {"gen_ai.tool.name": "bench_tool", "mcp_otel.status": "ok"}
        self.a_tool = {"gen_ai.tool.name": "bench_tool"}
        self.a_op = {"mcp.method.name": "tools/call", "gen_ai.tool.name": "bench_tool"}

    def emit(self, tool: str, status: str, duration_ms: int, bytes_in: int, bytes_out: int) -> None:
        self.calls.add(1, self.a_calls)
        self.bytes_in.add(bytes_in, self.a_tool)
        self.bytes_out.add(bytes_out, self.a_tool)
        self.duration.add(duration_ms, self.a_tool)
        self.histogram.record(duration_ms / 1000.0, self.a_op)

    def total_calls(self) -> int:
        data = self.reader.get_metrics_data()
        assert data is not None
        return sum(
            int(p.value)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "mcp_otel.tool.calls"
            for p in m.data.data_points
        )


class _ReportFix:
    """The race-condition report's locked-dict ``TelemetryEmitter`` (RC-002/RC-003 fix)."""

    def __init__(self, telemetry_file: Path | None) -> None:
        self.telemetry_file = telemetry_file
        self.session_id = "tel_bench"
        self.metrics = dict.fromkeys(
            ("tool_calls", "total_bytes_in", "total_bytes_out", "total_duration_ms", "errors"), 0
        )
        self._metrics_lock = threading.Lock()
        self._file_lock = threading.Lock()

    def emit(self, tool: str, status: str, duration_ms: int, bytes_in: int, bytes_out: int) -> None:
        with self._metrics_lock:
            self.metrics["tool_calls"] += 1
            self.metrics["total_bytes_in"] += bytes_in
            self.metrics["total_bytes_out"] += bytes_out
            self.metrics["total_duration_ms"] += duration_ms
            if status == "error":
                self.metrics["errors"] += 1
        if self.telemetry_file is None:
            return
        event = {
            "event": "tool_call",
            "session_id": self.session_id,
            "timestamp": _dt.datetime.now(_dt.UTC).isoformat(),
            "timestamp_ms": int(time.time() * 1000),
            "tool": tool,
            "status": status,
            "duration_ms": duration_ms,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
        }
        with self._file_lock, open(self.telemetry_file, "a") as f:
            f.write(json.dumps(event) + "\n")


def _drive(emit: Emit, calls: int, threads: int) -> float:
    """Seconds for ``calls`` emits spread over ``threads`` threads started together."""
    per_thread = calls // threads
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for i in range(per_thread):
            emit("bench_tool", "ok", i & 15, 100, 200)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def _lines(directory: Path, pattern: str) -> int:
    count = 0
    for path in directory.glob(pattern):
        for raw in path.read_bytes().splitlines():
            json.loads(raw)
            count += 1
    return count


def _run(variant: str, calls: int, threads: int, workdir: Path) -> float:
    """One verified run; returns microseconds per call."""
    calls = calls // threads * threads
    out = Path(tempfile.mkdtemp(dir=workdir))
    if variant == "bare-sdk":
        bare = _BareSdk()
        seconds = _drive(bare.emit, calls, threads)
        assert bare.total_calls() == calls
    elif variant in ("mcp-otel", "mcp-otel+events"):
        events = variant.endswith("+events")
        emitter = TelemetryEmitter(enabled=events, output_dir=out)
        seconds = _drive(emitter.emit_tool_call, calls, threads)
        assert emitter.metrics["tool_calls"] == calls
        emitter.shutdown()
        if events:
            assert _lines(out, "mcp_telemetry_*.jsonl") == calls
    else:
        with_file = variant.endswith("+file")
        fix = _ReportFix(out / "mcp_telemetry.jsonl" if with_file else None)
        seconds = _drive(fix.emit, calls, threads)
        assert fix.metrics["tool_calls"] == calls
        if with_file:
            assert _lines(out, "mcp_telemetry.jsonl") == calls
    return seconds / calls * 1e6


VARIANTS = ("bare-sdk", "mcp-otel", "mcp-otel+events", "dict+lock", "dict+lock+file")


def _machine() -> str:
    return f"{os.cpu_count()} CPUs (nproc), {cpu_model()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--threads", default="1,8", help="comma-separated thread counts")
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    results: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
        workdir = Path(tmp)
        for round_no in range(args.rounds):
            order = VARIANTS if round_no % 2 == 0 else tuple(reversed(VARIANTS))
            for threads in thread_counts:
                for variant in order:
                    results.setdefault((variant, threads), []).append(
                        _run(variant, args.calls, threads, workdir)
                    )
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"# bench_telemetry {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# {_machine()}")
    print(f"# {args.calls} calls per run, median of {args.rounds} alternating rounds")
    header = "| variant |"
    rule = "|---|"
    for t in thread_counts:
        header += f" {t} thread{'s' if t > 1 else ''} us/call | vs bare-sdk |"
        rule += "---:|---:|"
    print(header)
    print(rule)
    for variant in VARIANTS:
        row = f"| {variant} |"
        for t in thread_counts:
            value = med[(variant, t)]
            row += f" {value:.2f} | {value / med[('bare-sdk', t)]:.2f}x |"
        print(row)
    for t in thread_counts:
        overhead = med[("mcp-otel", t)] / med[("bare-sdk", t)] - 1
        verdict = "met" if overhead <= 0.5 else "NOT met"
        print(f"# {t} thread(s): mcp-otel adds {overhead:+.0%} over bare SDK calls "
              f"(target <= +50%: {verdict})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
