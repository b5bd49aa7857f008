"""The event file's assembled ``tool_call`` line is the dict's line, byte for byte."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from mcp_otel import _setup
from mcp_otel.telemetry._events import MAX_ENCODED, EventFile
from mcp_otel.telemetry._values import _stamps

ODD = [
    "plain", "", 'quote" and \\ backslash', "tab\tnew\nline\x00nul\x1fus", "é 漢字 🎉",
    "\ud800 lone surrogate", "</script>", "x" * 256,
]  # fmt: skip


def _event_file(directory: Path, resource: dict[str, str] | None = None) -> EventFile:
    exporter = _setup.jsonl_exporter("logs", directory / "events_{date}.jsonl", format="flat")
    assert exporter is not None
    return EventFile(exporter, resource)


def _lines(directory: Path) -> list[bytes]:
    return [line for path in sorted(directory.glob("*.jsonl"))
            for line in path.read_bytes().splitlines(keepends=True)]


@pytest.mark.parametrize("ids", [None, (0x5B8EFFF798038103D269B633813FC60C, 0xEEE19B7EC3C1B174, 1)])
@pytest.mark.parametrize("resource", [None, {"service.name": "svc"}])
def test_assembled_line_equals_the_encoded_dict(
        tmp_path: Path, ids: tuple[int, int, int] | None, resource: dict[str, str] | None
) -> None:
    fast, slow = _event_file(tmp_path / "fast", resource), _event_file(tmp_path / "slow", resource)
    now = 1_764_833_460_123_456_789
    cases = [(name, status, session, error)
             for name in ODD for status in ("ok", "error", ODD[2], ODD[5])
             for session in ("tel_1", ODD[3]) for error in (False, True)]
    for i, (name, status, session, error) in enumerate(cases):
        stamp = now + i * 1_000 if i % 3 else now - now % 1_000_000_000  # whole seconds too
        fast.write_tool_call(session, stamp, name, status, i, 2 * i, 2**53 - 1, error, ids)
        iso, otel_timestamp = _stamps(stamp)
        slow.write({"event": "tool_call", "session_id": session, "timestamp": iso,
                    "timestamp_ms": stamp // 1_000_000, "tool": name, "status": status,
                    "duration_ms": i, "bytes_in": 2 * i, "bytes_out": 2**53 - 1},
                   "mcp.telemetry.tool_call", error, otel_timestamp, ids)
    fast.shutdown()
    slow.shutdown()
    assert _lines(tmp_path / "fast") == _lines(tmp_path / "slow")
    assert len(_lines(tmp_path / "fast")) == len(cases)
    for line in _lines(tmp_path / "fast"):
        assert orjson.loads(line)["schema_version"] == 1


def test_names_past_the_encoded_cap_are_encoded_per_line(tmp_path: Path) -> None:
    events = _event_file(tmp_path)
    for i in range(MAX_ENCODED + 50):
        events.write_tool_call("s", 1_764_833_460_000_000_000, f"tool_{i}", "ok", 1, 1, 1,
                               False, None)
    events.shutdown()
    assert [orjson.loads(line)["tool"] for line in _lines(tmp_path)] == [
        f"tool_{i}" for i in range(MAX_ENCODED + 50)]
