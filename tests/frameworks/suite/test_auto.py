"""Zero-code instrumentation (``McpOtelInstrumentor``) on every framework line and server kind.

What ``opentelemetry-instrument`` does, in process: the instrumentor is instrumented, the
server is built exactly as a user of the line builds it (``_frameworks.make_server``), and
then it must be instrumented exactly once (the low-level server a high-level one builds
for itself gets nothing of its own), also when the program calls ``mcp_otel.instrument``
on it too (the explicit call takes over and the audit session goes on); and
``uninstrument()`` must put back every class attribute it replaced and un-instrument every
server instrumented through it. On fastmcp 3.x that includes the private
``fastmcp.server.telemetry.get_tracer``, which the fastmcp adapter wraps (counted) while a
server is instrumented.
"""

# No `from __future__ import annotations`: see test_smoke.py.
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mcp_otel
from mcp_otel._instrument import auto
from tests._stdio_tee import jsonrpc_messages, tee_command
from tests._support import require
from tests.frameworks.suite._frameworks import LINE, SERVER_KINDS, ToolSpec, connect, make_server

try:
    from mcp_otel.instrumentation import McpOtelInstrumentor
except ImportError:  # the environment lacks the zero-code extra
    McpOtelInstrumentor = None


async def _add(a: int, b: int) -> str:
    return str(a + b)


def _originals() -> dict[str, Any]:
    """Every attribute zero-code instrumentation may replace, by identity."""
    found: dict[str, Any] = {}
    for cls in auto.supported_classes():
        found[f"{cls.__module__}.{cls.__qualname__}.__init__"] = vars(cls).get("__init__")
    if LINE.family == "fastmcp3":
        import fastmcp.server.telemetry as telemetry

        found["fastmcp.server.telemetry.get_tracer"] = telemetry.get_tracer
    return found


def _audit_records(session_id: str) -> list[dict[str, Any]]:
    directory = Path(os.environ["MCP_OTEL_DIR"]) / "audit"
    records = [json.loads(line) for path in sorted(directory.glob("mcp_audit_*.jsonl"))
               for line in path.read_bytes().splitlines() if line.strip()]
    return [r for r in records if r.get("session_id") == session_id
            or str(r.get("correlation_id", "")).startswith(f"{session_id}_")]


@pytest.fixture
def instrumentor() -> Iterator[Any]:
    require(McpOtelInstrumentor is not None,
            "opentelemetry-instrumentation is not installed in this line's environment "
            "(scripts/framework-envs.sh installs the test extra, which has it)")
    before = _originals()
    inst = McpOtelInstrumentor()
    inst.instrument()
    try:
        yield inst
    finally:
        if inst.is_instrumented_by_opentelemetry:
            inst.uninstrument()
    assert _originals() == before


def test_the_line_has_classes_to_hook() -> None:
    names = {f"{c.__module__}.{c.__qualname__}" for c in auto.supported_classes()}
    expected = {
        "mcp1": {"mcp.server.lowlevel.server.Server", "mcp.server.fastmcp.server.FastMCP"},
        "mcp2": {"mcp.server.lowlevel.server.Server", "mcp.server.mcpserver.server.MCPServer"},
    }.get(LINE.family)
    if expected is None:  # fastmcp: its FastMCP, plus the mcp underneath it
        assert "fastmcp.server.server.FastMCP" in names
    else:
        assert names == expected


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_a_server_is_instrumented_once_when_created(instrumentor: Any, kind: str) -> None:
    before = _originals()
    server = make_server([ToolSpec("add", _add)], kind=kind)
    handle = instrumentor.instrumentation_of(server)
    assert handle is not None and handle.active
    # Only the object the user holds: not the low-level server it built for itself.
    assert instrumentor.instrumented_servers() == [server]
    with pytest.raises(ValueError, match="already instrumented"):
        # The adapter itself still refuses a second observer.
        import importlib

        adapter = importlib.import_module(f"mcp_otel._instrument.{handle.framework}")
        adapter.attach(handle, server, object())

    async with connect(server) as session:
        outcomes = [await session.call_tool("add", {"a": i, "b": 1}) for i in range(3)]
    assert [o.text for o in outcomes] == ["1", "2", "3"]
    assert handle.counts().tool_calls == 3
    assert instrumentor.instrumented_servers() == [server]  # serving built no other

    # The program instruments it explicitly too: that call takes over, one audit session.
    explicit = mcp_otel.instrument(server)
    assert not handle.active and explicit.active
    assert instrumentor.instrumentation_of(server) is None
    assert explicit.audit is handle.audit
    async with connect(server) as session:
        more = [await session.call_tool("add", {"a": 10, "b": i}) for i in range(2)]
    assert [o.text for o in more] == ["10", "11"]
    assert handle.counts().tool_calls == 3 and explicit.counts().tool_calls == 2
    session_id = explicit.audit.session_id
    explicit.uninstrument()  # shuts the audit logger down: its session-end record

    records = _audit_records(session_id)
    events = [r["event"] for r in records]
    assert events.count("tool_call") == 5 and events.count("tool_result") == 5
    assert events.count("session_end") == 1
    # The explicit handle gave back what it took (fastmcp 3.x: get_tracer), and the
    # instrumentor still holds its class hooks only.
    assert {k: v for k, v in _originals().items() if not k.endswith("__init__")} == {
        k: v for k, v in before.items() if not k.endswith("__init__")}


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_uninstrument_restores_classes_and_servers(instrumentor: Any, kind: str) -> None:
    servers = [make_server([ToolSpec("add", _add)], kind=kind) for _ in range(2)]
    handles = [instrumentor.instrumentation_of(s) for s in servers]
    assert all(h is not None and h.active for h in handles)
    assert len({id(h) for h in handles}) == 2
    patched = auto.current().patched_classes()
    assert patched and all(getattr(vars(c)["__init__"], "_mcp_otel_auto", False)
                           for c in patched)

    instrumentor.uninstrument()
    assert not any(h.active for h in handles)
    assert instrumentor.instrumented_servers() == []
    assert not any(getattr(vars(c).get("__init__"), "_mcp_otel_auto", False) for c in patched)
    # A server built now is not instrumented, and the ones built before serve unobserved.
    later = make_server([ToolSpec("add", _add)], kind=kind)
    assert instrumentor.instrumentation_of(later) is None
    async with connect(servers[0]) as session:
        assert (await session.call_tool("add", {"a": 2, "b": 2})).text == "4"
    assert handles[0].counts().tool_calls == 0
    # Nothing is left hooked: each server can be instrumented explicitly again.
    for server in (*servers, later):
        mcp_otel.instrument(server).uninstrument()


