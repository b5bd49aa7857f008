"""``mcp-otel demo --framework NAME`` on this line's framework: every count agrees.

The demo is a real run (server processes on the line's framework behind uvicorn, the
framework-neutral HTTP clients, the cross-check of every file), kept small. On a line whose
framework cannot serve streamable HTTP (mcp 1.2.1) the demo must refuse with a clear error
instead.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import mcp_otel
from mcp_otel._demo.frameworks import installed, resolve
from tests.frameworks.suite._frameworks import LINE

#: The demo's framework name for each family, and what else the family installs.
_DEMO_NAME = {"mcp1": "mcp1", "mcp2": "mcp2", "fastmcp2": "fastmcp", "fastmcp3": "fastmcp",
              "fastmcp4": "fastmcp"}
_INSTALLED = {"mcp1": ["mcp1"], "mcp2": ["mcp2"], "fastmcp2": ["mcp1", "fastmcp"],
              "fastmcp3": ["mcp1", "fastmcp"], "fastmcp4": ["mcp2", "fastmcp"]}
NAME = _DEMO_NAME[LINE.family]
#: mcp 1.x before 1.8 has no streamable HTTP server.
STREAMABLE = not (LINE.family == "mcp1"
                  and tuple(int(p) for p in LINE.version.split(".")[:2]) < (1, 8))
#: 2 clients x 6 calls; seed 4 makes 2 of the calls fail (the error path, and on fastmcp
#: the responses without _meta) and calls all four tools.
ARGS = ["--processes", "1", "--clients", "2", "--calls", "6", "--seed", "4"]


def _demo(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OTEL_EXPORTER_OTLP") and k != "MCP_OTEL_DIR"}
    # The same mcp_otel as this test imported, whatever the environment's install points at.
    source = str(Path(mcp_otel.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "mcp_otel", "demo", *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def test_the_demo_knows_what_this_line_installs() -> None:
    found = installed()
    assert list(found) == _INSTALLED[LINE.family]
    assert found[NAME].version == LINE.version
    if STREAMABLE:
        assert resolve(NAME).name == NAME
        assert resolve(None).name == _INSTALLED[LINE.family][0]


def test_demo_on_this_lines_framework_agrees(tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = _demo(out, "--framework", NAME, *ARGS)
    if not STREAMABLE:
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.strip() == (
            f"mcp-otel demo: error: framework 'mcp1' cannot run the demo: mcp {LINE.version} "
            f"has no streamable HTTP server: it came in mcp 1.8 (installed: mcp1 (mcp "
            f"{LINE.version}))")
        assert not out.exists()
        return
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "all counts agree" in result.stdout
    assert f"mcp-otel demo on {NAME} ({LINE.package} {LINE.version}):" in result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(rf"servers instrumented by the adapter\s+{NAME}\s+{NAME}\s+yes",
                     result.stdout), report
    assert re.search(r"^tool calls\s+12$", result.stdout, re.MULTILINE), report
    assert re.search(r"^errors\s+2 \(", result.stdout, re.MULTILINE), report


def test_demo_refuses_a_framework_this_line_lacks(tmp_path: Path) -> None:
    missing = next(n for n in ("mcp2", "mcp1", "fastmcp") if n not in _INSTALLED[LINE.family])
    result = _demo(tmp_path / "data", "--framework", missing)
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr.strip()
    assert message.startswith(f"mcp-otel demo: error: framework '{missing}' is not installed "
                              f"here (installed: ")
    for name in _INSTALLED[LINE.family]:
        assert f"{name} (" in message
    assert not (tmp_path / "data").exists()
