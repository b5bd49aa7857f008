"""``mcp-otel stats PATH... [--json]``: per-tool usage read back from the JSONL files.

Why from per-call events and not from the histogram: bucketed durations only give
percentiles to the resolution of the buckets; the telemetry ``tool_call`` events (or, when
only the audit trail is given, its ``tool_result``/``tool_error`` records) carry every
call's ``duration_ms``, so p50/p95/p99 here are exact (nearest-rank method).

Sources, in order of preference for the per-call figures: telemetry ``tool_call`` events
(``event == "tool_call"`` with a ``status``), else audit completions. The cache hit ratio
comes from ``cache.get`` spans (attribute ``cache.hit``) when there are any, else from
the final cumulative ``mcp_otel.cache.requests`` points of each process.

Errors are one line and exit status 2: a missing path, an unreadable file, a line that is
not a JSON object. A final line without its newline (a writer killed mid-line) is skipped
with a warning, because that is what a crash leaves and the rest of the file is good.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import stat
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mcp_otel import _json

#: Envelope keys of flat metric lines (mirrors ``exporters.FLAT_METRIC_ENVELOPE``; kept
#: here so ``stats`` reads files even where the exporters are not importable).
_METRIC_ENVELOPE = frozenset({
    "timestamp", "start_timestamp", "metric", "type", "unit", "description", "temporality",
    "monotonic", "value", "count", "sum", "min", "max", "bucket_bounds", "bucket_counts",
    "scale", "zero_count", "positive", "negative", "scope", "schema_version", "resource",
})


#: Top-level keys of an ``otlp``-format line (an OTLP JSON export request).
_OTLP_KEYS = ("resourceLogs", "resourceSpans", "resourceMetrics")


class StatsInputError(Exception):
    """A path that cannot be read as JSON Lines; the message is one user-facing line."""


# --------------------------------------------------------------------------- reading


def collect_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named, plus every ``*.jsonl``/``*.jsonl.gz`` below the directories named."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise StatsInputError(f"{path}: no such file or directory") from None
        except OSError as exc:
            raise StatsInputError(f"{path}: cannot access ({exc.strerror})") from None
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and (p.name.endswith(".jsonl") or p.name.endswith(".jsonl.gz"))
            )
            files.extend(found)
        elif stat.S_ISREG(st.st_mode):
            files.append(path)
        else:  # a FIFO or device would block the read (or never end): refuse, as verify does
            raise StatsInputError(f"{path}: not a regular file")
    seen: set[Path] = set()
    unique = []
    for f in files:
        if f not in seen:
            seen.add(f)
            unique.append(f)
    return unique


def read_jsonl(path: Path, warnings: list[str] | None = None,
               offset: int = 0) -> Iterator[dict[str, Any]]:
    """Each line of ``path`` as a dict; :class:`StatsInputError` on anything else.

    ``offset``: start at this byte (the size the file had before, for append-only files);
    ignored when the file is now shorter (it was replaced) or compressed.
    """
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except PermissionError:
        raise StatsInputError(f"{path}: cannot read (permission denied)") from None
    except IsADirectoryError:
        raise StatsInputError(f"{path}: is a directory") from None
    except (zlib.error, EOFError, gzip.BadGzipFile) as exc:
        # A corrupt deflate stream raises zlib.error, a cut one EOFError: neither is an
        # OSError, and both are an unreadable file to the user, not a crash.
        raise StatsInputError(f"{path}: cannot read (corrupt or truncated gzip: {exc})"
                              ) from None
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise StatsInputError(f"{path}: cannot read ({reason})") from None
    if 0 < offset <= len(data) and not path.name.endswith(".gz"):
        data = data[offset:]
    if not data:
        return
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    if not torn:
        lines.pop()
    last = len(lines)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            if torn and number == last:
                if warnings is not None:
                    warnings.append(f"{path}:{number}: skipped a partial last line "
                                    "(the writer stopped mid-line)")
                return
            raise StatsInputError(f"{path}:{number}: not a JSON Lines file "
                                  "(line is not valid JSON)") from None
        if not isinstance(record, dict):
            raise StatsInputError(f"{path}:{number}: not a JSON Lines event file "
                                  "(line is not a JSON object)")
        yield record


# --------------------------------------------------------------------------- aggregation


def metric_attributes(rec: dict[str, Any]) -> dict[str, Any]:
    """A flat metric line's data-point attributes: every key but the envelope's (and the
    ``otel.``-prefixed envelope values an attribute of the same name displaced)."""
    return {k: v for k, v in rec.items()
            if k not in _METRIC_ENVELOPE and not k.startswith("otel.")}


def percentile(sorted_values: list[int | float], q: float) -> int | float | None:
    """Nearest-rank percentile: the smallest value with at least q% of values <= it."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class ToolStats:
    """Per-tool figures; durations are kept whole for exact percentiles."""

    calls: int = 0
    errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    durations: list[int | float] = field(default_factory=list)

    def add(self, *, error: bool, duration: Any, bytes_in: Any, bytes_out: Any) -> None:
        self.calls += 1
        self.errors += int(error)
        if isinstance(duration, int | float) and not isinstance(duration, bool):
            self.durations.append(duration)
        if isinstance(bytes_in, int) and not isinstance(bytes_in, bool):
            self.bytes_in += bytes_in
        if isinstance(bytes_out, int) and not isinstance(bytes_out, bool):
            self.bytes_out += bytes_out

    def summary(self) -> dict[str, Any]:
        values = sorted(self.durations)
        return {
            "calls": self.calls,
            "errors": self.errors,
            "error_ratio": (self.errors / self.calls) if self.calls else 0.0,
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
            "p99_ms": percentile(values, 99),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


@dataclass
class Stats:
    """Everything ``stats`` computes from a set of files."""

    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    telemetry_tools: dict[str, ToolStats] = field(default_factory=dict)
    audit_tools: dict[str, ToolStats] = field(default_factory=dict)
    audit_bytes_in: dict[str, int] = field(default_factory=dict)
    span_cache_hits: int = 0
    span_cache_lookups: int = 0
    metric_cache: dict[tuple[Any, ...], tuple[str, float]] = field(default_factory=dict)
    records: int = 0

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

    def add_record(self, rec: dict[str, Any]) -> None:
        self.records += 1
        event = rec.get("event")
        if event == "tool_call" and "status" in rec:
            tool = str(rec.get("tool") or "<unknown>")
            self.telemetry_tools.setdefault(tool, ToolStats()).add(
                error=rec.get("status") == "error", duration=rec.get("duration_ms"),
                bytes_in=rec.get("bytes_in"), bytes_out=rec.get("bytes_out"),
            )
        elif event == "tool_call":
            cid = rec.get("correlation_id")
            if isinstance(cid, str) and isinstance(rec.get("bytes_in"), int):
                self.audit_bytes_in[cid] = rec["bytes_in"]
        elif event in ("tool_result", "tool_error"):
            tool = str(rec.get("tool") or "<unknown>")
            cid = rec.get("correlation_id")
            self.audit_tools.setdefault(tool, ToolStats()).add(
                error=event == "tool_error", duration=rec.get("duration_ms"),
                bytes_in=self.audit_bytes_in.get(cid) if isinstance(cid, str) else None,
                bytes_out=rec.get("bytes_out"),
            )
        elif rec.get("name") == "cache.get" and "span_id" in rec:
            hit = rec.get("cache.hit")
            if isinstance(hit, bool):
                self.span_cache_lookups += 1
                self.span_cache_hits += int(hit)
        elif rec.get("metric") == "mcp_otel.cache.requests" and "value" in rec:
            attrs = metric_attributes(rec)
            result = str(attrs.pop("mcp_otel.cache.result", ""))
            resource = rec.get("resource")
            instance = resource.get("service.instance.id") if isinstance(resource, dict) else None
            start = str(rec.get("start_timestamp") or "")
            key = (instance, start, tuple(sorted((k, repr(v)) for k, v in attrs.items())),
                   result)
            ts = str(rec.get("timestamp") or "")
            value = rec.get("value")
            if isinstance(value, int | float) and not isinstance(value, bool):
                previous = self.metric_cache.get(key)
                if previous is None or ts >= previous[0]:
                    self.metric_cache[key] = (ts, float(value))

    def to_json(self) -> dict[str, Any]:
        tools = {name: s.summary() for name, s in sorted(self.tools.items())}
        total = ToolStats()
        for s in self.tools.values():
            total.calls += s.calls
            total.errors += s.errors
            total.bytes_in += s.bytes_in
            total.bytes_out += s.bytes_out
            total.durations.extend(s.durations)
        return {
            "files": [str(f) for f in self.files],
            "records": self.records,
            "source": self.source,
            "tools": tools,
            "total": total.summary(),
            "cache": self.cache(),
            "warnings": list(self.warnings),
        }


def is_otlp_line(rec: dict[str, Any]) -> bool:
    """True for a line of the ``otlp`` format (``MCP_OTEL_JSONL_FORMAT=otlp``): one OTLP
    JSON export request, its records nested under ``resourceLogs``/``Spans``/``Metrics``."""
    return any(isinstance(rec.get(key), list) for key in _OTLP_KEYS)


def compute(paths: Iterable[str | os.PathLike[str]]) -> Stats:
    """Read ``paths`` and aggregate; raises :class:`StatsInputError` on bad input.

    Lines in the ``otlp`` format are counted as records but not summarised (the figures
    come from the flat lines' top-level fields); each file holding some gets a warning,
    so that a table of zeros is never the only answer for a deployment writing that format.
    """
    stats = Stats()
    stats.files = collect_files(paths)
    for path in stats.files:
        otlp_lines = 0
        for rec in read_jsonl(path, stats.warnings):
            otlp_lines += is_otlp_line(rec)
            stats.add_record(rec)
        if otlp_lines:
            stats.warnings.append(
                f"{path}: {otlp_lines} line(s) in the otlp format (MCP_OTEL_JSONL_FORMAT=otlp) "
                "not counted: stats reads the flat format only")
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
    from mcp_otel.cli import CliError

    try:
        stats = compute(args.paths)
    except StatsInputError as exc:
        raise CliError(str(exc)) from None
    report = stats.to_json()
    for warning in stats.warnings:
        print(f"mcp-otel stats: warning: {warning}", file=sys.stderr)
    if args.json:
        sys.stdout.write(_json.dumps(report).decode() + "\n")
    else:
        print(format_text(report))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="per-tool calls, error ratio, exact p50/p95/p99, bytes and cache hit ratio",
        description="Read mcp-otel JSONL files (or directories of them) back into per-tool "
                    "usage figures. Percentiles are exact, from the per-call events.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a JSONL file or a directory searched for *.jsonl")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run)
