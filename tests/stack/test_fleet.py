"""A fleet's audit trail, verified from the collector's archive.

Several writer processes (tests/stack/_fleet_writer.py, each its own
``service.instance.id``) export their audit records over OTLP to the real collector
running the repository's collector-config.yaml; its file exporter archives them as
newline-delimited OTLP JSON next to ordinary application logs. ``mcp-otel verify`` must
pass the intact archive, report a record deleted from it or edited in it at its exact
``seq``, and report the records lost in transit while the collector was stopped as a gap
of exactly those ``seq`` -- while every host's local files still verify.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_otel import integrity, reader
from mcp_otel.cli import main as cli_main
from tests._support import wait_until
from tests.stack._peers import REPO, Collector

HOSTS = 3
RECORDS = 40  # per writer in the intact round, plus the end record
BEFORE, DURING, AFTER = 20, 15, 20  # outage round: records before, during, after the outage
OTHER_LOGS = 3  # per writer (tests/stack/_fleet_writer.py)
WRITER = REPO / "tests" / "stack" / "_fleet_writer.py"
KEY = "fleet-test-hmac-key"  # every writer's chain is HMAC-SHA-256 with it


@dataclass
class Writer:
    host: str
    log_dir: Path
    proc: subprocess.Popen[str]
    session: str = ""

    def line(self, prefix: str) -> list[str]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(prefix):
            self.proc.kill()
            err = (self.log_dir.parent / f"{self.host}.stderr").read_text(errors="replace")
            raise AssertionError(f"{self.host}: expected {prefix!r}, got {line!r}\n{err[-3000:]}")
        words = line.split()
        self.session = words[-2]  # "PHASE n <session> <seq>", "DONE <session> <seq>"
        return words

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        assert self.proc.wait(timeout=30) == 0, f"{self.host} failed"


def _start(collector: Collector, root: Path, host: str, phases: list[int],
           protocol: str = "http/protobuf") -> Writer:
    env = dict(os.environ)
    env.update(collector.otlp_env(protocol))
    env.update(
        OTEL_SERVICE_NAME="mcp-fleet",
        OTEL_RESOURCE_ATTRIBUTES=f"service.instance.id={host},host.name={host}.example",
        OTEL_BLRP_SCHEDULE_DELAY="50",
        # A dead collector costs each failed export about a second, not the default 10 s.
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]),
    )
    env["MCP_OTEL_AUDIT_KEY"] = KEY
    log_dir = root / host
    with (root / f"{host}.stderr").open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(log_dir), *map(str, phases)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    return Writer(host, log_dir, proc)


def _archived(archive: Path) -> tuple[set[tuple[str, int]], int]:
    """(session, seq) of every audit record in the archive, and the other log records.

    Read with the verifier's own reader; a line the file exporter is still writing (no
    newline yet) is left for the next poll."""
    seen: set[tuple[str, int]] = set()
    other = 0
    for path in sorted(archive.glob("logs*.jsonl")):
        for raw in reader.read_lines(path):
            if not raw.terminated or not raw.data.startswith(b'{"resourceLogs"'):
                continue
            for log in reader.otlp_logs(json.loads(raw.data)):
                attrs = reader.otlp_attributes(log)
                if log.scope == integrity.AUDIT_SCOPE:
                    seen.add((attrs["session_id"], attrs["seq"]))
                else:
                    other += 1
    return seen, other


def _wait_archived(archive: Path, wanted: set[tuple[str, int]], other: int) -> None:
    def done() -> bool:
        seen, others = _archived(archive)
        return wanted <= seen and others >= other

    wait_until(done, f"{len(wanted)} audit record(s) in the collector's archive")


def _verify(*paths: Path, key: str | None = KEY) -> integrity.VerifyReport:
    return integrity.verify_paths(list(paths), key=key)


def _by_host(report: integrity.VerifyReport) -> dict[str, integrity.SessionReport]:
    return {s.host: s for s in report.sessions.values()}  # type: ignore[misc]


def _rewrite(archive: Path, session: str, seq: int, change: Any) -> None:
    """Apply ``change(log_records, i)`` to the line holding ``session``'s record ``seq``."""
    path = archive / "logs.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    for n, line in enumerate(lines):
        doc = json.loads(line)
        for rl in doc.get("resourceLogs", []):
            for sl in rl["scopeLogs"]:
                for i, rec in enumerate(sl["logRecords"]):
                    attrs = {kv["key"]: kv["value"] for kv in rec["attributes"]}
                    if attrs.get("session_id", {}).get("stringValue") == session and \
                            attrs["seq"]["intValue"] == str(seq):
                        change(sl["logRecords"], i)
                        lines[n] = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
                        path.write_bytes(b"".join(lines))
                        return
    raise AssertionError(f"seq {seq} of {session} not in the archive")


@pytest.fixture(scope="module")
def fleet(collector: Collector, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Collector, Path]]:
    if collector.proc is None or collector.proc.poll() is not None:
        collector.start()
    root = Path(tmp_path_factory.mktemp("fleet"))
    yield collector, root


