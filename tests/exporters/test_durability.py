"""FAILURE means "not in the file"; `none` never syncs; retention without rotation;
environment values that cannot be honoured never raise into the host."""

from __future__ import annotations

import errno
import os
from datetime import timedelta
from pathlib import Path

import pytest

from mcp_otel.exporters import JsonlLogExporter, LockedJsonlFile, RotationPolicy


def test_failed_batch_fsync_rolls_the_batch_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry after a failed fdatasync must not leave the batch in the file twice."""
    real = os.fdatasync
    failures: list[OSError] = []

    def flaky(fd: int) -> None:
        if failures:
            raise failures.pop()
        real(fd)

    monkeypatch.setattr(os, "fdatasync", flaky)
    path = tmp_path / "batch.jsonl"
    f = LockedJsonlFile(path, fsync="batch")
    assert f.write(b'{"seq":0}\n')
    failures.append(OSError(errno.EIO, "I/O error"))
    assert not f.write(b'{"seq":1}\n')  # the sync failed: reported as not written
    assert f.write(b'{"seq":1}\n')  # the retry
    f.close()
    assert path.read_bytes() == b'{"seq":0}\n{"seq":1}\n'


def test_policy_none_never_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fdatasync", calls.append)
    monkeypatch.setattr(os, "fsync", calls.append)
    f = LockedJsonlFile(tmp_path / "n.jsonl", fsync="none", monotonic=lambda: 1e9)
    assert f.write(b"{}\n")
    assert f.flush()
    f.close()
    assert calls == []


def test_retention_runs_at_first_write_without_any_rotation(tmp_path: Path) -> None:
    """A short-lived process that never rotates still prunes old files."""
    old = [tmp_path / f"app_2026010{d}.jsonl" for d in (1, 2, 3)]
    for p in old:
        p.write_bytes(b"{}\n")
        os.utime(p, (0, 0))  # 1970: older than any max_age
    f = LockedJsonlFile(
        tmp_path / "app_{date}.jsonl",
        rotation=RotationPolicy(max_files=1, max_age=timedelta(days=7)),
    )
    assert f.write(b"{}\n")
    f.close()
    assert not any(p.exists() for p in old)


def test_environment_rotation_is_ignored_when_a_policy_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_OTEL_JSONL_MAX_BYTES", "10")
    monkeypatch.setenv("MCP_OTEL_JSONL_MAX_FILES", "0")
    monkeypatch.setenv("MCP_OTEL_JSONL_RESOURCE", "true")
    exporter = JsonlLogExporter(
        tmp_path / "a.jsonl", rotation=RotationPolicy(), include_resource=False
    )
    assert exporter.config.rotation == RotationPolicy()
    assert exporter.config.include_resource is False
    with pytest.raises(TypeError):
        JsonlLogExporter(tmp_path / "b.jsonl", rotation=RotationPolicy(), max_bytes=10)


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "-1"])
def test_unusable_max_age_from_the_environment_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
    value: str,
) -> None:
    monkeypatch.setenv("MCP_OTEL_JSONL_MAX_AGE", value)
    exporter = JsonlLogExporter(tmp_path / "a.jsonl")
    assert exporter.config.rotation.max_age is None
    assert "MCP_OTEL_JSONL_MAX_AGE" in capfd.readouterr().err


def test_unusable_max_age_argument_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_age"):
        JsonlLogExporter(tmp_path / "a.jsonl", max_age=float("inf"))
