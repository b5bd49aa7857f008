"""Verifying chains carried in OTLP/JSON: the ``otlp`` line format and the Collector's
archive (the same ``LogsData`` lines). The archive test against the real collector is
tests/stack/test_fleet.py; these use the project's own ``otlp`` writer, in process."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_otel import integrity, reader
from mcp_otel.audit import AuditLogger
from mcp_otel.cli import main as cli_main
from mcp_otel.exporters import JsonlLogExporter, RotationPolicy

# ------------------------------------------------------------------ AnyValue decoding


@pytest.mark.parametrize(("node", "value"), [
    ({"stringValue": "é\u2028"}, "é\u2028"),
    ({"stringValue": ""}, ""),
    ({"boolValue": False}, False),
    ({"intValue": "-9223372036854775808"}, -(2**63)),
    ({"intValue": "18446744073709551615"}, 2**64 - 1),
    ({"intValue": 7}, 7),  # a JSON number: protobuf's JSON parsers accept it
    ({"doubleValue": 1}, 1.0),  # the Collector writes 1.0 as 1: still a float
    ({"doubleValue": 2.5}, 2.5),
    ({"doubleValue": "-Infinity"}, float("-inf")),
    ({"bytesValue": "AAH/"}, b"\x00\x01\xff"),
    ({}, None),
    ({"arrayValue": {}}, []),
    ({"kvlistValue": {}}, {}),
    ({"arrayValue": {"values": [{"intValue": "1"}, {}, {"boolValue": True}]}}, [1, None, True]),
    ({"kvlistValue": {"values": [{"key": "a", "value": {"doubleValue": 0}},
                                 {"key": "b"}]}}, {"a": 0.0, "b": None}),
])
def test_any_value_follows_the_otlp_json_mapping(node: Any, value: Any) -> None:
    got = reader.any_value(node)
    assert got == value and type(got) is type(value)


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"intValue": "1"}
    for _ in range(depth):
        node = {"arrayValue": {"values": [node]}}
    return node


@pytest.mark.parametrize("node", [
    [], "x", {"stringValue": 1}, {"boolValue": "true"}, {"intValue": True},
    {"intValue": "1.5"}, {"intValue": "1" * 1_000_000}, {"intValue": str(2**64)},
    {"doubleValue": "1.5"}, {"doubleValue": None}, {"bytesValue": "!!"},
    {"stringValue": "a", "intValue": "1"}, {"mapValue": {}}, {"arrayValue": []},
    {"arrayValue": {"values": {}}}, {"kvlistValue": {"values": [{"key": 1}]}},
    {"kvlistValue": {"values": [{"key": "a"}, {"key": "a"}]}},
    _nested(reader.MAX_ANY_DEPTH + 1),
])
def test_any_value_refuses_what_the_mapping_does_not_allow(node: Any) -> None:
    with pytest.raises(reader.OtlpError):
        reader.any_value(node)


def test_decoding_stays_linear_on_a_large_hostile_document() -> None:
    """100k attributes in one record, and a 1 MB digit string, decode in bounded time."""
    attrs = [{"key": f"k{i}", "value": {"intValue": str(i)}} for i in range(100_000)]
    start = time.perf_counter()
    assert len(reader.key_values(attrs)) == 100_000
    with pytest.raises(reader.OtlpError):
        reader.any_value({"intValue": "9" * 1_000_000})
    assert time.perf_counter() - start < 5  # a quadratic int() alone would take minutes


# ------------------------------------------------------------------ otlp-format chains


@pytest.fixture
def otlp_chain(make_audit: Callable[..., AuditLogger], tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    """A session of 17 records written in the ``otlp`` line format (a few per line)."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=host-7")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc")
    directory = tmp_path / "otlp"

    def exporter() -> JsonlLogExporter:
        return JsonlLogExporter(directory / "mcp_audit_{date}.jsonl", format="otlp",
                                fsync="none", rotation=RotationPolicy(), disabled=False)

    logger = make_audit(directory, exporter_factory=exporter, wait="written")

    async def write() -> None:
        for i in range(8):
            cid = await logger.log_tool_call(
                f"tool_{i}", {"i": i, "f": 1.0, "none": None, "e": "", "l": [], "d": {}})
            await logger.log_tool_result(f"tool_{i}", 3, correlation_id=cid,
                                         result={"ok": i, "big": 2**70})

    import asyncio

    asyncio.run(write())
    logger.shutdown()
    (path,) = directory.glob("mcp_audit_*.jsonl")
    return path


