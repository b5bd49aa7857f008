"""Tamper evidence: the chain, the verifier and the ``mcp-otel verify`` command."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from mcp_otel import integrity
from mcp_otel.audit import AuditLogger
from mcp_otel.cli import main as cli_main

from .conftest import read_records


async def _write_session(logger: AuditLogger, n: int = 8) -> None:
    for i in range(n):
        cid = await logger.log_tool_call(f"tool_{i}", {"i": i, "note": "é ü\n\u2028"})
        await logger.log_tool_result(f"tool_{i}", 3, correlation_id=cid, result={"ok": i})


@pytest.fixture
async def chain_file(make_audit: Callable[..., AuditLogger], tmp_path: Path) -> Path:
    logger = make_audit(tmp_path / "src")
    await _write_session(logger)
    logger.shutdown()
    files = list((tmp_path / "src").glob("mcp_audit_*.jsonl"))
    assert len(files) == 1
    return files[0]


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def _codes(report: integrity.VerifyReport, attr: str = "errors") -> set[str]:
    return {f.code for f in getattr(report, attr)}


def test_intact_file_verifies(chain_file: Path) -> None:
    report = integrity.verify_paths([chain_file])
    assert report.ok and not report.warnings, report.to_dict()
    (sess,) = report.sessions.values()
    assert sess.ended and sess.records == 17 and sess.first_seq == 1 and sess.last_seq == 17


def test_hash_is_reproducible_with_the_stdlib_alone(chain_file: Path) -> None:
    """The documented encoding: a third party needs only json + hashlib."""
    records = [json.loads(line) for line in chain_file.read_bytes().splitlines()]
    prev = hashlib.sha256(f"mcp-otel-audit/1:{records[0]['session_id']}".encode()).hexdigest()
    envelope = {"severity", "severity_number", "severity_text", "event_name", "body",
                "trace_id", "span_id", "trace_flags", "schema_version", "observed_timestamp",
                "resource"}
    for rec in records:
        covered = {k: v for k, v in rec.items()
                   if k != "hash" and k not in envelope and not k.startswith("otel.")}
        data = json.dumps(covered, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
        assert rec["prev_hash"] == prev
        assert hashlib.sha256(data).hexdigest() == rec["hash"]
        prev = rec["hash"]
    assert records[-1]["event"] == "session_end" and records[-1]["records"] == len(records)


def test_changed_field(chain_file: Path, tmp_path: Path) -> None:
    lines = _lines(chain_file)
    rec = orjson.loads(lines[4])
    rec["tool"] = "tool_evil"
    lines[4] = orjson.dumps(rec) + b"\n"
    report = integrity.verify_paths([_write(tmp_path / "t.jsonl", lines)])
    assert not report.ok and _codes(report) == {"hash_mismatch"}
    assert report.errors[0].line == 5


def test_changed_field_with_recomputed_hash_breaks_the_next_link(chain_file: Path,
                                                                  tmp_path: Path) -> None:
    lines = _lines(chain_file)
    rec = orjson.loads(lines[4])
    rec["duration_ms"] = 99999
    rec["hash"] = integrity.compute_hash(integrity.covered_fields(rec), None)
    lines[4] = orjson.dumps(rec) + b"\n"
    report = integrity.verify_paths([_write(tmp_path / "t.jsonl", lines)])
    assert _codes(report) == {"broken_link"} and report.errors[0].line == 6


def test_deleted_line(chain_file: Path, tmp_path: Path) -> None:
    lines = _lines(chain_file)
    del lines[6]
    report = integrity.verify_paths([_write(tmp_path / "t.jsonl", lines)])
    assert _codes(report) == {"gap"} and "seq 7..7 missing" in report.errors[0].message


def test_inserted_copy_of_a_line(chain_file: Path, tmp_path: Path) -> None:
    lines = _lines(chain_file)
    lines.insert(9, lines[3])
    report = integrity.verify_paths([_write(tmp_path / "t.jsonl", lines)])
    assert "out_of_order" in _codes(report)


def test_inserted_forged_line(chain_file: Path, tmp_path: Path) -> None:
    lines = _lines(chain_file)
    prev = orjson.loads(lines[5])
    forged = dict(orjson.loads(lines[6]), tool="forged", prev_hash=prev["hash"])
    forged["hash"] = integrity.compute_hash(integrity.covered_fields(forged), None)
    lines.insert(6, orjson.dumps(forged) + b"\n")
    report = integrity.verify_paths([_write(tmp_path / "t.jsonl", lines)])
    assert not report.ok and _codes(report) & {"out_of_order", "broken_link"}


def test_swapped_lines(chain_file: Path, tmp_path: Path) -> None:
    lines = _lines(chain_file)
    lines[3], lines[4] = lines[4], lines[3]
    report = integrity.verify_paths([_write(tmp_path / "t.jsonl", lines)])
    assert {"gap", "out_of_order"} <= _codes(report)


def test_cut_mid_line_is_a_warning_and_an_error_when_strict(chain_file: Path,
                                                           tmp_path: Path) -> None:
    data = chain_file.read_bytes()
    cut = tmp_path / "t.jsonl"
    cut.write_bytes(data[: len(data) - 40])
    report = integrity.verify_paths([cut])
    assert report.ok and _codes(report, "warnings") == {"torn_line", "no_end_record"}
    torn = next(f for f in report.warnings if f.code == "torn_line")
    assert torn.line == 17
    strict = integrity.verify_paths([cut], strict=True)
    assert not strict.ok and _codes(strict) == {"torn_line", "no_end_record"}


def test_a_cut_at_any_byte_of_a_record_is_a_torn_line_not_corruption(
    chain_file: Path, tmp_path: Path
) -> None:
    """A crash can cut anywhere: inside true/false/null, a \\u escape, an exponent."""
    lines = _lines(chain_file)
    victim = b'{"event":"tool_call","ok":true,"no":false,"x":null,"n":-1.5e+10,' \
        b'"u":"caf\\u00e9 \\"q\\"","nested":{"a":[1,{"b":"c"}],"d":{}},"z":12}'
    cut = tmp_path / "t.jsonl"
    for k in range(1, len(victim)):
        # The torn line is followed by later records: the next writer started afresh.
        _write(cut, [*lines[:5], victim[:k] + b"\n", *lines[5:]])
        report = integrity.verify_paths([cut])
        assert report.ok and _codes(report, "warnings") == {"torn_line"}, (k, victim[:k])


def test_cut_before_end_record(chain_file: Path, tmp_path: Path) -> None:
    lines = _lines(chain_file)[:-1]
    path = _write(tmp_path / "t.jsonl", lines)
    report = integrity.verify_paths([path])
    assert report.ok and _codes(report, "warnings") == {"no_end_record"}
    assert "after seq 16" in report.warnings[0].message
    assert _codes(integrity.verify_paths([path], strict=True)) == {"no_end_record"}


def test_not_json_and_foreign_lines_are_errors(chain_file: Path, tmp_path: Path) -> None:
    lines = _lines(chain_file)
    lines.insert(2, b"garbage here\n")
    lines.insert(3, b'{"hello": "world"}\n')
    report = integrity.verify_paths([_write(tmp_path / "t.jsonl", lines)])
    assert _codes(report) == {"unparseable", "not_audit"}


def test_chain_across_files_and_sessions_in_a_directory(
    make_audit: Callable[..., AuditLogger], tmp_path: Path
) -> None:
    import asyncio

    a = make_audit(tmp_path / "multi")
    b = make_audit(tmp_path / "multi")

    async def both() -> None:
        await asyncio.gather(_write_session(a, 20), _write_session(b, 20))

    asyncio.run(both())
    a.shutdown()
    b.shutdown()
    (path,) = (tmp_path / "multi").glob("*.jsonl")
    lines = _lines(path)
    # The same chains split over two days' files: still one valid chain each. Split by
    # seq, not by line number: how the two sessions' lines interleave is up to the
    # scheduler, and a cut at a fixed line could leave one session in a single file.
    day = tmp_path / "days"
    day.mkdir()
    first = [line for line in lines if orjson.loads(line)["seq"] < 20]
    second = [line for line in lines if orjson.loads(line)["seq"] >= 20]
    _write(day / "mcp_audit_20261127.jsonl", first)
    _write(day / "mcp_audit_20261128.jsonl", second)
    report = integrity.verify_paths([day])
    assert report.ok and not report.warnings, report.to_dict()
    assert len(report.sessions) == 2
    assert all(s.records == 41 and s.ended and len(s.files) == 2
               for s in report.sessions.values())
    # Given only the second day, the start of each chain is reported missing.
    partial = integrity.verify_paths([day / "mcp_audit_20261128.jsonl"])
    assert "chain_start" in _codes(partial)


def test_gzipped_file_is_verified_through_gzip(chain_file: Path, tmp_path: Path) -> None:
    """A rotated ``.jsonl.gz`` is the same chain: its records are checked, not its
    compressed bytes (read as text they are one "torn line" and the verdict was OK)."""
    rotated = tmp_path / "rotated"
    rotated.mkdir()
    gz = rotated / "mcp_audit_20261127.jsonl.gz"
    gz.write_bytes(gzip.compress(chain_file.read_bytes(), mtime=0))
    for given in (gz, rotated):  # named, and found in a directory
        report = integrity.verify_paths([given])
        assert report.ok and not report.warnings, report.to_dict()
        assert report.files == [str(gz)] and report.lines == 17
        (sess,) = report.sessions.values()
        assert sess.ended and sess.records == 17

    tampered = chain_file.read_bytes().replace(b'"tool_3"', b'"tool_X"', 1)
    gz.write_bytes(gzip.compress(tampered, mtime=0))
    report = integrity.verify_paths([gz])
    assert _codes(report) == {"hash_mismatch"} and report.errors[0].path == str(gz)


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "not-gzip"])
def test_damaged_gzip_is_an_unreadable_file(chain_file: Path, tmp_path: Path,
                                            damage: str) -> None:
    blob = bytearray(gzip.compress(chain_file.read_bytes() * 20, mtime=0))
    if damage == "corrupt":
        blob[30:60] = b"\xff" * 30
    elif damage == "truncated":
        del blob[-12:]
    else:
        blob = bytearray(chain_file.read_bytes())
    gz = _write(tmp_path / "mcp_audit_20261127.jsonl.gz", [bytes(blob)])
    report = integrity.verify_paths([gz])
    assert not report.ok
    unreadable = [f for f in report.errors if f.code == "unreadable"]
    assert len(unreadable) == 1 and unreadable[0].path == str(gz), report.to_dict()
    assert "gzip" in unreadable[0].message


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer: ``verify`` must refuse it instead.
    A subprocess with a timeout, so that a regression fails instead of hanging the run."""
    fifo = tmp_path / "mcp_audit_20261127.jsonl"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "mcp_otel", "verify", str(fifo)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    assert "ERROR   unreadable: cannot read file: not a regular file (p" in result.stdout
    assert "Traceback" not in result.stderr


