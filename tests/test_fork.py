"""mcp-otel's at-fork hooks live in one module and run in a fixed order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def test_no_module_but_fork_registers_at_fork_hooks() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "_fork.py" and "register_at_fork(" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []


_CHILD_ORDER = r"""
import os, sys
from mcp_otel import _fork

seen = []
_fork.register(_fork.COMPONENTS, after_in_child=lambda: seen.append("components"))
_fork.register(_fork.FILES, before=lambda: seen.append("before-files"),
               after_in_child=lambda: seen.append("files"))
_fork.register(_fork.PIPELINE, before=lambda: seen.append("before-pipeline"),
               after_in_child=lambda: 1 / 0)
_fork.register(_fork.EXPORTERS, after_in_child=lambda: seen.append(("pid", _fork.pid())))
parent = _fork.pid()
child = os.fork()
if child == 0:
    ok = seen[:2] == ["before-pipeline", "before-files"] and seen[2:] == [
        "files", ("pid", os.getpid()), "components"] and _fork.pid() != parent
    os._exit(0 if ok else 1)
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_hooks_run_by_stage_and_one_failure_does_not_stop_the_others() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _CHILD_ORDER], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    assert run.returncode == 0, run.stderr
    assert "at-fork hook after_in_child failed: ZeroDivisionError" in run.stderr
    assert run.stdout == ""
