"""mcp-otel stats against crafted files, good and bad, through the real CLI."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from mcp_otel.cli import main
from mcp_otel.cli._stats import compute, percentile
from tests._support import require_program


def _write(path: Path, records: list[dict[str, Any]], tail: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records) + tail)
    return path


def _tool_event(tool: str, duration: int, status: str = "ok", bytes_in: int = 10,
                bytes_out: int = 100) -> dict[str, Any]:
    return {"event": "tool_call", "session_id": "tel_x", "tool": tool, "status": status,
            "duration_ms": duration, "bytes_in": bytes_in, "bytes_out": bytes_out,
            "event_name": "mcp.telemetry.tool_call", "schema_version": 1}


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_otel", "stats", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_exact_percentiles_errors_and_bytes(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # 100 calls of "query" taking 1..100 ms (shuffled), every 10th an error.
    order = [(i * 37) % 100 + 1 for i in range(100)]
    records = [_tool_event("query", d, "error" if d % 10 == 0 else "ok", bytes_in=d,
                           bytes_out=2 * d) for d in order]
    records += [_tool_event("ping", 3), _tool_event("ping", 5)]
    _write(tmp_path / "telemetry" / "mcp_telemetry_20261127.jsonl", records)

    assert main(["stats", str(tmp_path), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    query = report["tools"]["query"]
    assert (query["p50_ms"], query["p95_ms"], query["p99_ms"]) == (50, 95, 99)
    assert query["calls"] == 100 and query["errors"] == 10
    assert query["error_ratio"] == pytest.approx(0.1)
    assert query["bytes_in"] == 5050 and query["bytes_out"] == 10100
    assert report["tools"]["ping"]["p50_ms"] == 3
    assert report["total"]["calls"] == 102
    assert report["source"] == "telemetry tool_call events"

    assert main(["stats", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "query" in text and "TOTAL" in text and "10.0" in text


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7], 99) == 7
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([1, 2, 3, 4], 51) == 3


def test_audit_records_are_the_fallback_source(tmp_path: Path) -> None:
    audit = [
        {"event": "tool_call", "tool": "t", "correlation_id": "c1", "bytes_in": 11},
        {"event": "tool_result", "tool": "t", "correlation_id": "c1", "duration_ms": 4,
         "bytes_out": 40},
        {"event": "tool_call", "tool": "t", "correlation_id": "c2", "bytes_in": 13},
        {"event": "tool_error", "tool": "t", "correlation_id": "c2", "duration_ms": 8,
         "error_code": "tool_error"},
        {"event": "session_end", "session_id": "s"},
    ]
    _write(tmp_path / "mcp_audit_20261127.jsonl", audit)
    report = compute([tmp_path]).to_json()
    assert report["source"] == "audit tool_result/tool_error records"
    t = report["tools"]["t"]
    assert (t["calls"], t["errors"], t["bytes_in"], t["bytes_out"]) == (2, 1, 24, 40)
    assert (t["p50_ms"], t["p99_ms"]) == (4, 8)


def test_cache_ratio_from_spans_and_from_two_processes_metrics(tmp_path: Path) -> None:
    spans = [{"name": "cache.get", "span_id": f"{i:016x}", "kind": "INTERNAL",
              "cache.hit": i % 4 != 0} for i in range(8)]
    _write(tmp_path / "spans" / "mcp_spans_20261127.jsonl", spans)
    assert compute([tmp_path]).to_json()["cache"] == {
        "hits": 6, "lookups": 8, "hit_ratio": 0.75, "source": "spans"}

    def point(start: str, ts: str, result: str, value: int) -> dict[str, Any]:
        return {"timestamp": ts, "start_timestamp": start, "metric": "mcp_otel.cache.requests",
                "type": "sum", "value": value, "mcp_otel.cache.result": result,
                "mcp_otel.cache.tier": "memory" if result == "hit" else "none"}

    # Two processes (start times differ), each with cumulative snapshots: latest wins.
    metrics = [point("A", "1", "hit", 1), point("A", "2", "hit", 5), point("A", "2", "miss", 2),
               point("B", "1", "hit", 3), point("B", "1", "miss", 0), point("B", "3", "miss", 2)]
    only_metrics = tmp_path / "m"
    _write(only_metrics / "metrics_20261127.jsonl", metrics)
    cache = compute([only_metrics]).to_json()["cache"]
    assert (cache["hits"], cache["lookups"], cache["source"]) == (8, 12, "metrics")


def test_gzip_rotated_file_and_duplicate_paths_are_read_once(tmp_path: Path) -> None:
    raw = b"".join(orjson.dumps(_tool_event("z", d)) + b"\n" for d in (1, 2, 3))
    gz = tmp_path / "mcp_telemetry_20261126.jsonl.gz"
    gz.write_bytes(gzip.compress(raw))
    report = compute([tmp_path, gz]).to_json()
    assert report["tools"]["z"]["calls"] == 3


def test_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [_tool_event("a", 1), _tool_event("a", 2)],
                  tail=b'{"event":"tool_call","tool":"a","sta')
    result = _run_cli(str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["tools"]["a"]["calls"] == 2
    assert "partial last line" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a JSON Lines file"),
        (b"hello world\n", "not a JSON Lines file"),
        (b'{"event":"tool_call"}\n[1, 2, 3]\n', "line is not a JSON object"),
        (b'{"ok": 1}\n{broken\n{"ok": 2}\n', ":2: not a JSON Lines file"),
    ],
)
def test_bad_files_give_one_line_and_exit_2(tmp_path: Path, content: bytes,
                                            message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    result = _run_cli(str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mcp-otel stats: error: ") and message in lines[0]
    assert result.stdout == ""


def _corrupt_gzip() -> bytes:
    """Header intact, deflate stream flipped: ``gzip`` raises ``zlib.error`` (no OSError)."""
    blob = bytearray(gzip.compress((orjson.dumps(_tool_event("a", 1)) + b"\n") * 200,
                                   mtime=0))
    for i in range(20, 60):
        blob[i] ^= 0xFF
    with pytest.raises(zlib.error):
        gzip.decompress(bytes(blob))
    return bytes(blob)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(_corrupt_gzip(), id="corrupt-deflate"),
        pytest.param(gzip.compress(b'{"a": 1}\n' * 50, mtime=0)[:-12], id="truncated"),
        pytest.param(b"plain text, not gzip\n", id="not-gzip"),
    ],
)
def test_bad_gzip_file_is_unreadable_not_a_traceback(tmp_path: Path, content: bytes) -> None:
    """docs/usage.md: an unreadable file is one line and exit 2; a rotated ``.jsonl.gz``
    whose bytes are damaged is one, whichever exception the decompressor raises."""
    path = tmp_path / "mcp_telemetry_20261126.jsonl.gz"
    path.write_bytes(content)
    result = _run_cli(str(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"mcp-otel stats: error: {path}: cannot read (")
    assert result.stdout == ""


def test_otlp_format_lines_are_reported_not_silently_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment writing ``MCP_OTEL_JSONL_FORMAT=otlp`` gets a warning naming each such
    file, not a table of zeros that looks like no traffic; flat files are still summed."""
    from mcp_otel.telemetry import TelemetryEmitter

    monkeypatch.setenv("MCP_OTEL_JSONL_FORMAT", "otlp")
    emitter = TelemetryEmitter(output_dir=tmp_path / "otlp")
    for duration in (1, 2, 3):
        emitter.emit_tool_call("a", "ok", duration, 2, 3)
    emitter.shutdown()
    monkeypatch.delenv("MCP_OTEL_JSONL_FORMAT")
    (events,) = (tmp_path / "otlp").glob("mcp_telemetry_*.jsonl")
    assert b'"resourceLogs"' in events.read_bytes()
    _write(tmp_path / "flat" / "mcp_telemetry_20261126.jsonl", [_tool_event("b", 4)])

    result = _run_cli(str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["tools"]["b"]["calls"] == 1 and "a" not in report["tools"]
    notes = [w for w in report["warnings"] if str(events) in w]
    assert len(notes) == 1 and "otlp format" in notes[0], report["warnings"]
    assert f"mcp-otel stats: warning: {notes[0]}" in result.stderr.splitlines()
    assert not any("flat" + os.sep in w for w in report["warnings"])


def test_missing_path(tmp_path: Path) -> None:
    result = _run_cli(str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"mcp-otel stats: error: {tmp_path / 'nope.jsonl'}: no such file or directory")


def test_unreadable_file(tmp_path: Path) -> None:
    # /proc/self/mem cannot be read from offset 0 (EIO), even by root.
    result = _run_cli("/proc/self/mem")
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_file_without_read_permission(tmp_path: Path) -> None:
    path = _write(tmp_path / "locked.jsonl", [_tool_event("a", 1)])
    path.chmod(0)
    command = [sys.executable, "-m", "mcp_otel", "stats", str(path)]
    if os.geteuid() == 0:  # root reads any file: run the CLI without that capability
        command = [require_program("setpriv"), "--bounding-set",
                   "-dac_override,-dac_read_search", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "permission denied" in result.stderr, result.stderr


def test_empty_directory_reports_no_calls(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "TOTAL" in out and "no lookups" in out


def test_metric_envelope_mirrors_the_exporters() -> None:
    """``stats``, the demo and ``testing`` strip the flat metric envelope through the
    mirror in ``mcp_otel.reader``; it must stay the exporters' own set."""
    from mcp_otel.exporters import FLAT_METRIC_ENVELOPE
    from mcp_otel.reader import METRIC_ENVELOPE

    assert METRIC_ENVELOPE == FLAT_METRIC_ENVELOPE


def test_a_fifo_named_on_the_command_line_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "mcp_telemetry_20261127.jsonl"
    os.mkfifo(fifo)
    result = _run_cli(str(fifo))  # hung until the 60 s timeout before
    assert result.returncode == 2
    assert "not a regular file" in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- caps


def test_durations_are_rounded_past_the_cap_with_exact_counts(tmp_path: Path) -> None:
    """Past ``max_durations`` distinct values the durations are rounded to a grid that
    coarsens until they fit; calls stay exact and each percentile is within the stated
    error of the exact one."""
    import random

    from mcp_otel.cli._stats import StatsLimits

    rnd = random.Random(7)
    values: dict[str, list[float]] = {}
    records = []
    for i in range(6000):
        tool = f"t{i % 5}"
        duration = rnd.lognormvariate(3, 1.5)
        values.setdefault(tool, []).append(duration)
        records.append(_tool_event(tool, duration))  # type: ignore[arg-type]
    _write(tmp_path / "mcp_telemetry_20261127.jsonl", records)

    exact = compute([tmp_path]).to_json()
    assert exact["percentiles_exact"] is True and exact["percentile_relative_error"] is None
    stats = compute([tmp_path], StatsLimits(max_durations=500))
    assert stats.duration_keys <= 500
    report = stats.to_json()
    err = report["percentile_relative_error"]
    assert report["percentiles_exact"] is False and 0 < err < 0.2
    assert any(f"within {100 * err:.3g}%" in w for w in report["warnings"])
    for tool, vs in values.items():
        vs.sort()
        summary = report["tools"][tool]
        assert summary["calls"] == len(vs) == exact["tools"][tool]["calls"]
        for q in (50, 95, 99):
            want = percentile(vs, q)
            assert want == exact["tools"][tool][f"p{q}_ms"]
            assert abs(summary[f"p{q}_ms"] - want) <= err * want, (tool, q)


def test_tool_names_are_capped_and_cut(tmp_path: Path) -> None:
    from mcp_otel.cli._stats import OTHER_TOOLS, StatsLimits

    records = [_tool_event(f"tool_{i}", 1) for i in range(10)]
    records += [_tool_event("n" * 1000, 2), _tool_event("tool_3", 3)]
    _write(tmp_path / "t.jsonl", records)
    report = compute([tmp_path], StatsLimits(max_tools=4, max_name_chars=20)).to_json()
    assert sorted(report["tools"]) == [OTHER_TOOLS, "tool_0", "tool_1", "tool_2", "tool_3"]
    assert report["tools"][OTHER_TOOLS]["calls"] == 7 and report["tools"]["tool_3"]["calls"] == 2
    assert report["total"]["calls"] == 12
    assert any("7 call(s) of further tools" in w for w in report["warnings"])
    wide = compute([tmp_path], StatsLimits(max_name_chars=20)).to_json()
    assert "n" * 20 + "..." in wide["tools"]


def test_audit_calls_waiting_for_a_result_are_bounded(tmp_path: Path) -> None:
    from mcp_otel.cli._stats import StatsLimits

    audit = [{"event": "tool_call", "tool": "t", "correlation_id": f"c{i}", "bytes_in": 10}
             for i in range(5)]
    audit += [{"event": "tool_result", "tool": "t", "correlation_id": f"c{i}",
               "duration_ms": 1, "bytes_out": 1} for i in range(5)]
    _write(tmp_path / "mcp_audit_20261127.jsonl", audit)
    stats = compute([tmp_path], StatsLimits(max_pending=3))
    report = stats.to_json()
    assert report["tools"]["t"]["calls"] == 5 and report["tools"]["t"]["bytes_in"] == 30
    assert any("bytes in unknown for 2 of them" in w for w in report["warnings"])
    assert not stats.audit_bytes_in  # every remembered call met its result
    assert compute([tmp_path]).to_json()["tools"]["t"]["bytes_in"] == 50


def test_cache_series_are_capped(tmp_path: Path) -> None:
    from mcp_otel.cli._stats import StatsLimits

    points = [{"timestamp": "1", "start_timestamp": str(i), "metric": "mcp_otel.cache.requests",
               "type": "sum", "value": 1, "mcp_otel.cache.result": "hit"} for i in range(6)]
    _write(tmp_path / "metrics_20261127.jsonl", points)
    report = compute([tmp_path], StatsLimits(max_series=4)).to_json()
    assert report["cache"]["lookups"] == 4
    assert any("2 point(s) of further series ignored" in w for w in report["warnings"])


def test_over_long_lines_are_skipped_and_warnings_capped(tmp_path: Path) -> None:
    long = orjson.dumps(_tool_event("x" * 300, 1)) + b"\n"
    path = _write(tmp_path / "t.jsonl", [_tool_event("a", 1)], tail=long * 150)
    result = _run_cli(str(path), "--json", "--max-line-bytes", "200")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["tools"] == {"a": report["tools"]["a"]} and report["total"]["calls"] == 1
    skipped = [w for w in report["warnings"] if "skipped a line of" in w]
    assert len(skipped) == 100 and skipped[0].startswith(f"{path}:2: skipped a line of ")
    assert f"{path}: 50 more warning(s) not shown (first 100 kept)" in report["warnings"]
    assert len(result.stderr.splitlines()) == 101


def test_without_a_path_the_data_directory_is_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _write(data / "telemetry" / "mcp_telemetry_20261127.jsonl", [_tool_event("a", 4)])
    import mcp_otel

    src = str(Path(mcp_otel.__file__).parents[1])  # this tree's code, from any cwd
    env = {**os.environ, "MCP_OTEL_DIR": str(data),
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "mcp_otel", "stats", "--json"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["tools"]["a"]["calls"] == 1

    env.pop("MCP_OTEL_DIR")
    result = subprocess.run([sys.executable, "-m", "mcp_otel", "stats"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == ("mcp-otel stats: error: mcp-otel-data: no such file or "
                                     "directory (the data directory: set MCP_OTEL_DIR or "
                                     "give a path)")
