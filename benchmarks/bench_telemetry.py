"""Cost of one ``TelemetryEmitter.emit_tool_call`` against its baselines, same run.

Variants (microseconds per call, all threads together; wall clock, and the process's CPU
time, which moves less when other jobs load the machine):

* ``bare-sdk``       -- the OTel SDK calls ``emit_tool_call`` stands for: one
  ``Histogram.record`` (``mcp.server.operation.duration``) and two ``Counter.add`` (bytes
  in and out), same attributes, on a ``MeterProvider`` with one reader.
* ``mcp-otel``       -- ``TelemetryEmitter(enabled=True, events=False)``: metrics only
  (the histogram record plus the locked tally, exported by observable counters through
  the periodic snapshot-file reader). Target: at most 0.75x ``bare-sdk``.
* ``dict+lock``      -- the race-condition report's fix for RC-002: a ``threading.Lock``
  around Osiris' five dict updates (exact, but no OTel and no export).
* ``mcp-otel+events`` -- ``TelemetryEmitter(enabled=True)``: also the event line, in
  the file when the call returns (one locked append through the JSONL exporter's file:
  thread lock + ``flock``).
* ``dict+lock+file`` -- the report's fixed design (RC-002 + RC-003): the locked dict plus
  one JSON line appended per event under a lock (``open(..., "ab")``, orjson, ``write``).
  Target: ``mcp-otel+events`` at most 1.0x this.

Every run is verified: the totals read back equal the calls made; for the emitter, the
final metric snapshot in the file has ``tool_calls`` = calls and a histogram count =
calls; the event files hold exactly one parsable line per call. Variants alternate
within each round; ratios are medians of the per-round ratios (both sides of a ratio
share a round's load). Usage::

    python benchmarks/bench_telemetry.py [--calls N] [--rounds R] [--threads 1,8]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import orjson
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.version import __version__ as sdk_version

from _common import cpu_model, median_ratio
from mcp_otel.telemetry import MCP_DURATION_BUCKETS, TelemetryEmitter

Emit = Callable[[str, str, int, int, int], None]


class _BareSdk:
    """The SDK calls ``emit_tool_call`` stands for, nothing else."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        meter = self.provider.get_meter("bench")
        self.bytes_in = meter.create_counter("mcp_otel.tool.input", unit="By")
        self.bytes_out = meter.create_counter("mcp_otel.tool.output", unit="By")
        self.histogram = meter.create_histogram(
            "mcp.server.operation.duration",
            unit="s",
            explicit_bucket_boundaries_advisory=list(MCP_DURATION_BUCKETS),
        )
        self.a_tool = {"gen_ai.tool.name": "bench_tool"}
        self.a_op = {"mcp.method.name": "tools/call", "gen_ai.tool.name": "bench_tool"}

    def emit(self, tool: str, status: str, duration_ms: int, bytes_in: int, bytes_out: int) -> None:
        self.histogram.record(duration_ms / 1000.0, self.a_op)
        self.bytes_in.add(bytes_in, self.a_tool)
        self.bytes_out.add(bytes_out, self.a_tool)

    def total_calls(self) -> int:
        data = self.reader.get_metrics_data()
        assert data is not None
        return sum(
            int(p.count)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "mcp.server.operation.duration"
            for p in m.data.data_points
        )


class _ReportFix:
    """The race-condition report's locked-dict ``TelemetryEmitter`` (RC-002/RC-003 fix),
    with orjson instead of ``json`` (faster: the stronger baseline)."""

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
        with self._file_lock, open(self.telemetry_file, "ab") as f:
            f.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))


