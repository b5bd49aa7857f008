"""Shared checks for the exporter tests."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

WRITER = str(Path(__file__).with_name("_writer.py"))


def read_lines(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every line of every file, parsed; fails on a torn or unterminated line."""
    out: list[dict[str, Any]] = []
    for path in sorted(paths):
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        if not raw:
            continue
        assert raw.endswith(b"\n"), f"{path}: last line not terminated"
        for n, line in enumerate(raw.split(b"\n")[:-1], 1):
            try:
                out.append(json.loads(line))
            except ValueError as exc:  # pragma: no cover - the failure we test for
                raise AssertionError(f"{path}:{n}: torn line {line[:120]!r}") from exc
    return out


def run_writer(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WRITER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[dict[str, Any], str]:
    """Wait (bounded) for a writer; return its last JSON status line and its stderr."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err
