"""mcp-otel -> real collector (our collector-config.yaml) -> sink, file archive, Prometheus.

Two mcp-otel processes (one exporting over OTLP/gRPC, one over OTLP/HTTP) run a bounded
load in three phases. Between phases they wait on stdin, so the test knows exactly what
was sent: Prometheus first sees the series, then sees them grow, and every dashboard
query is evaluated while both processes are alive. At the end the counts the collector
handed on (to the sink standing in for Loki and Tempo, and to its file archive) are
compared with mcp-otel's local JSONL files, and the metric totals in Prometheus and the
archive with what the processes counted.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests._otlp_sink import attributes
from tests._support import wait_until
from tests.stack import _dashboard as dash
from tests.stack._peers import REPO, Collector, LoadProcess, Prometheus, Sink, jsonl_lines

SERVICE = "mcp-stack-test"
CALLS = 240
PAUSES = (60, 150)
PROTOCOLS = ("grpc", "http/protobuf")


@dataclass
class Run:
    collector: Collector
    sink: Sink
    prometheus: Prometheus
    loads: list[LoadProcess]
    query_results: dict[dash.Query, dict[str, Any]] = field(default_factory=dict)
    variable_values: dict[str, list[str]] = field(default_factory=dict)


def _start_load(collector: Collector, protocol: str, data_dir: Path) -> LoadProcess:
    args = ["--calls", str(CALLS)]
    for pause in PAUSES:
        args += ["--pause-after", str(pause)]
    # Phase 2 spread over ~2 s: Prometheus (1 s scrapes) sees the load while it runs,
    # including the exemplars the collector exposes only for fresh measurements.
    args += ["--pace", "1:100"]
    return LoadProcess.start(collector, protocol, data_dir, SERVICE, args)


def _has_finite(answer: dict[str, Any]) -> bool:
    return any(math.isfinite(float(item["value"][1])) for item in answer.get("result", []))


@pytest.fixture(scope="module")
def run(
    collector: Collector,
    sink: Sink,
    prometheus_binary: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    prometheus = Prometheus(
        binary=prometheus_binary,
        workdir=Path(tmp_path_factory.mktemp("prometheus")),
        targets=[f"127.0.0.1:{collector.prometheus_port}"],
    )
    prometheus.start()
    loads: list[LoadProcess] = []
    try:
        for protocol in PROTOCOLS:
            data_dir = Path(tmp_path_factory.mktemp("mcp-data"))
            loads.append(_start_load(collector, protocol, data_dir))
        result = Run(collector, sink, prometheus, loads)

        # Phase 1 done: wait until Prometheus has scraped both processes' first points.
        for load in loads:
            load.wait_for("PAUSED")
        wait_until(
            lambda: (
                len(prometheus.query(f'mcp_otel_tool_calls_total{{job="{SERVICE}"}}')["result"])
                >= 2 * 3
            ),
            "both processes' tool-call series in Prometheus",
        )
        # Phase 2: the series grow while Prometheus scrapes; then evaluate the dashboards
        # while both processes are alive.
        for load in loads:
            load.resume()
        for load in loads:
            load.wait_for("PAUSED")
        _evaluate_dashboards(result)
        for load in loads:
            load.resume()
        for load in loads:
            load.finish()
        yield result
    finally:
        for load in loads:
            load.kill()
        prometheus.stop()


def _evaluate_dashboards(run: Run) -> None:
    """Evaluate every dashboard query (after substitution), polling until each one has a
    finite value or the deadline passes; record the last answer for the assertions."""
    prometheus = run.prometheus
    for path in dash.dashboards():
        for name, query in dash.variable_queries(path).items():
            expr, label = dash.split_label_values(dash.substitute(query, {"service": SERVICE}))
            run.variable_values[name] = wait_until(
                lambda e=expr, label=label: prometheus.label_values(label, e),
                f"variable {name}: {expr}",
            )
        variables = {"service": SERVICE, "tool": ".*"}
        for query in dash.prometheus_queries(path):
            expr = dash.substitute(query.expr, variables)

            def poll(e: str = expr) -> dict[str, Any] | None:
                answer = prometheus.query(e)
                return answer if _has_finite(answer) else None

            try:
                run.query_results[query] = wait_until(poll, f"{query.panel}: {expr}", 20)
            except AssertionError:
                run.query_results[query] = prometheus.query(expr)


def _log_record_count(archive: Path) -> int:
    return sum(
        len(sl.get("logRecords", []))
        for line in jsonl_lines([archive / "logs.jsonl"])
        for rl in line.get("resourceLogs", [])
        for sl in rl.get("scopeLogs", [])
    )


def _span_count(archive: Path) -> int:
    return sum(
        len(ss.get("spans", []))
        for line in jsonl_lines([archive / "traces.jsonl"])
        for rs in line.get("resourceSpans", [])
        for ss in rs.get("scopeSpans", [])
    )


def _local(run: Run, pattern: str) -> list[dict[str, Any]]:
    return jsonl_lines([p for load in run.loads for p in load.data_dir.glob(pattern)])


def test_collector_validates_the_repository_config(collector: Collector) -> None:
    result = collector.validate()
    assert result.returncode == 0, result.stderr


def test_collector_rejects_a_broken_config(collector: Collector, tmp_path: Path) -> None:
    # The same check fails on a config naming a component the build does not have (the
    # contrib `loki` exporter, superseded by Loki's native OTLP endpoint), so the test above
    # can fail too.
    config = (REPO / "collector-config.yaml").read_text().replace("otlp_http/loki", "loki")
    broken = tmp_path / "broken.yaml"
    broken.write_text(config)
    result = subprocess.run(
        [collector.binary, "validate", f"--config={broken}"],
        env=collector.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert 'unknown type: "loki"' in (result.stderr + result.stdout)


def test_every_log_record_arrives_intact(run: Run) -> None:
    audit = _local(run, "audit/*.jsonl")
    events = _local(run, "telemetry/mcp_telemetry_*.jsonl")
    others = _local(run, "logs/*.jsonl")
    expected = len(audit) + len(events) + len(others)
    calls = sum(load.summary["calls"] for load in run.loads)
    assert calls == CALLS * len(PROTOCOLS)
    # Two audit records per call (Osiris' tool_call + tool_result/tool_error).
    tool_events = {"tool_call", "tool_result", "tool_error"}
    assert sum(1 for r in audit if r.get("event") in tool_events) == 2 * calls
    assert sum(1 for e in events if e.get("event") == "tool_call") == calls

    wait_until(lambda: len(run.sink.log_records()) >= expected, f"{expected} records at the sink")
    assert len(run.sink.log_records()) == expected
    wait_until(
        lambda: (
            (run.collector.archive_dir / "logs.jsonl").exists()
            and _log_record_count(run.collector.archive_dir) >= expected
        ),
        f"{expected} records in the file archive",
    )
    assert _log_record_count(run.collector.archive_dir) == expected

    # Intact: the audit records at the sink carry exactly the local hash chain.
    sent = sorted(
        (a["session_id"], a["seq"], a["hash"])
        for a in (attributes(r.attributes) for r in run.sink.log_records())
        if "hash" in a and "seq" in a
    )
    local = sorted((a["session_id"], a["seq"], a["hash"]) for a in audit)
    assert sent == local
    # Loki's endpoint was reached the way the real one is (OTLP/HTTP, /otlp/v1/logs).
    assert run.sink.log_paths() == {"/otlp/v1/logs"}


def test_every_span_arrives(run: Run) -> None:
    local = _local(run, "traces/*.jsonl")
    assert any(s["name"].startswith("cache.") for s in local)
    wait_until(lambda: len(run.sink.spans()) >= len(local), f"{len(local)} spans at the sink")
    assert len(run.sink.spans()) == len(local)
    assert sorted(s.span_id.hex() for s in run.sink.spans()) == sorted(s["span_id"] for s in local)
    wait_until(
        lambda: (
            (run.collector.archive_dir / "traces.jsonl").exists()
            and _span_count(run.collector.archive_dir) >= len(local)
        ),
        "spans in the file archive",
    )
    assert _span_count(run.collector.archive_dir) == len(local)


def _prometheus_total(run: Run, metric: str) -> float:
    answer = run.prometheus.query(f'sum(max_over_time({metric}{{job="{SERVICE}"}}[5m]))')
    return float(answer["result"][0]["value"][1]) if answer["result"] else -1.0


@pytest.mark.parametrize(
    ("metric", "key"),
    [
        ("mcp_otel_tool_calls_total", "tool_calls"),
        ("mcp_otel_tool_errors_total", "errors"),
        ("mcp_otel_tool_input_bytes_total", "total_bytes_in"),
        ("mcp_otel_tool_output_bytes_total", "total_bytes_out"),
        ("mcp_otel_tool_duration_milliseconds_total", "total_duration_ms"),
    ],
)
def test_metric_totals_match(run: Run, metric: str, key: str) -> None:
    expected = sum(load.summary["telemetry_metrics"][key] for load in run.loads)
    assert expected > 0
    # The processes' own read-back agrees with what they did...
    field_name = {
        "tool_calls": "calls",
        "errors": "errors",
        "total_bytes_in": "bytes_in",
        "total_bytes_out": "bytes_out",
        "total_duration_ms": "duration_ms",
    }[key]
    assert expected == sum(load.summary[field_name] for load in run.loads)
    # ...and Prometheus, scraping the collector, ends at the same total.
    wait_until(lambda: _prometheus_total(run, metric) == expected, f"{metric} == {expected}")


def test_audit_record_metric_matches_the_files(run: Run) -> None:
    audit = _local(run, "audit/*.jsonl")
    wait_until(
        lambda: _prometheus_total(run, "mcp_otel_audit_records_total") == len(audit),
        f"mcp_otel_audit_records_total == {len(audit)}",
    )
    assert _prometheus_total(run, "mcp_otel_audit_lost_total") == 0


def test_metric_archive_ends_at_the_totals(run: Run) -> None:
    """The file exporter's metrics archive holds the same final cumulative values."""
    expected = sum(load.summary["telemetry_metrics"]["tool_calls"] for load in run.loads)

    def archived_total() -> float:
        last: dict[tuple[str, str], float] = {}
        for line in jsonl_lines([run.collector.archive_dir / "metrics.jsonl"]):
            for rm in line.get("resourceMetrics", []):
                instance = next(
                    (
                        a["value"]["stringValue"]
                        for a in rm["resource"]["attributes"]
                        if a["key"] == "service.instance.id"
                    ),
                    "",
                )
                for sm in rm.get("scopeMetrics", []):
                    for m in sm.get("metrics", []):
                        if m["name"] != "mcp_otel.tool.calls":
                            continue
                        for dp in m["sum"]["dataPoints"]:
                            key = (instance, json.dumps(dp.get("attributes", []), sort_keys=True))
                            last[key] = float(dp.get("asInt", dp.get("asDouble", 0)))
        return sum(last.values())

    wait_until(lambda: archived_total() == expected, f"archived tool calls == {expected}")


