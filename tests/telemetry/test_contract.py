"""Osiris' contract (issue 13, item 3): events are in the file when ``emit_*`` returns,
the constructor creates its directory, and an enabled emitter needs a directory."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from mcp_otel import telemetry as telemetry_module
from mcp_otel.telemetry import TelemetryEmitter, get_telemetry, init_telemetry

from ._helpers import read_lines

Factory = Callable[..., TelemetryEmitter]


def _events(directory: Path) -> list[dict[str, object]]:
    return read_lines(directory, "mcp_telemetry_*.jsonl")


def test_every_emit_is_in_the_file_when_it_returns(tmp_path: Path, make_emitter: Factory) -> None:
    # No flush, no shutdown between the call and the read: Osiris' tests read the file
    # right after emit_*.
    out = tmp_path / "tel"
    telemetry = make_emitter(enabled=True, output_dir=out)
    telemetry.emit_server_start("1.0.0", "2024-11-05")
    assert [e["event"] for e in _events(out)] == ["server_start"]
    telemetry.emit_handshake(5, True, {"name": "client"})
    assert _events(out)[-1]["event"] == "handshake"
    for i in range(50):
        telemetry.emit_tool_call("t", "ok", i, 10, 20, metadata={"i": i})
        last = _events(out)[-1]
        assert (last["event"], last["metadata"]) == ("tool_call", {"i": i})
    telemetry.emit_server_stop("shutdown")
    stop = _events(out)[-1]
    assert stop["event"] == "server_stop" and stop["metrics"]["tool_calls"] == 50
    assert len(_events(out)) == 53


def test_each_thread_finds_its_own_event_when_emit_returns(
    tmp_path: Path, make_emitter: Factory
) -> None:
    telemetry = make_emitter(enabled=True, output_dir=tmp_path)
    threads_n, calls = 8, 40
    barrier = threading.Barrier(threads_n)
    missing: list[tuple[int, int]] = []

    def work(k: int) -> None:
        barrier.wait()
        for i in range(calls):
            telemetry.emit_tool_call(f"tool_{k}", "ok", 1, 1, 1, metadata={"k": k, "i": i})
            text = telemetry.telemetry_file.read_bytes()
            if f'"metadata":{{"k":{k},"i":{i}}}'.encode() not in text:
                missing.append((k, i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert missing == []
    seen = Counter((e["metadata"]["k"], e["metadata"]["i"]) for e in _events(tmp_path))
    assert len(seen) == threads_n * calls and set(seen.values()) == {1}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_processes_sharing_the_file_each_find_their_events(tmp_path: Path) -> None:
    # Three forked processes and the parent append to one file at once; each checks after
    # every call that its line is there, and the file ends with every line exactly once.
    out = tmp_path / "tel"
    procs, calls = 3, 150
    read_fd, write_fd = os.pipe()
    pids = []
    for p in range(procs):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                os.close(read_fd)
                emitter = TelemetryEmitter(enabled=True, output_dir=out)
                missing = 0
                for i in range(calls):
                    emitter.emit_tool_call("t", "ok", 1, 2, 3, metadata={"p": p, "i": i})
                    if f'"metadata":{{"p":{p},"i":{i}}}'.encode() not in (
                        emitter.telemetry_file.read_bytes()
                    ):
                        missing += 1
                emitter.shutdown()
                os.write(write_fd, json.dumps({"p": p, "missing": missing}).encode() + b"\n")
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(write_fd)
    parent = TelemetryEmitter(enabled=True, output_dir=out)
    try:
        for i in range(calls):
            parent.emit_tool_call("t", "ok", 1, 2, 3, metadata={"p": "parent", "i": i})
    finally:
        parent.shutdown()
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    with os.fdopen(read_fd, "rb") as reports:
        results = [json.loads(line) for line in reports.read().splitlines()]
    assert codes == [0] * procs
    assert sorted(r["p"] for r in results) == list(range(procs))
    assert all(r["missing"] == 0 for r in results)
    seen = Counter((e["metadata"]["p"], e["metadata"]["i"]) for e in _events(out))
    assert len(seen) == (procs + 1) * calls and set(seen.values()) == {1}


def test_constructor_creates_the_directory(tmp_path: Path, make_emitter: Factory) -> None:
    out = tmp_path / "a" / "b" / "telemetry"
    telemetry = make_emitter(enabled=True, output_dir=out)
    assert out.is_dir()  # before any event
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700
    assert telemetry.get_session_summary()["telemetry_file"].startswith(str(out))
    disabled = tmp_path / "off"
    make_emitter(enabled=False, output_dir=disabled)
    assert not disabled.exists()  # a disabled emitter writes nothing, not even a directory


def test_enabled_emitter_without_a_directory_raises(
    tmp_path: Path, make_emitter: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MCP_OTEL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^output_dir is required$"):
        TelemetryEmitter(enabled=True, output_dir=None)
    with pytest.raises(ValueError, match=r"^output_dir is required$"):
        TelemetryEmitter()
    assert list(tmp_path.iterdir()) == []  # no silent fallback directory either
    # A disabled emitter writes nothing, so it needs no directory (the report's seed test).
    disabled = make_emitter(enabled=False)
    disabled.emit_tool_call("t", "ok", 1, 2, 3)
    assert disabled.metrics["tool_calls"] == 1
    assert list(tmp_path.iterdir()) == []


def test_mcp_otel_dir_supplies_the_default(
    tmp_path: Path, make_emitter: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_OTEL_DIR", str(tmp_path / "data"))
    telemetry = make_emitter(enabled=True, output_dir=None)
    assert telemetry.output_dir == tmp_path / "data" / "telemetry"
    assert telemetry.output_dir.is_dir()
    telemetry.emit_tool_call("t", "ok", 1, 2, 3)
    assert len(_events(telemetry.output_dir)) == 1


def test_init_telemetry_without_a_directory_raises_and_keeps_no_singleton(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry_module, "_telemetry", None)
    monkeypatch.delenv("MCP_OTEL_DIR", raising=False)
    with pytest.raises(ValueError, match=r"^output_dir is required$"):
        init_telemetry(enabled=True, output_dir=None)
    with pytest.raises(ValueError, match=r"^output_dir is required$"):
        init_telemetry()
    assert get_telemetry() is None
    emitter = init_telemetry(enabled=True, output_dir=tmp_path / "tel")
    try:
        assert get_telemetry() is emitter and (tmp_path / "tel").is_dir()
        assert init_telemetry() is emitter  # first call wins; no directory needed now
    finally:
        emitter.shutdown()


def test_an_event_carries_the_span_it_was_emitted_in(
    tmp_path: Path, make_emitter: Factory
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    telemetry = make_emitter(enabled=True, output_dir=tmp_path)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("tools/call t") as span:
        telemetry.emit_tool_call("t", "ok", 1, 2, 3)
    telemetry.emit_tool_call("t", "ok", 1, 2, 3)  # outside any span
    inside, outside = _events(tmp_path)
    context = span.get_span_context()
    assert (inside["trace_id"], inside["span_id"]) == (
        f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert "trace_id" not in outside and "span_id" not in outside
