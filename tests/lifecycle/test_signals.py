"""SIGTERM / SIGINT to an instrumented process leave a complete trail, in bounded time.

Each case is a real subprocess: the README example (an instrumented ``MCPServer`` over
streamable HTTP, served by uvicorn), a bare ``AuditLogger(wait="queued")`` process, and
the same server exporting to an OTLP endpoint where nothing listens.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from mcp_otel.integrity import verify_paths
from tests._support import free_port, require, stop_process, wait_until

README_SERVER = textwrap.dedent("""
    import sys
    from mcp.server.mcpserver import MCPServer
    import mcp_otel

    server = MCPServer("sales-tools")

    @server.tool()
    async def discover(connection: str, component: str) -> dict:
        return {"connection": connection, "component": component}

    handle = mcp_otel.instrument(server)
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
""")

BARE_AUDIT = textwrap.dedent("""
    import asyncio, sys
    from mcp_otel import AuditLogger

    async def main() -> None:
        audit = AuditLogger(sys.argv[1], wait="queued")
        for i in range(int(sys.argv[2])):
            await audit.log_tool_call(tool="t", arguments={"i": i})
        print("logged", flush=True)  # acknowledged: every call above returned
        await asyncio.Event().wait()  # until a signal ends us

    asyncio.run(main())
""")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MCP_OTEL_"))}
    env.update({"MCP_OTEL_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _start_server(tmp_path: Path, **extra: str) -> tuple[subprocess.Popen[bytes], int]:
    require(importlib.util.find_spec("mcp.server.mcpserver"),
            "the README example needs mcp 2.x (mcp.server.mcpserver)")
    script = tmp_path / "server.py"
    script.write_text(README_SERVER)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), str(port)], cwd=tmp_path,
                            env=_env(tmp_path, **extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    wait_until(lambda: proc.poll() is not None or _listening(port), "the server's port")
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    return proc, port


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _call(port: int, calls: int) -> None:
    from mcp import Client

    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        for i in range(calls):
            result = await client.call_tool("discover", {"connection": f"c{i}",
                                                         "component": "x"})
            assert not result.is_error


def _lines(directory: Path, pattern: str) -> list[dict]:
    return [orjson.loads(line) for path in sorted(directory.glob(pattern))
            for line in path.read_bytes().splitlines() if line.strip()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_readme_example_leaves_a_complete_trail_after_a_signal(tmp_path: Path,
                                                               signum: int) -> None:
    proc, port = _start_server(tmp_path)
    try:
        asyncio.run(_call(port, 5))
        os.kill(proc.pid, signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        stop_process(proc)
    assert proc.returncode in (-signum, 128 + signum, 0), stderr.decode()
    data = tmp_path / "data"
    report = verify_paths([data / "audit"], strict=True)
    assert report.ok, report
    audit = _lines(data / "audit", "*.jsonl")
    assert [r["event"] for r in audit].count("tool_call") == 5
    assert [r["event"] for r in audit].count("tool_result") == 5
    assert audit[-1]["event"] == "session_end"
    spans = _lines(data / "traces", "*.jsonl")
    assert sum(1 for s in spans if s.get("name") == "tools/call discover") == 5
    # The data directory's one metrics file (metrics/), the emitter's counters included.
    points = _lines(data / "metrics", "*.jsonl")
    assert points, "no metric snapshot was written"
    calls = [p["value"] for p in points if p.get("metric") == "mcp_otel.tool.calls"]
    assert calls and calls[-1] == 5, calls
    assert not list(data.glob("telemetry/mcp_metrics_*")), "a second metrics file"


def test_bare_queued_audit_logger_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    script = tmp_path / "bare.py"
    script.write_text(BARE_AUDIT)
    audit_dir = tmp_path / "audit"
    proc = subprocess.Popen([sys.executable, str(script), str(audit_dir), "2000"],
                            cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"logged\n"
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        stop_process(proc)
    assert proc.returncode == -signal.SIGTERM, stderr.decode()
    records = _lines(audit_dir, "*.jsonl")
    end = records[-1]
    assert end["event"] == "session_end"
    written = sum(1 for r in records if r["event"] == "tool_call")
    assert written + end["lost"] == 2000 and end["lost"] == 0
    assert verify_paths([audit_dir], strict=True).ok


def test_unreachable_collector_bounds_the_shutdown(tmp_path: Path) -> None:
    """Nothing listens on the OTLP port: the exit still comes within the configured
    deadline plus start-up slack, and the local files are complete."""
    dead = free_port()
    proc, port = _start_server(
        tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{dead}",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf", MCP_OTEL_SHUTDOWN_TIMEOUT="2")
    try:
        asyncio.run(_call(port, 3))
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        stop_process(proc)
    # 44 s before this change; the bound is the 2 s deadline, twice, plus exit work.
    assert took < 15, (took, stderr.decode()[-2000:])
    report = verify_paths([tmp_path / "data" / "audit"], strict=True)
    assert report.ok, report
    spans = _lines(tmp_path / "data" / "traces", "*.jsonl")
    assert sum(1 for s in spans if s.get("name") == "tools/call discover") == 3


def test_opt_out_leaves_the_default_action(tmp_path: Path) -> None:
    """MCP_OTEL_HANDLE_SIGNALS=false: the process dies by SIGTERM as before, untouched."""
    code = ("import signal; from mcp_otel import AuditLogger; "
            "import sys; AuditLogger(sys.argv[1]); "
            "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a")], cwd=tmp_path,
                         env=_env(tmp_path, MCP_OTEL_HANDLE_SIGNALS="false"),
                         capture_output=True, check=True)
    assert out.stdout.strip() == b"True"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b")], cwd=tmp_path,
                         env=_env(tmp_path), capture_output=True, check=True)
    assert out.stdout.strip() == b"False"