def test_every_dashboard_query_returns_data(run: Run) -> None:
    assert run.query_results, "no Prometheus query found in grafana/dashboards"
    empty = [
        f"{q.panel} [{q.ref}]: {dash.substitute(q.expr, {'service': SERVICE, 'tool': '.*'})}"
        for q, answer in run.query_results.items()
        if not _has_finite(answer)
    ]
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)


def test_dashboard_variables_list_the_service_and_tools(run: Run) -> None:
    assert SERVICE in run.variable_values["service"]
    assert run.variable_values["tool"] == ["discover_tables", "echo", "run_query"]


def test_one_series_per_process(run: Run) -> None:
    answer = run.prometheus.query(
        f'count by (job) (mcp_otel_server_uptime_seconds{{job="{SERVICE}"}})'
    )
    assert [float(r["value"][1]) for r in answer["result"]] == [float(len(run.loads))]


def test_dashboard_query_matching_nothing_is_detected(run: Run) -> None:
    # The check above is not vacuous: a misspelt metric yields no data.
    assert not _has_finite(run.prometheus.query("sum(rate(mcp_otel_tool_call_total[1m]))"))


def test_metric_exemplars_link_to_exported_traces(run: Run) -> None:
    """Grafana's metrics -> traces link: the latency histogram's exemplars (OpenMetrics from
    the collector, stored by Prometheus) carry the trace_id of spans that reached Tempo."""
    exemplars = wait_until(
        lambda: run.prometheus.exemplars(
            f'mcp_server_operation_duration_seconds_bucket{{job="{SERVICE}"}}'
        ),
        "exemplars on mcp_server_operation_duration_seconds_bucket",
    )
    trace_ids = {e["labels"].get("trace_id") for e in exemplars}
    exported = {s.trace_id.hex() for s in run.sink.spans()}
    assert trace_ids and None not in trace_ids
    assert trace_ids <= exported


