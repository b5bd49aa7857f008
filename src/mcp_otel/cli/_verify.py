"""``mcp-otel verify [PATH...] [--strict] [--json]``: check audit files' hash chains.

Exit codes: 0 everything verifies (warnings allowed unless ``--strict``), 1 a check
failed, 2 usage error (missing path, no audit file, bad option).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mcp_otel import _json, integrity
from mcp_otel.cli import CliError, add_max_line_option, paths_or_data_dir


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "verify",
        help="verify audit files: every line parses, every hash chain is intact and gap-free",
        description=(
            "Verify mcp-otel audit files: files, or directories (their own *.jsonl and "
            "*.jsonl.gz files, and every mcp_audit_*.jsonl[.gz] below them, so a whole "
            "data directory can be given). Without a path, the data directory "
            "($MCP_OTEL_DIR, default ./mcp-otel-data) is verified. OTLP JSON files (the "
            "collector's archive: a directory holding logs.jsonl and its rotated files) "
            "are read too: the audit records among their logs are checked per session "
            "across all hosts, and the report gives per host and per session the records "
            "seen, the seq ranges missing, and the status (complete, open, missing, "
            "tampered). Torn lines and "
            "sessions without an end record look the same after a crash as after a cut: "
            "they are warnings, or errors with --strict. Everything else is an error. "
            f"HMAC chains need the key in ${integrity.KEY_ENV} (or --key-env NAME). "
            "Exit status 0: verified, 1: a check failed, 2: usage error."
        ),
    )
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="audit file or directory (default: $MCP_OTEL_DIR or ./mcp-otel-data)")
    p.add_argument("--strict", action="store_true",
                   help="treat warnings (torn lines, missing end records, declared losses) "
                        "as errors")
    p.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    p.add_argument("--key-env", default=integrity.KEY_ENV, metavar="NAME",
                   help=f"environment variable holding the HMAC key (default {integrity.KEY_ENV})")
    add_max_line_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    key = os.environ.get(args.key_env) or None
    paths = paths_or_data_dir(args.paths)
    hint = "" if args.paths else " (the data directory: set MCP_OTEL_DIR or give a path)"
    limits = integrity.VerifyLimits(max_line_bytes=args.max_line_bytes)
    try:
        report = integrity.verify_paths(paths, key=key, strict=args.strict, limits=limits)
    except FileNotFoundError as exc:
        raise CliError(f"no such file or directory: {exc.args[0]}{hint}") from None
    if not report.files:
        raise CliError("no audit files found (*.jsonl, *.jsonl.gz, and mcp_audit_* below "
                       f"directories) in {', '.join(paths)}{hint}")
    if args.json:
        sys.stdout.write(_json.dumps(report.to_dict()).decode("utf-8") + "\n")
    else:
        sys.stdout.write(_human(report))
    return 0 if report.ok else 1


def _where(f: integrity.Finding) -> str:
    parts = []
    if f.path:
        parts.append(f"{f.path}:{f.line}" if f.line else f.path)
    if f.record:
        parts.append(f"record {f.record}")  # its place in an OTLP line (one batch)
    if f.session_id:
        parts.append(f"session {f.session_id}")
    return " ".join(parts)


def _human(report: integrity.VerifyReport) -> str:
    out = []
    for f in report.errors:
        out.append(f"ERROR   {f.code}: {f.message} [{_where(f)}]")
    for f in report.warnings:
        out.append(f"WARNING {f.code}: {f.message} [{_where(f)}]")
    if report.omitted:
        kinds = ", ".join(f"{code} {n}" for code, n in sorted(report.counts.items()))
        out.append(f"... {report.omitted} more finding(s) not shown "
                   f"(the first {integrity.VerifyLimits().max_kept_findings} per file are); "
                   f"all findings by kind: {kinds}")
    sessions = report.sessions.values()
    ended = sum(1 for s in sessions if s.ended)
    records = sum(s.records for s in sessions)
    verdict = "OK" if report.ok else "FAILED"
    out.append(
        f"{verdict}: {len(report.files)} file(s), {report.lines} line(s), "
        f"{len(report.sessions)} session(s) ({ended} ended), {records} chained record(s), "
        f"{report.error_count} error(s), {report.warning_count} warning(s)"
        + (" [strict]" if report.strict else "")
    )
    out.extend(_fleet(report))
    return "\n".join(out) + "\n"


#: Sessions listed one by one in the human output (the JSON report lists them all).
_MAX_SESSION_LINES = 50


def _ranges(ranges: list[list[int]]) -> str:
    text = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in ranges)
    return text + (" ..." if len(ranges) >= integrity.MAX_RANGES else "")


def _fleet(report: integrity.VerifyReport) -> list[str]:
    """Per host, then every session that is not complete: what an operator needs to tell
    records lost in transit (``missing``) from tampering (``tampered``) from a writer still
    running (``open``). Only when the records came with a resource (an archive), or when
    some session is not complete."""
    hosts = report.hosts()
    shown = [s for s in report.sessions.values() if s.status != "complete"]
    if not shown and all(h["host"] is None for h in hosts):
        return []
    out = []
    if report.otlp_lines:
        out.append(f"OTLP: {report.otlp_lines} line(s), {report.other_records} other log "
                   "record(s) skipped")
    for h in hosts:
        states = ", ".join(f"{n} {st}" for st in integrity.STATUSES
                           if (n := h["status"].get(st)))
        out.append(f"host {h['host'] or '-'} (service {h['service'] or '-'}): "
                   f"{h['sessions']} session(s) [{states}], {h['records']} record(s), "
                   f"{h['missing']} missing, {h['declared_lost']} declared lost")
    order = {st: i for i, st in enumerate(integrity.STATUSES)}
    shown.sort(key=lambda s: (order.get(s.status, 0), s.host or "", s.session_id))
    for s in shown[:_MAX_SESSION_LINES]:
        parts = [f"{s.status.upper():10} session {s.session_id} host {s.host or '-'}: "
                 f"{s.records} record(s) seq {s.first_seq}..{s.last_seq}"]
        if s.missing:
            parts.append(f"missing seq {_ranges(s.gaps)} ({s.missing} records)")
        if s.declared_lost:
            parts.append(f"declared lost {s.declared_lost}"
                         + (f" (seq {_ranges(s.declared)})"
                            if s.declared else ""))
        tampered = sorted(c for c in s.problems if c in integrity.TAMPER_CODES)
        if tampered:
            parts.append("tampered: " + ", ".join(f"{c} x{s.problems[c]}" for c in tampered))
        if not s.ended:
            parts.append("no end record" + (f", last record at {s.last_timestamp}"
                                            if s.last_timestamp else ""))
        out.append("; ".join(parts))
    if len(shown) > _MAX_SESSION_LINES:
        out.append(f"... {len(shown) - _MAX_SESSION_LINES} more session(s) not complete "
                   "(--json lists every session)")
    return out
