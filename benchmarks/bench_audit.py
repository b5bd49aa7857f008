"""Audit trail throughput and caller latency, against baselines measured in the same run.

Variants (every one driven by the same asyncio harness: T threads, each with its own event
loop and K coroutines that each await one call after another):

* ``audit-written`` / ``audit-queued``: ``await AuditLogger.log_tool_call(...)`` in both
  wait modes (file, chain, redaction, everything).
* ``osiris-fixed``: the race-conditions report's fixed design: one ``asyncio.Lock`` made at
  init, ``open(path, "a")`` + ``json.dumps`` per event, on the event loop. The lock is
  bound to one loop, so with several threads each thread gets its own instance on the
  same file (the design cannot be shared across loops at all).
* ``sdk-batch``: the SDK's default ``BatchLogRecordProcessor`` (default queue 2048,
  batch 512) into mcp-otel's ``JsonlLogExporter``: what an application's global provider
  does. It evicts on overflow: the drop percentage is measured.
* ``ceiling``: bare ``Logger.emit`` (same attributes) into the SDK batch processor with a
  discarding exporter: the cost of the OTel API alone.

Records/s counts calls over the time until everything is delivered (the variant's own
flush included), so a queue that merely absorbs a run is not counted as throughput.
"vs ceiling" is the median of per-round ratios (each run against the ceiling run next to
it). "CPU µs/record" is process CPU time (all threads) per call, steadier than wall time
on a shared machine; "CPU vs ceiling" is ceiling CPU / variant CPU, i.e. the throughput
ratio the variant would reach on an otherwise idle core.

Each configuration runs ``--repeats`` times, variants alternating, and the table shows
medians. Then, for 8 threads, open-loop runs at half (the issue's target) and a quarter
of each audit mode's measured 8-thread x 64-in-flight maximum give the caller latency
under a steady load, each run alternating with the open-loop generator alone
(``harness-only``) at the same rate, whose CPU shows what the arrivals themselves cost
(the closed-loop maximum never pays it, since its loops never sleep), and for ``queued``
with bare ``Logger.emit`` (``ceiling``) at the same rate: the latency floor of any call
into the OTel logs API under that load.

    python benchmarks/bench_audit.py            # full table (a few minutes on 2 cores)
    python benchmarks/bench_audit.py --quick    # smaller counts
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider

from _common import DiscardExporter, cpu_model
from mcp_otel.audit import AuditLogger
from mcp_otel.exporters import JsonlLogExporter

Op = Callable[[int], Awaitable[Any]]


def _args(i: int) -> dict[str, Any]:
    return {"query": "select * from t where id = ?", "id": i, "limit": 10}


# ----------------------------------------------------------------------------- variants


class _CountingJsonl(JsonlLogExporter):
    def __init__(self, path: str) -> None:
        super().__init__(path, format="flat")
        self.count = 0

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        self.count += len(batch)
        return super().export(batch)


@dataclass
class Variant:
    """Builds a per-run op factory; ``per_thread`` makes one instance per thread."""

    name: str
    setup: Callable[[Path], tuple[Callable[[], Op], Callable[[], dict[str, Any]]]]


def _audit(mode: str) -> Callable[[Path], tuple[Callable[[], Op], Callable[[], dict[str, Any]]]]:
    def setup(d: Path) -> tuple[Callable[[], Op], Callable[[], dict[str, Any]]]:
        logger = AuditLogger(d, wait=mode, otlp=False, meter_provider=MeterProvider())

        def factory() -> Op:
            async def op(i: int) -> None:
                await logger.log_tool_call("bench_tool", _args(i))
            return op

        def finish() -> dict[str, Any]:
            logger.force_flush()
            s = logger.get_session_summary()
            logger.shutdown()
            return {"delivered": s["records_written"], "lost": s["records_lost"]}

        return factory, finish

    return setup


class _OsirisFixed:
    """The report's recommended fix, as written there."""

    def __init__(self, log_dir: Path) -> None:
        self.log_file = log_dir / f"mcp_audit_{time.strftime('%Y%m%d', time.gmtime())}.jsonl"
        self._write_lock = asyncio.Lock()
        self.session_id = "mcp_" + os.urandom(6).hex()
        self.tool_call_counter = 0

    async def log_tool_call(self, tool: str, arguments: dict[str, Any]) -> str:
        self.tool_call_counter += 1
        cid = f"mcp_{self.session_id}_{self.tool_call_counter}"
        event = {"event": "tool_call", "event_type": "tool_call_started", "tool": tool,
                 "tool_name": tool, "correlation_id": cid,
                 "bytes_in": len(json.dumps(arguments)), "arguments": arguments}
        try:
            async with self._write_lock:
                with open(self.log_file, "a") as f:
                    f.write(json.dumps(event) + "\n")
        except Exception:
            pass
        return cid


