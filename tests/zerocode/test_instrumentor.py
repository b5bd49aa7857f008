"""``McpOtelInstrumentor`` in process (mcp 2.x, the dev environment's framework).

Every line's own checks are in ``tests/frameworks/suite/test_auto.py``; here is what does
not depend on the line: how the instrumentor is found and loaded, what it leaves alone,
and that a server it cannot instrument is still built and served.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._support import require, require_module

require_module("opentelemetry.instrumentation.instrumentor",
               "the zero-code extra (opentelemetry-instrumentation) is not installed")
mcpserver = require_module("mcp.server.mcpserver", "these tests need mcp 2.x")

import mcp_otel  # noqa: E402
from mcp_otel._instrument import auto  # noqa: E402
from mcp_otel.instrumentation import McpOtelInstrumentor  # noqa: E402


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_OTEL_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MCP_OTEL_HANDLE_SIGNALS", "false")


@pytest.fixture
def instrumentor() -> Iterator[McpOtelInstrumentor]:
    inits = {cls: vars(cls).get("__init__") for cls in auto.supported_classes()}
    inst = McpOtelInstrumentor()
    inst.instrument()
    try:
        yield inst
    finally:
        if inst.is_instrumented_by_opentelemetry:
            inst.uninstrument()
    assert {cls: vars(cls).get("__init__") for cls in inits} == inits


def test_import_mcp_otel_does_not_load_the_instrumentation_package() -> None:
    code = ("import sys, mcp_otel; mcp_otel.instrument; "
            "print('opentelemetry.instrumentation' in sys.modules, "
            "mcp_otel.McpOtelInstrumentor.__module__, "
            "'opentelemetry.instrumentation' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["False", "mcp_otel.instrumentation", "True"]


def test_frameworks_are_hooked_when_the_program_imports_them() -> None:
    """The launcher instruments before the program runs: it must not import mcp itself
    (seconds of start-up for a program that never builds a server)."""
    code = """if True:
        import sys
        from mcp_otel.instrumentation import McpOtelInstrumentor
        McpOtelInstrumentor().instrument()
        print(any(m == "mcp" or m.startswith(("mcp.", "fastmcp")) for m in sys.modules))
        from mcp.server.mcpserver import MCPServer
        server = MCPServer("late")
        handle = McpOtelInstrumentor().instrumentation_of(server)
        print(handle is not None and handle.framework)
        McpOtelInstrumentor().uninstrument()
        print(handle.active, getattr(MCPServer.__init__, "_mcp_otel_auto", False))
    """
    env = {**os.environ, "MCP_OTEL_DIR": os.environ["MCP_OTEL_DIR"],
           "MCP_OTEL_HANDLE_SIGNALS": "false"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "mcp2", "False", "False"]


def test_it_names_no_framework_so_no_dependency_check_refuses_it() -> None:
    from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts

    assert list(McpOtelInstrumentor().instrumentation_dependencies()) == []
    points = [ep for ep in importlib.metadata.entry_points(group="opentelemetry_instrumentor")
              if ep.name == "mcp_otel"]
    require(points, "mcp-otel's entry points are not registered: pip install -e '.[dev]'")
    (point,) = points
    assert point.load() is McpOtelInstrumentor
    assert get_dist_dependency_conflicts(point.dist) is None


def test_a_second_instrument_call_changes_nothing(instrumentor: McpOtelInstrumentor) -> None:
    patched = auto.current().patched_classes()
    McpOtelInstrumentor().instrument()  # the same singleton: a warning, no second hook
    assert auto.current().patched_classes() == patched
    server = mcpserver.MCPServer("once")
    assert instrumentor.instrumented_servers() == [server]
    assert len([m for m in server._lowlevel_server.middleware
                if type(m).__module__ == "mcp_otel._instrument.mcp2"]) == 1


def test_a_subclass_is_instrumented_once_after_its_own_constructor(
        instrumentor: McpOtelInstrumentor) -> None:
    seen: list[Any] = []

    class Mine(mcpserver.MCPServer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__("mine")
            seen.append(instrumentor.instrumentation_of(self))

    server = Mine()
    # Instrumented when MCPServer's constructor returned, once, as the subclass object.
    assert seen[0] is not None and seen[0].server is server
    assert instrumentor.instrumented_servers() == [server]


def test_servers_built_in_threads_each_get_one_handle(
        instrumentor: McpOtelInstrumentor) -> None:
    built: list[Any] = []
    lock = threading.Lock()

    def build() -> None:
        for _ in range(5):
            server = mcpserver.MCPServer("threaded")
            with lock:
                built.append(server)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 20
    assert sorted(map(id, instrumentor.instrumented_servers())) == sorted(map(id, built))
    handles = [instrumentor.instrumentation_of(s) for s in built]
    assert all(h is not None and h.active for h in handles)
    instrumentor.uninstrument()
    assert not any(h.active for h in handles)


def test_a_server_that_cannot_be_instrumented_is_still_built(
        instrumentor: McpOtelInstrumentor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("MCP_OTEL_DIR", str(blocker))  # the audit directory cannot exist
    with caplog.at_level(logging.WARNING, logger="mcp_otel.instrument"):
        server = mcpserver.MCPServer("unhooked")
    assert instrumentor.instrumentation_of(server) is None
    assert any("runs without mcp-otel" in r.getMessage() for r in caplog.records)
    assert server.name == "unhooked"


def test_the_explicit_call_takes_over_with_its_own_sinks(
        instrumentor: McpOtelInstrumentor, tmp_path: Path) -> None:
    server = mcpserver.MCPServer("explicit")
    automatic = instrumentor.instrumentation_of(server)
    mine = mcp_otel.AuditLogger(tmp_path / "mine")
    try:
        explicit = mcp_otel.instrument(server, audit=mine, telemetry=False)
        assert explicit.audit is mine and not automatic.active
        # The automatic handle's own AuditLogger was shut down with it: its session ended.
        assert automatic.audit is not mine and automatic.owns_audit
        explicit.uninstrument()
        assert instrumentor.instrumented_servers() == []
    finally:
        mine.shutdown()