def _dashboard_targets(datasource_uid: str) -> list[dict[str, Any]]:
    targets = []
    for path in dash.dashboards():
        for panel in json.loads(path.read_text())["panels"]:
            if (panel.get("datasource") or {}).get("uid") == datasource_uid:
                targets.extend(panel.get("targets", []))
    return targets


def test_loki_and_tempo_panels_match_what_is_exported(run: Run) -> None:
    """There is no Loki or Tempo here: check the dashboard's log and span filters against
    the exact OTLP data the collector hands to them (the sink)."""
    # Loki: `scope_name = "..."` selects the audit records, all of them, under the
    # service_name label Loki derives from service.name.
    (loki_expr,) = [t["expr"] for t in _dashboard_targets("loki")]
    scope = re.search(r'scope_name\s*=\s*"([^"]+)"', loki_expr)
    assert scope, loki_expr
    audit_scopes = set()
    audit_trace_ids = set()
    for req in list(run.sink.handler.telemetry.log_requests):
        for rl in req.pbreq.resource_logs:
            service = {a.key: a.value.string_value for a in rl.resource.attributes}
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    if rec.event_name.startswith("mcp.audit."):
                        audit_scopes.add((service["service.name"], sl.scope.name))
                        if rec.trace_id:
                            audit_trace_ids.add(rec.trace_id.hex())
    assert audit_scopes == {(SERVICE, scope.group(1))}
    # Logs -> traces: the audit records of tool calls carry trace ids that Tempo received.
    span_trace_ids = {s.trace_id.hex() for s in run.sink.spans()}
    assert audit_trace_ids and audit_trace_ids <= span_trace_ids

    # Tempo: the TraceQL name filter of the cache-span panel matches the cache spans.
    (traceql,) = [t["query"] for t in _dashboard_targets("tempo")]
    name = re.search(r'(?<![.\w])name\s*=~\s*"((?:[^"\\]|\\.)*)"', traceql)
    assert name, traceql
    pattern = re.compile(name.group(1).encode().decode("unicode_escape"))
    names = {s.name for s in run.sink.spans()}
    cache_spans = {n for n in names if n.startswith("cache.")}
    assert cache_spans and {n for n in names if pattern.fullmatch(n)} == cache_spans


def test_no_secret_reaches_any_sink(run: Run) -> None:
    """Arguments are masked before any sink: not in the sink's records nor the archive."""
    from tests.stack._load import SECRET

    for record in run.sink.log_records():
        assert SECRET not in str(record)
    for name in ("logs.jsonl", "traces.jsonl", "metrics.jsonl"):
        assert SECRET not in (run.collector.archive_dir / name).read_text()
    for load in run.loads:
        for path in load.data_dir.rglob("*.jsonl"):
            assert SECRET not in path.read_text(), path