def _osiris(d: Path) -> tuple[Callable[[], Op], Callable[[], dict[str, Any]]]:
    made: list[_OsirisFixed] = []

    def factory() -> Op:
        inst = _OsirisFixed(d)  # one per thread: its asyncio.Lock belongs to one loop
        made.append(inst)

        async def op(i: int) -> None:
            await inst.log_tool_call("bench_tool", _args(i))
        return op

    def finish() -> dict[str, Any]:
        lines = sum(p.read_bytes().count(b"\n") for p in d.glob("*.jsonl"))
        return {"delivered": lines, "lost": sum(m.tool_call_counter for m in made) - lines}

    return factory, finish


def _sdk_attrs(i: int) -> dict[str, Any]:
    return {"event": "tool_call", "event_type": "tool_call_started", "tool": "bench_tool",
            "tool_name": "bench_tool", "correlation_id": f"mcp_x_{i}", "bytes_in": 56,
            "arguments": _args(i), "session_id": "mcp_x",
            "timestamp": "2026-11-27T06:00:00.000000+00:00"}


def _sdk(discard: bool) -> Callable[[Path], tuple[Callable[[], Op], Callable[[], dict[str, Any]]]]:
    def setup(d: Path) -> tuple[Callable[[], Op], Callable[[], dict[str, Any]]]:
        path = str(d / "sdk_{date}.jsonl")
        exporter: Any = DiscardExporter() if discard else _CountingJsonl(path)
        provider = LoggerProvider(shutdown_on_exit=False, meter_provider=MeterProvider())
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        logger = provider.get_logger("bench")
        emitted = [0]

        def factory() -> Op:
            async def op(i: int) -> None:
                logger.emit(attributes=_sdk_attrs(i), event_name="mcp.audit.tool_call")
            return op

        def finish() -> dict[str, Any]:
            provider.force_flush()
            provider.shutdown()
            return {"delivered": exporter.count, "lost": None}

        del emitted
        return factory, finish

    return setup


VARIANTS = [
    Variant("audit-written", _audit("written")),
    Variant("audit-queued", _audit("queued")),
    Variant("osiris-fixed", _osiris),
    Variant("sdk-batch", _sdk(discard=False)),
    Variant("ceiling", _sdk(discard=True)),
]


# ----------------------------------------------------------------------------- harness


@dataclass
class Result:
    calls: int
    seconds: float
    latencies_ns: list[int] = field(repr=False)
    delivered: int
    lost: int | None
    cpu_seconds: float = 0.0
    lags_ns: list[int] = field(default_factory=list, repr=False)

    @property
    def cpu_us(self) -> float:
        """Process CPU time per call (all threads): steadier than wall time on a busy box."""
        return self.cpu_seconds / self.calls * 1e6 if self.calls else float("nan")

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def cores(self) -> float:
        """Process CPU time over wall time: how much of the machine the run kept busy."""
        return self.cpu_seconds / self.seconds if self.seconds else float("nan")

    def pct(self, q: float, lags: bool = False) -> float:
        lat = sorted(self.lags_ns if lags else self.latencies_ns)
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000 if lat else float("nan")


