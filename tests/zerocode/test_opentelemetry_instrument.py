"""Zero-code instrumentation: an unmodified MCP server run by ``opentelemetry-instrument``.

The server script (written to ``tmp_path``) imports only the ``mcp`` SDK; the real
``opentelemetry-instrument`` command (opentelemetry-instrumentation, with
opentelemetry-distro's SDK configuration) finds ``McpOtelInstrumentor`` through its
``opentelemetry_instrumentor`` entry point. A real client drives it over stdio and over
streamable HTTP; the process is stopped the way each transport stops (stdin closed,
SIGTERM); then the audit trail must verify strictly (``mcp-otel verify --strict``) and hold
exactly the records of what the client did, once each.

The OTel exporters are mcp-otel's ``jsonl`` ones (nothing reaches for a network collector):
the application's SDK providers then belong to the distro, and mcp-otel uses them as they
are (docs/architecture.md, "Data directory").
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests._stdio_tee import jsonrpc_messages, tee_command
from tests._support import free_port, require, wait_until

SERVER = textwrap.dedent('''
    """A plain MCP server: nothing here knows about mcp-otel or OpenTelemetry."""
    import sys

    from mcp.server.mcpserver import MCPServer

    server = MCPServer("zero-code")


    @server.tool()
    def add(a: int, b: int) -> int:
        return a + b


    @server.tool()
    def fail(reason: str) -> str:
        raise ValueError(f"refused: {reason}")


    @server.resource("mem://catalog")
    def catalog() -> str:
        return "catalog"


    if __name__ == "__main__":
        if sys.argv[1:2] == ["http"]:
            server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
        else:
            server.run()
''')

#: The same server, with the explicit call a user may already have in it.
EXPLICIT = SERVER.replace('''if __name__ == "__main__":''', '''import mcp_otel

mcp_otel.instrument(server)

if __name__ == "__main__":''')

CALLS = 5


def _entry_point_registered() -> bool:
    return any(ep.name == "mcp_otel" and ep.value.startswith("mcp_otel.instrumentation:")
               for ep in importlib.metadata.entry_points(group="opentelemetry_instrumentor"))


@pytest.fixture(scope="module")
def otel_instrument() -> str:
    path = Path(sys.executable).with_name("opentelemetry-instrument")
    require(path.exists(), "opentelemetry-instrument (opentelemetry-instrumentation) is not "
                           "installed: pip install -e '.[dev]'")
    require(_entry_point_registered(),
            "mcp-otel's opentelemetry_instrumentor entry point is not registered in this "
            "environment: reinstall it (pip install -e '.[dev]')")
    try:
        major = int(importlib.metadata.version("mcp").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        major = 0
    require(major == 2, "these scripts are written for mcp 2.x (the dev environment's)")
    return str(path)


def _env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MCP_OTEL_"))}
    env.update({
        "MCP_OTEL_DIR": str(data),
        "OTEL_SERVICE_NAME": "zero-code-test",
        "OTEL_TRACES_EXPORTER": "jsonl",
        "OTEL_METRICS_EXPORTER": "jsonl",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        **extra,
    })
    return env


async def _drive(client: Any) -> None:
    """What the client does, the same on every transport."""
    for i in range(CALLS):
        result = await client.call_tool("add", {"a": i, "b": 1})
        assert not result.is_error and result.structured_content == {"result": i + 1}
        assert isinstance((result.meta or {}).get("correlation_id"), str)
    failed = await client.call_tool("fail", {"reason": "nope"})
    assert failed.is_error
    read = await client.read_resource("mem://catalog")
    assert read.contents[0].text == "catalog"


def _records(data: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted((data / "audit").glob("mcp_audit_*.jsonl"))
            for line in path.read_bytes().splitlines() if line.strip()]


def _spans(data: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted((data / "traces").glob("*.jsonl"))
            for line in path.read_bytes().splitlines() if line.strip()]


def _check_trail(data: Path) -> None:
    verify = subprocess.run(
        [sys.executable, "-m", "mcp_otel", "verify", "--strict", str(data / "audit")],
        capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("MCP_OTEL_")})
    assert verify.returncode == 0, verify.stdout + verify.stderr

    records = _records(data)
    events = [r["event"] for r in records]
    assert events.count("tool_call") == CALLS + 1
    assert events.count("tool_result") == CALLS
    assert events.count("tool_error") == 1
    assert events.count("resource_access") == 1
    assert events.count("session_end") == 1  # one server, one audit session
    assert {r["session_id"] for r in records if "session_id" in r} == {
        records[-1]["session_id"]}
    calls = [r for r in records if r["event"] == "tool_call"]
    assert [r["tool"] for r in calls] == ["add"] * CALLS + ["fail"]
    closed = {r["correlation_id"] for r in records if r["event"] in ("tool_result", "tool_error")}
    assert closed == {r["correlation_id"] for r in calls}

    # Spans went to the application's (the distro's) provider, one SERVER span per call;
    # mcp-otel added no span file of its own to that provider.
    day = f"{datetime.now(UTC):%Y%m%d}"
    assert not list((data / "traces").glob("mcp_spans_*.jsonl"))
    tool_spans = [s for s in _spans(data) if s.get("kind") in ("SERVER", "SpanKind.SERVER")
                  and s.get("attributes", s).get("mcp.method.name") == "tools/call"]
    assert len(tool_spans) == CALLS + 1, f"traces_{day}: {len(_spans(data))} spans"


def _run_stdio(otel_instrument: str, script: Path, data: Path) -> None:
    import anyio
    from mcp import Client, StdioServerParameters

    stdout_log = script.with_suffix(".stdout")  # what the server wrote there, byte for byte
    tee, args = tee_command(stdout_log, otel_instrument, sys.executable, str(script))
    params = StdioServerParameters(command=tee, args=args, env=_env(data),
                                   cwd=str(script.parent))

    async def main() -> None:
        async with Client(params) as client:
            await _drive(client)

    anyio.run(main)
    responses = [m for m in jsonrpc_messages(stdout_log) if "id" in m]
    assert len(responses) > CALLS  # every call answered, and nothing but JSON-RPC there


@pytest.mark.parametrize("source", [SERVER, EXPLICIT], ids=["unmodified", "explicit-instrument"])
def test_stdio_server_under_opentelemetry_instrument(otel_instrument: str, tmp_path: Path,
                                                     source: str) -> None:
    script = tmp_path / "server.py"
    script.write_text(source)
    data = tmp_path / "data"
    _run_stdio(otel_instrument, script, data)
    # The client waits for the server process to exit when it closes.
    _check_trail(data)


@contextlib.contextmanager
def _http_server(otel_instrument: str, script: Path, data: Path) -> Iterator[str]:
    """The server over streamable HTTP under ``opentelemetry-instrument``; stopped with
    SIGTERM (what a process manager sends) when the block ends."""
    port = free_port()
    log_path = script.with_suffix(".log")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [otel_instrument, sys.executable, str(script), "http", str(port)],
            env=_env(data), cwd=script.parent, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT)
        try:
            def accepting() -> bool:
                assert proc.poll() is None, log_path.read_text()
                with socket.socket() as s:
                    return s.connect_ex(("127.0.0.1", port)) == 0

            wait_until(accepting, "the HTTP server to listen", deadline_s=60)
            yield f"http://127.0.0.1:{port}/mcp"
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            assert code in (0, -signal.SIGTERM), f"exit {code}: {log_path.read_text()}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_http_server_under_opentelemetry_instrument(otel_instrument: str,
                                                    tmp_path: Path) -> None:
    import anyio
    from mcp import Client

    script = tmp_path / "server.py"
    script.write_text(SERVER)
    data = tmp_path / "data"

    with _http_server(otel_instrument, script, data) as url:
        async def main() -> None:
            async with Client(url) as client:
                await _drive(client)

        anyio.run(main)
    _check_trail(data)
