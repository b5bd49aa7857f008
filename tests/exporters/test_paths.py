"""Path safety: nothing planted in the data path after start is followed, and loose modes
of directories and files that already existed are tightened (or reported once)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from mcp_otel.exporters import JsonlLogExporter
from mcp_otel.exporters import _file as file_mod
from tests.exporters._helpers import read_lines

RES = Resource.create({})
OK = LogRecordExportResult.SUCCESS
FAIL = LogRecordExportResult.FAILURE


def batch(start: int, n: int = 10) -> list[ReadableLogRecord]:
    return [ReadableLogRecord(LogRecord(body="x", attributes={"seq": start + i}), resource=RES)
            for i in range(n)]


def seqs(path: Path) -> list[int]:
    return [r["seq"] for r in read_lines([path])]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(autouse=True)
def _fresh_reports() -> None:
    file_mod._loose_reported.clear()  # "reported once" is per process: start clean


@pytest.mark.parametrize("swap", ["data_dir", "parent_dir"])
def test_a_directory_swapped_for_a_symlink_after_start_is_refused(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], swap: str
) -> None:
    """Before: the next open went through the symlink and wrote the trail wherever it
    pointed (O_NOFOLLOW covered only the file name)."""
    root = tmp_path / "root"
    data = root / "data"
    path = data / "logs.jsonl"
    exporter = JsonlLogExporter(path, fsync="none")
    assert exporter.export(batch(0)) == OK
    evil = tmp_path / "evil"
    (evil / "data").mkdir(parents=True)
    swapped = data if swap == "data_dir" else root
    swapped.rename(tmp_path / "moved")
    swapped.symlink_to(evil / "data" if swap == "data_dir" else evil)
    assert exporter.export(batch(10)) == FAIL
    assert exporter.export(batch(20)) == FAIL
    assert _tree(evil) == ["data"]  # nothing landed in the symlink's target
    assert exporter.failed_records == 20
    err = capfd.readouterr().err
    assert err.count("cannot write") == 1 and "refusing to follow" in err, err
    # Once the path is restored, writing goes on where it always did.
    swapped.unlink()
    (tmp_path / "moved").rename(swapped)
    assert exporter.export(batch(30)) == OK
    exporter.shutdown()
    assert seqs(path) == [*range(10), *range(30, 40)]


def test_a_file_replaced_by_a_symlink_after_start_is_refused(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = tmp_path / "logs.jsonl"
    exporter = JsonlLogExporter(path, fsync="none")
    assert exporter.export(batch(0)) == OK
    path.rename(tmp_path / "logs.jsonl.1")
    path.symlink_to(victim)
    assert exporter.export(batch(10)) == FAIL
    assert victim.read_text() == "precious\n"
    assert exporter.failed_records == 10
    err = capfd.readouterr().err
    assert err.count("cannot write") == 1 and "symlink" in err
    path.unlink()
    assert exporter.export(batch(20)) == OK
    exporter.shutdown()
    assert seqs(path) == list(range(20, 30))


def test_a_directory_removed_and_recreated_in_place_is_used(tmp_path: Path) -> None:
    """Not a swap: the path still leads to the same real place (rm -rf, then mkdir)."""
    data = tmp_path / "data"
    exporter = JsonlLogExporter(data / "l.jsonl", fsync="none")
    assert exporter.export(batch(0)) == OK
    (data / "l.jsonl").unlink()
    data.rmdir()
    data.mkdir(mode=0o777)
    os.chmod(data, 0o777)
    assert exporter.export(batch(10)) == OK
    exporter.shutdown()
    assert seqs(data / "l.jsonl") == list(range(10, 20))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_loose_directory_and_file_modes_are_tightened(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Before: a 0777 directory and a 0666 file that existed were kept as they were."""
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o777)
    path = data / "logs.jsonl"
    path.write_text('{"seq":-1}\n')
    os.chmod(path, 0o666)
    exporter = JsonlLogExporter(path, fsync="none")
    assert exporter.export(batch(0)) == OK
    exporter.shutdown()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert seqs(path) == [-1, *range(10)]
    err = capfd.readouterr().err
    assert "was mode 0777; tightened to 0700" in err and "was mode 0666; tightened to 0600" in err
    assert err.count("tightened") == 2  # once each


def test_a_shared_sticky_directory_is_left_alone_and_reported_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    for start in (0, 10):
        exporter = JsonlLogExporter(shared / "logs.jsonl", fsync="none")
        assert exporter.export(batch(start)) == OK
        exporter.shutdown()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "logs.jsonl").stat().st_mode) == 0o600
    err = capfd.readouterr().err
    assert err.count("left as it is") == 1, err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory owned by "
                    "another uid (the tightening itself needs no privilege: see above)")
def test_a_loose_directory_we_do_not_own_is_reported_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    os.chmod(theirs, 0o777)
    for start in (0, 10):
        exporter = JsonlLogExporter(theirs / "logs.jsonl", fsync="none")
        assert exporter.export(batch(start)) == OK
        exporter.shutdown()
    assert stat.S_IMODE(theirs.stat().st_mode) == 0o777  # not ours to change
    err = capfd.readouterr().err
    assert err.count("owned by uid 65534") == 1, err
    assert seqs(theirs / "logs.jsonl") == list(range(20))
