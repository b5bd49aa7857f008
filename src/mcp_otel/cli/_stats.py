"""``mcp-otel stats [PATH...] [--json]``: per-tool usage read back from the JSONL files.

Why from per-call events and not from the histogram: bucketed durations only give
percentiles to the resolution of the buckets; the telemetry ``tool_call`` events (or, when
only the audit trail is given, its ``tool_result``/``tool_error`` records) carry every
call's ``duration_ms``, so p50/p95/p99 here are exact (nearest-rank method), as long as
there are at most ``StatsLimits.max_durations`` distinct values; past that, durations are
rounded (with a stated bound) so that memory stays bounded whatever the files hold.

Sources, in order of preference for the per-call figures: telemetry ``tool_call`` events
(``event == "tool_call"`` with a ``status``), else audit completions. The cache hit ratio
comes from ``cache.get`` spans (attribute ``cache.hit``) when there are any, else from
the final cumulative ``mcp_otel.cache.requests`` points of each process.

Files are streamed through :mod:`mcp_otel.reader`. Errors are one line and exit status 2:
a missing path, an unreadable file (a ``.gz`` past its inflated-size cap too), a line that
is not a JSON object. A final line without its newline (a writer killed mid-line) and a
line over the line cap are skipped with a warning: the rest of the file is good.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_otel import _json, reader
from mcp_otel.reader import is_otlp_line, metric_attributes

__all__ = ["Stats", "StatsInputError", "StatsLimits", "ToolStats", "collect_files", "compute",
           "is_otlp_line", "metric_attributes", "percentile"]


class StatsInputError(Exception):
    """A path that cannot be read as JSON Lines; the message is one user-facing line."""


@dataclass(frozen=True)
class StatsLimits:
    """Caps that keep ``stats`` in bounded memory whatever the files hold (docs/usage.md).

    ``max_line_bytes``: longer lines are skipped with a warning. ``max_tools``: tool names
    beyond it are summed under ``<other>``; names are cut to ``max_name_chars``.
    ``max_durations``: distinct duration values kept, all tools together; past it every
    duration is rounded to a relative step that doubles until they fit (the report says
    so, with the step).
    ``max_pending``: audit ``tool_call`` records waiting for their result (for bytes in).
    ``max_series``: per-process cache metric series. ``max_warnings``: warnings kept per
    file (the rest are counted).
    """

    max_line_bytes: int = reader.MAX_LINE_BYTES
    max_tools: int = 1000
    max_name_chars: int = 256
    max_durations: int = 100_000
    max_pending: int = 10_000
    max_series: int = 50_000
    max_warnings: int = 100


# --------------------------------------------------------------------------- reading


def collect_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named, plus every ``*.jsonl``/``*.jsonl.gz`` below the directories named."""
    try:
        return reader.find_files(paths)
    except FileNotFoundError as exc:
        raise StatsInputError(f"{exc.args[0]}: no such file or directory") from None
    except OSError as exc:
        raise StatsInputError(f"{exc.filename or ''}: cannot access "
                              f"({_reason(exc)})") from None


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- aggregation

#: A ``duration_ms`` outside 0..MAX_DURATION_MS (about 31 years), or not a number, is not
#: a duration: the call is counted, the value left out of the percentiles.
MAX_DURATION_MS = 1e12
#: Name under which tools beyond ``StatsLimits.max_tools`` are summed.
OTHER_TOOLS = "<other>"
#: Relative rounding steps tried in turn once the distinct durations overflow: 1e-4
#: doubling up to about 1.6 (where 1,001 tools over 0.001..1e12 ms take 52,000 values).
_STEPS = tuple(1e-4 * 2**n for n in range(15))


