"""``LockedJsonlFile.append_line``: write()'s locks without write()'s per-call path checks,
which it repeats every ``NAME_RECHECK_S``, at UTC midnight and after a failure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mcp_otel.exporters import LockedJsonlFile, RotationPolicy
from mcp_otel.exporters._file import NAME_RECHECK_S


def test_a_rename_by_another_process_is_seen_within_the_recheck_time(tmp_path: Path) -> None:
    now = [100.0]
    path = tmp_path / "t.jsonl"
    f = LockedJsonlFile(path, monotonic=lambda: now[0])
    assert f.append_line(b'{"n":1}\n')  # opens and checks the name
    path.rename(tmp_path / "t.jsonl.1")  # rotated by someone else
    assert f.append_line(b'{"n":2}\n')  # within the window: the renamed file, whole
    now[0] += NAME_RECHECK_S
    assert f.append_line(b'{"n":3}\n')  # checked again: a new file at the path
    f.close()
    assert (tmp_path / "t.jsonl.1").read_bytes() == b'{"n":1}\n{"n":2}\n'
    assert path.read_bytes() == b'{"n":3}\n'


def test_the_date_in_the_path_changes_at_midnight_without_waiting(tmp_path: Path) -> None:
    clock = [datetime(2026, 1, 1, 23, 59, 59, 900_000, tzinfo=UTC).timestamp()]
    mono = [10.0]
    f = LockedJsonlFile(tmp_path / "d_{date}.jsonl", clock=lambda: clock[0],
                        monotonic=lambda: mono[0])  # fmt: skip
    assert f.append_line(b'{"n":1}\n')
    clock[0] += 0.2  # past midnight, still inside NAME_RECHECK_S
    mono[0] += 0.2
    assert f.append_line(b'{"n":2}\n')
    f.close()
    assert (tmp_path / "d_20260101.jsonl").read_bytes() == b'{"n":1}\n'
    assert (tmp_path / "d_20260102.jsonl").read_bytes() == b'{"n":2}\n'


def test_a_torn_line_left_by_another_writer_is_not_glued_to_ours(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "t.jsonl"
    f = LockedJsonlFile(path, monotonic=lambda: now[0])
    assert f.append_line(b'{"n":1}\n')
    with open(path, "ab") as other:  # a writer that died mid-line
        other.write(b'{"torn":')
    assert f.append_line(b'{"n":2}\n')  # fast path: sees the size it did not write
    f.close()
    assert path.read_bytes() == b'{"n":1}\n{"torn":\n{"n":2}\n'


def test_size_rotation_and_failures_take_the_full_path(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    f = LockedJsonlFile(path, rotation=RotationPolicy(max_bytes=20))
    for n in range(6):
        assert f.append_line(b'{"n":%d}\n' % n)  # 8 bytes: two lines per file
    f.close()
    assert not f.append_line(b'{"n":9}\n')  # closed: not written, counted
    assert f.failed_writes == 1
    lines = sorted(b"".join(p.read_bytes() for p in tmp_path.iterdir()).splitlines())
    assert lines == [b'{"n":%d}' % n for n in range(6)]
    assert len(list(tmp_path.iterdir())) == 3


_SHORT_WRITE_CHILD = """
import resource, signal, sys
from mcp_otel.exporters import LockedJsonlFile
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, never kills
f = LockedJsonlFile(sys.argv[1], monotonic=lambda: 0.0)  # every call after the first: fast
resource.setrlimit(resource.RLIMIT_FSIZE, (1050, resource.RLIM_INFINITY))
results = [f.append_line(b'{"n":%04d,"pad":"%s"}\\n' % (n, b"x" * 80)) for n in range(12)]
f.close()
sys.stdout.write("".join("1" if ok else "0" for ok in results))
"""


def test_a_short_write_on_the_fast_path_is_rolled_back_and_reported(tmp_path: Path) -> None:
    """A real file-size limit (RLIMIT_FSIZE) cuts the 11th 100-byte line after 50 bytes:
    that line is refused and rolled back; the file keeps the 10 whole lines."""
    import subprocess
    import sys

    path = tmp_path / "limited.jsonl"
    done = subprocess.run([sys.executable, "-c", _SHORT_WRITE_CHILD, str(path)],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert done.stdout == "1" * 10 + "00"
    lines = path.read_bytes().splitlines(keepends=True)
    assert [line[:10] for line in lines] == [b'{"n":%04d,' % n for n in range(10)]
    assert all(len(line) == 100 and line.endswith(b"\n") for line in lines)
