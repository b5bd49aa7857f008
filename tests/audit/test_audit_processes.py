"""Real processes: exact counts under load, crash with SIGKILL, exit and SIGTERM flushes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from mcp_otel import integrity
from mcp_otel.audit import AuditLogger

from .conftest import PYTHON, child_env, read_records

CHILD = str(Path(__file__).with_name("_child.py"))


def _spawn(tmp_path: Path, *args: str, **popen: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PYTHON, CHILD, *args], env=child_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def _finish(proc: subprocess.Popen[bytes], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(), err.decode()


def test_eight_threads_fifty_thousand_calls_each_exact(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    a = make_audit()
    per_thread, threads_n, inflight = 50_000, 8, 50

    def run(k: int) -> None:
        async def worker(w: int) -> None:
            for i in range(per_thread // inflight):
                await a.log_tool_call(f"t{k}", {"w": w, "i": i})
        async def main() -> None:
            await asyncio.gather(*(worker(w) for w in range(inflight)))
        asyncio.run(main())

    threads = [threading.Thread(target=run, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # wait="written": no flush needed, the file is complete when the calls return.
    path = a.log_file
    total = per_thread * threads_n
    per_tool: Counter[str] = Counter()
    calls: set[tuple[str, int, int]] = set()
    cids: set[str] = set()
    n = 0
    with open(path, "rb") as fh:  # streamed: 400,000 parsed dicts would cost ~1.5 GB
        for n, line in enumerate(fh, 1):
            assert line.endswith(b"\n")
            r = orjson.loads(line)
            assert r["seq"] == n
            per_tool[r["tool"]] += 1
            calls.add((r["tool"], r["arguments"]["w"], r["arguments"]["i"]))
            cids.add(r["correlation_id"])
    assert n == total
    assert per_tool == {f"t{k}": per_thread for k in range(threads_n)}
    assert len(calls) == total and len(cids) == total
    a.shutdown()
    report = integrity.verify_paths([path])
    assert report.ok and not report.warnings
    assert a.get_session_summary()["records_lost"] == 0


def test_four_processes_twenty_thousand_calls_each_exact(tmp_path: Path) -> None:
    log_dir = tmp_path / "shared"
    procs = [_spawn(tmp_path, str(log_dir), "burst", "--threads", "2", "--calls", "10000",
                    "--inflight", "20", "--tag", f"p{n}_") for n in range(4)]
    for p in procs:
        code, _, err = _finish(p)
        assert code == 0, err
    recs = read_records(log_dir)
    calls = [r for r in recs if r["event"] == "tool_call"]
    assert len(calls) == 80_000
    assert Counter(r["tool"][:3] for r in calls) == {f"p{n}_": 20_000 for n in range(4)}
    ends = [r for r in recs if r["event"] == "session_end"]
    assert len(ends) == 4 and all(e["records"] == 20_001 for e in ends)
    report = integrity.verify_paths([log_dir])
    assert report.ok and not report.warnings, report.to_dict()["errors"][:3]
    assert len(report.sessions) == 4


def test_sigkill_mid_burst_then_a_new_writer(
        make_audit: Callable[..., AuditLogger], tmp_path: Path) -> None:
    log_dir = tmp_path / "audit"
    proc = _spawn(tmp_path, str(log_dir), "forever", "--threads", "4", "--wait", "queued")
    try:
        deadline = time.monotonic() + 60
        target = None
        while time.monotonic() < deadline:
            files = list(log_dir.glob("*.jsonl")) if log_dir.exists() else []
            if files and files[0].stat().st_size > 2_000_000:
                target = files[0]
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.01)
        assert target is not None, "the writer never got going"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    before = target.read_bytes()
    lines = before.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    for line in complete:  # every complete line is a valid record
        orjson.loads(line)
    report = integrity.verify_paths([target])
    assert report.ok, report.to_dict()["errors"][:3]
    codes = Counter(w.code for w in report.warnings)
    assert codes["no_end_record"] == 1 and codes["torn_line"] == (1 if tail else 0)
    assert sum(codes.values()) == 1 + (1 if tail else 0)
    assert not integrity.verify_paths([target], strict=True).ok

    # A crash can also leave a torn line; simulate the worst case on top of the real one.
    if not tail:
        with open(target, "ab") as fh:
            fh.write(complete[-1][: len(complete[-1]) // 2])
        before = target.read_bytes()
    a = make_audit(log_dir)
    asyncio.run(a.log_tool_call("after_crash", {"ok": True}))
    a.shutdown()
    after = target.read_bytes()
    assert after.startswith(before)  # nothing written before is lost or changed
    assert after[len(before):len(before) + 1] == b"\n"  # the new writer starts a fresh line
    new = [orjson.loads(x) for x in after[len(before) + 1:].splitlines()]
    assert [r.get("tool", r["event"]) for r in new] == ["after_crash", "session_end"]
    report = integrity.verify_paths([target])
    assert report.ok
    codes = Counter(w.code for w in report.warnings)
    assert codes == {"torn_line": 1, "no_end_record": 1}
    torn = next(w for w in report.warnings if w.code == "torn_line")
    assert torn.line == before.count(b"\n") + 1
    assert report.sessions[new[0]["session_id"]].ended


def test_queued_records_are_written_at_normal_exit(tmp_path: Path) -> None:
    log_dir = tmp_path / "exit"
    code, _, err = _finish(_spawn(tmp_path, str(log_dir), "burst", "--threads", "4",
                                  "--calls", "5000", "--inflight", "10", "--wait", "queued"))
    assert code == 0, err
    recs = read_records(log_dir)
    assert len(recs) == 20_001 and recs[-1]["event"] == "session_end"
    assert integrity.verify_paths([log_dir]).ok


_FORK_CHILD = """
import asyncio, multiprocessing as mp, sys
from mcp_otel.audit import AuditLogger
a = AuditLogger(sys.argv[1], wait="queued", otlp=False, max_batch_size=50)
async def burst(n):
    for i in range(n):
        await a.log_tool_call("child", {"i": i})
