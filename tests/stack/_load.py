"""A bounded mcp-otel load, run as its own process by the stack tests.

It drives the real classes the way an MCP server does (osiris-api.md, "How a server drives
them"): one audit record before each tool call and one after, a telemetry event per call,
a discovery tool backed by the DiscoveryCache (with spans), a tool that fails every fifth
call. Export goes wherever the standard ``OTEL_EXPORTER_OTLP_*`` variables point, plus
mcp-otel's local JSONL files under ``MCP_OTEL_DIR``.

``--pause-after K`` (repeatable) stops after K calls, prints ``PAUSED <K> <time_ns>`` and
waits for a line on stdin, so a test can stop or restart the collector at a known point
without sleeping. ``--pace PHASE:MS`` spreads one phase's calls out in time (a server
under light traffic rather than a tight loop), so that the phase spans several export
attempts. The last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

TOOLS = ("discover_tables", "run_query", "echo")
CONNECTIONS = ("warehouse", "crm", "billing", "scratch")
SECRET = "sk-live-stack-test-0123456789"


@dataclass
class Summary:
    calls: int = 0
    errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    duration_ms: int = 0
    calls_by_tool: dict[str, int] = field(default_factory=dict)
    max_call_s_by_phase: list[float] = field(default_factory=list)
    telemetry_metrics: dict[str, int] = field(default_factory=dict)
    audit_summary: dict[str, Any] = field(default_factory=dict)
    pid: int = 0


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


async def _call(
    i: int, audit: Any, telemetry: Any, cache: Any, tracer: Any, summary: Summary
) -> float:
    """One tool call inside a server span, as ``instrument()`` makes it (so metrics carry
    exemplars pointing at the trace); returns its wall time in seconds."""
    with tracer.start_as_current_span(f"tools/call {TOOLS[i % len(TOOLS)]}"):
        return await _tool_call(i, audit, telemetry, cache, summary)


async def _tool_call(i: int, audit: Any, telemetry: Any, cache: Any, summary: Summary) -> float:
    tool = TOOLS[i % len(TOOLS)]
    connection = CONNECTIONS[i % len(CONNECTIONS)]
    arguments = {"connection": connection, "i": i, "api_key": SECRET}
    bytes_in = _size(arguments)
    start = time.perf_counter()
    cid = await audit.log_tool_call(tool_name=tool, arguments=arguments)
    error: str | None = None
    result: Any = None
    if tool == "discover_tables":
        entry = await cache.get(connection, "tables", 0)
        if entry is None:
            # The scratch connection's entries expire quickly: coherency events.
            ttl = timedelta(milliseconds=20) if connection == "scratch" else None
            data = {"tables": [f"{connection}_t{n}" for n in range(5)]}
            await cache.set(connection, "tables", 0, data, ttl=ttl)
            result = data
        else:
            result = entry["data"]
    elif tool == "run_query" and i % 5 == 1:
        error = "QueryTimeout"
    else:
        result = {"echo": i}
    duration_ms = max(1, round((time.perf_counter() - start) * 1000))
    if error is None:
        bytes_out = _size(result)
        await audit.log_tool_result(
            tool=tool,
            duration_ms=duration_ms,
            result_bytes=bytes_out,
            correlation_id=cid,
            success=True,
            result=result,
        )
        telemetry.emit_tool_call(tool, "ok", duration_ms, bytes_in, bytes_out)
    else:
        bytes_out = 0
        await audit.log_tool_error(
            tool=tool,
            duration_ms=duration_ms,
            error_code="TIMEOUT",
            correlation_id=cid,
            error=error,
        )
        telemetry.emit_tool_call(tool, "error", duration_ms, bytes_in, 0, error=error)
        summary.errors += 1
    summary.calls += 1
    summary.bytes_in += bytes_in
    summary.bytes_out += bytes_out
    summary.duration_ms += duration_ms
    summary.calls_by_tool[tool] = summary.calls_by_tool.get(tool, 0) + 1
    return time.perf_counter() - start


async def _run(args: argparse.Namespace) -> Summary:
    from mcp_otel import AuditLogger, DiscoveryCache, TelemetryEmitter, _setup

    data = Path(os.environ["MCP_OTEL_DIR"])
    audit = AuditLogger(data / "audit")
    telemetry = TelemetryEmitter(enabled=True, output_dir=data / "telemetry")
    cache = DiscoveryCache(data / "cache")
    tracer = _setup.get_tracer_provider().get_tracer("mcp_otel.stack_test")
    summary = Summary(pid=os.getpid())
    telemetry.emit_server_start("stack-test", "2024-11-05")
    telemetry.emit_handshake(3, True, {"name": "stack-test-client"})

    pauses = sorted(set(args.pause_after))
    boundaries = [p for p in pauses if 0 < p < args.calls] + [args.calls]
    done = 0
    pace = {int(p): int(ms) / 1000 for p, ms in (item.split(":") for item in args.pace)}
    for phase, end in enumerate(boundaries):
        slowest = 0.0
        phase_start = time.monotonic()
        while done < end:
            if phase in pace and done > (boundaries[phase - 1] if phase else 0):
                await asyncio.sleep(pace[phase])  # traffic shape, not synchronisation
            batch = range(done, min(done + args.concurrency, end))
            times = await asyncio.gather(
                *(_call(i, audit, telemetry, cache, tracer, summary) for i in batch)
            )
            slowest = max(slowest, *times)
            done = batch.stop
        summary.max_call_s_by_phase.append(slowest)
        # One client session per phase (protocol versions with sessions).
        telemetry.record_session_duration(time.monotonic() - phase_start)
        if phase < len(boundaries) - 1:
            print(f"PAUSED {done} {time.time_ns()}", flush=True)
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                raise SystemExit("stdin closed while paused")
            print(f"RESUMED {done} {time.time_ns()}", flush=True)

    telemetry.emit_server_stop("shutdown")
    summary.telemetry_metrics = dict(telemetry.metrics)
    summary.audit_summary = audit.get_session_summary()
    await audit.ashutdown()
    telemetry.shutdown()
    _setup.shutdown()
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pause-after", type=int, action="append", default=[])
    parser.add_argument("--pace", action="append", default=[], metavar="PHASE:MS")
    args = parser.parse_args()
    summary = asyncio.run(_run(args))
    print(json.dumps(asdict(summary)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
