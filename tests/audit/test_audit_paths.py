"""The audit trail's directory: a symlink swapped in after start is never followed (the
records are declared lost, the chain stays valid), and loose modes are tightened."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from mcp_otel import integrity
from mcp_otel.audit import AuditLogger, RetryPolicy

from .conftest import read_records


async def test_audit_directory_swapped_for_a_symlink_is_not_followed(
        make_audit: Callable[..., AuditLogger], tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    log_dir = tmp_path / "audit"
    a = make_audit(log_dir, retry=RetryPolicy(attempts=2, initial_delay=0.001))
    await a.log_tool_call("before", {})
    target = tmp_path / "elsewhere"
    target.mkdir()
    log_dir.rename(tmp_path / "moved")
    log_dir.symlink_to(target)
    await a.log_tool_call("during", {})  # returns: the host goes on; the record is lost
    assert list(target.iterdir()) == []
    assert a.get_session_summary()["records_lost"] == 1
    assert "refusing to follow" in capfd.readouterr().err
    log_dir.unlink()
    (tmp_path / "moved").rename(log_dir)
    await a.log_tool_call("after", {})
    a.shutdown()
    recs = read_records(log_dir)
    assert [r.get("tool") for r in recs] == ["before", "after", None]
    assert recs[1]["audit_lost"] == {"count": 1, "seq_first": 2, "seq_last": 2}
    report = integrity.verify_paths([log_dir])
    assert report.ok and [w.code for w in report.warnings] == ["declared_loss"]


def test_a_loose_audit_directory_is_tightened_at_construction(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    log_dir = tmp_path / "audit"
    log_dir.mkdir()
    os.chmod(log_dir, 0o777)
    make_audit(log_dir)
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
