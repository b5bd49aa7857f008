"""Any value in any argument of the emitter: the call is always counted, its event is
written with the documented safe forms and caps, nothing is raised. Issue 12, items 2
and 3."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_otel import telemetry as telemetry_module
from mcp_otel.limits import MAX_NAME_CHARS, MAX_STRUCT_CHARS, MAX_TEXT_CHARS, cut
from mcp_otel.redaction import MASK
from mcp_otel.telemetry import TelemetryEmitter, get_telemetry, init_telemetry
from tests._odd_values import (
    HUGE,
    HUGE_TEXT,
    ODD_VALUES,
    BadFloat,
    BadInt,
    BadStr,
    NoEquality,
    NoItems,
    NoMapping,
    NoTruth,
    Unprintable,
)

from ._helpers import read_lines

Factory = Callable[..., TelemetryEmitter]


def _events(emitter: TelemetryEmitter, directory: Path, event: str) -> list[dict[str, Any]]:
    emitter.force_flush()
    return [e for e in read_lines(directory, "mcp_telemetry_*.jsonl") if e["event"] == event]


TOOLS: dict[str, tuple[Any, str]] = {
    "huge int": (HUGE, HUGE_TEXT),
    "unprintable": (Unprintable(), "<unrepresentable Unprintable>"),
    "str subclass": (BadStr("name"), "name"),
    "int subclass": (BadInt(7), "7"),
    "no equality": (NoEquality(), "<unrepresentable NoEquality>"),
}


@pytest.mark.parametrize("case", TOOLS, ids=list(TOOLS))
def test_any_tool_value_is_counted_and_written(
        case: str, tmp_path: Path, make_emitter: Factory) -> None:
    """``str(tool)`` raised before anything was counted: the call was lost."""
    tool, written = TOOLS[case]
    emitter = make_emitter(output_dir=tmp_path)
    emitter.emit_tool_call(tool, "ok", 3, 4, 5)
    emitter.emit_tool_call(tool, "error", 1, 1, 1, error_type=tool)
    assert emitter.metrics == {"tool_calls": 2, "total_bytes_in": 5, "total_bytes_out": 6,
                               "total_duration_ms": 4, "errors": 1}
    events = _events(emitter, tmp_path, "tool_call")
    assert [e["tool"] for e in events] == [written, written]


@pytest.mark.parametrize("status", [NoEquality(), BadStr("error"), HUGE, Unprintable()],
                         ids=["no-equality", "str-subclass", "huge", "unprintable"])
def test_any_status_is_counted(status: Any, tmp_path: Path, make_emitter: Factory) -> None:
    """``status == "error"`` called the value's own ``__eq__``."""
    emitter = make_emitter(output_dir=tmp_path)
    emitter.emit_tool_call("t", status, 1, 1, 1)
    m = emitter.metrics
    assert m["tool_calls"] == 1
    assert m["errors"] == (1 if isinstance(status, BadStr) else 0)  # a str "error" is one
    (event,) = _events(emitter, tmp_path, "tool_call")
    assert event["status"] in ("error", HUGE_TEXT, "<unrepresentable NoEquality>",
                               "<unrepresentable Unprintable>")


@pytest.mark.parametrize("value", [BadInt(5), BadFloat(5.4), BadStr("5"), HUGE, -HUGE],
                         ids=["int-subclass", "float-subclass", "str-subclass", "huge",
                              "huge-negative"])
def test_any_count_value_is_read_through_its_base_type(
        value: Any, tmp_path: Path, make_emitter: Factory) -> None:
    emitter = make_emitter(output_dir=tmp_path)
    emitter.emit_tool_call("t", "ok", value, value, value)
    expected = {HUGE: 2**53 - 1, -HUGE: 0}.get(value, 5) if type(value) is int else 5
    assert emitter.metrics == {"tool_calls": 1, "total_bytes_in": expected,
                               "total_bytes_out": expected, "total_duration_ms": expected,
                               "errors": 0}


def test_an_unprintable_error_and_odd_metadata_keep_the_event(
        tmp_path: Path, make_emitter: Factory) -> None:
    """``str(error)`` raised after counting, so the event was lost; a huge int in
    ``metadata`` turned the whole mapping into ``"<dict object at 0x...>"``."""
    emitter = make_emitter(output_dir=tmp_path)
    emitter.emit_tool_call("t", "error", 1, 1, 1, error=Unprintable(),
                           metadata={"n": HUGE, "ok": 1, "token": "abc", "bad": NoItems(a=1),
                                     "map": NoMapping()})
    emitter.emit_tool_call("t", "error", 1, 1, 1, error=NoTruth(), metadata=NoTruth())
    first, second = _events(emitter, tmp_path, "tool_call")
    assert first["error"] == "<unrepresentable Unprintable>"
    assert first["metadata"] == {"n": HUGE_TEXT, "ok": 1, "token": MASK,
                                 "bad": {"a": 1}, "map": "<unrepresentable NoMapping>"}
    assert second["error"] == second["metadata"] == "<unrepresentable NoTruth>"
    assert emitter.metrics["errors"] == 2


