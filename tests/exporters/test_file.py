"""The locked file: reopen, modes, symlinks, failures, rotation, retention, fsync."""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from mcp_otel.exporters import JsonlLogExporter, LockedJsonlFile, RotationPolicy
from tests.exporters._helpers import finish, read_lines, run_writer

RES = Resource.create({})
OK = LogRecordExportResult.SUCCESS
FAIL = LogRecordExportResult.FAILURE


def batch(start: int, n: int = 10, body: str = "x") -> list[ReadableLogRecord]:
    return [
        ReadableLogRecord(LogRecord(body=body, attributes={"seq": start + i}), resource=RES)
        for i in range(n)
    ]


def seqs(paths: list[Path]) -> list[int]:
    return sorted(r["seq"] for r in read_lines(paths))


def test_modes_0600_0700_and_date_in_path(tmp_path: Path) -> None:
    old = os.umask(0)  # the modes must be exact whatever the umask
    try:
        exporter = JsonlLogExporter(tmp_path / "a" / "b" / "logs_{date}.jsonl")
        assert exporter.export(batch(0)) == OK
    finally:
        os.umask(old)
    expected = tmp_path / "a" / "b" / f"logs_{datetime.now(UTC):%Y%m%d}.jsonl"
    assert exporter.current_path == expected
    assert stat.S_IMODE(expected.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert exporter.path_for(datetime(2030, 1, 2, 23, 59, tzinfo=UTC)).name == "logs_20300102.jsonl"
    exporter.shutdown()


def test_date_rolls_over_at_utc_midnight(tmp_path: Path) -> None:
    now = [datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC).timestamp()]
    f = LockedJsonlFile(tmp_path / "x_{date}.jsonl", clock=lambda: now[0])
    assert f.write(b'{"a":1}\n')
    now[0] += 2
    assert f.write(b'{"a":2}\n')
    f.close()
    assert (tmp_path / "x_20260101.jsonl").read_bytes() == b'{"a":1}\n'
    assert (tmp_path / "x_20260102.jsonl").read_bytes() == b'{"a":2}\n'


