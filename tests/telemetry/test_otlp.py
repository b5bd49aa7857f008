"""Several processes export over OTLP through a real collector (rotel) to a real gRPC
receiver; the receiver's totals add up exactly to the calls made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests._support import stop_process, wait_until

from ._otlp import STOP_TIMEOUT_S, grpc_sink, latest_sums, log_events, rotel_collector

WORKER = r"""
import json, sys, threading
from mcp_otel.telemetry import TelemetryEmitter

seed, calls = int(sys.argv[1]), int(sys.argv[2])
telemetry = TelemetryEmitter(enabled=True)
telemetry.emit_server_start("1.0", "2024-11-05")
def work(k):
    for i in range(calls):
        telemetry.emit_tool_call(f"tool_{k}", "error" if (i + seed) % 7 == 0 else "ok",
                                 duration_ms=(i * seed) % 13, bytes_in=seed + k, bytes_out=i % 11)
threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join()
totals = telemetry.metrics
telemetry.emit_server_stop("shutdown")
telemetry.shutdown()
print(json.dumps({"instance": telemetry.resource.attributes["service.instance.id"],
                  "metrics": totals, "session_id": telemetry.session_id}))
"""

NAMES = {
    "mcp_otel.tool.calls": "tool_calls",
    "mcp_otel.tool.input": "total_bytes_in",
    "mcp_otel.tool.output": "total_bytes_out",
    "mcp_otel.tool.duration": "total_duration_ms",
    "mcp_otel.tool.errors": "errors",
}


def test_three_processes_totals_add_up_at_the_receiver(tmp_path: Path) -> None:
    processes, calls_per_thread = 3, 250
    with grpc_sink() as sink, rotel_collector(sink.port, tmp_path) as port:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
            "OTEL_SERVICE_NAME": "mcp-otel-telemetry-test",
            "MCP_OTEL_DIR": str(tmp_path / "data"),
        }
        env.pop("OTEL_SDK_DISABLED", None)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(seed), str(calls_per_thread)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for seed in (1, 2, 3)
        ]
        reports = []
        try:
            for proc in procs:
                out, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, err.decode()
                reports.append(json.loads(out.decode().strip().splitlines()[-1]))
        finally:
            for proc in procs:
                stop_process(proc, STOP_TIMEOUT_S)

        expected = {r["instance"]: r["metrics"] for r in reports}
        assert len(expected) == processes  # one series per process

        def received() -> dict[str, dict[str, int]] | None:
            sums = latest_sums(sink.metric_requests())
            got = {
                inst: {NAMES[n]: int(v) for n, v in by_name.items() if n in NAMES}
                for inst, by_name in sums.items()
                if inst in expected
            }
            return got if got == expected else None

        wait_until(received, "the receiver to hold every process's final totals", 30)

        def events() -> Counter[tuple[str, str]] | None:
            got = Counter(
                (inst, attrs["event"])
                for inst, attrs in log_events(sink.log_requests())
                if inst in expected
            )
            done = all(got[(i, "tool_call")] == 4 * calls_per_thread for i in expected)
            return got if done and all(got[(i, "server_stop")] == 1 for i in expected) else None

        got_events = wait_until(events, "every event to reach the receiver", 30)

    total_calls = sum(r["metrics"]["tool_calls"] for r in reports)
    assert total_calls == processes * 4 * calls_per_thread
    assert sum(got_events[(i, "tool_call")] for i in expected) == total_calls
    assert all(got_events[(i, "server_start")] == 1 for i in expected)
    # The same events are in the local files too (OTLP is in addition, not instead).
    lines = [
        json.loads(raw)
        for path in (tmp_path / "data" / "telemetry").glob("mcp_telemetry_*.jsonl")
        for raw in path.read_bytes().splitlines()
    ]
    assert sum(1 for e in lines if e["event"] == "tool_call") == total_calls