def _drive(emit: Emit, calls: int, threads: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds for ``calls`` emits spread over ``threads``
    threads started together (CPU: every thread of the process, background ones too)."""
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
    start, cpu = time.perf_counter(), time.process_time()
    for w in workers:
        w.join()
    return time.perf_counter() - start, time.process_time() - cpu


def _lines(directory: Path, pattern: str) -> list[dict[str, object]]:
    return [
        orjson.loads(raw)
        for path in sorted(directory.glob(pattern))
        for raw in path.read_bytes().splitlines()
    ]


def _check_snapshot(out: Path, calls: int) -> None:
    """The final metric snapshot holds the calls (observable counter) and as many
    histogram observations: the emitter's export was exercised, not only its tally."""
    lines = _lines(out, "mcp_metrics_*.jsonl")
    last = max(str(line["timestamp"]) for line in lines)
    final = [line for line in lines if line["timestamp"] == last]
    assert sum(int(str(p["value"])) for p in final if p["metric"] == "mcp_otel.tool.calls") == calls
    assert sum(
        int(str(p["count"])) for p in final if p["metric"] == "mcp.server.operation.duration"
    ) == calls


def _run(variant: str, calls: int, threads: int, workdir: Path) -> tuple[float, float]:
    """One verified run; returns wall-clock and CPU microseconds per call."""
    calls = calls // threads * threads
    out = Path(tempfile.mkdtemp(dir=workdir))
    if variant == "bare-sdk":
        bare = _BareSdk()
        seconds = _drive(bare.emit, calls, threads)
        assert bare.total_calls() == calls
    elif variant in ("mcp-otel", "mcp-otel+events"):
        events = variant.endswith("+events")
        emitter = TelemetryEmitter(enabled=True, output_dir=out, events=events)
        seconds = _drive(emitter.emit_tool_call, calls, threads)
        assert emitter.metrics["tool_calls"] == calls
        emitter.shutdown()
        _check_snapshot(out, calls)
        lines = _lines(out, "mcp_telemetry_*.jsonl")
        assert len(lines) == (calls if events else 0)
    else:
        with_file = variant.endswith("+file")
        fix = _ReportFix(out / "mcp_telemetry.jsonl" if with_file else None)
        seconds = _drive(fix.emit, calls, threads)
        assert fix.metrics["tool_calls"] == calls
        if with_file:
            assert len(_lines(out, "mcp_telemetry.jsonl")) == calls
    return seconds[0] / calls * 1e6, seconds[1] / calls * 1e6


VARIANTS = ("bare-sdk", "mcp-otel", "dict+lock", "mcp-otel+events", "dict+lock+file")
#: (variant, its baseline, the most it may cost relative to that baseline)
TARGETS = (("mcp-otel", "bare-sdk", 0.75), ("mcp-otel+events", "dict+lock+file", 1.0))


def _machine() -> str:
    return (f"{os.cpu_count()} CPUs (nproc), {cpu_model()}, Python "
            f"{platform.python_version()}, OTel SDK {sdk_version}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per run")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds")
    parser.add_argument("--threads", default="1,8", help="comma-separated thread counts")
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    results: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    started = _dt.datetime.now(_dt.UTC)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
        workdir = Path(tmp)
        for round_no in range(args.rounds):
            order = VARIANTS if round_no % 2 == 0 else tuple(reversed(VARIANTS))
            for threads in thread_counts:
                for variant in order:
                    wall, used = _run(variant, args.calls, threads, workdir)
                    results.setdefault((variant, threads), []).append(wall)
                    cpu.setdefault((variant, threads), []).append(used)
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    load_after = os.getloadavg()

    def ratio(variant: str, baseline: str, threads: int, data: dict[Any, list[float]]) -> float:
        return median_ratio(data[(variant, threads)], data[(baseline, threads)])

    print(f"# bench_telemetry {started:%Y-%m-%d %H:%M} UTC")
    print(f"# {_machine()}")
    print(f"# load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"# {args.calls} calls per run, {args.rounds} alternating rounds; medians; ratios "
          "are medians of per-round ratios")  # fmt: skip
    for title, data in (("wall clock", results), ("process CPU time", cpu)):
        print(f"\n{title}, µs per call:\n")
        header, rule = "| variant |", "|---|"
        for t in thread_counts:
            label = f"{t} thread{'s' if t > 1 else ''}"
            header += f" {label} | vs bare-sdk | vs dict+lock+file |"
            rule += "---:|---:|---:|"
        print(header)
        print(rule)
        for variant in VARIANTS:
            row = f"| {variant} |"
            for t in thread_counts:
                value = statistics.median(data[(variant, t)])
                row += (f" {value:.2f} | {ratio(variant, 'bare-sdk', t, data):.2f}x |"
                        f" {ratio(variant, 'dict+lock+file', t, data):.2f}x |")  # fmt: skip
            print(row)
    print()
    met_all = True
    for variant, baseline, limit in TARGETS:
        for t in thread_counts:
            for title, data in (("wall", results), ("CPU", cpu)):
                value = ratio(variant, baseline, t, data)
                met = value <= limit
                met_all = met_all and met
                print(f"# {t} thread(s), {title}: {variant} = {value:.2f}x {baseline} "
                      f"(target <= {limit:.2f}x: {'met' if met else 'NOT met'})")  # fmt: skip
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(main())
