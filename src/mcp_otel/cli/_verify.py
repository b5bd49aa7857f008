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
            "($MCP_OTEL_DIR, default ./mcp-otel-data) is verified. Torn lines and "
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
    return "\n".join(out) + "\n"