def _closed_loop(variant: Variant, threads: int, inflight: int, per_thread: int,
                 base: Path) -> Result:
    d = Path(tempfile.mkdtemp(dir=base))
    factory, finish = variant.setup(d)
    lats: list[list[int]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def thread_main(t: int) -> None:
        op = factory()
        out = lats[t]
        per_worker = per_thread // inflight

        async def worker(w: int) -> None:
            pc = time.perf_counter_ns
            base_i = (t * inflight + w) * per_worker
            for i in range(per_worker):
                t0 = pc()
                await op(base_i + i)
                out.append(pc() - t0)

        async def main() -> None:
            await asyncio.gather(*(worker(w) for w in range(inflight)))

        start.wait()
        asyncio.run(main())

    ths = [threading.Thread(target=thread_main, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    c0 = time.process_time()
    for th in ths:
        th.join()
    # The clock stops once everything is delivered (each variant's flush), not when the
    # last call returns: a `queued` call returns once its record is queued, and an 8,192-
    # record queue would otherwise count as throughput (a short run measured 167 % of the
    # ceiling that way, and "half of it" was a rate the writer cannot sustain).
    done = finish()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    calls = sum(len(x) for x in lats)
    shutil.rmtree(d, ignore_errors=True)
    return Result(calls, seconds, [x for chunk in lats for x in chunk], done["delivered"],
                  done["lost"], cpu)


def _noop(d: Path) -> tuple[Callable[[], Op], Callable[[], dict[str, Any]]]:
    """The open-loop generator alone: what each arrival costs before any audit work."""
    def factory() -> Op:
        async def op(i: int) -> None:
            return None
        return op

    return factory, lambda: {"delivered": None, "lost": None}


HARNESS = Variant("harness-only", _noop)


def _open_loop(variant: Variant, threads: int, rate: float, seconds: float,
               base: Path) -> Result:
    """Offer ``rate`` calls/s in total, evenly over threads, for ``seconds``.

    Open loop: arrivals never wait for earlier calls. Each thread's loop sleeps until its
    next arrival is due and starts every arrival that is due by then (threads are not
    phase-locked), so at 1-3 arrivals per millisecond per thread the load is smooth;
    starting each arrival on its own ``call_at`` timer measured the same CPU and latency.
    Latency runs from the call's start; ``lags_ns`` keeps how late each start was
    against its schedule (a saturated interpreter shows up there first).
    """
    d = Path(tempfile.mkdtemp(dir=base))
    factory, finish = variant.setup(d)
    lats: list[list[int]] = [[] for _ in range(threads)]
    lags: list[list[int]] = [[] for _ in range(threads)]
    per_thread = rate / threads
    gap_ns = 1e9 / per_thread
    start = threading.Barrier(threads + 1)

    def thread_main(t: int) -> None:
        op = factory()
        out, lag = lats[t], lags[t]

        async def one(i: int, due_ns: float) -> None:
            t0 = time.perf_counter_ns()
            lag.append(int(t0 - due_ns))
            await op(i)
            out.append(time.perf_counter_ns() - t0)

        async def main() -> None:
            t_start = time.perf_counter_ns()
            n_total = int(per_thread * seconds)
            launched = 0
            tasks = set()
            while launched < n_total:
                due = min(n_total, int((time.perf_counter_ns() - t_start) / gap_ns) + 1)
                while launched < due:
                    task = asyncio.create_task(
                        one(t * 10_000_000 + launched, t_start + launched * gap_ns))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    launched += 1
                # Sleep until the next arrival is due (asyncio rounds timeouts up to its
                # 1 ms clock resolution): no idle ticks at low rates, where they cost more
                # than the calls.
                wait_ns = t_start + launched * gap_ns - time.perf_counter_ns()
                await asyncio.sleep(max(0.0, wait_ns / 1e9))
            while tasks:
                await asyncio.gather(*list(tasks))

        start.wait()
        asyncio.run(main())

    ths = [threading.Thread(target=thread_main, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    c0 = time.process_time()
    for th in ths:
        th.join()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    done = finish()
    shutil.rmtree(d, ignore_errors=True)
    calls = sum(len(x) for x in lats)
    r = Result(calls, wall, [x for chunk in lats for x in chunk],
               calls if done["delivered"] is None else done["delivered"], done["lost"], cpu)
    r.lags_ns = [x for chunk in lags for x in chunk]
    return r


def _machine() -> str:
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, nproc={os.cpu_count()}, "
            f"CPU {cpu_model()}, Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts, 1 repeat fewer")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--variants", default=",".join(v.name for v in VARIANTS))
    ap.add_argument("--loads", default="0.5,0.25",
                    help="open-loop offered loads, as fractions of each mode's 8x64 maximum")
    args = ap.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    total = 16_000 if args.quick else 48_000
    wanted = [v for v in VARIANTS if v.name in args.variants.split(",")]
    base = Path(tempfile.mkdtemp(prefix="bench_audit_"))
    print(f"# bench_audit: {_machine()}; medians of {repeats} alternating runs")
    table: dict[tuple[str, int, int], list[Result]] = {}
    try:
        for threads in (1, 8):
            for inflight in (1, 64):
                calls = total // 4 if inflight == 1 and threads == 1 else total
                per_thread = max(inflight, calls // threads // inflight * inflight)
                for _ in range(repeats):
                    for v in wanted:
                        r = _closed_loop(v, threads, inflight, per_thread, base)
                        table.setdefault((v.name, threads, inflight), []).append(r)
        print()
        print("| variant | threads | in flight/thread | records/s | vs ceiling | CPU µs/record "
              "| CPU vs ceiling | p50 µs | p99 µs | delivered | lost/dropped |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for threads in (1, 8):
            for inflight in (1, 64):
                ceil = table.get(("ceiling", threads, inflight))
                for v in wanted:
                    runs = table[(v.name, threads, inflight)]
                    rate = statistics.median(r.rate for r in runs)
                    cpu = statistics.median(r.cpu_us for r in runs)
                    if ceil:  # per-round ratios (adjacent runs), then the median
                        pairs = list(zip(runs, ceil, strict=True))
                        ratio = statistics.median(r.rate / c.rate for r, c in pairs)
                        cpu_ratio = statistics.median(c.cpu_us / r.cpu_us for r, c in pairs)
                    else:
                        ratio = cpu_ratio = float("nan")
                    p50 = statistics.median(r.pct(0.50) for r in runs)
                    p99 = statistics.median(r.pct(0.99) for r in runs)
                    calls = runs[0].calls
                    deliv = statistics.median(r.delivered for r in runs)
                    dropped = 100.0 * (1 - deliv / calls) if calls else 0.0
                    print(f"| {v.name} | {threads} | {inflight} | {rate:,.0f} | {ratio:.0%} | "
                          f"{cpu:.1f} | {cpu_ratio:.0%} | {p50:.1f} | {p99:.1f} | "
                          f"{int(deliv):,}/{calls:,} | {dropped:.1f}% |")
        print()
        print("| open loop (8 threads) | load | offered records/s | achieved | p50 µs | p99 µs "
              "| p99.9 µs | start lag p99 µs | CPU µs/record | CPU cores | lost |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        seconds = 3.0 if args.quick else 6.0
        for frac in (float(x) for x in args.loads.split(",")):
            for name in ("audit-queued", "audit-written"):
                if name not in args.variants:
                    continue
                v = next(x for x in VARIANTS if x.name == name)
                maximum = statistics.median(r.rate for r in table[(name, 8, 64)])
                offered = maximum * frac
                # Alternating with the same rate: the harness alone (what arrivals cost) and,
                # for `queued`, bare Logger.emit (the fastest a call into OTel can be).
                against = [v, HARNESS]
                if name == "audit-queued":
                    against.append(next(x for x in VARIANTS if x.name == "ceiling"))
                runs: dict[str, list[Result]] = {x.name: [] for x in against}
                for _ in range(repeats):
                    for x in against:
                        runs[x.name].append(_open_loop(x, 8, offered, seconds, base))
                for label, rs in runs.items():
                    med = statistics.median
                    lost = sum(r.calls - r.delivered for r in rs) if label != "ceiling" else "-"
                    print(f"| {label} | {frac:.0%} of {name} max | {offered:,.0f} | "
                          f"{med(r.rate for r in rs):,.0f} | {med(r.pct(0.50) for r in rs):.1f} | "
                          f"{med(r.pct(0.99) for r in rs):.1f} | "
                          f"{med(r.pct(0.999) for r in rs):.1f} | "
                          f"{med(r.pct(0.99, lags=True) for r in rs):.1f} | "
                          f"{med(r.cpu_us for r in rs):.1f} | {med(r.cores for r in rs):.2f} | "
                          f"{lost} |")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
