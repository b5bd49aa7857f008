"""Throughput of ``mcp-otel verify`` on the same chains as local flat files and as a
collector archive (OTLP/JSON lines).

The records are sealed with the real chain (``integrity.Chain``) and carry the fields a
tool call writes (nested arguments, integers, a float). Written three ways:

* ``flat``    -- one record per line, as ``AuditLogger`` writes its local file (baseline)
* ``archive`` -- OTLP/JSON ``LogsData`` lines of 256 records, as the collector's
  ``logs/archive`` pipeline writes them (intValue strings, kvlistValue...)
* ``mixed``   -- the archive with as many ordinary application logs as audit records
  (what an archive of a whole fleet holds)

Each round verifies every variant once (alternating, so they share the load), and the
table gives medians and the per-round ratio to ``flat``. Usage::

    python benchmarks/bench_verify.py [--records N] [--sessions S] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from _common import cpu_model, median_ratio
from mcp_otel import integrity
from mcp_otel.exporters._otlp_json import _any

BATCH = 256


def _records(n: int, sessions: int) -> list[dict[str, Any]]:
    chains = [integrity.Chain(f"mcp_{i:012x}") for i in range(sessions)]
    out = []
    for i in range(n):
        attrs: dict[str, Any] = {
            "event": "tool_call", "event_type": "tool_call_started",
            "tool": f"tool_{i % 7}", "tool_name": f"tool_{i % 7}",
            "correlation_id": f"cid-{i}", "bytes_in": 120 + i % 50,
            "arguments": {"query": "select * from t where id = ?", "limit": i % 100,
                          "ratio": 0.25, "tags": ["a", "b"], "opts": {"x": True}},
            "timestamp": "2026-12-03T08:00:00.000000+00:00",
        }
        chains[i % sessions].seal(attrs)
        out.append(attrs)
    for c in chains:
        end = {"event": integrity.END_EVENT, "event_type": "session_ended", "lost": 0}
        c.seal(end)
        out.append(end)
    return out


def _otlp_line(records: list[dict[str, Any]], host: int, scope: str) -> bytes:
    logs = [{"timeUnixNano": "1796284800000000000", "severityNumber": 9,
             "attributes": [{"key": k, "value": _any(v)} for k, v in r.items()]}
            for r in records]
    doc = {"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "bench"}},
            {"key": "service.instance.id", "value": {"stringValue": f"host-{host}"}}]},
        "scopeLogs": [{"scope": {"name": scope}, "logRecords": logs}]}]}
    return orjson.dumps(doc) + b"\n"


def _write(directory: Path, records: list[dict[str, Any]]) -> dict[str, Path]:
    paths = {}
    flat = directory / "flat" / "mcp_audit_20261203.jsonl"
    flat.parent.mkdir()
    flat.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    paths["flat"] = flat
    for name, other in (("archive", False), ("mixed", True)):
        path = directory / name / "logs.jsonl"
        path.parent.mkdir()
        with path.open("wb") as fh:
            for start in range(0, len(records), BATCH):
                batch = records[start : start + BATCH]
                fh.write(_otlp_line(batch, start // BATCH % 8, integrity.AUDIT_SCOPE))
                if other:
                    app = [{"message": f"app log {i}", "seq": i, "http.status": 200}
                           for i in range(len(batch))]
                    fh.write(_otlp_line(app, start // BATCH % 8, "app"))
        paths[name] = path
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    records = _records(args.records, args.sessions)
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write(Path(tmp), records)
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, path in paths.items():
                start = time.perf_counter()
                report = integrity.verify_paths([path])
                times[name].append(time.perf_counter() - start)
                assert report.ok and not report.warnings, (name, report.to_dict()["errors"][:3])
                assert sum(s.records for s in report.sessions.values()) == len(records)
        sizes = {name: os.path.getsize(p) for name, p in paths.items()}
    print(f"verify: {len(records)} audit records in {args.sessions} sessions, "
          f"{args.rounds} rounds; {cpu_model()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}", file=sys.stderr)
    print(f"{'variant':10} {'MB':>7} {'median s':>9} {'records/s':>11} {'x flat':>7}")
    for name, values in times.items():
        med = statistics.median(values)
        ratio = median_ratio(values, times["flat"])
        print(f"{name:10} {sizes[name] / 1e6:7.1f} {med:9.3f} {len(records) / med:11,.0f} "
              f"{ratio:7.2f}")


if __name__ == "__main__":
    main()