def test_handshake_with_a_success_that_has_no_truth_value_counts_as_a_failure(
        tmp_path: Path, make_emitter: Factory) -> None:
    emitter = make_emitter(output_dir=tmp_path)
    emitter.emit_handshake(HUGE, NoTruth(), client_info={"name": HUGE})
    (event,) = _events(emitter, tmp_path, "handshake")
    assert event["success"] is False and event["client_info"] == {"name": HUGE_TEXT}
    assert event["mcp_otel.invalid_fields"] == ["duration_ms"]


@pytest.mark.parametrize("name", ODD_VALUES, ids=list(ODD_VALUES))
def test_every_odd_value_in_every_argument(
        name: str, tmp_path: Path, make_emitter: Factory) -> None:
    value = ODD_VALUES[name]
    emitter = make_emitter(output_dir=tmp_path)
    emitter.emit_server_start(value, value)
    emitter.emit_tool_call(value, value, value, value, value, value, value, error_type=value)
    emitter.emit_tool_call("t", "error", 1, 2, 3, error=value, metadata={"v": value})
    emitter.emit_handshake(value, value, value)
    emitter.record_session_duration(value)
    emitter.emit_server_stop(value)
    assert emitter.force_flush(value) in (True, False)
    assert emitter.metrics["tool_calls"] == 2
    lines = read_lines(tmp_path, "mcp_telemetry_*.jsonl")
    assert [e["event"] for e in lines] == [
        "server_start", "tool_call", "tool_call", "handshake", "server_stop"]


def test_event_fields_are_cut_at_their_caps(tmp_path: Path, make_emitter: Factory) -> None:
    emitter = make_emitter(output_dir=tmp_path)
    name = "n" * 50_000_000
    emitter.emit_tool_call(name, "s" * 10_000, 1, 1, 1, error="e" * 1_000_000,
                           metadata={"k": "m" * 100_000}, error_type="x" * 10_000)
    emitter.emit_server_start("v" * 10_000, "p" * 300)
    emitter.emit_handshake(1, True, client_info=["c" * 10] * 10_000)
    emitter.emit_server_stop("r" * 100_000)
    emitter.force_flush()
    events = {e["event"]: e for e in read_lines(tmp_path, "mcp_telemetry_*.jsonl")}
    call = events["tool_call"]
    assert call["tool"] == cut(name, MAX_NAME_CHARS)
    assert call["tool"].endswith("…[cut: 49999744 chars]")
    assert call["status"] == cut("s" * 10_000, MAX_NAME_CHARS)
    assert call["error"] == cut("e" * 1_000_000, MAX_TEXT_CHARS)
    assert call["metadata"] == cut('{"k":"' + "m" * 100_000 + '"}', MAX_STRUCT_CHARS)
    assert events["server_start"]["version"] == cut("v" * 10_000, MAX_NAME_CHARS)
    assert events["server_start"]["protocol_version"] == cut("p" * 300, MAX_NAME_CHARS)
    info_json = "[" + ",".join(['"cccccccccc"'] * 10_000) + "]"
    assert events["handshake"]["client_info"] == cut(info_json, MAX_STRUCT_CHARS)
    assert events["server_stop"]["reason"] == cut("r" * 100_000, MAX_TEXT_CHARS)
    total = sum(p.stat().st_size for p in tmp_path.glob("mcp_telemetry_*.jsonl"))
    assert total < 64 * 1024
    assert emitter.metrics["tool_calls"] == 1


def test_the_attribute_cache_holds_cut_names(tmp_path: Path, make_emitter: Factory) -> None:
    """Its keys held each client-invented name whole: 1,280 of them could pin gigabytes."""
    emitter = make_emitter(output_dir=tmp_path)
    for i in range(20):
        emitter.emit_tool_call(f"{i:02d}" + "n" * 1_000_000, "ok", 1, 1, 1)
    pipeline = emitter._pipeline()
    assert max(len(key[0]) for key in pipeline.attrs) <= MAX_NAME_CHARS + 30
    assert emitter.metrics["tool_calls"] == 20


def test_init_telemetry_with_a_truth_value_that_raises(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry_module, "_telemetry", None)
    emitter = init_telemetry(enabled=NoTruth(), output_dir=tmp_path)  # type: ignore[arg-type]
    try:
        assert get_telemetry() is emitter and emitter.enabled is True
        emitter.emit_tool_call("t", "ok", 1, 1, 1)
        assert emitter.metrics["tool_calls"] == 1
    finally:
        emitter.shutdown()


@pytest.mark.parametrize("timeout", [math.nan, -5, HUGE, Unprintable()],
                         ids=["nan", "negative", "huge", "unprintable"])
def test_force_flush_with_any_timeout_writes(
        timeout: Any, tmp_path: Path, make_emitter: Factory) -> None:
    emitter = make_emitter(output_dir=tmp_path)
    emitter.emit_tool_call("t", "ok", 1, 1, 1)
    assert emitter.force_flush(timeout) is True
    assert len(read_lines(tmp_path, "mcp_telemetry_*.jsonl")) == 1
