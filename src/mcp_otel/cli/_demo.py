"""``mcp-otel demo``: see the whole pipeline work against real MCP clients and servers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    from mcp_otel._demo.frameworks import FrameworkError, resolve
    from mcp_otel.cli import CliError

    try:
        framework = resolve(args.framework)
    except FrameworkError as exc:
        raise CliError(str(exc)) from None
    try:
        from mcp_otel._demo.driver import DemoOptions, run
    except ImportError as exc:
        raise CliError(f"the demo needs the 'demo' extra (pip install 'mcp-otel[demo]'): "
                       f"{exc}") from None
    from mcp_otel._setup import sdk_disabled

    if sdk_disabled():
        raise CliError("OTEL_SDK_DISABLED=true turns off the spans and metrics the demo "
                       "checks; unset it to run the demo")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a directory")
    options = DemoOptions(clients=args.clients, calls=args.calls, processes=args.processes,
                          out=out, seed=args.seed, framework=framework.name)
    try:
        return run(options)
    except RuntimeError as exc:
        raise CliError(str(exc), exit_code=1) from None
    except OSError as exc:
        raise CliError(f"{exc.filename or out}: {exc.strerror or exc}", exit_code=1) from None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run instrumented MCP servers with real clients and cross-check every count",
        description="Start real MCP server process(es) (on the framework of your choice, "
                    "streamable HTTP on 127.0.0.1) instrumented by mcp-otel, drive them with "
                    "real MCP clients, then check that the audit trail, telemetry events, "
                    "metrics and spans agree with what the clients saw. Exits 1 if any count "
                    "disagrees.",
    )
    parser.add_argument("--framework", metavar="NAME", default=None,
                        help="the server framework: mcp2 (official SDK 2.x MCPServer), mcp1 "
                             "(official SDK 1.x FastMCP) or fastmcp (standalone fastmcp "
                             "2.9-4.x); default: the first of these installed")
    parser.add_argument("--clients", type=_positive, default=4,
                        help="clients per server process (default 4)")
    parser.add_argument("--calls", type=_positive, default=25,
                        help="tool calls per client (default 25)")
    parser.add_argument("--processes", type=_positive, default=2,
                        help="server processes sharing the data directory (default 2)")
    parser.add_argument("--out", default="./mcp-otel-data",
                        help="data directory (default ./mcp-otel-data)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the generated calls (default: random)")
    parser.set_defaults(func=_run)
