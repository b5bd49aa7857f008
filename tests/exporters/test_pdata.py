"""Our ``otlp`` lines through the Collector's own OTLP/JSON code (Go ``pdata``).

The Collector's ``otlpjsonfile`` receiver reads each line with ``plog/ptrace/pmetric
.JSONUnmarshaler``; the Go module proxy here does not serve that receiver, so the test
drives the very unmarshalers it uses (``go.opentelemetry.io/collector/pdata``, the same
version as the collector we build) through a 60-line Go program in ``pdatacheck/``: every
line must parse, and pdata's own marshaller must write back exactly what we wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests._support import require, require_program
from tests.exporters.test_formats import emit_all

SOURCE = Path(__file__).with_name("pdatacheck")


def _cache_root() -> Path:
    root = os.environ.get("MCP_OTEL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mcp-otel"
    )
    return Path(root)


def _pdatacheck() -> str:
    """The checker binary: MCP_OTEL_PDATACHECK_BIN, else built once and cached by source hash."""
    explicit = os.environ.get("MCP_OTEL_PDATACHECK_BIN")
    if explicit:
        return explicit
    digest = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        digest.update((SOURCE / name).read_bytes())
    out = _cache_root() / "pdatacheck" / digest.hexdigest()[:16]
    binary = out / "pdatacheck"
    if binary.is_file():
        return str(binary)
    go = require_program("go")
    env = dict(os.environ)
    env["GOCACHE"] = str(_cache_root() / "pdatacheck" / "go-build")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -modcacherw").strip()
    collector_mods = _cache_root() / "collector" / "go" / "mod"
    if collector_mods.is_dir():  # the modules scripts/build-collector.sh already fetched
        env["GOMODCACHE"] = str(collector_mods)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as work:
        for name in ("main.go", "go.mod", "go.sum"):
            shutil.copy(SOURCE / name, work)
        proc = subprocess.run(
            [go, "build", "-o", "pdatacheck.tmp", "."],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        require(proc.returncode == 0, f"cannot build pdatacheck: {proc.stderr[-1500:]}")
        os.replace(Path(work) / "pdatacheck.tmp", binary)  # atomic: parallel runs agree
    return str(binary)


@pytest.mark.parametrize(
    ("name", "signal"), [("logs", "logs"), ("spans", "traces"), ("metrics", "metrics")]
)
def test_collector_pdata_reads_our_otlp_lines_back_unchanged(
    tmp_path: Path, name: str, signal: str
) -> None:
    checker = _pdatacheck()
    paths = emit_all(tmp_path, "otlp")
    proc = subprocess.run(
        [checker, signal, str(paths[name])], capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    ours = [json.loads(line) for line in paths[name].read_bytes().splitlines()]
    theirs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert ours and theirs == ours
