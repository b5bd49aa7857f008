"""Every instrument of docs/architecture.md: name, kind, unit, attributes, zero points."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mcp_otel.limits import MAX_LABEL_CHARS, MAX_TOOL_NAMES
from mcp_otel.telemetry import MCP_DURATION_BUCKETS, TelemetryEmitter

from ._helpers import read_lines

Factory = Callable[..., TelemetryEmitter]

COUNTERS = {
    "mcp_otel.tool.calls": "{call}",
    "mcp_otel.tool.errors": "{error}",
    "mcp_otel.tool.input": "By",
    "mcp_otel.tool.output": "By",
    "mcp_otel.tool.duration": "ms",
    "mcp_otel.handshakes": "{handshake}",
}
ENVELOPE = {"timestamp", "start_timestamp", "metric", "type", "temporality", "monotonic",
            "unit", "description", "scope", "value", "schema_version", "resource", "count",
            "sum", "min", "max", "bucket_bounds", "bucket_counts"}  # fmt: skip


def _attrs(line: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in line.items() if k not in ENVELOPE and not k.startswith("otel.")}


def test_zero_points_exist_before_any_call(tmp_path: Path, make_emitter: Factory) -> None:
    telemetry = make_emitter(output_dir=tmp_path)
    telemetry.force_flush()
    lines = read_lines(tmp_path, "mcp_metrics_*.jsonl")
    sums = {line["metric"]: line for line in lines if line["type"] == "sum"}
    assert {name: sums[name]["unit"] for name in COUNTERS} == COUNTERS
    assert all(sums[name]["value"] == 0 and sums[name]["monotonic"] for name in COUNTERS)
    assert {line["metric"] for line in lines if line["type"] == "gauge"} == {
        "mcp_otel.server.uptime"
    }


def test_instrument_attributes_units_and_buckets(tmp_path: Path, make_emitter: Factory) -> None:
    telemetry = make_emitter(output_dir=tmp_path)
    telemetry.emit_tool_call("search", "ok", 250, 10, 20)
    telemetry.emit_tool_call("search", "error", 1500, 10, 0, error="x", error_type="TimeoutError")
    telemetry.emit_tool_call("fetch", "error", 5, 1, 0, error="free text never on a metric")
    telemetry.emit_handshake(4, True)
    telemetry.emit_handshake(4, False)
    telemetry.record_session_duration(42.0)
    telemetry.shutdown()
    lines = read_lines(tmp_path, "mcp_metrics_*.jsonl")
    last = max(line["timestamp"] for line in lines)
    final = [line for line in lines if line["timestamp"] == last]

    def points(metric: str) -> list[tuple[dict[str, object], object]]:
        return sorted(
            ((_attrs(p), p.get("value", p.get("count"))) for p in final if p["metric"] == metric),
            key=repr,
        )

    assert points("mcp_otel.tool.calls") == sorted(
        [
            ({}, 0),
            ({"gen_ai.tool.name": "fetch", "mcp_otel.status": "error"}, 1),
            ({"gen_ai.tool.name": "search", "mcp_otel.status": "error"}, 1),
            ({"gen_ai.tool.name": "search", "mcp_otel.status": "ok"}, 1),
        ],
        key=repr,
    )
    assert points("mcp_otel.tool.errors") == sorted(
        [
            ({}, 0),
            ({"gen_ai.tool.name": "fetch", "error.type": "tool_error"}, 1),
            ({"gen_ai.tool.name": "search", "error.type": "TimeoutError"}, 1),
        ],
        key=repr,
    )
    assert points("mcp_otel.tool.duration") == sorted(
        [({}, 0), ({"gen_ai.tool.name": "fetch"}, 5), ({"gen_ai.tool.name": "search"}, 1750)],
        key=repr,
    )
    assert points("mcp_otel.handshakes") == sorted(
        [({}, 0), ({"mcp_otel.status": "ok"}, 1), ({"mcp_otel.status": "error"}, 1)], key=repr
    )
    ops = [p for p in final if p["metric"] == "mcp.server.operation.duration"]
    assert all(p["unit"] == "s" and p["type"] == "histogram" for p in ops)
    assert all(p["bucket_bounds"] == list(MCP_DURATION_BUCKETS) for p in ops)
    by_attrs = {tuple(sorted(_attrs(p).items())): p for p in ops}
    failed = by_attrs[
        (("error.type", "TimeoutError"), ("gen_ai.tool.name", "search"),
         ("mcp.method.name", "tools/call"))
    ]  # fmt: skip
    assert (failed["count"], failed["sum"]) == (1, 1.5)
    ok = by_attrs[(("gen_ai.tool.name", "search"), ("mcp.method.name", "tools/call"))]
    assert (ok["count"], ok["sum"]) == (1, 0.25)
    session = next(p for p in final if p["metric"] == "mcp.server.session.duration")
    assert (session["count"], session["sum"], session["unit"]) == (1, 42.0, "s")
    text = "".join(p.read_text() for p in tmp_path.glob("mcp_metrics_*.jsonl"))
    assert "free text" not in text


def test_tool_name_cardinality_is_bounded(tmp_path: Path, make_emitter: Factory) -> None:
    """What is exported: at most MAX_TOOL_NAMES labels of at most MAX_LABEL_CHARS, the
    rest counted under ``_other``; the totals stay exact."""
    telemetry = make_emitter(output_dir=tmp_path, events=False)
    telemetry.emit_tool_call("x" * 1000, "ok", 1, 1, 1)
    for i in range(300):
        telemetry.emit_tool_call(f"tool_{i}", "ok", 1, 1, 1)
    assert telemetry.metrics["tool_calls"] == 301  # capped labels, exact totals
    telemetry.shutdown()
    lines = read_lines(tmp_path, "mcp_metrics_*.jsonl")
    last = max(line["timestamp"] for line in lines)
    calls = {str(_attrs(p).get("gen_ai.tool.name")): p["value"] for p in lines
             if p["timestamp"] == last and p["metric"] == "mcp_otel.tool.calls"
             and "gen_ai.tool.name" in _attrs(p)}
    named = {name for name in calls if name != "_other"}
    assert len(named) == MAX_TOOL_NAMES and calls["_other"] == 301 - MAX_TOOL_NAMES
    assert "x" * MAX_LABEL_CHARS in named  # the long name, cut
    assert all(len(name) <= MAX_LABEL_CHARS for name in calls)
    assert sum(calls.values()) == 301


def test_events_false_exports_metrics_and_writes_no_event(
    tmp_path: Path, make_emitter: Factory
) -> None:
    telemetry = make_emitter(enabled=True, output_dir=tmp_path, events=False)
    telemetry.emit_server_start("1", "2024-11-05")
    telemetry.emit_tool_call("t", "ok", 250, 10, 20)
    telemetry.shutdown()
    assert list(tmp_path.glob("mcp_telemetry_*.jsonl")) == []
    final = read_lines(tmp_path, "mcp_metrics_*.jsonl")
    last = max(line["timestamp"] for line in final)
    calls = [p for p in final if p["timestamp"] == last and p["metric"] == "mcp_otel.tool.calls"]
    assert sum(p["value"] for p in calls) == 1
    ops = [p for p in final
           if p["timestamp"] == last and p["metric"] == "mcp.server.operation.duration"]
    assert [(p["count"], p["sum"]) for p in ops] == [(1, 0.25)]


def test_the_mcp_duration_histograms_are_defined_once() -> None:
    # One definition (mcp_otel.telemetry._instruments), used by the emitter and by
    # instrument(): two definitions had drifted apart in their descriptions.
    src = Path(__file__).resolve().parents[2] / "src" / "mcp_otel"
    for name in ("mcp.server.operation.duration", "mcp.server.session.duration"):
        defining = [p.relative_to(src).as_posix() for p in src.rglob("*.py")
                    if f'"{name}"' in p.read_text(encoding="utf-8")]
        assert defining == ["telemetry/_instruments.py"], (name, defining)
