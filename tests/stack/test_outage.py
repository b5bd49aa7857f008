"""Stop the collector in the middle of an mcp-otel run, then start it again.

The local JSONL files are the record of truth: they must stay complete while the
collector is gone, the application's tool calls must not wait on the dead exporter for
longer than the export timeout, and after the restart export must resume (the records
written after it, and the cumulative metric totals, reach the collector).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._otlp_sink import attributes
from tests._support import wait_until
from tests.stack._peers import REPO, Collector, LoadProcess, Sink, http_get, jsonl_lines

CALLS = 300
STOP_AT = 90  # calls made before the collector is stopped
RESTART_AT = 210  # calls made before it is started again
EXPORT_TIMEOUT_S = 2
OUTAGE_PACE_MS = 100  # between groups of 4 concurrent calls while the collector is down
OUTAGE_PACE_MS = 100  # between groups of 4 concurrent calls while the collector is down


@dataclass
class Outage:
    protocol: str
    data_dir: Path
    summary: dict[str, Any]
    exported_before_stop: int
    local_audit_while_down: int


def _local_lines(data_dir: Path, pattern: str) -> list[dict[str, Any]]:
    return jsonl_lines(list(data_dir.glob(pattern)))


@pytest.fixture(scope="module", params=["grpc", "http/protobuf"])
def outage(
    request: pytest.FixtureRequest,
    collector: Collector,
    sink: Sink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Outage]:
    protocol = request.param
    if collector.proc is None or collector.proc.poll() is not None:
        collector.start()
    data_dir = Path(tmp_path_factory.mktemp("outage-data"))
    args = [
        "--calls",
        str(CALLS),
        "--pause-after",
        str(STOP_AT),
        "--pause-after",
        str(RESTART_AT),
        # The outage phase lasts ~3 s: several failed export attempts, each up to the
        # export timeout, while the application keeps calling tools.
        "--pace",
        f"1:{OUTAGE_PACE_MS}",
    ]
    load = LoadProcess.start(
        collector,
        protocol,
        data_dir,
        f"mcp-outage-{protocol.split('/')[0]}",
        args,
        OTEL_EXPORTER_OTLP_TIMEOUT=str(EXPORT_TIMEOUT_S),
    )
    try:
        load.wait_for("PAUSED")
        # Export works before the outage: everything written so far reached the sink.
        local_so_far = len(_local_lines(data_dir, "audit/*.jsonl"))
        session = _local_lines(data_dir, "audit/*.jsonl")[0]["session_id"]

        def at_sink() -> int:
            return sum(
                1
                for r in sink.log_records()
                if attributes(r.attributes).get("session_id") == session
            )

        wait_until(lambda: at_sink() >= local_so_far, "phase-1 audit records at the sink")
        exported_before_stop = at_sink()

        collector.stop()
        load.resume()
        load.wait_for("PAUSED")
        local_while_down = len(_local_lines(data_dir, "audit/*.jsonl"))

        collector.start()
        load.resume()
        load.wait_for("RESUMED")
        summary = load.finish(timeout_s=120)
        yield Outage(protocol, data_dir, summary, exported_before_stop, local_while_down)
    finally:
        load.kill()


def test_local_files_stay_complete(outage: Outage) -> None:
    audit = _local_lines(outage.data_dir, "audit/*.jsonl")
    assert outage.summary["calls"] == CALLS
    # While the collector was down every call still got its two audit lines, at once.
    assert outage.local_audit_while_down == 2 * RESTART_AT
    tool_events = {"tool_call", "tool_result", "tool_error"}
    assert sum(1 for r in audit if r.get("event") in tool_events) == 2 * CALLS
    assert [r["seq"] for r in audit] == list(range(1, len(audit) + 1))  # no gap
    events = _local_lines(outage.data_dir, "telemetry/mcp_telemetry_*.jsonl")
    assert sum(1 for e in events if e.get("event") == "tool_call") == CALLS
    verify = subprocess.run(
        [sys.executable, "-m", "mcp_otel", "verify", str(outage.data_dir / "audit")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_application_not_slowed_beyond_export_timeout(outage: Outage) -> None:
    _before, during, _after = outage.summary["max_call_s_by_phase"]
    assert during < EXPORT_TIMEOUT_S, f"a call took {during:.3f}s with the collector down"
    assert outage.exported_before_stop >= 2 * STOP_AT


def test_export_resumes_after_restart(outage: Outage, sink: Sink, collector: Collector) -> None:
    audit = _local_lines(outage.data_dir, "audit/*.jsonl")
    session = audit[0]["session_id"]
    after_restart = {r["seq"] for r in audit if r["seq"] > 2 * RESTART_AT}
    assert len(after_restart) >= 2 * (CALLS - RESTART_AT)

    def arrived() -> set[int]:
        return {
            a["seq"]
            for a in (attributes(r.attributes) for r in sink.log_records())
            if a.get("session_id") == session
        }

    wait_until(lambda: after_restart <= arrived(), "audit records written after the restart")

    # Cumulative metrics: the restarted collector exposes the process' full totals.
    service = f"mcp-outage-{outage.protocol.split('/')[0]}"

    def exposed_calls() -> float:
        status, body = http_get(f"http://127.0.0.1:{collector.prometheus_port}/metrics")
        if status != 200:
            return -1
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith("mcp_otel_tool_calls_total{") and f'job="{service}"' in line:
                total += (
                    float(line.rsplit(" ", 1)[1])
                    if " # " not in line
                    else float(line.split(" # ")[0].rsplit(" ", 1)[1])
                )
        return total

    wait_until(lambda: exposed_calls() == CALLS, f"{CALLS} tool calls exposed for Prometheus")
