"""The Osiris-compatible surface and the lifecycle of AuditLogger."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mcp_otel import integrity, redaction
from mcp_otel.audit import AuditLogger
from mcp_otel.redaction import MASK

from .conftest import GatedExporter, counter_value, read_records


@pytest.fixture
def private_meter(monkeypatch: pytest.MonkeyPatch,
                  metric_reader: InMemoryMetricReader) -> InMemoryMetricReader:
    """Default-constructed loggers report to a test meter, not the process-wide one."""
    from mcp_otel import _setup

    monkeypatch.setattr(_setup, "component_meter_provider", lambda _dir: metric_reader.provider)
    return metric_reader


async def test_report_concurrent_json_integrity(tmp_path: Path,
                                                private_meter: InMemoryMetricReader) -> None:
    """The race-conditions report's own test, verbatim in substance."""
    audit = AuditLogger(log_dir=tmp_path)
    try:
        tasks = [
            audit.log_tool_call(f"tool_{i}", {f"key_{i}": f"value_{i}"})
            for i in range(50)
        ]
        await asyncio.gather(*tasks)
        lines = next(iter(tmp_path.glob("*.jsonl"))).read_text().strip().split("\n")
        for line in lines:
            json.loads(line)
        assert len(lines) == 50
        # "key_i" is a secret-looking key: masked, and still one record per call.
        recs = sorted((json.loads(x) for x in lines), key=lambda r: int(r["tool"][5:]))
        assert [r["tool"] for r in recs] == [f"tool_{i}" for i in range(50)]
        assert [r["arguments"] for r in recs] == [{f"key_{i}": MASK} for i in range(50)]
    finally:
        audit.shutdown()


def test_directory_argument_env_and_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          make_audit: Callable[..., AuditLogger],
                                          private_meter: InMemoryMetricReader) -> None:
    monkeypatch.delenv("MCP_OTEL_DIR", raising=False)
    with pytest.raises(ValueError):
        AuditLogger()
    monkeypatch.setenv("MCP_OTEL_DIR", str(tmp_path / "d"))
    a = AuditLogger(otlp=False)
    try:
        assert a.log_dir == tmp_path / "d" / "audit"
        assert stat.S_IMODE(os.stat(a.log_dir).st_mode) == 0o700
    finally:
        a.shutdown()
    with pytest.raises(ValueError):
        make_audit(wait="sometimes")


