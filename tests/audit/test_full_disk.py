"""A full disk: every record that fits is written, the rest declared once, the chain valid.

Real limits only: ``RLIMIT_FSIZE`` in a subprocess (a kernel-enforced file-size limit that
needs no privilege, so it always runs) and, where the test may mount one, a 256 KiB
tmpfs that really fills up.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from mcp_otel import integrity
from mcp_otel.audit import AuditLogger

from .conftest import PYTHON, child_env

CHILD = str(Path(__file__).with_name("_full_disk_child.py"))
CALLS = 3000


def _run(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [PYTHON, CHILD, *args], env=child_env(tmp_path), capture_output=True, text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _check_trail(status: dict[str, Any], err: str, log_dir: Path) -> list[bytes]:
    """What every full-disk run must show; returns the raw lines of the tool records."""
    raw = Path(status["file"]).read_bytes().split(b"\n")
    assert raw[-1] == b""  # no torn line
    records = [orjson.loads(line) for line in raw[:-1]]
    calls = [r for r in records if r["event"] == "tool_call"]
    written = len(calls)
    lost = CALLS - written
    assert 0 < written < CALLS, f"{written} of {CALLS} written: the limit must cut the burst"
    # In order, numbered 1..written, then the end record declaring everything else.
    assert [r["seq"] for r in records] == [*range(1, written + 1), CALLS + 1]
    assert [r["arguments"]["i"] for r in calls] == [f"{i:06d}" for i in range(written)]
    end = records[-1]
    assert end["event"] == "session_end" and end["lost"] == lost
    assert end["audit_lost"] == {"count": lost, "seq_first": written + 1, "seq_last": CALLS}
    # Counted once per record, wherever it is counted.
    assert status["full"]["records_written"] == written
    assert status["full"]["records_lost"] == lost
    assert sum(int(n) for n in re.findall(r"LOST (\d+) audit record", err)) == lost, err
    assert err.count("record(s) were not written") == 1, err
    assert f"{lost} record(s) were not written" in err, err
    # After shutdown() the summary describes the session that ended, not a new one.
    ended = status["ended"]
    assert ended["session_id"] == end["session_id"] and ended["ended"] is True
    assert ended["records_lost"] == lost and ended["records_written"] == written + 1
    # The chain verifies: a declared loss, not tampering.
    report = integrity.verify_paths([log_dir])
    assert report.ok, report.to_dict()
    assert [w.code for w in report.warnings] == ["declared_loss"]
    assert report.sessions[end["session_id"]].declared_lost == lost
    assert not integrity.verify_paths([log_dir], strict=True).ok
    return raw[:written]


def test_queued_burst_under_a_file_size_limit_writes_every_record_that_fits(
        tmp_path: Path) -> None:
    """3,000 queued records, a limit that holds about half of them (measured: ~560 bytes
    a record). Before: none was written, and the loss was counted once per retry."""
    log_dir = tmp_path / "audit"
    limit = 800_000
    status, err = _run(tmp_path, str(log_dir), "--calls", str(CALLS), "--fsize", str(limit))
    lines = _check_trail(status, err, log_dir)
    # Exactly what the bytes allow: within the limit, and the next record (as long as
    # the last one written or longer: same fields, a seq with as many digits or more)
    # would not have fit.
    assert status["size_full"] == sum(len(line) + 1 for line in lines) <= limit
    assert limit - status["size_full"] < len(lines[-1]) + 1
    assert CALLS // 4 < len(lines) < CALLS * 3 // 4


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(where)], capture_output=True, text=True)
    return proc.returncode == 0


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, if this test may mount one (root with CAP_SYS_ADMIN).

    Skipped otherwise, under CI too: mounting depends on the container's privileges, not
    on anything CI installs; the RLIMIT_FSIZE test covers the same code without them.
    """
    where = tmp_path / "tmpfs"
    where.mkdir()
    if not _mount_tmpfs(where, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            with contextlib.suppress(Exception):
                subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_queued_burst_onto_a_full_256k_tmpfs_fills_it(small_tmpfs: Path, tmp_path: Path) -> None:
    """The issue's case: 3,000 queued records onto a 256 KiB tmpfs. Before: 0 written,
    the disk 98% free. Now the disk is full of records; freeing the ballast lets the
    end record declare the rest."""
    ballast = small_tmpfs / "ballast"
    ballast.write_bytes(b"\0" * 16384)
    log_dir = small_tmpfs / "audit"
    status, err = _run(tmp_path, str(log_dir), "--calls", str(CALLS), "--ballast", str(ballast))
    lines = _check_trail(status, err, log_dir)
    assert status["size_full"] == sum(len(line) + 1 for line in lines)
    capacity = os.statvfs(small_tmpfs).f_blocks * os.statvfs(small_tmpfs).f_frsize
    # Full: no free block left, and less than a record's worth left in the last one.
    assert status["free_full"] == 0
    assert status["size_full"] > capacity - 16384 - 4096 - len(lines[-1])


async def test_summary_after_shutdown_describes_the_ended_session(
        make_audit: Callable[..., AuditLogger]) -> None:
    """Before: shutdown() dropped the session and the summary started a fresh one (new
    id, zero counts). Now it describes the session that ended, until a new one starts."""
    a = make_audit()
    await a.log_tool_call("t", {"i": 1})
    sid = a.get_session_summary()["session_id"]
    a.shutdown()
    s = a.get_session_summary()
    assert (s["session_id"], s["ended"], s["records_written"], s["records_lost"]) == (
        sid, True, 2, 0)
    await a.log_tool_call("t", {"i": 2})  # a new session starts
    s = a.get_session_summary()
    assert s["session_id"] != sid and s["ended"] is False and s["records_written"] == 1