def test_reopens_after_rename_and_after_removal(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    exporter = JsonlLogExporter(path)
    assert exporter.export(batch(0)) == OK
    path.rename(tmp_path / "r.jsonl.1")  # logrotate's move
    assert exporter.export(batch(10)) == OK
    path.unlink()  # removed underneath
    assert exporter.export(batch(20)) == OK
    exporter.shutdown()
    assert seqs([tmp_path / "r.jsonl.1"]) == list(range(10))
    assert seqs([path]) == list(range(20, 30))


def test_symlink_at_path_is_not_followed(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "victim"
    target.write_text("precious\n")
    path = tmp_path / "logs.jsonl"
    path.symlink_to(target)
    exporter = JsonlLogExporter(path)
    assert exporter.export(batch(0)) == FAIL
    assert exporter.export(batch(10)) == FAIL
    assert target.read_text() == "precious\n"
    assert exporter.failed_records == 20
    err = capfd.readouterr().err
    assert err.count("cannot write") == 1 and "symlink" in err  # once per cause
    path.unlink()
    assert exporter.export(batch(20)) == OK  # keeps working once the cause is gone
    exporter.shutdown()
    assert seqs([path]) == list(range(20, 30))


def test_refuses_non_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "fifo.jsonl"
    os.mkfifo(path)
    exporter = JsonlLogExporter(path)
    assert exporter.export(batch(0)) == FAIL  # neither hangs (no reader) nor writes
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert exporter.export(batch(0)) == FAIL  # with a reader: not a regular file
        assert os.read(reader, 10) == b""  # nothing was written, no writer left open
    finally:
        os.close(reader)
    exporter.shutdown()


def test_full_disk_rlimit_fsize_keeps_what_fits_and_recovers(tmp_path: Path) -> None:
    """Under a real file-size limit, every record that fits is written, no torn line is
    left, the rest is counted once, and writing resumes once there is room again."""
    path = tmp_path / "full.jsonl"
    limit = 64 * 1024
    status, err = finish(run_writer("fsize", str(limit), str(path)))
    results = status["results"]
    assert "SUCCESS" in results and results[-1] == "FAILURE"
    assert status["after"] == "SUCCESS"
    assert err.count("cannot write") == 1, err
    raw = path.read_bytes()
    lines = read_lines([path])  # no torn line left behind
    k = status["written_at_limit"]
    # Exactly the records the bytes allow: a prefix within the limit, and the next
    # record (as long as the last one kept, or longer: its seq has as many digits or
    # more) would not have fit.
    assert status["size_at_limit"] <= limit
    last_kept = raw.split(b"\n")[k - 1]
    assert limit - status["size_at_limit"] < len(last_kept) + 1
    assert k % 50 != 0  # the failing batch was split, not dropped whole
    assert [r["seq"] for r in lines] == [*range(k), *range(status["after_seq"],
                                                         status["after_seq"] + 50)]
    total = 50 * (len(results) + 1)
    assert status["written"] == len(lines) == k + 50
    assert status["failed"] == total - status["written"]  # once per record


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory an unprivileged uid can reach (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="mcp-otel-ro-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_read_only_directory_fails_counted_then_recovers(
    shared_tmp: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Runs in a forked child so that, under root, it can drop to an unprivileged uid
    (root ignores directory permissions)."""
    target_dir = shared_tmp / "ro"
    target_dir.mkdir()
    if os.geteuid() == 0:
        os.chown(target_dir, 65534, 65534)
    target_dir.chmod(0o500)
    to_parent_r, to_parent_w = os.pipe()
    to_child_r, to_child_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            exporter = JsonlLogExporter(target_dir / "logs.jsonl", fsync="none")
            first = [exporter.export(batch(i * 10)) for i in range(3)]
            os.write(to_parent_w, f"{first.count(FAIL)} {exporter.failed_records}\n".encode())
            os.read(to_child_r, 1)  # the parent makes the directory writable
            after = exporter.export(batch(1000))
            exporter.shutdown()
            os.write(to_parent_w, f"{after.name} {exporter.failed_records}\n".encode())
            code = 0
        finally:
            os._exit(code)
    with os.fdopen(to_parent_r) as from_child:
        assert from_child.readline() == "3 30\n"
        target_dir.chmod(0o700)
        os.write(to_child_w, b"g")
        assert from_child.readline() == "SUCCESS 30\n"
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    os.close(to_child_w)
    os.close(to_child_r)
    os.close(to_parent_w)
    err = capfd.readouterr().err
    assert err.count("cannot write") == 1, err
    assert "EACCES" in err
    assert seqs([target_dir / "logs.jsonl"]) == list(range(1000, 1010))


def test_removed_directory_is_recreated(tmp_path: Path) -> None:
    d = tmp_path / "gone"
    exporter = JsonlLogExporter(d / "l.jsonl")
    assert exporter.export(batch(0)) == OK
    shutil.rmtree(d)
    assert exporter.export(batch(10)) == OK
    exporter.shutdown()
    assert seqs([d / "l.jsonl"]) == list(range(10, 20))
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_rotation_by_size_keeps_every_line(tmp_path: Path) -> None:
    exporter = JsonlLogExporter(tmp_path / "s.jsonl", max_bytes=2000)
    for b in range(30):
        assert exporter.export(batch(b * 5, 5)) == OK
    exporter.shutdown()
    files = list(tmp_path.iterdir())
    assert len(files) > 5
    assert all(f.stat().st_size <= 2000 for f in files)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert seqs(files) == list(range(150))


def test_oversized_batch_goes_alone_into_one_file(tmp_path: Path) -> None:
    exporter = JsonlLogExporter(tmp_path / "s.jsonl", max_bytes=100)
    assert exporter.export(batch(0, 3)) == OK
    assert exporter.export(batch(3, 3)) == OK
    exporter.shutdown()
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2
    assert [len(read_lines([f])) for f in files] == [3, 3]


def test_retention_max_files_and_compression(tmp_path: Path) -> None:
    exporter = JsonlLogExporter(tmp_path / "c.jsonl", max_bytes=1500, max_files=3, compress=True)
    for b in range(40):
        assert exporter.export(batch(b * 5, 5)) == OK
    exporter.shutdown()
    names = sorted(p.name for p in tmp_path.iterdir())
    gz = [n for n in names if n.endswith(".gz")]
    assert len(gz) == 3 and "c.jsonl" in names and len(names) == 4, names
    for n in gz:
        assert stat.S_IMODE((tmp_path / n).stat().st_mode) == 0o600
        gzip.decompress((tmp_path / n).read_bytes())
    # the newest lines survive, contiguous up to the last one
    got = seqs([tmp_path / n for n in names])
    assert got == list(range(got[0], 200))


def test_retention_max_age(tmp_path: Path) -> None:
    old = tmp_path / "a_20200101.jsonl"
    old.write_text('{"seq":-1}\n')
    stale_time = (datetime.now(UTC) - timedelta(days=10)).timestamp()
    os.utime(old, (stale_time, stale_time))
    unrelated = tmp_path / "other.txt"
    unrelated.write_text("keep")
    os.utime(unrelated, (stale_time, stale_time))
    exporter = JsonlLogExporter(
        tmp_path / "a_{date}.jsonl", max_bytes=600, max_age=timedelta(days=1)
    )
    for b in range(5):
        assert exporter.export(batch(b * 5, 5)) == OK
    exporter.shutdown()
    assert not old.exists()
    assert unrelated.exists()
    assert seqs([p for p in tmp_path.glob("a_*.jsonl")]) == list(range(25))


@pytest.mark.parametrize("policy", ["batch", "interval", "none"])
def test_fsync_policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str) -> None:
    """Spy on the real fdatasync: batch syncs every export, interval once at shutdown
    besides its periodic syncs (their once-a-second pace is tested with a fake clock
    below), none never."""
    calls: list[int] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    exports = 20
    exporter = JsonlLogExporter(tmp_path / "f.jsonl", fsync=policy)  # type: ignore[arg-type]
    for b in range(exports):
        assert exporter.export(batch(b * 2, 2)) == OK
    before_shutdown = len(calls)
    exporter.shutdown()
    if policy == "batch":
        assert before_shutdown == exports
    elif policy == "interval":
        assert before_shutdown < exports  # not every export
        assert len(calls) == before_shutdown + 1  # and at shutdown
    else:
        assert calls == []
    assert seqs([tmp_path / "f.jsonl"]) == list(range(exports * 2))


def test_interval_fsync_once_per_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
    now = [1000.0]
    f = LockedJsonlFile(tmp_path / "i.jsonl", fsync="interval", monotonic=lambda: now[0])
    for _ in range(5):
        assert f.write(b"{}\n")
    assert calls == []  # within the first second
    now[0] += 1.01
    assert f.write(b"{}\n")  # hands the sync to the background syncer, never waits for it
    assert f.wait_background_sync(10)
    assert len(calls) == 1
    for _ in range(5):
        assert f.write(b"{}\n")
    assert len(calls) == 1
    assert f.flush()
    assert len(calls) == 2  # force_flush syncs
    assert f.flush()
    assert len(calls) == 2  # nothing new to sync
    f.close()
    assert (tmp_path / "i.jsonl").read_bytes() == b"{}\n" * 11


def test_interval_fsync_never_blocks_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow periodic fdatasync runs beside the writes, not inside them: writes go on
    while it is stuck, and flush()/close() still wait for the disk."""
    entered, release = threading.Event(), threading.Event()
    calls: list[int] = []
    real = os.fdatasync

    def slow(fd: int) -> None:
        calls.append(fd)
        entered.set()
        assert release.wait(30)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow)
    now = [1000.0]
    f = LockedJsonlFile(tmp_path / "s.jsonl", fsync="interval", monotonic=lambda: now[0])
    assert f.write(b"{}\n")
    now[0] += 1.01
    assert f.write(b"{}\n")  # dispatches the sync
    assert entered.wait(30)
    for _ in range(3):  # the sync is stuck: writes still complete
        now[0] += 1.01
        assert f.write(b"{}\n")
    assert len(calls) == 1  # one background sync at a time
    assert (tmp_path / "s.jsonl").read_bytes() == b"{}\n" * 5
    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(f.flush()))
    flusher.start()
    release.set()
    flusher.join(30)
    assert flushed == [True]
    assert len(calls) == 2  # the flush waited for the background sync, then synced the rest
    f.close()


def test_interval_fsync_failure_is_reported_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    calls: list[int] = []
    real = os.fdatasync

    def failing_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", failing_once)
    now = [1000.0]
    f = LockedJsonlFile(tmp_path / "e.jsonl", fsync="interval", monotonic=lambda: now[0])
    now[0] += 1.01
    assert f.write(b"{}\n")  # background sync fails
    assert f.wait_background_sync(10)
    assert f.flush()  # collects the failure, reports it, and syncs the data again
    assert len(calls) == 2
    assert f.last_error is not None and "fsync:EIO" in f.last_error
    assert "fsync:EIO" in capfd.readouterr().err
    f.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_interval_fsync_in_a_forked_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork while the parent's background sync is stuck: the child gets its own syncer
    thread, and its interval syncs complete."""
    parent = os.getpid()
    entered, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def spy(fd: int) -> None:
        if os.getpid() == parent:
            entered.set()
            assert release.wait(30)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    now = [1000.0]
    f = LockedJsonlFile(tmp_path / "k.jsonl", fsync="interval", monotonic=lambda: now[0])
    now[0] += 1.01
    assert f.write(b"{}\n")
    assert entered.wait(30)  # the parent's sync is in flight, and stays so across fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = False
        try:
            now[0] += 1.01
            ok = f.write(b"{}\n") and f.wait_background_sync(10) and f.flush()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    release.set()
    assert os.waitstatus_to_exitcode(status) == 0
    assert f.flush()
    f.close()
    assert (tmp_path / "k.jsonl").read_bytes() == b"{}\n" * 2


def test_export_after_shutdown_fails_and_counts(tmp_path: Path) -> None:
    exporter = JsonlLogExporter(tmp_path / "z.jsonl")
    exporter.shutdown()
    assert exporter.export(batch(0)) == FAIL
    assert exporter.failed_records == 10
    assert exporter.force_flush() is True


def test_otel_sdk_disabled_writes_nothing_unless_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    exporter = JsonlLogExporter(tmp_path / "d" / "x.jsonl")
    assert exporter.export(batch(0)) == OK
    assert exporter.export(batch(10)) == OK
    exporter.shutdown()
    assert not (tmp_path / "d").exists()
    assert capfd.readouterr().err.count("OTEL_SDK_DISABLED") == 1  # said once, not silent
    # A system of record (the audit trail) opts out explicitly.
    forced = JsonlLogExporter(tmp_path / "d" / "x.jsonl", disabled=False)
    assert forced.export(batch(0)) == OK
    forced.shutdown()
    assert seqs([tmp_path / "d" / "x.jsonl"]) == list(range(10))


def test_environment_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_OTEL_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MCP_OTEL_JSONL_FORMAT", "otlp")
    monkeypatch.setenv("MCP_OTEL_FSYNC", "batch")
    monkeypatch.setenv("MCP_OTEL_JSONL_MAX_BYTES", "1000")
    exporter = JsonlLogExporter()
    assert exporter.config.format == "otlp"
    assert exporter.config.fsync == "batch"
    assert exporter.config.rotation == RotationPolicy(max_bytes=1000)
    assert exporter.path == str(tmp_path / "data" / "logs" / "logs_{date}.jsonl")
    assert exporter.export(batch(0)) == OK
    exporter.shutdown()
    assert exporter.current_path.exists()


def test_relative_path_is_fixed_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exporter = JsonlLogExporter("rel/x.jsonl")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the host changes directory later
    assert exporter.export(batch(0)) == OK
    exporter.shutdown()
    assert exporter.path == str(tmp_path / "rel" / "x.jsonl")
    assert seqs([tmp_path / "rel" / "x.jsonl"]) == list(range(10))


def test_bad_environment_falls_back_bad_argument_raises(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCP_OTEL_FSYNC", "sometimes")
    exporter = JsonlLogExporter(tmp_path / "e.jsonl")
    assert exporter.config.fsync == "interval"
    assert "MCP_OTEL_FSYNC" in capfd.readouterr().err
    with pytest.raises(ValueError, match="fsync"):
        JsonlLogExporter(tmp_path / "e.jsonl", fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="format"):
        JsonlLogExporter(tmp_path / "e.jsonl", format="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bytes"):
        JsonlLogExporter(tmp_path / "e.jsonl", max_bytes=0)


def test_dropped_exporter_does_not_leak_its_descriptor(tmp_path: Path) -> None:
    import gc

    target = tmp_path / "leak.jsonl"

    def open_on_target() -> int:
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                n += os.readlink(f"/proc/self/fd/{fd}") == str(target)
        return n

    exporter = JsonlLogExporter(target)
    assert exporter.export(batch(0)) == OK
    assert open_on_target() == 1
    del exporter
    gc.collect()
    assert open_on_target() == 0


def test_a_writer_dead_mid_line_does_not_swallow_the_next_batch(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A process killed mid-write leaves a fragment; a writer already running starts anew."""
    path = tmp_path / "shared.jsonl"
    f = LockedJsonlFile(path)
    assert f.write(b'{"seq":0}\n')
    with open(path, "ab") as other:  # another process, dying after half a line
        other.write(b'{"seq":1,"half":')
    assert f.write(b'{"seq":2}\n{"seq":3}\n')
    assert f.write(b'{"seq":4}\n')  # our own tail again: no extra newline
    f.close()
    lines = path.read_bytes().split(b"\n")
    expected = [b'{"seq":0}', b'{"seq":1,"half":', b'{"seq":2}', b'{"seq":3}', b'{"seq":4}']
    assert lines == [*expected, b""]
    assert "ended with an incomplete line" in capfd.readouterr().err
