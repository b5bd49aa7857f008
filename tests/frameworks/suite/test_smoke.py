"""The environment is the line it claims to be, and its framework serves a tool in memory.

These come first in every line's run: when they fail, the instrumentation tests beside them
would fail for reasons that have nothing to do with mcp-otel.
"""

# No `from __future__ import annotations` here: mcp 1.10's FastMCP calls issubclass() on
# each tool parameter's annotation, which fails on a string.
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.frameworks._lines import REPO
from tests.frameworks.suite._frameworks import (
    LINE,
    SERVER_KINDS,
    ResourceSpec,
    ToolSpec,
    call_tool,
    connect,
    installed_version,
    make_server,
    read_resource,
)

#: The major version of (framework, mcp underneath) each family means.
_MAJORS = {
    "mcp1": ("1", "1"),
    "mcp2": ("2", "2"),
    "fastmcp2": ("2", "1"),
    "fastmcp3": ("3", "1"),
    "fastmcp4": ("4", "2"),
}

_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_installed_framework_is_the_lines_release() -> None:
    assert installed_version(LINE.package) == LINE.version
    framework_major, mcp_major = _MAJORS[LINE.family]
    assert LINE.version.split(".")[0] == framework_major
    assert installed_version("mcp").split(".")[0] == mcp_major
    for constraint in LINE.constraints:  # every extra pin holds, whatever its operator
        requirement = Requirement(constraint)
        version = installed_version(requirement.name)
        assert requirement.specifier.contains(version, prereleases=True), (constraint, version)


def test_mcp_otel_is_this_checkouts_source() -> None:
    import mcp_otel

    assert Path(mcp_otel.__file__).resolve().is_relative_to(REPO / "src")


def test_mcp_otel_core_imports_without_loading_a_framework() -> None:
    """The core path never imports mcp or fastmcp: a fresh interpreter proves it."""
    script = (
        "import sys\n"
        "import mcp_otel, mcp_otel.audit, mcp_otel.telemetry, mcp_otel.cache,"
        " mcp_otel.exporters, mcp_otel.integrity, mcp_otel.redaction\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in {'mcp', 'fastmcp'})\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


async def _add(a: int, b: int) -> str:
    return str(a + b)


def _fail(reason: str) -> str:
    raise ValueError(f"refused: {reason}")


def _greeting() -> str:
    return "hello from the resource"


def _server(kind: str) -> object:
    return make_server(
        [ToolSpec("add", _add, "adds two integers"), ToolSpec("fail", _fail, "always raises")],
        [ResourceSpec("mem://greeting", _greeting, "greeting")],
        kind=kind,
    )


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_tool_result_through_the_frameworks_own_client(kind: str) -> None:
    outcome = await call_tool(_server(kind), "add", {"a": 2, "b": 3})
    assert (outcome.is_error, outcome.protocol_error, outcome.text) == (False, False, "5")


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_raising_tool_is_an_error(kind: str) -> None:
    outcome = await call_tool(_server(kind), "fail", {"reason": "smoke"})
    assert outcome.is_error
    # mcp 2.x's low-level server answers a raising handler with a JSON-RPC error; the others
    # with an error result (whose text MCPServer 2.3 keeps generic: the crash stays server-side).
    assert outcome.protocol_error == ((LINE.family, kind) == ("mcp2", "lowlevel"))
    assert outcome.text


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_resource_read_and_several_calls_on_one_connection(kind: str) -> None:
    server = _server(kind)
    assert await read_resource(server, "mem://greeting") == "hello from the resource"
    async with connect(server) as session:
        texts = [(await session.call_tool("add", {"a": i, "b": i})).text for i in range(5)]
        with_meta = await session.call_tool("add", {"a": 1, "b": 1},
                                            meta={"traceparent": _TRACEPARENT})
    assert texts == ["0", "2", "4", "6", "8"]
    assert (with_meta.is_error, with_meta.text) == (False, "2")