async def test_event_shapes_and_aliases(make_audit: Callable[..., AuditLogger],
                                        tmp_path: Path) -> None:
    a = make_audit()
    args = {"query": "select 1", "db_password": "hunter2"}
    cid = await a.log_tool_call("discover", arguments=args)
    assert cid == f"mcp_{a.session_id}_1" and a.tool_call_counter == 1
    await a.log_tool_call(tool="x", tool_name="winner", params_bytes=123, correlation_id="c-2")
    await a.log_tool_call("positional", {"params": "value"})  # Osiris' tests call it so
    await a.log_tool_result("discover", 12, 40, cid, success=True, result={"rows": 1})
    await a.log_tool_result(tool="t", duration_ms=5, event_id="c-2", payload_bytes=77)
    await a.log_tool_error("discover", 7, correlation_id=cid,
                           error="cannot connect to postgres://app:hunter2@db/x")
    await a.log_tool_error(tool="t", event_id="c-2")
    await a.log_resource_access("osiris://mcp/discovery/x.json", "read", False)
    recs = read_records(tmp_path / "audit")
    assert len(recs) == 8
    call, call2, call3, res, res2, err, err2, acc = recs
    assert {k: call[k] for k in ("event", "event_type", "tool", "tool_name", "correlation_id",
                                 "bytes_in", "arguments")} == {
        "event": "tool_call", "event_type": "tool_call_started", "tool": "discover",
        "tool_name": "discover", "correlation_id": cid,
        "bytes_in": len(json.dumps(args, separators=(",", ":"))),  # measured before masking
        "arguments": {"query": "select 1", "db_password": MASK}}
    assert (call2["tool"], call2["tool_name"], call2["bytes_in"], call2["correlation_id"],
            call2["arguments"]) == ("winner", "winner", 123, "c-2", None)
    assert call3["arguments"] == {"params": "value"} and call3["bytes_in"] == 18
    assert call3["correlation_id"] == f"mcp_{a.session_id}_2"
    assert {k: res[k] for k in ("event", "event_type", "tool", "correlation_id", "duration_ms",
                                "bytes_out", "result", "success")} == {
        "event": "tool_result", "event_type": "tool_call_completed", "tool": "discover",
        "correlation_id": cid, "duration_ms": 12, "bytes_out": 40, "result": {"rows": 1},
        "success": True}
    assert (res2["correlation_id"], res2["bytes_out"], res2["result"]) == ("c-2", 77, None)
    assert (err["event_type"], err["error_code"], err["error"]) == (
        "tool_call_failed", "ERROR", f"cannot connect to postgres://app:{MASK}@db/x")
    assert (err2["correlation_id"], err2["error_code"], err2["error"]) == ("c-2", "UNKNOWN", None)
    assert {k: acc[k] for k in ("event", "resource_uri", "operation", "status")} == {
        "event": "resource_access", "resource_uri": "osiris://mcp/discovery/x.json",
        "operation": "read", "status": "error"}
    assert isinstance(acc["timestamp_ms"], int)
    for r in recs:  # every record: UTC ISO 8601 timestamp, session id, OTel event name
        ts = datetime.fromisoformat(r["timestamp"])
        assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0
        assert abs((datetime.now(UTC) - ts).total_seconds()) < 60
        assert r["session_id"] == a.session_id
        assert r["event_name"] == f"mcp.audit.{r['event']}"
    assert [r["seq"] for r in recs] == list(range(1, 9))
    assert "hunter2" not in (tmp_path / "audit").joinpath(a.log_file.name).read_text()
    summary = a.get_session_summary()
    assert summary["session_id"] == a.session_id and summary["tool_calls"] == 2
    assert summary["audit_file"] == str(a.log_file) and summary["records_written"] == 8
    mode = stat.S_IMODE(os.stat(a.log_file).st_mode)
    assert mode == 0o600


