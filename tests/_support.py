"""Helpers shared by the test suite."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: object, reason: str) -> None:
    """Skip locally when a real peer is missing; fail under ``CI=true``, where it must exist."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI but missing: {reason}")
    pytest.skip(reason)


def require_module(name: str, reason: str) -> Any:
    """Import ``name`` for a whole test module, or skip the module (fail in CI) with a
    clear reason when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if IN_CI:
            pytest.fail(f"required in CI but missing: {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def require_program(name: str) -> str:
    """Path of an installed program, or skip (fail in CI) with a clear reason."""
    path = shutil.which(name)
    require(path, f"program {name!r} is not installed")
    assert path is not None
    return path


def assert_absent_from_files(directory: Path, secret: str) -> None:
    """``secret`` is in no file under ``directory``, which holds an audit file (so the scan
    cannot pass by finding nothing)."""
    files = [path for path in directory.rglob("*") if path.is_file()]
    assert any(path.name.startswith("mcp_audit_") for path in files), files
    for path in files:
        assert secret.encode() not in path.read_bytes(), path


# --------------------------------------------------------------------------- real peers


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (for peers that need fixed ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], what: str, deadline_s: float = 30.0, step_s: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline.

    Used only for external processes, whose readiness we cannot be notified of.
    """
    end = time.monotonic() + deadline_s
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s:.0f}s waiting for {what}")
        pause.wait(step_s)  # a bounded back-off between polls of another process, not sync


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 15.0) -> None:
    """SIGTERM by PID, then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
