"""The shared JSONL reader against simple references, at every chunk boundary."""

from __future__ import annotations

import gzip
import os
import random
import zlib
from pathlib import Path

import pytest

from mcp_otel import reader


def _reference(data: bytes, max_line: int) -> list[tuple[int, bytes, bool, bool, int]]:
    """What ``read_lines`` must yield, from ``bytes.split`` on the whole file."""
    parts = data.split(b"\n")
    last = parts.pop()
    out = []
    for number, part in enumerate(parts, 1):
        if part:
            too_long = len(part) > max_line
            out.append((number, b"" if too_long else part.rstrip(b"\r"), True, too_long,
                        len(part)))
    if last:
        too_long = len(last) > max_line
        out.append((len(parts) + 1, b"" if too_long else last, False, too_long, len(last)))
    return out


def test_lines_match_a_split_of_the_whole_file_at_any_chunk_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(1)
    path = tmp_path / "f.jsonl"
    for _ in range(1000):
        monkeypatch.setattr(reader, "CHUNK_BYTES", rnd.randint(1, 12))
        max_line = rnd.randint(0, 10)
        data = bytes(rnd.choice(b"ab\n\n\r") for _ in range(rnd.randint(0, 60)))
        path.write_bytes(data)
        got = [tuple(line) for line in reader.read_lines(path, max_line_bytes=max_line)]
        assert got == _reference(data, max_line), (data, max_line, reader.CHUNK_BYTES)


def test_gzip_matches_the_gzip_module_on_good_and_damaged_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several members, zero padding, cut, flipped or trailing bytes: the same content, or
    an ``OSError`` exactly where ``gzip.decompress`` fails."""
    rnd = random.Random(3)
    path = tmp_path / "f.jsonl.gz"
    outcomes = set()
    for _ in range(400):
        monkeypatch.setattr(reader, "CHUNK_BYTES", rnd.choice([1, 7, 100, 1 << 20]))
        monkeypatch.setattr(reader, "_GZIP_INPUT_BYTES", rnd.choice([1, 3, 50, 1 << 16]))
        members = [bytes(rnd.choice(b"ab\n") for _ in range(rnd.randint(0, 300)))
                   for _ in range(rnd.randint(1, 3))]
        blob = b"".join(gzip.compress(m, rnd.choice([0, 1, 9])) + b"\0" * rnd.choice([0, 5])
                        for m in members)
        damage = rnd.choice(["none", "none", "cut", "flip", "trailing"])
        if damage == "cut":
            blob = blob[: rnd.randint(1, len(blob) - 1)]
        elif damage == "flip":
            i = rnd.randrange(len(blob))
            blob = blob[:i] + bytes([blob[i] ^ 0x55]) + blob[i + 1 :]
        elif damage == "trailing":
            blob += b"junk"
        path.write_bytes(blob)
        try:
            want: bytes | None = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error):
            want = None
        try:
            got: bytes | None = b"".join(reader._chunks(path, 0))
        except OSError as exc:
            assert "corrupt or truncated gzip" in str(exc)
            got = None
        assert got == want, (damage, blob)
        outcomes.add((damage, want is None))
    assert ("cut", True) in outcomes and ("flip", True) in outcomes and ("none", False) in outcomes


def test_gzip_bomb_stops_at_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "GZIP_MIN_BYTES", 3 << 20)
    path = tmp_path / "b.jsonl.gz"
    line = b'{"pad": "' + b"x" * 1012 + b'"}\n'  # 1 KiB
    path.write_bytes(gzip.compress(line * (8 << 10), mtime=0))
    assert reader.gzip_limit(path.stat().st_size) == 3 << 20
    read = 0
    with pytest.raises(reader.ReadLimitError, match=f"more than {3 << 20} bytes"):
        for raw in reader.read_lines(path):
            read += 1
            assert raw.data == line[:-1]
    assert read == 3 << 10  # every whole line before the cap, then the error


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "f.jsonl"
    os.mkfifo(fifo)  # opening it blocking would wait for a writer forever
    with pytest.raises(OSError, match="not a regular file"):
        list(reader.read_lines(fifo))


def test_offset_starts_at_a_byte_of_an_append_only_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n')
    assert [r["n"] for r in reader.read_records(path, offset=9)] == [2]
    assert [r["n"] for r in reader.read_records(path, offset=100)] == [1, 2]  # replaced


def test_records_policy(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"a": 1}\n  \n\n' + b'{"b": "' + b"x" * 50 + b'"}\n{"c": 3}\n{"d": ')
    warnings: list[str] = []
    records = list(reader.read_records(path, warn=warnings.append, max_line_bytes=40))
    assert records == [{"a": 1}, {"c": 3}]
    assert warnings == [f"{path}:4: skipped a line of 59 bytes (longer than the 40-byte line "
                        "cap)", f"{path}:6: skipped a partial last line (the writer stopped "
                        "mid-line)"]
    path.write_bytes(b'{"a": 1}\n[1]\n')
    with pytest.raises(reader.JsonlError, match=":2: not a JSON Lines event file"):
        list(reader.read_records(path))


def test_find_files_orders_by_name_across_directories(tmp_path: Path) -> None:
    (tmp_path / "b" / "c").mkdir(parents=True)
    for name in ("b/mcp_audit_20261128.jsonl", "b/c/mcp_audit_20261127.jsonl.gz",
                 "z.jsonl", "b/other.jsonl", "b/notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "b" / "up").symlink_to(tmp_path, target_is_directory=True)
    found = reader.find_files([tmp_path, tmp_path / "z.jsonl"],
                               below=lambda n: n.startswith("mcp_audit_"))
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "b/c/mcp_audit_20261127.jsonl.gz", "b/mcp_audit_20261128.jsonl", "z.jsonl"]
    with pytest.raises(FileNotFoundError):
        reader.find_files([tmp_path / "missing"])