async def test_large_arguments_are_previewed_with_original_size(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    a = make_audit(preview_bytes=256)
    big = {"blob": "x" * 5000, "api_key": "sekrit"}
    await a.log_tool_call("big", arguments=big)
    (rec,) = read_records(tmp_path / "audit")
    assert rec["bytes_in"] == len(json.dumps(big, separators=(",", ":")))
    assert rec["arguments_truncated"] is True
    assert rec["arguments"].endswith(f"... [TRUNCATED: {rec['bytes_in']} bytes total]")
    assert "sekrit" not in rec["arguments"]


def test_correlation_ids_unique_across_threads(make_audit: Callable[..., AuditLogger]) -> None:
    a = make_audit()
    out: list[list[str]] = [[] for _ in range(8)]

    def run(k: int) -> None:
        out[k].extend(a.make_correlation_id() for _ in range(2000))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [x for chunk in out for x in chunk]
    assert len(set(ids)) == 16000 and a.tool_call_counter == 16000


def test_threads_with_their_own_loops_share_one_instance(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    a = make_audit()

    def run(k: int) -> None:
        async def main() -> None:
            await asyncio.gather(*(a.log_tool_call(f"t{k}", {"i": i}) for i in range(200)))
        asyncio.run(main())

    threads = [threading.Thread(target=run, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # written mode: everything is in the file as soon as the calls returned
    recs = read_records(tmp_path / "audit")
    assert len(recs) == 1200
    assert sorted(r["seq"] for r in recs) == list(range(1, 1201))


async def test_queued_records_are_written_off_the_event_loop(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    """``queued`` records are written by the writer thread: the loop thread never calls
    os.write. (In ``written`` mode a caller that finds the writer idle appends its own
    record, one attempt: tests/audit/test_audit_inline.py.)"""
    a = make_audit(wait="queued")
    loop_thread = threading.get_ident()
    writers: set[int] = set()
    real_write = os.write

    def spy(fd: int, data: bytes) -> int:
        if b'"mcp.audit.' in data:
            writers.add(threading.get_ident())
        return real_write(fd, data)

    os.write = spy  # type: ignore[assignment]
    try:
        await asyncio.gather(*(a.log_tool_call("t", {"i": i}) for i in range(20)))
        assert await a.flush()
    finally:
        os.write = real_write  # type: ignore[assignment]
    assert writers and loop_thread not in writers
    assert len(read_records(tmp_path / "audit")) == 20


async def test_queued_mode_flush_and_shutdown(make_audit: Callable[..., AuditLogger],
                                              tmp_path: Path) -> None:
    a = make_audit(wait="queued")
    await asyncio.gather(*(a.log_tool_call("t", {"i": i}) for i in range(300)))
    assert await a.flush() is True
    assert len(read_records(tmp_path / "audit")) == 300
    await a.log_tool_call("t", {"i": 300})
    assert a.force_flush() is True
    assert len(read_records(tmp_path / "audit")) == 301
    a.shutdown()
    a.shutdown()  # idempotent
    recs = read_records(tmp_path / "audit")
    assert recs[-1]["event"] == "session_end" and recs[-1]["records"] == 302
    assert recs[-1]["tool_calls"] == 301 and recs[-1]["lost"] == 0
    report = integrity.verify_paths([tmp_path / "audit"])
    assert report.ok and not report.warnings


async def test_a_long_linger_never_holds_a_waiter_a_flush_or_the_session_end(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    # The writer dozes for an hour between batches: only records nobody waits for may
    # wait that long; a written record, a flush and the shutdown must each wake it.
    written = make_audit(tmp_path / "w", wait="written", linger=3600)
    for i in range(3):
        await asyncio.wait_for(written.log_tool_call("t", {"i": i}), 30)
        assert len(read_records(tmp_path / "w")) == i + 1
    written.shutdown()
    queued = make_audit(tmp_path / "q", wait="queued", linger=3600)
    for i in range(5):
        await queued.log_tool_call("t", {"i": i})
    assert await asyncio.wait_for(queued.flush(), 30) is True
    assert len(read_records(tmp_path / "q")) == 5
    await queued.log_tool_call("t", {"i": 5})
    queued.shutdown()
    recs = read_records(tmp_path / "q")
    assert [r["event"] for r in recs] == ["tool_call"] * 6 + ["session_end"]
    assert integrity.verify_paths([tmp_path / "q", tmp_path / "w"]).ok


async def test_a_call_after_shutdown_starts_a_new_session(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    a = make_audit()
    await a.log_tool_call("t", {})
    first = a.session_id
    a.shutdown()
    await a.log_tool_call("t", {})
    assert a.session_id != first
    a.shutdown()
    report = integrity.verify_paths([tmp_path / "audit"])
    assert report.ok and not report.warnings and len(report.sessions) == 2


def test_sync_context_manager(make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    with make_audit(wait="queued") as a:
        asyncio.run(a.log_tool_call("t", {}))
    recs = read_records(tmp_path / "audit")
    assert [r["event"] for r in recs] == ["tool_call", "session_end"]


async def test_async_context_manager(make_audit: Callable[..., AuditLogger],
                                     tmp_path: Path) -> None:
    async with make_audit(wait="queued") as a:
        await a.log_tool_result("t", 1, correlation_id="c")
    recs = read_records(tmp_path / "audit")
    assert [r["event"] for r in recs] == ["tool_result", "session_end"]


def test_metrics_zero_point_then_counts(make_audit: Callable[..., AuditLogger],
                                        metric_reader: InMemoryMetricReader) -> None:
    a = make_audit()
    assert counter_value(metric_reader, "mcp_otel.audit.records") == 0
    assert counter_value(metric_reader, "mcp_otel.audit.lost") == 0
    asyncio.run(a.log_tool_call("t", {}))
    assert counter_value(metric_reader, "mcp_otel.audit.records") == 1


def test_fork_starts_a_new_session(make_audit: Callable[..., AuditLogger],
                                   tmp_path: Path) -> None:
    a = make_audit()
    asyncio.run(a.log_tool_call("parent", {}))
    parent_session = a.session_id
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            async def child() -> None:
                for i in range(3):
                    await a.log_tool_call("child", {"i": i})
            asyncio.run(child())
            code = 0 if a.session_id != parent_session else 3
            a.shutdown()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    asyncio.run(a.log_tool_call("parent", {}))
    assert a.session_id == parent_session
    a.shutdown()
    recs = read_records(tmp_path / "audit")
    by_session: dict[str, list[str]] = {}
    for r in recs:
        by_session.setdefault(r["session_id"], []).append(r["tool"] if "tool" in r else r["event"])
    assert by_session[parent_session] == ["parent", "parent", "session_end"]
    (child_session,) = set(by_session) - {parent_session}
    assert by_session[child_session] == ["child", "child", "child", "session_end"]
    child_call = next(r for r in recs if r["session_id"] == child_session)
    assert child_call["correlation_id"] == f"mcp_{child_session}_1"
    report = integrity.verify_paths([tmp_path / "audit"])
    assert report.ok and not report.warnings, report.to_dict()


async def test_env_limits_and_sdk_disabled_cannot_truncate_or_drop(
        make_audit: Callable[..., AuditLogger], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3")
    monkeypatch.setenv("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3")
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "2")
    monkeypatch.setenv("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "2")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # turns off OTLP, never the audit file
    a = make_audit()
    await a.log_tool_call("a_long_tool_name", {"text": "a long argument value"})
    a.shutdown()
    recs = read_records(tmp_path / "audit")
    assert recs[0]["tool"] == "a_long_tool_name"
    assert recs[0]["arguments"] == {"text": "a long argument value"}
    assert len(recs[0]) > 10
    assert integrity.verify_paths([tmp_path / "audit"]).ok


def test_shutdown_while_threads_log_loses_nothing(make_audit: Callable[..., AuditLogger],
                                                 tmp_path: Path) -> None:
    a = make_audit()
    started = threading.Barrier(5)

    def run(k: int) -> None:
        async def main() -> None:
            started.wait()
            for i in range(400):
                await a.log_tool_call(f"t{k}", {"i": i})
        asyncio.run(main())

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    started.wait()
    for _ in range(5):
        a.shutdown()  # each ends a session; the next call opens a new one
    for t in threads:
        t.join()
    a.shutdown()
    recs = read_records(tmp_path / "audit")
    calls = [r for r in recs if r["event"] == "tool_call"]
    assert len(calls) == 1600
    assert len({(r["tool"], r["arguments"]["i"]) for r in calls}) == 1600
    report = integrity.verify_paths([tmp_path / "audit"])
    assert report.ok and not report.warnings, report.to_dict()["errors"][:3]


async def test_odd_values_in_any_field_keep_the_chain_valid(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    class Tool:
        def __str__(self) -> str:
            return "tool-object"

    a = make_audit()
    await a.log_tool_call(Tool(), arguments={b"k": {1, 2}, "f": float("nan")},  # type: ignore[arg-type]
                          correlation_id=("tuple", "id"))  # type: ignore[arg-type]
    await a.log_tool_result(3.5, duration_ms=float("inf"), result_bytes=True,  # type: ignore[arg-type]
                            result=object())
    await a.log_tool_error(None, error=ValueError("bad\npassword=x"))
    a.shutdown()
    recs = read_records(tmp_path / "audit")
    # payloads are frozen in mcp_otel._json's encoding at call time, then masked
    assert recs[0]["arguments"] == {"b'k'": [1, 2], "f": "NaN"}
    assert recs[0]["correlation_id"] == ["tuple", "id"]
    assert recs[1]["duration_ms"] == "Infinity" and recs[1]["result"].startswith("<object")
    assert recs[2]["error"] == f"bad\npassword={MASK}"
    report = integrity.verify_paths([tmp_path / "audit"])
    assert report.ok and not report.warnings, report.to_dict()


async def test_jsonl_environment_cannot_rotate_prune_or_reshape_the_audit_trail(
    make_audit: Callable[..., AuditLogger], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MCP_OTEL_JSONL_* configure the generic exporters, never the system of record."""
    monkeypatch.setenv("MCP_OTEL_JSONL_MAX_BYTES", "2000")
    monkeypatch.setenv("MCP_OTEL_JSONL_MAX_FILES", "0")
    monkeypatch.setenv("MCP_OTEL_JSONL_COMPRESS", "true")
    monkeypatch.setenv("MCP_OTEL_JSONL_RESOURCE", "true")
    audit = make_audit(tmp_path / "env")
    for i in range(40):
        await audit.log_tool_call(f"tool_{i}", {"i": i})
    audit.shutdown()
    files = list((tmp_path / "env").iterdir())
    assert len(files) == 1
    records = read_records(tmp_path / "env")
    assert len(records) == 41  # 40 calls and the session end
    assert not any("resource" in r for r in records)


async def test_payloads_are_captured_at_call_time_and_masked_before_the_file(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    """``queued`` returns before the write: the record must still show the arguments as
    they were when the call was made (the caller may reuse the dict), masked.

    The writer is held inside the export of an earlier record (a stuck disk), so these
    two records wait, unsealed and unmasked, in the queue while the caller mutates.
    """
    log_dir = tmp_path / "audit"
    gates: list[GatedExporter] = []

    def factory() -> GatedExporter:
        gates.append(GatedExporter(str(log_dir / "mcp_audit_{date}.jsonl")))
        return gates[-1]

    a = make_audit(log_dir, wait="queued", exporter_factory=factory)
    await a.log_tool_call("first", {})
    assert await asyncio.to_thread(gates[0].entered.wait, 10)  # the writer is stuck
    args = {"query": "select 1", "password": "hunter2", "items": [1, 2]}
    result = {"rows": [{"token": "t0k3n", "n": 1}]}
    await a.log_tool_call("t", arguments=args)
    await a.log_tool_result("t", result=result)
    args["query"] = "changed"
    args["items"].append(3)
    args["password"] = "changed-too"
    result["rows"].clear()
    gates[0].release.set()
    assert await a.flush()
    first, call, res = read_records(log_dir)
    assert first["tool"] == "first"
    assert call["arguments"] == {"query": "select 1", "password": MASK, "items": [1, 2]}
    assert res["result"] == {"rows": [{"token": MASK, "n": 1}]}
    raw = b"".join(p.read_bytes() for p in log_dir.glob("*.jsonl"))
    assert b"hunter2" not in raw and b"t0k3n" not in raw


@pytest.mark.parametrize("wait", ["written", "queued"])  # masked on the caller / the writer
async def test_a_payload_that_cannot_be_masked_is_replaced_never_written_raw(
        make_audit: Callable[..., AuditLogger], tmp_path: Path, wait: str,
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    a = make_audit(wait=wait)

    def broken(snap: object) -> object:
        raise RuntimeError("redactor bug")

    monkeypatch.setattr(redaction.Redactor, "redact_snapshot", broken)
    await a.log_tool_call("t", arguments={"password": "hunter2"})
    await a.log_tool_call("t", arguments={"fine": 1})
    a.shutdown()
    recs = read_records(tmp_path / "audit")
    assert [r["arguments"] for r in recs[:2]] == ["<unredactable>", "<unredactable>"]
    assert "cannot redact a payload" in capfd.readouterr().err
    raw = b"".join(p.read_bytes() for p in (tmp_path / "audit").glob("*.jsonl"))
    assert b"hunter2" not in raw
    report = integrity.verify_paths([tmp_path / "audit"])
    assert report.ok and not report.warnings, report.to_dict()


def test_exit_flush_also_ends_a_session_opened_by_a_late_record(
        make_audit: Callable[..., AuditLogger], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A record that races a session's end goes to the logger's next session; the exit
    flush must shut that session down too, or its queue dies with the interpreter."""
    from mcp_otel.audit import _process

    a = make_audit(wait="queued")
    asyncio.run(a.log_tool_call("before"))
    real_shutdown = AuditLogger.shutdown
    late_done = []

    def shutdown_then_late_record(self: AuditLogger, timeout: float = 30.0) -> None:
        real_shutdown(self, timeout)
        if self is a and not late_done:  # as if a record raced the end: a new session
            late_done.append(True)
            asyncio.run(self.log_tool_call("late"))

    monkeypatch.setattr(AuditLogger, "shutdown", shutdown_then_late_record)
    _process._shutdown_all(timeout=10.0)
    assert late_done
    recs = read_records(tmp_path / "audit")
    sessions = {r["session_id"] for r in recs}
    assert len(sessions) == 2
    assert [r["tool"] for r in recs if r["event"] == "tool_call"] == ["before", "late"]
    ends = [r for r in recs if r["event"] == integrity.END_EVENT]
    assert {r["session_id"] for r in ends} == sessions  # both sessions ended cleanly
    report = integrity.verify_paths([tmp_path / "audit"])
    assert report.ok and not report.warnings, report.to_dict()


async def test_an_empty_correlation_id_gets_a_fresh_one(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    a = make_audit()
    cid = await a.log_tool_call("t", correlation_id="")
    assert cid.startswith(f"mcp_{a.session_id}_")
    (rec,) = read_records(tmp_path / "audit")
    assert rec["correlation_id"] == cid and a.tool_call_counter == 1


def test_late_records_partly_handed_over_are_counted_once_and_declared(
        make_audit: Callable[..., AuditLogger], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Records that raced a session's end go to the next session; if that fails part-way,
    only the records not handed over are lost, declared in the next session's chain."""
    import time

    from opentelemetry._logs import SeverityNumber

    from mcp_otel.audit._processor import QueueFullTimeout

    a = make_audit(wait="queued")
    asyncio.run(a.log_tool_call("s1-call"))
    s1 = a._current()
    a.shutdown()
    s2 = a._current()
    real_put = s2.processor.put
    calls = []

    def put(record: object, waiter: object = None, timeout: float | None = None) -> None:
        calls.append(record)
        if len(calls) == 2:
            raise QueueFullTimeout("no room in the audit queue for 30s")
        real_put(record, waiter, timeout)  # type: ignore[arg-type]

    monkeypatch.setattr(s2.processor, "put", put)

    def late(tool: str) -> object:
        attrs = {"event": "tool_call", "event_type": "tool_call_started", "tool": tool,
                 "timestamp": "2026-11-27T00:00:00.000000+00:00", "session_id": s1.session_id}
        return s1.record(time.time_ns(), SeverityNumber.INFO, attrs)

    s1.processor._late([(late("late-1"), None), (late("late-2"), None), (late("late-3"), None)])
    assert s1.lost == 0 and s1.processor.lost == 0
    assert s2.unqueued_lost == 2
    asyncio.run(a.log_tool_call("s2-call"))
    a.shutdown()
    recs = read_records(tmp_path / "audit")
    tools = [r["tool"] for r in recs if r["event"] == "tool_call"]
    assert tools == ["s1-call", "late-1", "s2-call"]
    s2_recs = [r for r in recs if r["session_id"] == s2.session_id]
    assert s2_recs[0]["tool"] == "late-1" and "audit_lost" not in s2_recs[0]
    assert s2_recs[1]["audit_lost"]["unqueued"] == 2  # declared in the next record
    report = integrity.verify_paths([tmp_path / "audit"])
    assert report.ok, report.to_dict()


@pytest.mark.parametrize("in_span", [False, True])
def test_audit_log_records_match_the_api_constructor(in_span: bool) -> None:
    """The audit path builds its LogRecord without the API's constructor (a sixth of a
    queued call): it must hold exactly the attributes and values that constructor sets,
    trace context included, or an SDK that reads a new attribute would break on it."""
    import contextlib

    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import get_current_span

    from mcp_otel.audit._session import _AuditLogRecord

    tracer = TracerProvider().get_tracer("t")
    attrs = {"event": "tool_call"}
    with tracer.start_as_current_span("s") if in_span else contextlib.nullcontext():
        ours = _AuditLogRecord(123, SeverityNumber.WARN, "mcp.audit.tool_call", attrs)
        api = LogRecord(timestamp=123, observed_timestamp=123,
                        severity_number=SeverityNumber.WARN, severity_text="WARN",
                        event_name="mcp.audit.tool_call", attributes=attrs)
    assert isinstance(ours, LogRecord)
    # The context is the one deliberate difference: none at all (a queued record must not
    # keep the request's objects alive); the span's identity is in the three fields.
    ours_context, api_context = vars(ours).pop("context"), vars(api).pop("context")
    assert vars(ours) == vars(api)
    assert bool(ours.trace_id) is in_span
    assert ours_context is None
    identity = get_current_span(api_context).get_span_context()
    assert (ours.trace_id, ours.span_id, ours.trace_flags) == (
        identity.trace_id, identity.span_id, identity.trace_flags)
