"""A failure while preparing the compressed copy of a rotated file leaks nothing, loses
nothing, and is reported."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
from pathlib import Path

import pytest

from mcp_otel.exporters import LockedJsonlFile, RotationPolicy


def _open_fds() -> dict[str, str]:
    """This process' open descriptors and what each one refers to."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_failed_fchmod_of_the_gz_tmp_leaks_no_descriptor_and_keeps_the_rotated_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    real_fchmod = os.fchmod
    refused: list[str] = []

    def fchmod(fd: int, mode: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.endswith(".gz.tmp"):
            refused.append(target)
            raise PermissionError(errno.EPERM, "Operation not permitted")
        real_fchmod(fd, mode)

    path = tmp_path / "r.jsonl"
    f = LockedJsonlFile(path, fsync="none", rotation=RotationPolicy(max_bytes=40, compress=True))
    first = b'{"seq":0,"pad":"xxxxxxxxxxxxxxxx"}\n'  # 36 bytes: the next line rotates
    second = b'{"seq":1,"pad":"yyyyyyyyyyyyyyyy"}\n'
    assert f.write(first)  # the active file is open from here on
    gc.collect()
    before = _open_fds()
    monkeypatch.setattr(os, "fchmod", fchmod)

    assert f.write(second)  # rotates the first file, then fails to compress it

    monkeypatch.undo()
    after = _open_fds()
    assert refused, "the compression never reached fchmod"
    assert [t for t in after.values() if ".gz.tmp" in t] == []
    assert len(after) == len(before), (before, after)
    # Nothing lost: the rotated file is still there, uncompressed, with its line; no
    # compressed or temporary leftovers.
    rotated = sorted(p for p in tmp_path.iterdir() if p.name != "r.jsonl")
    assert [p.suffix for p in rotated] == [".jsonl"], rotated
    assert rotated[0].read_bytes() == first
    assert path.read_bytes() == second
    # Reported as before: the cause on the file object and once on stderr.
    assert f.last_error is not None and "compress:EPERM" in f.last_error
    assert "compress:EPERM" in capfd.readouterr().err
    f.close()