def test_fleet_archive_verifies_and_reports_tampering_and_transit_loss(
        fleet: tuple[Collector, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    collector, root = fleet
    monkeypatch.delenv("MCP_OTEL_AUDIT_KEY", raising=False)  # verify_paths would read it
    archive = collector.archive_dir
    already, other_before = _archived(archive) if archive.exists() else (set(), 0)

    # --- round 1: an intact run of HOSTS concurrent writers -------------------------
    writers = [_start(collector, root, f"fleet-a{i}", [RECORDS],
                      "grpc" if i == 0 else "http/protobuf") for i in range(HOSTS)]
    for w in writers:
        w.line("DONE")
        w.finish()
    end = RECORDS + 1
    _wait_archived(archive, {(w.session, end) for w in writers},
                   other_before + HOSTS * OTHER_LOGS)
    intact = tmp_path / "intact"
    shutil.copytree(archive, intact)

    report = _verify(intact)
    assert report.ok and not report.warnings, report.to_dict()["errors"][:5]
    hosts = _by_host(report)
    for w in writers:
        s = hosts[w.host]
        assert (s.session_id, s.records, s.first_seq, s.last_seq, s.status, s.service) == \
            (w.session, end, 1, end, "complete", "mcp-fleet")
    assert report.other_records >= HOSTS * OTHER_LOGS  # the app logs, skipped
    unkeyed = _verify(intact, key=None)  # HMAC chains cannot be checked without the key
    assert not unkeyed.ok and unkeyed.counts == {"key_required": HOSTS}
    assert {s.status for s in unkeyed.sessions.values()} == {"unverified"}
    for w in writers:  # the local files agree
        local = _verify(w.log_dir)
        assert local.ok and not local.warnings and local.sessions[w.session].records == end

    # The same archive after rotation (older part in a rotated file) still verifies.
    rotated = tmp_path / "rotated"
    shutil.copytree(intact, rotated)
    lines = (rotated / "logs.jsonl").read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    (rotated / "logs-2026-01-01T00-00-00.000.jsonl").write_bytes(b"".join(lines[:half]))
    (rotated / "logs.jsonl").write_bytes(b"".join(lines[half:]))
    assert _verify(rotated).ok

    # --- a record deleted from the archive: a gap of exactly its seq ----------------
    victim = writers[1]
    deleted = tmp_path / "deleted"
    shutil.copytree(intact, deleted)
    _rewrite(deleted, victim.session, 17, lambda recs, i: recs.pop(i))
    report = _verify(deleted)
    assert not report.ok and report.counts == {"gap": 1}, report.to_dict()["errors"]
    assert report.errors[0].session_id == victim.session
    s = _by_host(report)[victim.host]
    assert (s.status, s.gaps, s.missing, s.records) == ("missing", [[17, 17]], 1, end - 1)
    assert all(x.status == "complete" for x in report.sessions.values() if x is not s)

    # --- a record edited in the archive: a hash mismatch at exactly its seq ---------
    victim = writers[2]
    edited = tmp_path / "edited"
    shutil.copytree(intact, edited)

    def edit(recs: list[dict[str, Any]], i: int) -> None:
        for kv in recs[i]["attributes"]:
            if kv["key"] == "tool":
                kv["value"] = {"stringValue": "rm_rf"}

    _rewrite(edited, victim.session, 23, edit)
    report = _verify(edited)
    assert not report.ok and report.counts == {"hash_mismatch": 1}, report.to_dict()["errors"]
    err = report.errors[0]
    assert err.session_id == victim.session and err.message.startswith("seq 23:")
    assert _by_host(report)[victim.host].status == "tampered"

    # --- round 2: the collector stops for part of the run ---------------------------
    # Over OTLP/HTTP: each export is a new request, so the first one after the restart
    # gets through; a gRPC channel may still be in its reconnect back-off then, which
    # would make the size of the loss depend on timing.
    writers2 = [_start(collector, root, f"fleet-b{i}", [BEFORE, DURING, AFTER])
                for i in range(HOSTS)]
    for w in writers2:
        w.line("PHASE 1")
    _wait_archived(archive, {(w.session, BEFORE) for w in writers2}, 0)
    collector.stop()
    for w in writers2:
        w.go()
    for w in writers2:
        w.line("PHASE 2")  # the OTLP copy of phase 2 was dropped by the exporter
    collector.start()
    for w in writers2:
        w.go()
    for w in writers2:
        w.line("DONE")
        w.finish()
    end2 = BEFORE + DURING + AFTER + 1
    _wait_archived(archive, {(w.session, end2) for w in writers2}, 0)

    monkeypatch.setenv("MCP_OTEL_AUDIT_KEY", KEY)  # where the CLI reads it
    assert cli_main(["verify", "--json", str(archive)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"] == {"gap": HOSTS}, doc["errors"]
    sessions = {s["host"]: s for s in doc["sessions"]}
    for w in writers2:
        s = sessions[w.host]
        assert (s["session_id"], s["status"], s["gaps"], s["missing"], s["records"],
                s["ended"], s["declared_lost"]) == \
            (w.session, "missing", [[BEFORE + 1, BEFORE + DURING]], DURING,
             end2 - DURING, True, 0)
    for w in writers:
        assert sessions[w.host]["status"] == "complete"
    hosts_doc = {h["host"]: h for h in doc["hosts"]}
    assert hosts_doc[writers2[0].host] == {
        "host": writers2[0].host, "service": "mcp-fleet", "sessions": 1,
        "records": end2 - DURING, "missing": DURING, "declared_lost": 0,
        "status": {"missing": 1}}
    assert {(s, q) for s, q in already} <= _archived(archive)[0]

    # The human report names every host and the lost range.
    assert cli_main(["verify", str(archive)]) == 1
    human = capsys.readouterr().out
    for w in writers2:
        assert f"missing seq {BEFORE + 1}..{BEFORE + DURING} ({DURING} records)" in human
        assert f"host {w.host} (service mcp-fleet)" in human

    # The local files hold everything, including what never reached the collector.
    for w in writers2:
        local = _verify(w.log_dir)
        assert local.ok and not local.warnings
        assert local.sessions[w.session].records == end2
