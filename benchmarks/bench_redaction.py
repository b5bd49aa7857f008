"""Redaction on hostile text: linear scaling, bounded previews, and the audit caller's cost.

Part 1 -- for each family of the adversarial corpus (``tests/audit/_adversarial.py``: a
secret word followed by long runs of hex, dots, slashes, ``word.``, ``a-``; URLs with
long userinfo; long ``Basic``/``Bearer`` tokens; colon forms; quotes; runs of ``=`` and
``:``; Unicode), ``Redactor.mask_text`` on texts of about 10 KB, 100 KB and 1 MB
(10,000 / 100,000 / 1,000,000 characters). The table gives CPU microseconds per KB
(1,000 characters) at each size and the ratio of the 1 MB per-KB cost to the 10 KB one:
linear work gives ~1.0, quadratic work 100. ``preview 1 MB`` is
``Redactor.mask_preview(text, 4096)`` on the 1 MB text: it masks only the first
4096 + 256 characters, so it costs what a 4 KB text does. The baseline, measured in the
same run unless ``--no-old``: the patterns before the linear rewrite (a frozen copy in
``tests/audit/_reference_redaction.py``) at 4 KB and 16 KB, with the same per-KB ratio
(linear ~1.0, quadratic ~4).

Part 2 -- ``await AuditLogger.log_tool_call("t", arguments={"q": text})`` with a 60 KB
argument, in ``written`` and ``queued`` mode: the wall-clock microseconds the caller
waits per call (``written`` includes the write to the file) and the CPU time of the
caller's thread in that call (``time.thread_time``: its own work, without the waits for
the writer, the GIL or a core of this shared machine). One row per argument kind: a small
argument (the usual case), 60 KB of plain text, and each adversarial family at 60 KB (the
median and the worst family); target for the adversarial argument: under 5 ms.

Times are CPU time (``time.process_time``) for part 1, steadier than wall time on a
shared machine; each figure is the median of ``--rounds`` rounds, families and sizes
alternating inside each round. Usage::

    python benchmarks/bench_redaction.py [--rounds 5] [--calls 30] [--no-old]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "audit"))

import _adversarial as corpus  # noqa: E402
from _reference_redaction import reference_mask_text  # noqa: E402

from _common import cpu_model  # noqa: E402
from mcp_otel.audit import AuditLogger  # noqa: E402
from mcp_otel.redaction import DEFAULT_PREVIEW_LIMIT, Redactor  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
OLD_SIZES = (4_000, 16_000)
ARG_SIZE = 60_000
TARGET_MS = 5.0


def _cpu_per_call(fn: Callable[[], object], min_seconds: float = 0.02) -> float:
    """CPU seconds per call of ``fn``, repeated until ``min_seconds`` have passed."""
    start = time.process_time()
    fn()
    first = time.process_time() - start
    repeat = max(1, math.ceil(min_seconds / max(first, 1e-6)))
    if repeat == 1:
        return first
    start = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - start) / repeat


def _part1(rounds: int, old: bool) -> dict[tuple[str, str], float]:
    """Median µs per KB for each (family, column)."""
    r = Redactor()
    texts = {(name, size): corpus.case(name, size).text
             for name in corpus.FAMILIES for size in SIZES + (OLD_SIZES if old else ())}
    samples: dict[tuple[str, str], list[float]] = {}
    names = sorted(corpus.FAMILIES)
    for round_no in range(rounds):
        order = names if round_no % 2 == 0 else names[::-1]
        for name in order:
            for size in SIZES:
                text = texts[(name, size)]
                seconds = _cpu_per_call(lambda t=text: r.mask_text(t))
                samples.setdefault((name, str(size)), []).append(seconds / len(text) * 1e9)
            big = texts[(name, SIZES[-1])]
            seconds = _cpu_per_call(lambda t=big: r.mask_preview(t, DEFAULT_PREVIEW_LIMIT))
            samples.setdefault((name, "preview"), []).append(seconds * 1e6)
            if old and round_no == 0:  # the old patterns are slow: one round
                for size in OLD_SIZES:
                    text = texts[(name, size)]
                    seconds = _cpu_per_call(lambda t=text: reference_mask_text(r, t), 0.0)
                    samples.setdefault((name, f"old{size}"), []).append(
                        seconds / len(text) * 1e9)
        print(f"part 1: round {round_no + 1}/{rounds} done", file=sys.stderr)
    return {k: statistics.median(v) for k, v in samples.items()}


async def _calls(wait: str, args: dict[str, object], calls: int,
                 tmp: Path) -> list[tuple[float, float]]:
    """(wall µs, caller-thread CPU µs) of each ``await log_tool_call``; every record is
    checked afterwards."""
    log_dir = Path(tempfile.mkdtemp(dir=tmp))
    audit = AuditLogger(log_dir, wait=wait, otlp=False)  # type: ignore[arg-type]
    await audit.log_tool_call("warm-up", arguments={"n": 1})
    out: list[tuple[float, float]] = []
    for _ in range(calls):
        start, cpu = time.perf_counter(), time.thread_time()
        await audit.log_tool_call("t", arguments=args)
        out.append(((time.perf_counter() - start) * 1e6, (time.thread_time() - cpu) * 1e6))
    audit.shutdown()
    summary = audit.get_session_summary()
    assert summary["records_lost"] == 0, summary
    lines = sum(1 for p in log_dir.glob("*.jsonl") for _ in p.open("rb"))
    assert lines == calls + 2, lines  # warm-up + calls + session end
    return out


def _part2(rounds: int, calls: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    kinds: dict[str, dict[str, object]] = {
        "small": {"query": "select * from t where id = ?", "id": 7, "limit": 10},
        "plain 60 KB": {"q": "x" * ARG_SIZE},
    }
    for name in sorted(corpus.FAMILIES):
        kinds[name] = {"q": corpus.case(name, ARG_SIZE).text}
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-redaction-") as tmp:
        for round_no in range(rounds):
            for wait in ("written", "queued"):
                order = list(kinds) if round_no % 2 == 0 else list(kinds)[::-1]
                for kind in order:
                    per_call = asyncio.run(_calls(wait, kinds[kind], calls, Path(tmp)))
                    samples.setdefault((wait, kind), []).extend(per_call)
            print(f"part 2: round {round_no + 1}/{rounds} done", file=sys.stderr)
    return samples


def _machine() -> str:
    return f"{os.cpu_count()} CPUs (nproc), {cpu_model()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--calls", type=int, default=30, help="log_tool_call calls per run")
    parser.add_argument("--no-old", action="store_true", help="skip the old patterns")
    args = parser.parse_args(argv)
    old = not args.no_old
    part1 = _part1(args.rounds, old)
    part2 = _part2(max(1, args.rounds // 2), args.calls)

    print(f"# bench_redaction {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# {_machine()}")
    print(f"# part 1: CPU µs per KB of mask_text, median of {args.rounds} rounds")
    header = "| family | 10 KB | 100 KB | 1 MB | 1 MB / 10 KB | preview 1 MB (µs) |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if old:
        header += " old 4 KB | old 16 KB | old 16 KB / 4 KB |"
        rule += "---:|---:|---:|"
    print(header)
    print(rule)
    ratios: list[float] = []
    old_ratios: list[float] = []
    for name in sorted(corpus.FAMILIES):
        per_kb = [part1[(name, str(size))] for size in SIZES]
        ratio = per_kb[-1] / per_kb[0]
        ratios.append(ratio)
        row = (f"| {name} | {per_kb[0]:.1f} | {per_kb[1]:.1f} | {per_kb[2]:.1f} | "
               f"{ratio:.2f} | {part1[(name, 'preview')]:.0f} |")
        if old:
            small, large = (part1[(name, f"old{s}")] for s in OLD_SIZES)
            old_ratios.append(large / small)
            row += f" {small:.1f} | {large:.1f} | {large / small:.2f} |"
        print(row)
    print(f"# 1 MB / 10 KB per-KB cost: median {statistics.median(ratios):.2f}, "
          f"max {max(ratios):.2f} (linear ~1.0, quadratic 100)")
    if old:
        quadratic = sum(1 for x in old_ratios if x > 2.5)
        print(f"# old patterns, 16 KB / 4 KB per-KB cost: max {max(old_ratios):.2f}; "
              f"{quadratic} of {len(old_ratios)} families above 2.5 (quadratic ~4)")

    print(f"# part 2: µs per await log_tool_call, {args.calls} calls x "
          f"{max(1, args.rounds // 2)} rounds per row; wall and caller-thread CPU")
    print("| mode | argument | wall p50 | wall p99 | CPU p50 | CPU p99 | wall p50 vs plain 60 KB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    verdicts = []

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return values[max(0, math.ceil(len(values) * q) - 1)]

    for wait in ("written", "queued"):
        plain = pct([w for w, _ in part2[(wait, "plain 60 KB")]], 0.5)
        adversarial = {k: v for (w, k), v in part2.items()
                       if w == wait and k in corpus.FAMILIES}
        medians = {k: pct([w for w, _ in v], 0.5) for k, v in adversarial.items()}
        ranked = sorted(medians, key=medians.__getitem__)
        worst = ranked[-1]
        rows = [
            ("small", part2[(wait, "small")]),
            ("plain 60 KB", part2[(wait, "plain 60 KB")]),
            (f"adversarial 60 KB, median family ({ranked[len(ranked) // 2]})",
             adversarial[ranked[len(ranked) // 2]]),
            (f"adversarial 60 KB, worst family ({worst})", adversarial[worst]),
            ("adversarial 60 KB, all families", [x for v in adversarial.values() for x in v]),
        ]
        for label, values in rows:
            walls, cpus = [w for w, _ in values], [c for _, c in values]
            print(f"| {wait} | {label} | {pct(walls, 0.5):,.0f} | {pct(walls, 0.99):,.0f} | "
                  f"{pct(cpus, 0.5):,.0f} | {pct(cpus, 0.99):,.0f} | "
                  f"{pct(walls, 0.5) / plain:.2f}x |")
        every = [x for v in adversarial.values() for x in v]
        worst_ms = medians[worst] / 1000
        cpu_p99_ms = pct([c for _, c in every], 0.99) / 1000
        met = worst_ms < TARGET_MS and cpu_p99_ms < TARGET_MS
        verdicts.append(
            f"# {wait}: worst family wall p50 {worst_ms:.2f} ms, caller CPU p99 over all "
            f"families {cpu_p99_ms:.2f} ms, wall p99 {pct([w for w, _ in every], 0.99) / 1000:.2f}"
            f" ms (target < {TARGET_MS:g} ms for wall p50 and CPU p99: "
            f"{'met' if met else 'NOT met'})")
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
