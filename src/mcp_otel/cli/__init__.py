"""The ``mcp-otel`` command line.

Each subcommand lives in its own private module exposing ``register(subparsers)``; the
module sets ``func`` on its parser, which returns the process exit code. Errors are one
clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mcp_otel import __version__

_SUBCOMMANDS = ("mcp_otel.cli._demo", "mcp_otel.cli._verify", "mcp_otel.cli._stats")


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2 unless given."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def paths_or_data_dir(paths: Sequence[str]) -> list[str]:
    """The paths given, else the data directory the library writes to (``MCP_OTEL_DIR``,
    default ``./mcp-otel-data``): the same rule, from the same helper."""
    if paths:
        return list(paths)
    from mcp_otel._setup import data_dir

    return [str(data_dir())]


def _line_cap(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of bytes: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def add_max_line_option(parser: argparse.ArgumentParser) -> None:
    """``--max-line-bytes``, shared by the commands that read JSONL files."""
    from mcp_otel.reader import MAX_LINE_BYTES

    parser.add_argument(
        "--max-line-bytes", type=_line_cap, default=MAX_LINE_BYTES, metavar="N",
        help=f"longest line read (default {MAX_LINE_BYTES}); longer lines are skipped in "
             "bounded memory and reported. Parsing a line can take ~36x its size in memory")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-otel",
        description="Audit trail, metrics and traced cache for MCP servers, on OpenTelemetry.",
    )
    parser.add_argument("--version", action="version", version=f"mcp-otel {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"mcp-otel {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
