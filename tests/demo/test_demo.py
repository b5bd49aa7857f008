"""mcp-otel demo end to end: 2 server processes x 4 clients, in a subprocess, then an
independent re-count of every file it left."""

from __future__ import annotations

import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from mcp_otel._demo.client import RpcError, decode_response
from mcp_otel._demo.driver import (
    Check,
    FileFigures,
    Progress,
    Tally,
    build_checks,
)
from mcp_otel._demo.frameworks import Framework
from mcp_otel.integrity import verify_paths
from tests._otlp_sink import GrpcSink

PROCESSES, CLIENTS, CALLS = 2, 4, 12
#: The demo's generated secrets (see driver.run): none may appear in any file.
SECRET_PATTERNS = [re.compile(rb"pw-[0-9a-f]{24}"), re.compile(rb"sk-[0-9a-f]{32}"),
                   re.compile(rb"dsnpw[0-9a-f]{20}")]


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str],
                                                                 Path]:
    out = tmp_path_factory.mktemp("demo") / "data"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OTEL_EXPORTER_OTLP") and k != "MCP_OTEL_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "mcp_otel", "demo", "--processes", str(PROCESSES),
         "--clients", str(CLIENTS), "--calls", str(CALLS), "--out", str(out)],
        capture_output=True, text=True, timeout=240, env=env, check=False,
    )
    return result, out


def test_demo_exits_0_and_says_so(demo_run: tuple[subprocess.CompletedProcess[str], Path]
                                  ) -> None:
    result, _out = demo_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all counts agree" in result.stdout
    assert "Traceback" not in result.stderr
    # The default framework here (the main venv holds mcp 2.x and no fastmcp).
    version = importlib.metadata.version("mcp")
    assert result.stderr.startswith(f"mcp-otel demo on mcp2 (mcp {version}): ")
    assert re.search(r"servers instrumented by the adapter\s+mcp2\s+mcp2\s+yes", result.stdout)
    # Not a terminal here: plain progress lines, ending at 100%.
    total = PROCESSES * CLIENTS * CALLS
    assert f"{total}/{total} calls (100%)" in result.stderr
    assert "\r" not in result.stderr


def test_demo_files_agree_with_each_other(demo_run: tuple[subprocess.CompletedProcess[str],
                                                          Path]) -> None:
    result, out = demo_run
    assert result.returncode == 0, result.stdout + result.stderr
    total = PROCESSES * CLIENTS * CALLS

    audit = [r for p in sorted((out / "audit").glob("*.jsonl")) for r in _lines(p)]
    events = Counter(r["event"] for r in audit)
    assert events["tool_call"] == total
    assert events["tool_result"] + events["tool_error"] == total
    # Every call opened and closed exactly once, across both processes' chains.
    opened = [r["correlation_id"] for r in audit if r["event"] == "tool_call"]
    closed = [r["correlation_id"] for r in audit if r["event"] in ("tool_result", "tool_error")]
    assert len(set(opened)) == total and sorted(opened) == sorted(closed)
    assert len({r["session_id"] for r in audit}) == PROCESSES
    assert events["resource_access"] == PROCESSES * CLIENTS

    telemetry = [r for p in sorted((out / "telemetry").glob("mcp_telemetry_*.jsonl"))
                 for r in _lines(p)]
    calls = [r for r in telemetry if r.get("event") == "tool_call"]
    assert len(calls) == total
    assert sum(r["status"] == "error" for r in calls) == events["tool_error"]
    assert sum(1 for r in telemetry if r.get("event") == "server_start") == PROCESSES
    assert sum(1 for r in telemetry if r.get("event") == "server_stop") == PROCESSES

    spans = [r for p in sorted((out / "traces").glob("*.jsonl")) for r in _lines(p)]
    tool_spans = [s for s in spans
                  if s.get("mcp.method.name") == "tools/call" and s["kind"] == "SERVER"]
    assert len(tool_spans) == total
    assert {s["mcp_otel.correlation_id"] for s in tool_spans} == set(opened)
    assert sum(1 for s in tool_spans if "error.type" in s) == events["tool_error"]
    # Half the clients use the handshake era: one session span each.
    assert sum(1 for s in spans if s["name"] == "mcp.session") == PROCESSES * CLIENTS // 2

    # Each call's audit records sit in the trace of its server span.
    trace_of = {s["mcp_otel.correlation_id"]: s["trace_id"] for s in tool_spans}
    assert all(trace_of[r["correlation_id"]] == r["trace_id"]
               for r in audit if r["event"] == "tool_call")