def _docs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _save(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(json.dumps(d).encode() + b"\n" for d in docs))
    return path


def _records(docs: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], int]]:
    """(logRecords list, index) of every record, in order."""
    return [(sl["logRecords"], i) for d in docs for rl in d.get("resourceLogs", [])
            for sl in rl["scopeLogs"] for i in range(len(sl["logRecords"]))]


def _attr(rec: dict[str, Any], key: str) -> dict[str, Any]:
    return next(kv for kv in rec["attributes"] if kv["key"] == key)


def test_otlp_format_chain_verifies_with_host_and_service(otlp_chain: Path) -> None:
    report = integrity.verify_paths([otlp_chain])
    assert report.ok and not report.warnings, report.to_dict()["errors"]
    (sess,) = report.sessions.values()
    assert (sess.records, sess.ended, sess.status, sess.host, sess.service) == \
        (17, True, "complete", "host-7", "svc")
    assert report.otlp_lines == len(_docs(otlp_chain)) and report.other_records == 0
    (host,) = report.to_dict()["hosts"]
    assert host == {"host": "host-7", "service": "svc", "sessions": 1, "records": 17,
                    "missing": 0, "declared_lost": 0, "status": {"complete": 1}}


def test_what_a_pipeline_may_change_does_not_break_the_chain(otlp_chain: Path) -> None:
    """Processors add resource attributes, reorder attributes, re-batch records, write
    int64 as a JSON number and 1.0 as 1: none of it is covered by the hash."""
    docs = _docs(otlp_chain)
    for d in docs:
        for rl in d["resourceLogs"]:
            rl["resource"]["attributes"].append(
                {"key": "k8s.pod.name", "value": {"stringValue": "added-by-a-processor"}})
            for sl in rl["scopeLogs"]:
                for rec in sl["logRecords"]:
                    rec["attributes"].reverse()
                    seq = _attr(rec, "seq")
                    seq["value"] = {"intValue": int(seq["value"]["intValue"])}
                    rec["observedTimeUnixNano"] = "1"
    one_line = {"resourceLogs": [rl for d in docs for rl in d.get("resourceLogs", [])]}
    report = integrity.verify_paths([_save(otlp_chain, [one_line])])
    assert report.ok and not report.warnings, report.to_dict()["errors"]


@pytest.mark.parametrize(("change", "codes", "status"), [
    ("delete", {"gap": 1}, "missing"),
    ("int_as_double", {"hash_mismatch": 1}, "tampered"),
    ("edit_nested", {"hash_mismatch": 1}, "tampered"),
    ("duplicate_key", {"bad_otlp": 1, "gap": 1}, "missing"),
    ("drop_end", {}, "open"),
])
def test_changes_to_records_are_reported_at_their_seq(
        otlp_chain: Path, change: str, codes: dict[str, int], status: str) -> None:
    docs = _docs(otlp_chain)
    records = _records(docs)
    recs, i = records[-1] if change == "drop_end" else records[4]  # seq 5: a tool call
    rec = recs[i]
    if change in ("delete", "drop_end"):
        recs.pop(i)
    elif change == "int_as_double":
        b = _attr(rec, "bytes_in")
        b["value"] = {"doubleValue": float(b["value"]["intValue"])}
    elif change == "edit_nested":
        args = _attr(rec, "arguments")["value"]["kvlistValue"]["values"]
        args[0]["value"] = {"intValue": "99"}
    elif change == "duplicate_key":
        rec["attributes"].append(_attr(rec, "tool"))
    report = integrity.verify_paths([_save(otlp_chain, docs)])
    assert report.counts.get("no_end_record", 0) == (change == "drop_end")
    errors = {c: n for c, n in report.counts.items() if c != "no_end_record"}
    assert errors == codes, report.to_dict()["errors"]
    (sess,) = report.sessions.values()
    assert sess.status == status
    if change in ("delete", "duplicate_key"):
        assert sess.gaps == [[5, 5]] and sess.missing == 1
    for f in report.errors:
        if f.code != "bad_otlp":
            assert f.message.startswith("seq 5")
        assert f.record is not None  # the record's place in its line


