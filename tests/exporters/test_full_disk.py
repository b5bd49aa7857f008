"""A batch that does not fit: every whole line that fits is written, in order, and only
the rest is counted as failed (``LockedJsonlFile.write_prefix``, ``export_prefix``)."""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mcp_otel.exporters import LockedJsonlFile

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _lines(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [json.dumps({"n": i, "pad": "x" * rng.randrange(10, 300)}).encode() + b"\n"
            for i in range(n)]


def _fitting(lines: list[bytes], room: int) -> int:
    """How many leading lines fit in ``room`` bytes."""
    used = k = 0
    for line in lines:
        if used + len(line) > room:
            break
        used += len(line)
        k += 1
    return k


def test_short_writes_at_a_real_file_size_limit_keep_every_whole_line(tmp_path: Path) -> None:
    """RLIMIT_FSIZE in a fresh interpreter: ``write`` stops at the limit (a short write),
    then fails with EFBIG, as on a full disk. Lines of random lengths; a shorter line
    after the first that does not fit is not written either (the file stays in order)."""
    path = tmp_path / "f.jsonl"
    lines = _lines(400, seed=7)
    limit = 40_000
    first = b'{"first":1}\n'
    k = _fitting(lines, limit - len(first))
    assert 0 < k < len(lines)
    expected = b"".join(lines[:k])
    room = limit - len(first) - len(expected)
    assert 9 <= room < len(lines[k])
    exact = b'{"p":"' + b"x" * (room - 9) + b'"}\n'  # exactly the room that is left
    script = textwrap.dedent(f"""
        import json, resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from mcp_otel.exporters import LockedJsonlFile
        payload = sys.stdin.buffer.read()
        f = LockedJsonlFile({str(path)!r}, fsync="none")
        out = [f.write_prefix({first!r})]
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
        out.append(f.write_prefix(payload))
        out.append(f.write_prefix(payload[out[-1]:]))  # a short write again: 0 lines
        short = f.last_error
        out.append(f.write_prefix({exact!r} + {lines[0]!r}))  # the exact room, then no more
        out.append(f.write_prefix(payload))  # at the limit: EFBIG, refused outright
        print(json.dumps({{"done": out, "failed_bytes": f.failed_bytes, "short": short,
                          "failed_writes": f.failed_writes, "error": f.last_error}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], input=b"".join(lines),
                          capture_output=True, env={**os.environ, "PYTHONPATH": SRC},
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    total = len(b"".join(lines))
    assert status["done"] == [len(first), len(expected), 0, len(exact), 0]
    assert path.read_bytes() == first + expected + exact  # no torn line, nothing else
    assert path.stat().st_size == limit
    assert status["failed_writes"] == 4
    assert status["failed_bytes"] == 2 * (total - len(expected)) + len(lines[0]) + total
    assert "short write" in status["short"] and "EFBIG" in status["error"]
    assert proc.stderr.decode().count("cannot write") == 2  # two causes, each said once


def test_a_write_refused_whole_is_bisected_down_to_the_lines_that_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some filesystems (NFS, FUSE, quotas on some systems) refuse a write that does not
    fit with ENOSPC and take nothing, where Linux's local filesystems take part of it.
    That behaviour is simulated here with a byte budget on ``os.write`` (the only way to
    get it without such a filesystem): the batch is split until every line that fits
    is written, with a logarithmic number of attempts."""
    lines = _lines(1000, seed=3)
    budget = [60_000]
    calls: list[int] = []
    real = os.write

    def refusing(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        if len(data) > budget[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        budget[0] -= len(data)
        return real(fd, data)

    path = tmp_path / "b.jsonl"
    f = LockedJsonlFile(path, fsync="none")
    monkeypatch.setattr(os, "write", refusing)
    done = f.write_prefix(b"".join(lines))
    monkeypatch.setattr(os, "write", real)
    k = _fitting(lines, 60_000)
    assert 0 < k < len(lines)
    assert done == len(b"".join(lines[:k]))
    assert path.read_bytes() == b"".join(lines[:k])
    assert len(calls) < 4 * 10  # about log2(1000) halvings per line boundary found
    assert f.failed_writes == 1 and f.last_error is not None and "ENOSPC" in f.last_error
    f.close()


def test_other_errors_still_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only "no room" is split: an I/O error fails the whole batch (the caller retries)."""
    path = tmp_path / "e.jsonl"
    f = LockedJsonlFile(path, fsync="none")
    assert f.write_prefix(b'{"a":1}\n') == 8

    def eio(fd: int, data: bytes) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", eio)
    assert f.write_prefix(b'{"a":2}\n{"a":3}\n') == 0
    monkeypatch.undo()
    assert path.read_bytes() == b'{"a":1}\n'
    assert f.failed_bytes == 16
    f.close()


@pytest.mark.parametrize("room", [0, 1, 40])
def test_the_newline_after_another_writers_torn_line_stays_only_with_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: int
) -> None:
    """After a writer died mid-line, our batch starts on a fresh line; when none of the
    batch fits, that newline is taken back too (the file is left as it was)."""
    path = tmp_path / "t.jsonl"
    f = LockedJsonlFile(path, fsync="none")
    assert f.write_prefix(b'{"a":1}\n') == 8
    with open(path, "ab") as other:
        other.write(b'{"half":')
    budget = [room]
    real = os.write

    def refusing(fd: int, data: bytes | memoryview) -> int:
        if len(data) > budget[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        budget[0] -= len(data)
        return real(fd, data)

    line = b'{"b":' + b"2" * 30 + b"}\n"  # 38 bytes: fits in 40 with the newline
    monkeypatch.setattr(os, "write", refusing)
    done = f.write_prefix(line + line)
    monkeypatch.undo()
    if room < 1 + len(line):
        assert done == 0 and path.read_bytes() == b'{"a":1}\n{"half":'
    else:
        assert done == len(line) and path.read_bytes() == b'{"a":1}\n{"half":\n' + line
    f.close()