# ---- the real command, in this line's environment -------------------------------------

#: An unmodified stdio server in each family's own style (nothing imports mcp-otel).
_SCRIPTS = {
    "mcp1": """
        import anyio
        import mcp.types as types
        from mcp.server.lowlevel import Server
        from mcp.server.stdio import stdio_server

        server = Server("zero-code")

        @server.list_tools()
        async def list_tools():
            return [types.Tool(name="add", description="add", inputSchema={
                "type": "object", "properties": {"a": {"type": "integer"},
                                                 "b": {"type": "integer"}}})]

        @server.call_tool()
        async def call_tool(name, arguments):
            return [types.TextContent(type="text", text=str(arguments["a"] + arguments["b"]))]

        async def main():
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(main)
    """,
    "mcp2": """
        from mcp.server.mcpserver import MCPServer

        server = MCPServer("zero-code")

        @server.tool()
        def add(a: int, b: int) -> str:
            return str(a + b)

        server.run()
    """,
    "fastmcp": """
        from fastmcp import FastMCP

        server = FastMCP("zero-code")

        @server.tool()
        def add(a: int, b: int) -> str:
            return str(a + b)

        server.run()
    """,
}


def _entry_point_registered() -> bool:
    return any(ep.name == "mcp_otel"
               for ep in importlib.metadata.entry_points(group="opentelemetry_instrumentor"))


async def test_unmodified_stdio_server_under_opentelemetry_instrument(tmp_path: Path) -> None:
    """``opentelemetry-instrument python server.py`` with this line's framework: every call
    audited once, the trail verifies strictly."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    command = Path(sys.executable).with_name("opentelemetry-instrument")
    require(command.exists() and _entry_point_registered(),
            "opentelemetry-instrument or mcp-otel's opentelemetry_instrumentor entry point "
            "is missing from this environment: rebuild it (scripts/framework-envs.sh)")
    family = "fastmcp" if LINE.family.startswith("fastmcp") else LINE.family
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent(_SCRIPTS[family]))
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MCP_OTEL_"))}
    if env.get("PYTHONPATH"):  # the child runs in tmp_path: relative entries would miss
        env["PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    env.update(MCP_OTEL_DIR=str(data), OTEL_TRACES_EXPORTER="none",
               OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    stdout_log = tmp_path / "stdout"  # a byte-for-byte copy of what the server wrote there
    tee, args = tee_command(stdout_log, str(command), sys.executable, str(script))
    params = StdioServerParameters(command=tee, args=args, env=env, cwd=str(tmp_path))
    texts = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        for i in range(4):
            result = await client.call_tool("add", {"a": i, "b": 1})
            texts.append(result.content[0].text)
    assert texts == ["1", "2", "3", "4"]
    responses = [m for m in jsonrpc_messages(stdout_log) if "id" in m]
    assert len(responses) >= 5  # initialize and the four calls, and nothing but JSON-RPC

    verify = subprocess.run([sys.executable, "-m", "mcp_otel", "verify", "--strict",
                             str(data / "audit")], capture_output=True, text=True,
                            timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    records = [json.loads(line) for path in sorted((data / "audit").glob("*.jsonl"))
               for line in path.read_bytes().splitlines() if line.strip()]
    assert [r["event"] for r in records] == ["tool_call", "tool_result"] * 4 + ["session_end"]