def percentile(sorted_values: list[int | float], q: float) -> int | float | None:
    """Nearest-rank percentile: the smallest value with at least q% of values <= it."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _percentiles(counts: dict[int | float, int],
                 qs: tuple[float, ...]) -> list[int | float | None]:
    """:func:`percentile` over values stored as value -> number of calls."""
    total = sum(counts.values())
    if not total:
        return [None] * len(qs)
    ranks = [max(1, math.ceil(q / 100 * total)) for q in qs]
    out: list[int | float | None] = [None] * len(qs)
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        for i, rank in enumerate(ranks):
            if out[i] is None and seen >= rank:
                out[i] = value
        if out[-1] is not None:
            break
    return out


def round_duration(value: int | float, step: float) -> float:
    """``value`` (0..MAX_DURATION_MS) to the nearest point of a geometric grid of ratio
    ``1 + step``; under 1 µs (0.001 ms) it is 0. One rounding is off by at most half a
    step; rounding again to ever coarser grids (each step twice the last) by less than one
    step in all, which is the error the report states."""
    if value < 1e-3:
        return 0.0
    ratio = math.log1p(step)
    return math.exp(round(math.log(value) / ratio) * ratio)


@dataclass
class ToolStats:
    """Per-tool figures; durations as value -> number of calls (exact percentiles)."""

    calls: int = 0
    errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    durations: dict[int | float, int] = field(default_factory=dict)

    def add(self, *, error: bool, bytes_in: Any, bytes_out: Any) -> None:
        self.calls += 1
        self.errors += int(error)
        if isinstance(bytes_in, int) and not isinstance(bytes_in, bool):
            self.bytes_in += bytes_in
        if isinstance(bytes_out, int) and not isinstance(bytes_out, bool):
            self.bytes_out += bytes_out

    def merge(self, other: ToolStats) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        for value, n in other.durations.items():
            self.durations[value] = self.durations.get(value, 0) + n

    def summary(self) -> dict[str, Any]:
        p50, p95, p99 = _percentiles(self.durations, (50, 95, 99))
        return {
            "calls": self.calls,
            "errors": self.errors,
            "error_ratio": (self.errors / self.calls) if self.calls else 0.0,
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


def _short_key(text: str) -> str | bytes:
    """A dictionary key for an identifier from a file: itself, or a digest when long."""
    if len(text) <= 128:
        return text
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass
class Stats:
    """Everything ``stats`` computes from a set of files, within :class:`StatsLimits`."""

    limits: StatsLimits = field(default_factory=StatsLimits)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    telemetry_tools: dict[str, ToolStats] = field(default_factory=dict)
    audit_tools: dict[str, ToolStats] = field(default_factory=dict)
    audit_bytes_in: dict[str | bytes, int] = field(default_factory=dict)
    span_cache_hits: int = 0
    span_cache_lookups: int = 0
    metric_cache: dict[tuple[bytes, str], tuple[str, float]] = field(default_factory=dict)
    records: int = 0
    #: None while percentiles are exact; else the relative step durations are rounded to.
    duration_step: float | None = None
    duration_keys: int = 0
    ignored_durations: int = 0
    folded_calls: int = 0
    forgotten_calls: int = 0
    ignored_series: int = 0
    omitted_warnings: dict[str, int] = field(default_factory=dict)

    @property
    def source(self) -> str:
        if self.telemetry_tools:
            return "telemetry tool_call events"
        if self.audit_tools:
            return "audit tool_result/tool_error records"
        return "none"

    @property
    def tools(self) -> dict[str, ToolStats]:
        return self.telemetry_tools or self.audit_tools

    def cache(self) -> dict[str, Any]:
        if self.span_cache_lookups:
            hits, lookups, source = self.span_cache_hits, self.span_cache_lookups, "spans"
        else:
            # Each key is one process's cumulative series: its latest point is its total.
            hits = lookups = 0
            for key, (_ts, value) in self.metric_cache.items():
                lookups += int(value)
                if key[-1] == "hit":
                    hits += int(value)
            source = "metrics" if self.metric_cache else "none"
        return {
            "hits": hits,
            "lookups": lookups,
            "hit_ratio": (hits / lookups) if lookups else None,
            "source": source,
        }

    # ---- bounded state -------------------------------------------------------------------

    def warner(self, path: Path) -> Callable[[str], None]:
        """A ``warn`` for one file: keeps its first ``max_warnings``, counts the rest."""
        kept = 0

        def warn(message: str) -> None:
            nonlocal kept
            if kept < self.limits.max_warnings:
                kept += 1
                self.warnings.append(message)
            else:
                self.omitted_warnings[str(path)] = self.omitted_warnings.get(str(path), 0) + 1

        return warn

    def _tool(self, tools: dict[str, ToolStats], raw: Any) -> ToolStats:
        if isinstance(raw, str) and raw:
            name = raw
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            name = str(raw)
        else:
            name = "<unknown>"
        if len(name) > self.limits.max_name_chars:
            name = name[: self.limits.max_name_chars] + "..."
        found = tools.get(name)
        if found is None:
            if len(tools) >= self.limits.max_tools:
                self.folded_calls += 1
                name = OTHER_TOOLS
                found = tools.get(name)
            if found is None:
                found = tools[name] = ToolStats()
        return found

    def _duration(self, tool: ToolStats, value: Any) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        if not 0 <= value <= MAX_DURATION_MS:  # also NaN
            self.ignored_durations += 1
            return
        step = self.duration_step
        key = value if step is None else round_duration(value, step)
        counts = tool.durations
        while key not in counts and self.duration_keys >= self.limits.max_durations \
                and (step is None or step < _STEPS[-1]):
            step = self._coarsen()
            key = round_duration(value, step)
            counts = tool.durations  # _coarsen replaced every tool's dict
        if key in counts:
            counts[key] += 1
        else:
            counts[key] = 1
            self.duration_keys += 1

    def _coarsen(self) -> float:
        """Round every stored duration to the next, twice as coarse, step."""
        step = _STEPS[0] if self.duration_step is None else \
            _STEPS[_STEPS.index(self.duration_step) + 1]
        self.duration_step = step
        self.duration_keys = 0
        for tools in (self.telemetry_tools, self.audit_tools):
            for tool in tools.values():
                merged: dict[int | float, int] = {}
                for value, n in tool.durations.items():
                    key = round_duration(value, step)
                    merged[key] = merged.get(key, 0) + n
                tool.durations = merged
                self.duration_keys += len(merged)
        return step

    def _remember_call(self, cid: str, bytes_in: int) -> None:
        pending = self.audit_bytes_in
        key = _short_key(cid)
        if key not in pending and len(pending) >= self.limits.max_pending:
            del pending[next(iter(pending))]  # the oldest call still without a result
            self.forgotten_calls += 1
        pending[key] = bytes_in

    # ---- records ------------------------------------------------------------------------

    def add_record(self, rec: dict[str, Any]) -> None:
        self.records += 1
        event = rec.get("event")
        if event == "tool_call" and "status" in rec:
            tool = self._tool(self.telemetry_tools, rec.get("tool"))
            tool.add(error=rec.get("status") == "error", bytes_in=rec.get("bytes_in"),
                     bytes_out=rec.get("bytes_out"))
            self._duration(tool, rec.get("duration_ms"))
        elif event == "tool_call":
            cid = rec.get("correlation_id")
            bytes_in = rec.get("bytes_in")
            if isinstance(cid, str) and isinstance(bytes_in, int):
                self._remember_call(cid, bytes_in)
        elif event in ("tool_result", "tool_error"):
            tool = self._tool(self.audit_tools, rec.get("tool"))
            cid = rec.get("correlation_id")
            tool.add(error=event == "tool_error",
                     bytes_in=self.audit_bytes_in.pop(_short_key(cid), None)
                     if isinstance(cid, str) else None,
                     bytes_out=rec.get("bytes_out"))
            self._duration(tool, rec.get("duration_ms"))
        elif rec.get("name") == "cache.get" and "span_id" in rec:
            hit = rec.get("cache.hit")
            if isinstance(hit, bool):
                self.span_cache_lookups += 1
                self.span_cache_hits += int(hit)
        elif rec.get("metric") == "mcp_otel.cache.requests" and "value" in rec:
            self._cache_point(rec)

    def _cache_point(self, rec: dict[str, Any]) -> None:
        value = rec.get("value")
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        attrs = metric_attributes(rec)
        result = str(attrs.pop("mcp_otel.cache.result", ""))[:64]
        resource = rec.get("resource")
        instance = resource.get("service.instance.id") if isinstance(resource, dict) else None
        series = repr((instance, str(rec.get("start_timestamp") or ""),
                       sorted((k, repr(v)) for k, v in attrs.items())))
        key = (hashlib.blake2b(series.encode("utf-8", "surrogatepass"),
                               digest_size=16).digest(), result)
        ts = str(rec.get("timestamp") or "")[:64]
        previous = self.metric_cache.get(key)
        if previous is None:
            if len(self.metric_cache) >= self.limits.max_series:
                self.ignored_series += 1
                return
        elif ts < previous[0]:
            return
        self.metric_cache[key] = (ts, float(value))

    def finish(self) -> None:
        """Warnings for every cap that was reached (each once, after the files')."""
        lim = self.limits
        for path, n in self.omitted_warnings.items():
            self.warnings.append(f"{path}: {n} more warning(s) not shown "
                                 f"(first {lim.max_warnings} kept)")
        if self.duration_step is not None:
            self.warnings.append(
                f"percentiles are approximate (within {100 * self.duration_step:.3g}%): more "
                f"than {lim.max_durations} distinct durations, so durations were rounded")
        if self.ignored_durations:
            self.warnings.append(f"{self.ignored_durations} duration_ms value(s) outside "
                                 f"0..{MAX_DURATION_MS:g} ms left out of the percentiles")
        if self.folded_calls:
            self.warnings.append(f"more than {lim.max_tools} tool names: {self.folded_calls} "
                                 f"call(s) of further tools counted under {OTHER_TOOLS}")
        if self.forgotten_calls:
            self.warnings.append(f"more than {lim.max_pending} audit tool calls without a "
                                 f"result: bytes in unknown for {self.forgotten_calls} of them")
        if self.ignored_series:
            self.warnings.append(f"more than {lim.max_series} cache metric series: "
                                 f"{self.ignored_series} point(s) of further series ignored")

    def to_json(self) -> dict[str, Any]:
        tools = {name: s.summary() for name, s in sorted(self.tools.items())}
        total = ToolStats()
        for s in self.tools.values():
            total.merge(s)
        return {
            "files": [str(f) for f in self.files],
            "records": self.records,
            "source": self.source,
            "tools": tools,
            "total": total.summary(),
            "percentiles_exact": self.duration_step is None,
            "percentile_relative_error": self.duration_step,
            "cache": self.cache(),
            "warnings": list(self.warnings),
        }


def compute(paths: Iterable[str | os.PathLike[str]],
            limits: StatsLimits | None = None) -> Stats:
    """Read ``paths`` and aggregate; raises :class:`StatsInputError` on bad input.

    Lines in the ``otlp`` format are counted as records but not summarised (the figures
    come from the flat lines' top-level fields); each file holding some gets a warning,
    so that a table of zeros is never the only answer for a deployment writing that format.
    """
    stats = Stats(limits=limits or StatsLimits())
    stats.files = collect_files(paths)
    for path in stats.files:
        warn = stats.warner(path)
        otlp_lines = 0
        try:
            for rec in reader.read_records(path, warn=warn,
                                            max_line_bytes=stats.limits.max_line_bytes):
                otlp_lines += is_otlp_line(rec)
                stats.add_record(rec)
        except reader.JsonlError as exc:
            raise StatsInputError(str(exc)) from None
        except OSError as exc:
            raise StatsInputError(f"{path}: cannot read ({_reason(exc)})") from None
        if otlp_lines:
            warn(f"{path}: {otlp_lines} line(s) in the otlp format (MCP_OTEL_JSONL_FORMAT=otlp) "
                 "not counted: stats reads the flat format only")
    stats.finish()
    return stats


# --------------------------------------------------------------------------- output


def _fmt_ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def render_table(rows: list[list[str]], right: set[int] | None = None) -> str:
    """A plain text table; ``right`` lists the columns to right-align."""
    right = right or set()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_text(report: dict[str, Any]) -> str:
    header = ["tool", "calls", "errors", "error %", "p50 ms", "p95 ms", "p99 ms",
              "bytes in", "bytes out"]
    rows = [header]
    items = list(report["tools"].items())
    for name, s in [*items, ("TOTAL", report["total"])]:
        rows.append([
            name, str(s["calls"]), str(s["errors"]), f"{100 * s['error_ratio']:.1f}",
            _fmt_ms(s["p50_ms"]), _fmt_ms(s["p95_ms"]), _fmt_ms(s["p99_ms"]),
            str(s["bytes_in"]), str(s["bytes_out"]),
        ])
    lines = [render_table(rows, right=set(range(1, 9)))]
    cache = report["cache"]
    if cache["lookups"]:
        lines.append(f"cache: {cache['hits']}/{cache['lookups']} hits "
                     f"({100 * cache['hit_ratio']:.1f}%, from {cache['source']})")
    else:
        lines.append("cache: no lookups recorded")
    lines.append(f"source: {report['source']}; {report['records']} records in "
                 f"{len(report['files'])} file(s)")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from mcp_otel.cli import CliError, paths_or_data_dir

    try:
        stats = compute(paths_or_data_dir(args.paths),
                        StatsLimits(max_line_bytes=args.max_line_bytes))
    except StatsInputError as exc:
        hint = "" if args.paths else " (the data directory: set MCP_OTEL_DIR or give a path)"
        raise CliError(f"{exc}{hint}") from None
    report = stats.to_json()
    for warning in stats.warnings:
        print(f"mcp-otel stats: warning: {warning}", file=sys.stderr)
    if args.json:
        sys.stdout.write(_json.dumps(report).decode() + "\n")
    else:
        print(format_text(report))
    return 0


def register(subparsers: Any) -> None:
    from mcp_otel.cli import add_max_line_option

    parser = subparsers.add_parser(
        "stats",
        help="per-tool calls, error ratio, exact p50/p95/p99, bytes and cache hit ratio",
        description="Read mcp-otel JSONL files (or directories of them) back into per-tool "
                    "usage figures. Percentiles are exact, from the per-call events. "
                    "Without a path, the data directory ($MCP_OTEL_DIR, default "
                    "./mcp-otel-data) is read.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="a JSONL file or a directory searched for *.jsonl "
                             "(default: $MCP_OTEL_DIR or ./mcp-otel-data)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_max_line_option(parser)
    parser.set_defaults(func=_run)