def test_demo_audit_verifies_and_holds_no_secret(
        demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, out = demo_run
    assert result.returncode == 0, result.stdout + result.stderr
    report = verify_paths([out / "audit"], strict=True)
    assert report.ok, report.to_dict()["errors"]
    assert len(report.sessions) == PROCESSES
    cli = subprocess.run([sys.executable, "-m", "mcp_otel", "verify", "--strict",
                          str(out / "audit")], capture_output=True, text=True, timeout=60,
                         check=False)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    masked = 0
    for path in out.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(data), (path, pattern.pattern)
        masked += data.count(b"***MASKED***")
    assert masked > 0  # the secret-bearing tool was called and its arguments masked
    for path in (out / "audit").iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
    assert (out / "audit").stat().st_mode & 0o777 == 0o700


def test_stats_reads_the_demo_output(demo_run: tuple[subprocess.CompletedProcess[str], Path]
                                     ) -> None:
    result, out = demo_run
    assert result.returncode == 0, result.stdout + result.stderr
    stats = subprocess.run([sys.executable, "-m", "mcp_otel", "stats", str(out), "--json"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert stats.returncode == 0, stats.stderr
    report = orjson.loads(stats.stdout)
    assert report["total"]["calls"] == PROCESSES * CLIENTS * CALLS
    assert set(report["tools"]) <= {"discover_schema", "flaky_query", "slow_report",
                                    "connect_database"}
    slow = report["tools"].get("slow_report")
    if slow:
        assert slow["p50_ms"] >= 20  # the slow tool really sleeps 20-60 ms
    assert report["cache"]["lookups"] == report["tools"]["discover_schema"]["calls"]


def test_a_disagreeing_count_fails_its_check() -> None:
    tally = Tally(calls=3, errors=1, correlation_ids={"a", "b", "c"})
    figures = FileFigures()
    figures.audit_events.update({"tool_call": 3, "tool_result": 2, "tool_error": 0})
    checks = {c.name: c for c in build_checks(tally, figures, [], (True, "ok"), [])}
    assert checks["audit tool_call records"].ok
    assert not checks["audit result+error records"].ok
    assert not checks["audit tool_error records"].ok
    assert not checks["correlation ids (response _meta = audit)"].ok
    leaked = build_checks(tally, figures, [], (False, "1 error(s)"), ["/x"])
    assert not {c.name: c for c in leaked}["files containing a secret"].ok
    assert not {c.name: c for c in leaked}["audit verify"].ok
    assert isinstance(checks["audit verify"], Check)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_and_lines_otherwise() -> None:
    tty = _Tty()
    bar = Progress(40, tty)
    for _ in range(40):
        bar()
    bar.finish()
    text = tty.getvalue()
    assert text.startswith("\r  [") and text.endswith("40/40 calls\n")
    assert text.count("\r") == 40  # one redraw per percent step reached

    plain = io.StringIO()
    lines = Progress(40, plain)
    for _ in range(40):
        lines()
    assert "\r" not in plain.getvalue()
    assert plain.getvalue().splitlines()[-1] == "  40/40 calls (100%)"
    assert len(plain.getvalue().splitlines()) == 11  # first call, then every 10%


def test_demo_also_exports_over_otlp_when_an_endpoint_is_set(tmp_path: Path) -> None:
    """A real gRPC OTLP receiver on 127.0.0.1 (oteltest's servicers) gets every record."""
    sink = GrpcSink.start()
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("OTEL_") and k != "MCP_OTEL_DIR"}
        env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TIMEOUT": "5"})
        result = subprocess.run(
            [sys.executable, "-m", "mcp_otel", "demo", "--processes", "1", "--clients", "2",
             "--calls", "5", "--out", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=180, env=env, check=False)
    finally:
        sink.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "JSONL and OTLP" in result.stderr

    spans = sink.spans()
    tool_spans = [s for s in spans if s.name.startswith("tools/call ")
                  and s.kind == s.SPAN_KIND_SERVER]
    assert len(tool_spans) == 10
    names = Counter(rec.event_name for rec in sink.log_records())
    assert names["mcp.telemetry.tool_call"] == 10
    assert names["mcp.audit.tool_call"] == 10
    metric_names = {m.name
                    for req in sink.metric_requests()
                    for rm in req.resource_metrics for sm in rm.scope_metrics
                    for m in sm.metrics}
    assert {"mcp_otel.tool.calls", "mcp.server.operation.duration"} <= metric_names


def test_a_second_run_into_the_same_directory_counts_only_its_own_records(
        demo_run: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path) -> None:
    first, first_out = demo_run
    assert first.returncode == 0, first.stdout + first.stderr
    out = tmp_path / "data"
    shutil.copytree(first_out, out)  # the first run's files, left as they were
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OTEL_EXPORTER_OTLP") and k != "MCP_OTEL_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "mcp_otel", "demo", "--processes", "1", "--clients", "2",
         "--calls", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=180, env=env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all counts agree" in result.stdout
    audit = [r for p in (out / "audit").glob("*.jsonl") for r in _lines(p)]
    assert sum(r["event"] == "tool_call" for r in audit) == PROCESSES * CLIENTS * CALLS + 8
    assert verify_paths([out / "audit"], strict=True).ok


def test_demo_refuses_to_run_with_the_sdk_disabled(tmp_path: Path) -> None:
    env = {**os.environ, "OTEL_SDK_DISABLED": "true"}
    result = subprocess.run([sys.executable, "-m", "mcp_otel", "demo", "--out",
                             str(tmp_path / "d")], capture_output=True, text=True, timeout=60,
                            env=env, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("mcp-otel demo: error: OTEL_SDK_DISABLED")
    assert not (tmp_path / "d").exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_otel", "demo", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_demo_refuses_a_framework_that_is_not_installed(tmp_path: Path) -> None:
    version = importlib.metadata.version("mcp")
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("fastmcp")  # what this test is about: it is not here
    result = _cli("--framework", "fastmcp", "--out", str(tmp_path / "d"))
    assert result.returncode == 2
    assert result.stderr == ("mcp-otel demo: error: framework 'fastmcp' is not installed here "
                             f"(installed: mcp2 (mcp {version}))\n")
    unknown = _cli("--framework", "flask", "--out", str(tmp_path / "d"))
    assert unknown.returncode == 2
    assert unknown.stderr == ("mcp-otel demo: error: unknown framework 'flask': choose one of "
                              f"mcp2, mcp1, fastmcp (installed: mcp2 (mcp {version}))\n")
    assert not (tmp_path / "d").exists()


def test_responses_are_read_from_json_or_an_event_stream() -> None:
    answer = {"jsonrpc": "2.0", "id": 7, "result": {"content": []}}
    assert decode_response("application/json", orjson.dumps(answer), 7) == answer
    # An SSE stream: a notification first, CRLF line ends, the answer split over two data
    # lines (joined with a newline, which JSON reads as whitespace), a comment line.
    body = (b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/message",'
            b'"params":{}}\r\n\r\n: keep-alive\r\n\r\nevent: message\r\n'
            b'data: {"jsonrpc":"2.0","id":7,\r\ndata: "result":{"content":[]}}\r\n\r\n')
    assert decode_response("text/event-stream; charset=utf-8", body, 7) == answer
    with pytest.raises(RpcError, match="no answer to request 8"):
        decode_response("text/event-stream", body, 8)
    with pytest.raises(RpcError, match="not JSON"):
        decode_response("text/html", b"<html>bad gateway</html>", 7)


def _consistent(*, meta_on: set[str]) -> tuple[Tally, FileFigures]:
    """Three calls (c2 an error) as the clients and the files would see them, when only the
    responses of the calls in ``meta_on`` carried ``_meta``."""
    tally, figures = Tally(calls=3, errors=1), FileFigures()
    figures.audit_events.update({"tool_call": 3, "tool_result": 2, "tool_error": 1})
    for cid, event in (("c1", "tool_result"), ("c2", "tool_error"), ("c3", "tool_result")):
        figures.audit_cids_started.add(cid)
        figures.audit_cids_closed.append(cid)
        figures.audit_closing_event[cid] = event
        figures.audit_bytes_in[cid] = 10
        span = (f"trace-{cid}", f"span-{cid}")
        figures.span_cids[span] = cid
        figures.telemetry_bytes_by_span[span] = (10, 0 if event == "tool_error" else 50)
        if event == "tool_result":
            figures.audit_bytes_out[cid] = 50
        if cid in meta_on:
            tally.correlation_ids.add(cid)
            tally.meta_bytes[cid] = figures.telemetry_bytes_by_span[span]
        elif event == "tool_error":
            tally.missing_meta_errors += 1
        else:
            tally.missing_meta_results += 1
    tally.args_bytes = figures.telemetry_bytes_in = 30
    figures.telemetry_bytes_out = 100
    return tally, figures


def _meta_rows(framework: Framework, tally: Tally, figures: FileFigures) -> dict[str, bool]:
    names = ("correlation ids (response _meta = audit)",
             "responses without _meta (errors / results)", "audit bytes in / results' bytes out",
             "telemetry bytes in / bytes out")
    checks = {c.name: c.ok for c in build_checks(tally, figures, [], (True, "ok"), [],
                                                  framework)}
    return {name: checks[name] for name in names}


def test_responses_without_meta_are_accepted_only_where_the_framework_has_no_place_for_it(
) -> None:
    mcp2 = Framework("mcp2", "mcp", "2.3.0")
    fastmcp = Framework("fastmcp", "fastmcp", "3.4.11")
    fastmcp_old = Framework("fastmcp", "fastmcp", "2.9.0")
    every = {"c1", "c2", "c3"}
    assert all(_meta_rows(mcp2, *_consistent(meta_on=every)).values())
    # fastmcp: a tool that raises answers without _meta; every other row still agrees.
    assert all(_meta_rows(fastmcp, *_consistent(meta_on={"c1", "c3"})).values())
    # fastmcp 2.9 has no _meta on any response.
    assert all(_meta_rows(fastmcp_old, *_consistent(meta_on=set())).values())

    # The same gaps on a framework that annotates everything are a failure...
    rows = _meta_rows(mcp2, *_consistent(meta_on={"c1", "c3"}))
    assert not rows["responses without _meta (errors / results)"]
    # ... and so is a result without _meta on fastmcp 2.14+.
    rows = _meta_rows(fastmcp, *_consistent(meta_on={"c1"}))
    assert not rows["responses without _meta (errors / results)"]
    # A size the response reported that the telemetry event does not have is caught.
    tally, figures = _consistent(meta_on=every)
    tally.meta_bytes["c3"] = (10, 51)
    assert not _meta_rows(mcp2, tally, figures)["telemetry bytes in / bytes out"]
    assert not _meta_rows(mcp2, tally, figures)["audit bytes in / results' bytes out"]
    # An audit id no client saw, beyond the ones without _meta, is caught.
    tally, figures = _consistent(meta_on={"c1", "c3"})
    figures.audit_cids_started.add("c4")
    assert not _meta_rows(fastmcp, tally, figures)["correlation ids (response _meta = audit)"]
