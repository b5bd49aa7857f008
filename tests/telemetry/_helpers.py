"""Reading what the emitter wrote: event lines and the latest metric snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

READBACK = {
    "mcp_otel.tool.calls": "tool_calls",
    "mcp_otel.tool.input": "total_bytes_in",
    "mcp_otel.tool.output": "total_bytes_out",
    "mcp_otel.tool.duration": "total_duration_ms",
    "mcp_otel.tool.errors": "errors",
}


def read_lines(directory: Path, pattern: str) -> list[dict[str, Any]]:
    """Every line of every matching file, parsed; a torn line fails the test here."""
    out: list[dict[str, Any]] = []
    for path in sorted(directory.glob(pattern)):
        for raw in path.read_bytes().splitlines():
            out.append(json.loads(raw))
    return out


def instance_of(line: dict[str, Any]) -> str:
    return str(line["resource"]["service.instance.id"])


def last_snapshot_totals(
    lines: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any] | None = None
) -> dict[Any, dict[str, int]]:
    """Osiris' five totals from the last snapshot, per ``key(line)`` (e.g. the
    ``service.instance.id``) or under ``None``. Sums are cumulative: the latest snapshot
    holds the totals."""
    latest: dict[Any, str] = {}
    for line in lines:
        group = key(line) if key else None
        if line.get("metric") in READBACK and line["timestamp"] > latest.get(group, ""):
            latest[group] = line["timestamp"]
    totals: dict[Any, dict[str, int]] = defaultdict(lambda: dict.fromkeys(READBACK.values(), 0))
    for line in lines:
        group = key(line) if key else None
        name = READBACK.get(line.get("metric", ""))
        if name and line["timestamp"] == latest[group]:
            totals[group][name] += line["value"]
    return dict(totals)


def run_script(tmp_path: Path, script: str, **env: str) -> tuple[dict[str, Any], str]:
    """Run ``script`` in a fresh interpreter (global OTel state can be set once per process)
    with no ``OTEL_*`` variables but ``env`` and ``MCP_OTEL_DIR`` under ``tmp_path``: its
    last stdout line, parsed, and its stderr."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    full_env.update({"MCP_OTEL_DIR": str(tmp_path / "data"), **env})
    proc = subprocess.run([sys.executable, "-c", script], env=full_env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr
