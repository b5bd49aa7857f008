"""``mcp-otel verify`` and ``mcp-otel stats`` on hostile files: peak memory measured for real.

Each case runs the real CLI in a fresh process and reads that process's peak resident set
(``ru_maxrss``) from a small wrapper process whose only child it is (see ``_WRAPPER``).
Sizes are the issue's: 1 GiB of ``x\n`` lines (written, ~3 s), one line of 1 GiB (a
sparse file: no disk), a 4 MB gzip bomb that inflates to 4 GiB. The command runs under a
2 GiB address-space limit so that code reading whole files fails with ``MemoryError``
instead of taking the machine's memory (as the code before this test did).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from .conftest import SRC

#: The issue's bound, for every case and both commands.
MAX_RSS_MB = 100
_ADDRESS_SPACE = 2 << 30
_CALLS = 350_000


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    max_rss_mb: float


#: Runs the command and prints its exit code and peak RSS. Why a separate small process:
#: Linux carries the RSS a process had *before* ``exec`` into its ``ru_maxrss`` (the
#: forked copy of the parent counts), so a child forked straight from pytest, which holds
#: the test's data, would report pytest's size. Forked from this ~10 MB wrapper, the
#: figure is the command's own. The address-space limit is inherited by the command.
_WRAPPER = """
import json, resource, subprocess, sys
limit, timeout, out_path, err_path, *cmd = sys.argv[1:]
resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
with open(out_path, "wb") as out, open(err_path, "wb") as err:
    proc = subprocess.Popen(cmd, stdout=out, stderr=err)
    try:
        rc = proc.wait(timeout=float(timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "maxrss_kb": usage.ru_maxrss}))
"""


def run_cli(*args: str, timeout_s: float = 120.0) -> Measured:
    """``python -m mcp_otel ARGS`` in a fresh process; its exit code, output and peak RSS."""
    env = dict(os.environ, PYTHONPATH=SRC)
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp, "out"), Path(tmp, "err")
        wrapper = subprocess.run(
            [sys.executable, "-c", _WRAPPER, str(_ADDRESS_SPACE), str(timeout_s), str(out),
             str(err), sys.executable, "-m", "mcp_otel", *args],
            env=env, capture_output=True, text=True, timeout=timeout_s + 60, check=True)
        result = json.loads(wrapper.stdout)
        return Measured(result["rc"], out.read_text(), err.read_text(),
                        result["maxrss_kb"] / 1024)


def _bounded(m: Measured) -> None:
    assert m.max_rss_mb < MAX_RSS_MB, (m.max_rss_mb, m.stderr[-2000:])
    assert "Traceback" not in m.stderr, m.stderr[-2000:]


@pytest.fixture(scope="module")
def big_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("bounded")
    yield path
    for f in path.iterdir():  # hundreds of MB: do not wait for pytest's rotation
        f.unlink()


def test_garbage_lines(big_dir: Path) -> None:
    path = big_dir / "mcp_audit_20261127.jsonl"
    block = b"x\n" * (1 << 19)  # 1 MiB; 1 GiB in all
    with path.open("wb") as fh:
        for _ in range(1024):
            fh.write(block)

    verify = run_cli("verify", "--json", str(path))
    _bounded(verify)
    assert verify.returncode == 1
    doc = orjson.loads(verify.stdout)
    # The file is given up after 1,000 findings: a report, not 537 million of them.
    assert doc["counts"] == {"unparseable": 1000, "too_many_findings": 1, "no_records": 1}
    assert doc["lines"] == 1000 and doc["omitted"] == 900
    assert len(doc["errors"]) == 102  # 100 kept + the two about the whole file

    stats = run_cli("stats", str(path))
    _bounded(stats)
    assert stats.returncode == 2 and ":1: not a JSON Lines file" in stats.stderr


def test_one_line_of_a_gigabyte(big_dir: Path) -> None:
    path = big_dir / "mcp_audit_20261128.jsonl"
    with path.open("wb") as fh:
        fh.truncate(1 << 30)  # sparse: 1 GiB of NUL bytes, no newline

    verify = run_cli("verify", "--json", str(path))
    _bounded(verify)
    assert verify.returncode == 1
    doc = orjson.loads(verify.stdout)
    assert doc["counts"] == {"line_too_long": 1, "no_records": 1}
    (too_long, _) = doc["errors"]
    assert too_long["line"] == 1 and f"line of {1 << 30} bytes" in too_long["message"]

    stats = run_cli("stats", "--json", str(path))
    _bounded(stats)
    assert stats.returncode == 0
    report = orjson.loads(stats.stdout)
    assert report["records"] == 0
    assert any(f"skipped a line of {1 << 30} bytes" in w for w in report["warnings"])


def test_gzip_bomb(big_dir: Path) -> None:
    """4 MB of gzip (64 members of 64 MiB of newlines each) inflating to 4 GiB: read up
    to the cap (1 GiB: the larger of 1 GiB and 100x the file), then reported."""
    member = gzip.compress(b"\n" * (64 << 20), compresslevel=9, mtime=0)
    path = big_dir / "mcp_audit_20261129.jsonl.gz"
    path.write_bytes(member * 64)
    assert path.stat().st_size < 5_000_000

    verify = run_cli("verify", "--json", str(path))
    _bounded(verify)
    assert verify.returncode == 1
    doc = orjson.loads(verify.stdout)
    assert doc["counts"] == {"too_large": 1}
    assert f"decompresses to more than {1 << 30} bytes" in doc["errors"][0]["message"]

    stats = run_cli("stats", str(path))
    _bounded(stats)
    assert stats.returncode == 2
    assert f"decompresses to more than {1 << 30} bytes" in stats.stderr


def test_stats_on_a_large_valid_file(big_dir: Path) -> None:
    """A valid 60 MB telemetry file of calls with all-distinct durations: streamed, and the
    durations rounded once there are too many to keep (exact counts, stated error)."""
    path = big_dir / "mcp_telemetry_20261127.jsonl"
    lines = [orjson.dumps({"event": "tool_call", "session_id": "tel_x", "tool": f"t{i % 40}",
                           "status": "error" if i % 10 == 0 else "ok",
                           "duration_ms": 1 + i * 0.001, "bytes_in": 1, "bytes_out": 2,
                           "timestamp": "2026-11-27T10:00:00.000000+00:00"}) + b"\n"
             for i in range(_CALLS)]
    data = b"".join(lines)
    path.write_bytes(data)
    assert len(data) > 55_000_000

    stats = run_cli("stats", "--json", str(path))
    _bounded(stats)
    assert stats.returncode == 0, stats.stderr
    report = orjson.loads(stats.stdout)
    assert report["total"]["calls"] == _CALLS and report["total"]["errors"] == _CALLS // 10
    assert report["percentiles_exact"] is False
    err = report["percentile_relative_error"]
    assert 0 < err < 0.01
    for q in (50, 95, 99):  # durations rise with i: the nearest rank's i is the value's
        exact = 1 + (math.ceil(q / 100 * _CALLS) - 1) * 0.001
        assert abs(report["total"][f"p{q}_ms"] - exact) <= err * exact, q