async def test_hmac_chain_needs_the_key(make_audit: Callable[..., AuditLogger],
                                        tmp_path: Path) -> None:
    logger = make_audit(tmp_path / "h", key="k3y-for-tests")
    await _write_session(logger, 3)
    logger.shutdown()
    records = read_records(tmp_path / "h")
    assert {r["hash_alg"] for r in records} == {"hmac-sha256"}
    assert integrity.verify_paths([tmp_path / "h"], key="k3y-for-tests").ok
    assert _codes(integrity.verify_paths([tmp_path / "h"])) == {"key_required"}
    assert _codes(integrity.verify_paths([tmp_path / "h"], key="wrong")) == {"hash_mismatch"}
    # Whoever edits the file cannot recompute the chain without the key.
    path = next((tmp_path / "h").glob("*.jsonl"))
    lines = _lines(path)
    rec = orjson.loads(lines[1])
    rec["tool"] = "evil"
    rec["hash"] = integrity.compute_hash(integrity.covered_fields(rec), b"guess")
    lines[1] = orjson.dumps(rec) + b"\n"
    _write(path, lines)
    assert "hash_mismatch" in _codes(integrity.verify_paths([path], key="k3y-for-tests"))


async def test_hmac_chain_downgraded_to_sha256_is_an_error_when_a_key_is_given(
        make_audit: Callable[..., AuditLogger], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the key, an attacker rewrites the chain as plain SHA-256 after editing a
    field; every hash and link is then consistent, but a key was given: not verified."""
    logger = make_audit(tmp_path / "d", key="k3y-for-tests")
    await _write_session(logger, 3)
    logger.shutdown()
    path = next((tmp_path / "d").glob("*.jsonl"))
    head = None
    out = []
    for line in _lines(path):
        rec = orjson.loads(line)
        rec["hash_alg"] = "sha256"
        if rec.get("tool") == "tool_1":
            rec["tool"] = "tool_evil"
        if head is not None:
            rec["prev_hash"] = head
        rec["hash"] = head = integrity.compute_hash(integrity.covered_fields(rec), None)
        out.append(orjson.dumps(rec) + b"\n")
    _write(path, out)
    assert integrity.verify_paths([path]).ok  # a consistent SHA-256 chain, as forged
    report = integrity.verify_paths([path], key="k3y-for-tests")
    assert not report.ok and _codes(report) == {"unkeyed"}
    assert len(report.errors) == len(out)
    monkeypatch.setenv("KEY_FOR_TEST", "k3y-for-tests")
    assert cli_main(["verify", "--key-env", "KEY_FOR_TEST", str(path)]) == 1
    assert "ERROR   unkeyed: seq 1: hash_alg is 'sha256'" in capsys.readouterr().out
    assert cli_main(["verify", "--json", "--key-env", "KEY_FOR_TEST", str(path)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and {e["code"] for e in doc["errors"]} == {"unkeyed"}


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch,
                              make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    import asyncio

    monkeypatch.setenv("MCP_OTEL_AUDIT_KEY", "env-key")
    logger = make_audit(tmp_path / "e")
    asyncio.run(_write_session(logger, 1))
    logger.shutdown()
    assert integrity.verify_paths([tmp_path / "e"]).ok  # key read from the env too
    monkeypatch.delenv("MCP_OTEL_AUDIT_KEY")
    assert not integrity.verify_paths([tmp_path / "e"]).ok


# ------------------------------------------------------------------ the command line


def test_cli_exit_codes_and_json(chain_file: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["verify", str(chain_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 1 file(s), 17 line(s), 1 session(s) (1 ended)")

    lines = _lines(chain_file)
    (tmp_path / "cut").mkdir()
    cut = _write(tmp_path / "cut" / "t.jsonl", lines[:-1])
    assert cli_main(["verify", str(cut)]) == 0
    assert "WARNING no_end_record" in capsys.readouterr().out
    assert cli_main(["verify", "--strict", "--json", str(cut)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["strict"] is True
    assert [e["code"] for e in doc["errors"]] == ["no_end_record"]
    assert doc["sessions"][0]["records"] == 16

    bad = tmp_path / "bad.jsonl"
    shutil.copy(chain_file, bad)
    data = bad.read_bytes().replace(b'"tool_3"', b'"tool_X"', 1)
    bad.write_bytes(data)
    assert cli_main(["verify", "--json", str(bad), str(chain_file)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["errors"][0]["code"] == "hash_mismatch" and doc["errors"][0]["path"] == str(bad)


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["verify", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["verify", str(tmp_path / "empty")]) == 2
    assert "no audit files" in capsys.readouterr().err


def test_sealing_a_record_with_raw_values_encodes_it_first() -> None:
    chain = integrity.Chain("mcp_test")
    attrs = {"event": "x", "odd": {3, 1}, "b": b"\x01"}
    chain.seal(attrs)
    assert attrs["odd"] == [1, 3] and attrs["b"] == {"$base64": "AQ=="}
    line = orjson.loads(orjson.dumps(attrs))
    assert integrity.compute_hash(integrity.covered_fields(line), None) == attrs["hash"]


# ------------------------------------------------------------------ hostile files, caps


def test_a_file_without_an_audit_record_is_an_error(tmp_path: Path) -> None:
    """One unclosed line (torn, or 2 MiB: past the line cap) passed with a warning."""
    torn = _write(tmp_path / "torn.jsonl", [b'{"event":"tool_call","tool":"a'])
    report = integrity.verify_paths([torn])
    assert not report.ok and _codes(report) == {"no_records"}
    assert _codes(report, "warnings") == {"torn_line"}

    long = _write(tmp_path / "long.jsonl", [b'{"event":"tool_call","x":"' + b"a" * (2 << 20)])
    report = integrity.verify_paths([long])
    assert _codes(report) == {"line_too_long", "no_records"} and not report.warnings
    empty = _write(tmp_path / "empty.jsonl", [])
    assert _codes(integrity.verify_paths([empty])) == {"no_records"}
    assert "file holds no audit record" in integrity.verify_paths([empty]).errors[0].message


def test_an_over_long_line_is_skipped_and_the_rest_verified(chain_file: Path,
                                                            tmp_path: Path) -> None:
    lines = _lines(chain_file)
    lines.insert(3, b'{"padding":"' + b"p" * 5000 + b'"}\n')
    path = _write(tmp_path / "t.jsonl", lines)
    limits = integrity.VerifyLimits(max_line_bytes=4096)
    report = integrity.verify_paths([path], limits=limits)
    assert _codes(report) == {"line_too_long"} and report.errors[0].line == 4
    assert "line of 5014 bytes" in report.errors[0].message
    (sess,) = report.sessions.values()
    assert sess.records == 17 and sess.ended
    # The same line within a larger cap is read, and is a foreign record.
    wide = integrity.verify_paths([path], limits=integrity.VerifyLimits(max_line_bytes=8192))
    assert _codes(wide) == {"not_audit"}


def test_findings_are_capped_per_file_with_totals(chain_file: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    lines = _lines(chain_file)
    junk = [b"junk %d\n" % i for i in range(300)]
    path = _write(tmp_path / "t.jsonl", [*lines[:5], *junk, *lines[5:]])
    report = integrity.verify_paths([path])
    assert report.counts == {"unparseable": 300} and report.error_count == 300
    assert len(report.errors) == 100 and report.omitted == 200
    assert [f.line for f in report.errors] == list(range(6, 106))
    (sess,) = report.sessions.values()
    assert sess.records == 17 and sess.ended  # the chain around the junk is intact

    assert cli_main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "... 200 more finding(s) not shown" in out and "unparseable 300" in out
    assert out.rstrip().endswith("300 error(s), 0 warning(s)")
    assert cli_main(["verify", "--json", str(path)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["error_count"], doc["omitted"], doc["counts"]) == (300, 200, {"unparseable": 300})


def test_a_file_is_given_up_after_too_many_findings(chain_file: Path, tmp_path: Path) -> None:
    junk = [b"[%d]\n" % i for i in range(5000)]
    path = _write(tmp_path / "t.jsonl", [*junk, *_lines(chain_file)])
    limits = integrity.VerifyLimits(max_file_findings=50, max_kept_findings=10)
    report = integrity.verify_paths([path, chain_file], limits=limits)
    assert report.counts == {"not_audit": 50, "too_many_findings": 1, "no_records": 1}
    assert report.lines == 50 + 17  # the rest of the first file is not read
    gave_up = next(f for f in report.errors if f.code == "too_many_findings")
    assert gave_up.line == 50 and gave_up.path == str(path)
    # The next file is verified as usual.
    assert len(report.sessions) == 1 and next(iter(report.sessions.values())).ended


def test_sessions_beyond_the_cap_are_hash_checked_not_followed(tmp_path: Path) -> None:
    def record(sid: str, tool: str = "t") -> bytes:
        rec = {"event": "tool_call", "tool": tool, "session_id": sid, "seq": 1,
               "prev_hash": integrity.genesis_hash(sid), "hash_alg": "sha256"}
        rec["hash"] = integrity.compute_hash(rec, None)
        return orjson.dumps(rec) + b"\n"

    forged = orjson.loads(record("mcp_e"))
    forged["tool"] = "evil"
    lines = [record(f"mcp_{c}") for c in "abcd"] + [orjson.dumps(forged) + b"\n"]
    path = _write(tmp_path / "t.jsonl", lines)
    report = integrity.verify_paths([path], limits=integrity.VerifyLimits(max_sessions=3))
    assert list(report.sessions) == ["mcp_a", "mcp_b", "mcp_c"]
    assert report.counts == {"too_many_sessions": 1, "hash_mismatch": 1, "no_end_record": 3}
    assert next(f for f in report.errors if f.code == "hash_mismatch").line == 5


def test_a_torn_line_nested_deeper_than_any_record_is_corrupt_not_a_crash(
        chain_file: Path, tmp_path: Path) -> None:
    """The torn-line check completed the line and handed it to ``json``: 200,000 open
    brackets raised RecursionError out of ``verify``."""
    lines = _lines(chain_file)
    lines.insert(4, b'{"a":' + b"[" * 200_000 + b"\n")
    report = integrity.verify_paths([_write(tmp_path / "t.jsonl", lines)])
    assert _codes(report) == {"unparseable"} and report.errors[0].line == 5


async def test_key_required_is_reported_once_per_session(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    logger = make_audit(tmp_path / "h", key="k3y-for-tests")
    await _write_session(logger, 3)
    logger.shutdown()
    report = integrity.verify_paths([tmp_path / "h"])
    assert report.counts == {"key_required": 1}


def test_gzip_past_its_decompressed_cap_is_an_error(chain_file: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap is max(GZIP_MIN_BYTES, 100 x the compressed size); lowered here so that a
    small file shows it (test_bounded_reading has the real 1 GiB case)."""
    from mcp_otel import reader

    monkeypatch.setattr(reader, "GZIP_MIN_BYTES", 4 << 20)
    data = chain_file.read_bytes()
    gz = _write(tmp_path / "mcp_audit_20261127.jsonl.gz",
                [gzip.compress(data + b"\n" * (8 << 20), mtime=0)])
    assert gz.stat().st_size * 100 < 4 << 20
    report = integrity.verify_paths([gz])
    assert _codes(report) == {"too_large"} and report.lines == 17
    assert f"more than {4 << 20} bytes" in report.errors[0].message
    (sess,) = report.sessions.values()
    assert sess.records == 17  # what was read before the cap is verified


async def test_a_data_directory_is_searched_for_audit_files(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    """``verify mcp-otel-data`` finds ``audit/`` (and archived audit files at any depth),
    and leaves the other JSONL files of the data directory alone."""
    data = tmp_path / "mcp-otel-data"
    logger = make_audit(data / "audit")
    await _write_session(logger, 2)
    logger.shutdown()
    (live,) = (data / "audit").glob("mcp_audit_*.jsonl")
    archive = data / "audit" / "archive" / "2026"
    archive.mkdir(parents=True)
    old = archive / "mcp_audit_20200101.jsonl.gz"
    logger = make_audit(tmp_path / "old")
    await _write_session(logger, 1)
    logger.shutdown()
    old.write_bytes(gzip.compress(next((tmp_path / "old").glob("*.jsonl")).read_bytes()))
    (data / "telemetry").mkdir()
    (data / "telemetry" / "mcp_telemetry_20261127.jsonl").write_bytes(b'{"event":"x"}\n')
    loop = data / "audit" / "loop"
    loop.symlink_to(data, target_is_directory=True)  # not followed

    report = integrity.verify_paths([data])
    assert report.files == [str(old), str(live)], report.files  # by name: date order
    assert report.ok and not report.warnings, report.to_dict()
    assert len(report.sessions) == 2


def test_cli_without_a_path_verifies_the_data_directory(
        chain_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    (data / "audit").mkdir(parents=True)
    shutil.copy(chain_file, data / "audit" / chain_file.name)
    monkeypatch.setenv("MCP_OTEL_DIR", str(data))
    assert cli_main(["verify"]) == 0
    assert capsys.readouterr().out.startswith("OK: 1 file(s), 17 line(s)")

    monkeypatch.delenv("MCP_OTEL_DIR")
    monkeypatch.chdir(tmp_path)  # the default, ./mcp-otel-data, is missing here
    assert cli_main(["verify"]) == 2
    err = capsys.readouterr().err
    assert "no such file or directory: mcp-otel-data" in err and "MCP_OTEL_DIR" in err


def test_version() -> None:
    import mcp_otel

    result = subprocess.run([sys.executable, "-m", "mcp_otel", "--version"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mcp-otel {mcp_otel.__version__}\n"


def test_the_audit_file_prefix_verify_searches_for_is_the_loggers() -> None:
    from mcp_otel.audit import AUDIT_FILE_TEMPLATE

    assert integrity.is_audit_file_name(AUDIT_FILE_TEMPLATE.format(date="20261127"))
    assert integrity.is_audit_file_name("mcp_audit_20261127.20261127T101500.jsonl.gz")
    assert not integrity.is_audit_file_name("mcp_telemetry_20261127.jsonl")