def test_other_logs_in_an_archive_are_skipped_not_flagged(otlp_chain: Path) -> None:
    docs = _docs(otlp_chain)
    other = {"scope": {"name": "app"}, "logRecords": [
        {"body": {"stringValue": "hello"},
         "attributes": [{"key": "seq", "value": {"intValue": "3"}}]},
        {"body": {"stringValue": "no attributes"}},
    ]}
    docs[0]["resourceLogs"][0]["scopeLogs"].insert(0, other)
    docs.insert(1, {"resourceSpans": [{"scopeSpans": []}]})
    report = integrity.verify_paths([_save(otlp_chain, docs)])
    assert report.ok and not report.warnings and report.other_records == 2

    # An audit-scope record without its chain fields is no other log: it is flagged.
    recs, i = _records(docs)[3]
    recs[i]["attributes"] = [kv for kv in recs[i]["attributes"] if kv["key"] != "hash"]
    report = integrity.verify_paths([_save(otlp_chain, docs)])
    assert {f.code for f in report.errors} == {"not_audit", "gap"}


def test_a_line_that_breaks_the_structure_is_an_error(otlp_chain: Path) -> None:
    docs = _docs(otlp_chain)
    docs[1]["resourceLogs"][0]["scopeLogs"] = {"not": "a list"}
    report = integrity.verify_paths([_save(otlp_chain, docs)])
    assert "bad_otlp" in report.counts and "gap" in report.counts and not report.ok


