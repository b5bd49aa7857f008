"""The emitter's JSONL files: events as flat log records, metric snapshots, permissions."""

from __future__ import annotations

import gc
import json
import os
import stat
import threading
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from mcp_otel.telemetry import TelemetryEmitter

from ._helpers import READBACK, last_snapshot_totals, read_lines

Factory = Callable[..., TelemetryEmitter]
OSIRIS_TOOL_FIELDS = {
    "event", "session_id", "timestamp", "timestamp_ms", "tool", "status",
    "duration_ms", "bytes_in", "bytes_out",
}  # fmt: skip


def test_events_and_snapshots_under_threads(tmp_path: Path, make_emitter: Factory) -> None:
    out = tmp_path / "tel"
    telemetry = make_emitter(enabled=True, output_dir=out)
    telemetry.emit_server_start("1.2.3", "2024-11-05")
    telemetry.emit_handshake(7, True, {"name": "client", "version": "1"})
    threads_n, calls = 8, 500
    barrier = threading.Barrier(threads_n)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(calls):
            telemetry.emit_tool_call(
                f"tool_{k}",
                "error" if i % 5 == 0 else "ok",
                duration_ms=i % 9,
                bytes_in=10 + k,
                bytes_out=i,
                error="boom" if i % 5 == 0 else None,
                metadata={"thread": k, "i": i},
            )

    threads = [threading.Thread(target=work, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = telemetry.metrics
    telemetry.emit_server_stop("shutdown")
    telemetry.shutdown()

    events = read_lines(out, "mcp_telemetry_*.jsonl")
    kinds = Counter(e["event"] for e in events)
    assert kinds == {"server_start": 1, "handshake": 1, "tool_call": threads_n * calls,
                     "server_stop": 1}  # fmt: skip
    assert {e["session_id"] for e in events} == {telemetry.session_id}
    tool_calls = [e for e in events if e["event"] == "tool_call"]
    for e in tool_calls:
        assert e.keys() >= OSIRIS_TOOL_FIELDS
        assert e["event_name"] == "mcp.telemetry.tool_call"
        assert e["tool"] == f"tool_{e['metadata']['thread']}"
        assert ("error" in e) == (e["status"] == "error")
    # every (thread, i) exactly once: nothing lost, nothing duplicated
    seen = Counter((e["metadata"]["thread"], e["metadata"]["i"]) for e in tool_calls)
    assert len(seen) == threads_n * calls and set(seen.values()) == {1}
    assert sum(e["bytes_in"] for e in tool_calls) == expected["total_bytes_in"]

    stop = next(e for e in events if e["event"] == "server_stop")
    assert stop["reason"] == "shutdown"
    assert stop["metrics"] == expected
    assert expected["tool_calls"] == threads_n * calls
    assert expected["errors"] == threads_n * (calls // 5)

    snapshot = last_snapshot_totals(read_lines(out, "mcp_metrics_*.jsonl"))[None]
    assert snapshot == expected
    assert telemetry.events_lost == 0


def test_osiris_lines_and_secret_masking(tmp_path: Path, make_emitter: Factory) -> None:
    telemetry = make_emitter(output_dir=tmp_path)
    telemetry.emit_tool_call(
        "connect",
        "error",
        12,
        30,
        40,
        error="failed for postgres://bob:hunter2@db/x",
        metadata={"db_password": "hunter2", "primary_key": "id", "nested": {"api_key": "k1"}},
    )
    telemetry.emit_handshake(3, False, client_info={"name": "c", "token": "t0k3n"})
    telemetry.force_flush()
    text = "\n".join(p.read_text() for p in tmp_path.glob("mcp_telemetry_*.jsonl"))
    assert "hunter2" not in text and "k1" not in text and "t0k3n" not in text
    events = read_lines(tmp_path, "mcp_telemetry_*.jsonl")
    call = next(e for e in events if e["event"] == "tool_call")
    assert call["metadata"]["primary_key"] == "id"
    assert call["metadata"]["db_password"] == "***MASKED***"
    assert call["timestamp"].endswith("+00:00")
    assert isinstance(call["timestamp_ms"], int)
    shake = next(e for e in events if e["event"] == "handshake")
    assert shake["success"] is False and shake["duration_ms"] == 3
    assert telemetry.get_session_summary()["telemetry_file"] == str(telemetry.telemetry_file)
    assert telemetry.telemetry_file.exists()


def test_files_are_private(tmp_path: Path, make_emitter: Factory) -> None:
    out = tmp_path / "new" / "tel"
    telemetry = make_emitter(output_dir=out)
    telemetry.emit_tool_call("t", "ok", 1, 1, 1)
    telemetry.force_flush()
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700
    for path in out.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_bad_values_are_transformed_not_raised(tmp_path: Path, make_emitter: Factory) -> None:
    telemetry = make_emitter(output_dir=tmp_path)
    telemetry.emit_tool_call("t", "ok", -5, "12", float("nan"))
    telemetry.emit_tool_call(["not", "a", "name"], None, 2.6, True, 10**30)  # type: ignore[arg-type]
    assert telemetry.metrics == {
        "tool_calls": 2,
        "total_bytes_in": 13,
        "total_bytes_out": 2**53 - 1,
        "total_duration_ms": 3,
        "errors": 0,
    }
    telemetry.force_flush()
    calls = [e for e in read_lines(tmp_path, "mcp_telemetry_*.jsonl") if e["event"] == "tool_call"]
    assert calls[0]["mcp_otel.invalid_fields"] == ["duration_ms", "bytes_in", "bytes_out"]
    assert calls[1]["tool"] == "['not', 'a', 'name']"
    assert calls[1]["mcp_otel.invalid_fields"] == ["duration_ms", "bytes_in", "bytes_out"]


def test_disabled_emitter_writes_nothing(tmp_path: Path, make_emitter: Factory) -> None:
    telemetry = make_emitter(enabled=False, output_dir=tmp_path / "tel")
    telemetry.emit_server_start("1", "2024-11-05")
    telemetry.emit_tool_call("t", "error", 1, 2, 3)
    telemetry.emit_server_stop()
    telemetry.force_flush()
    assert not (tmp_path / "tel").exists()
    summary = telemetry.get_session_summary()
    assert summary["enabled"] is False and summary["telemetry_file"] is None
    assert summary["metrics"]["errors"] == 1


def test_counting_continues_after_shutdown(tmp_path: Path, make_emitter: Factory) -> None:
    telemetry = make_emitter(output_dir=tmp_path)
    telemetry.emit_tool_call("t", "ok", 1, 1, 1)
    telemetry.shutdown()
    lines_before = len(read_lines(tmp_path, "mcp_telemetry_*.jsonl"))
    telemetry.emit_tool_call("t", "ok", 1, 1, 1)
    telemetry.force_flush()
    assert telemetry.metrics["tool_calls"] == 2
    assert len(read_lines(tmp_path, "mcp_telemetry_*.jsonl")) == lines_before == 1


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open fds via /proc")
def test_dropped_emitters_are_collected_and_stop_their_threads_and_files(
    tmp_path: Path,
) -> None:
    # Osiris' API has no shutdown(): a host that drops its emitter relies on the finaliser.
    # Each emitter's periodic reader thread used to hold it (through its lock getter), so it
    # was never collected: its threads and file descriptors lived until exit.
    n = 5
    gc.collect()
    threads_before = set(threading.enumerate())
    fds_before = len(os.listdir("/proc/self/fd"))
    emitters = [TelemetryEmitter(output_dir=tmp_path / f"t{i}") for i in range(n)]
    for emitter in emitters:
        emitter.emit_tool_call("t", "ok", 3, 10, 20)
    started = [t for t in threading.enumerate() if t not in threads_before]
    assert len(started) >= n  # at least one reader thread each: the test checks something
    refs = [weakref.ref(emitter) for emitter in emitters]
    del emitters, emitter
    gc.collect()
    assert [ref() for ref in refs] == [None] * n
    for thread in started:
        thread.join(timeout=10)  # the finaliser joins them already; this only bounds a bug
    assert [t.name for t in started if t.is_alive()] == []
    assert len(os.listdir("/proc/self/fd")) == fds_before
    # The finaliser flushed what was counted and written before the drop.
    for i in range(n):
        events = read_lines(tmp_path / f"t{i}", "mcp_telemetry_*.jsonl")
        assert [line["event"] for line in events] == ["tool_call"]
        totals = last_snapshot_totals(read_lines(tmp_path / f"t{i}", "mcp_metrics_*.jsonl"))
        assert totals[None] == {"tool_calls": 1, "total_bytes_in": 10, "total_bytes_out": 20,
                                "total_duration_ms": 3, "errors": 0}  # fmt: skip


def test_unwritable_directory_counts_lost_events_and_never_raises(
    tmp_path: Path, make_emitter: Factory
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    telemetry = make_emitter(output_dir=blocker / "tel")
    for _ in range(10):
        telemetry.emit_tool_call("t", "ok", 1, 2, 3)
    telemetry.emit_server_stop("shutdown")  # flushes; must not raise either
    assert telemetry.metrics == {"tool_calls": 10, "total_bytes_in": 20,
                                 "total_bytes_out": 30, "total_duration_ms": 10,
                                 "errors": 0}  # fmt: skip
    assert telemetry.events_lost == 11  # 10 tool calls + server_stop, declared, not hidden


def test_exported_snapshots_are_consistent_while_writers_run(
    tmp_path: Path, make_emitter: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Exports race with 4 writers: a thread forcing exports back to back from the moment
    # the writers start, and periodic ones every 20 ms. Each call adds 1 call, 3 bytes in,
    # 5 bytes out and 2 ms, so every snapshot in the file must keep those ratios exactly.
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "20")
    telemetry = make_emitter(output_dir=tmp_path)
    calls = 2_000
    start = threading.Barrier(5)

    def write() -> None:
        start.wait()
        for _ in range(calls):
            telemetry.emit_tool_call("t", "ok", 2, 3, 5)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    start.wait()
    flushes = 0
    while flushes == 0 or any(t.is_alive() for t in threads):
        assert telemetry.force_flush()
        flushes += 1
    for t in threads:
        t.join()
    telemetry.shutdown()

    snapshots: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line in read_lines(tmp_path, "mcp_metrics_*.jsonl"):
        if line["metric"] in READBACK:
            snapshots[line["timestamp"]][READBACK[line["metric"]]] += line["value"]
        elif line["metric"] == "mcp.server.operation.duration":
            snapshots[line["timestamp"]]["histogram"] += line["count"]
    assert len(snapshots) >= 2  # at least one export while writing, besides the final one
    for totals in snapshots.values():
        n = totals["tool_calls"]
        assert (totals["total_bytes_in"], totals["total_bytes_out"]) == (3 * n, 5 * n)
        assert totals["total_duration_ms"] == 2 * n
        # Durations are recorded in batches, but every collection records the pending
        # ones first: the histogram never lags the counts in an export.
        assert totals["histogram"] >= n
    assert max(s["tool_calls"] for s in snapshots.values()) == 4 * calls


def test_odd_values_never_raise_and_every_line_parses(
    tmp_path: Path, make_emitter: Factory
) -> None:
    telemetry = make_emitter(output_dir=tmp_path)
    telemetry.emit_server_start(None, 2024)  # type: ignore[arg-type]
    telemetry.emit_handshake("slow", "yes", client_info="not a dict")  # type: ignore[arg-type]
    telemetry.emit_tool_call(
        "t",
        "ok",
        1,
        1,
        1,
        error=ValueError("bad"),  # type: ignore[arg-type]
        metadata={
            "obj": object(),
            b"k": b"\x00\xff",
            "nan": float("nan"),
            "s": "\udcff",
            "deep": [[[{"a": {1, 2}}]]],
        },
    )
    telemetry.emit_server_stop(reason=12)  # type: ignore[arg-type]
    telemetry.shutdown()
    events = {e["event"]: e for e in read_lines(tmp_path, "mcp_telemetry_*.jsonl")}
    assert set(events) == {"server_start", "handshake", "tool_call", "server_stop"}
    assert events["handshake"]["mcp_otel.invalid_fields"] == ["duration_ms"]
    meta = events["tool_call"]["metadata"]
    assert meta["k"] == {"$base64": "AP8="} and meta["nan"] == "NaN"
    assert meta["deep"] == [[[{"a": [1, 2]}]]]
    assert events["tool_call"]["error"] == "bad"
    assert events["server_stop"]["metrics"]["tool_calls"] == 1


def test_numeric_strings_are_parsed_like_numbers(tmp_path: Path, make_emitter: Factory) -> None:
    """"12.7" counts like 12.7 (rounded), not as an invalid 0."""
    telemetry = make_emitter(output_dir=tmp_path)
    telemetry.emit_tool_call("t", "ok", "12.7", " 3 ", "1e3")
    telemetry.emit_tool_call("t", "ok", "nan", "x", "-4.2")
    m = telemetry.metrics
    assert (m["total_duration_ms"], m["total_bytes_in"], m["total_bytes_out"]) == (13, 3, 1000)


def test_the_format_argument_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_OTEL_JSONL_FORMAT", "flat")
    emitter = TelemetryEmitter(output_dir=tmp_path, format="otlp")
    try:
        emitter.emit_tool_call("a", "ok", 1, 2, 3)
        line = json.loads(emitter.telemetry_file.read_text().splitlines()[0])
        assert "resourceLogs" in line
    finally:
        emitter.shutdown()
    with pytest.raises(ValueError, match="format"):
        TelemetryEmitter(output_dir=tmp_path, format="xml")  # type: ignore[arg-type]