if __name__ == "__main__":
    asyncio.run(a.log_tool_call("parent"))
    p = mp.get_context("fork").Process(target=asyncio.run, args=(burst(3000),))
    p.start()
    p.join()
    assert p.exitcode == 0, p.exitcode
    a.shutdown()
"""


def test_multiprocessing_fork_child_flushes_at_exit(tmp_path: Path) -> None:
    """A fork-started multiprocessing child clears its inherited finalizers; the audit
    flush is registered again there, so its queued records and end record are written."""
    log_dir = tmp_path / "mpfork"
    proc = subprocess.Popen([PYTHON, "-c", _FORK_CHILD, str(log_dir)], env=child_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    code, _, err = _finish(proc)
    assert code == 0, err
    report = integrity.verify_paths([log_dir])
    assert report.ok and not report.warnings, report.to_dict()
    records = sorted(s.records for s in report.sessions.values())
    assert records == [2, 3001]  # parent: call + end; child: 3000 calls + end
    assert all(s.ended for s in report.sessions.values())


@pytest.mark.parametrize("previous", ["none", "python", "ignore"])
def test_sigterm_handler_flushes_then_chains(tmp_path: Path, previous: str) -> None:
    log_dir = tmp_path / "term"
    proc = _spawn(tmp_path, str(log_dir), "sigterm", "--calls", "3000", "--wait", "queued",
                  "--previous", previous)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        proc.send_signal(signal.SIGTERM)
        if previous == "ignore":
            # The handler flushes and returns; the process lives on. Poll the file (a
            # line may be mid-write while we read, so look for the end record's bytes).
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                data = b"".join(p.read_bytes() for p in log_dir.glob("*.jsonl"))
                if b'"event":"session_end"' in data and data.endswith(b"\n"):
                    break
                time.sleep(0.01)
            assert proc.poll() is None  # an ignored SIGTERM stays ignored
            proc.kill()
        code, _, err = _finish(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expected = {"none": -signal.SIGTERM, "python": 7, "ignore": -signal.SIGKILL}[previous]
    assert code == expected, err
    recs = read_records(log_dir)
    assert len(recs) == 3001 and recs[-1]["event"] == "session_end"
    assert (log_dir / "previous-handler-ran").exists() is (previous == "python")
    assert integrity.verify_paths([log_dir]).ok


def test_memory_is_bounded_by_the_queue_not_the_burst(tmp_path: Path) -> None:
    """8 threads x 125,000 sequential calls in queued mode (1,000,000 records)."""
    if os.environ.get("MCP_OTEL_SKIP_MEMORY_TEST") == "1":
        pytest.skip("MCP_OTEL_SKIP_MEMORY_TEST=1")
    log_dir = tmp_path / "mem"
    code, out, err = _finish(_spawn(tmp_path, str(log_dir), "burst", "--threads", "8",
                                    "--calls", "125000", "--wait", "queued", "--memory"),
                             timeout=280)
    assert code == 0, err
    fields = dict(kv.split("=") for kv in out.split())
    growth_mb = (int(fields["rss_peak_kb"]) - int(fields["rss_base_kb"])) / 1024
    # The bound is 200 MB; we measure 37-39 MB. 100 MB catches a regression
    # (heap fragmentation from queued payload snapshots once reached 190 MB) without
    # tripping on allocator noise.
    assert growth_mb < 100, (f"1,000,000 queued calls grew RSS by {growth_mb:.0f} MB", out,
                             err[-2000:])
    n = sum(p.read_bytes().count(b"\n") for p in log_dir.glob("*.jsonl"))
    assert n == 1_000_001