def test_cli_fleet_report(otlp_chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = _docs(otlp_chain)
    recs, i = _records(docs)[9]
    recs.pop(i)
    _save(otlp_chain, docs)
    assert cli_main(["verify", str(otlp_chain)]) == 1
    out = capsys.readouterr().out
    assert "host host-7 (service svc): 1 session(s) [1 missing], 16 record(s), 1 missing" in out
    assert "missing seq 10 (1 records)" in out
    assert cli_main(["verify", "--json", str(otlp_chain)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["sessions"][0]["gaps"] == [[10, 10]] and doc["hosts"][0]["missing"] == 1


def test_a_batch_delivered_twice_is_a_duplicate_not_tampering(otlp_chain: Path) -> None:
    docs = _docs(otlp_chain)
    assert len(docs) >= 5
    n = len(_records(docs[:3]))
    again = [*docs[:4], *json.loads(json.dumps(docs[:3])), *docs[4:]]  # lines 1-3 re-sent
    report = integrity.verify_paths([_save(otlp_chain, again)])
    assert report.ok and report.counts == {"duplicate": 1}, report.to_dict()["errors"]
    (sess,) = report.sessions.values()
    assert (sess.records, sess.duplicates, sess.status) == (17, n, "complete")
    assert not integrity.verify_paths([otlp_chain], strict=True).ok

    # Beyond the window of remembered records, a copy is out of order (an error).
    report = integrity.verify_paths([otlp_chain], limits=integrity.VerifyLimits(max_recent=1))
    assert not report.ok and report.counts.get("out_of_order", 0) >= 1


def _dense_line(scope: str, budget: int) -> bytes:
    """One OTLP line just under ``budget`` bytes of the smallest log records possible (the
    most objects per byte: the worst case for memory once parsed)."""
    rec = b'{"attributes":[{"key":"k","value":{"intValue":"1"}}]},'
    head = b'{"resourceLogs":[{"resource":{},"scopeLogs":[{"scope":{"name":"' + \
        scope.encode() + b'"},"logRecords":['
    n = (budget - len(head) - 8) // len(rec)
    return head + rec * (n - 1) + rec[:-1] + b"]}]}]}\n"


@pytest.mark.parametrize(("scope", "lines", "code"), [
    ("app", 8, "no_records"),  # 8 MiB of other logs: read whole, nothing kept
    (integrity.AUDIT_SCOPE, 20, "too_many_findings"),  # audit-scope garbage: given up early
])
def test_hostile_otlp_files_stay_in_bounded_memory(
        tmp_path: Path, scope: str, lines: int, code: str) -> None:
    from .test_bounded_reading import _bounded, run_cli

    path = tmp_path / "logs.jsonl"
    line = _dense_line(scope, reader.MAX_LINE_BYTES)
    assert len(line) <= reader.MAX_LINE_BYTES + 1
    with path.open("wb") as fh:
        for _ in range(lines):
            fh.write(line)
    m = run_cli("verify", "--json", str(path))
    _bounded(m)
    doc = json.loads(m.stdout)
    assert m.returncode == 1 and code in doc["counts"], doc["counts"]


def _otlp_doc(records: list[dict[str, Any]], host: str) -> dict[str, Any]:
    """Records as one OTLP/JSON LogsData, encoded by the project's ``otlp`` writer."""
    from mcp_otel.exporters._otlp_json import _any

    logs = [{"attributes": [{"key": k, "value": _any(v)} for k, v in r.items()]}
            for r in records]
    return {"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.instance.id", "value": {"stringValue": host}}]},
        "scopeLogs": [{"scope": {"name": integrity.AUDIT_SCOPE}, "logRecords": logs}]}]}


def test_declared_losses_and_hmac_survive_the_hop(tmp_path: Path) -> None:
    """A chain with a writer-declared loss, HMAC-keyed, spread over two hosts' lines."""
    key = b"fleet-key"
    records: dict[str, list[dict[str, Any]]] = {}
    for host in ("h1", "h2"):
        chain = integrity.Chain(f"mcp_{host}", key)
        out = records[host] = []
        for seq in range(1, 8):
            attrs: dict[str, Any] = {"event": "tool_call", "n": seq, "ratio": 1.0}
            chain.seal(attrs)
            if host == "h2" and seq in (3, 4):  # a batch the writer could not write
                if seq == 4:
                    chain.lost(3, 4)
                continue
            out.append(attrs)
            chain.committed()
        end: dict[str, Any] = {"event": integrity.END_EVENT}
        chain.seal(end)
        out.append(end)
    docs = [_otlp_doc(records["h1"][:4], "h1"), _otlp_doc(records["h2"], "h2"),
            _otlp_doc(records["h1"][4:], "h1")]
    path = _save(tmp_path / "logs.jsonl", docs)

    report = integrity.verify_paths([path], key=key)
    assert report.ok and report.counts == {"declared_loss": 1}, report.to_dict()["errors"]
    h1, h2 = (report.sessions[f"mcp_{h}"] for h in ("h1", "h2"))
    assert (h1.status, h1.records, h1.host) == ("complete", 8, "h1")
    assert (h2.status, h2.records, h2.declared, h2.declared_lost, h2.missing) == \
        ("complete", 6, [[3, 4]], 2, 0)
    assert not integrity.verify_paths([path], key=key, strict=True).ok

    unkeyed = integrity.verify_paths([path])
    assert not unkeyed.ok and unkeyed.counts["key_required"] == 2
    assert {s.status for s in unkeyed.sessions.values()} == {"unverified"}
    wrong = integrity.verify_paths([path], key=b"other")
    assert wrong.counts["hash_mismatch"] == 14 and \
        {s.status for s in wrong.sessions.values()} == {"tampered"}
