"""The demo service of docker-compose.yml, run as compose runs it (same command options,
same OTEL_* settings except the endpoint), feeds every panel of the dashboard.

The pipeline test drives mcp-otel's classes directly; this one goes through real MCP
servers and clients (`mcp-otel demo`, `instrument()`), which is what a user of the compose
stack sees first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests._support import wait_until
from tests.stack import _dashboard as dash
from tests.stack._peers import REPO, Collector, Prometheus
from tests.stack.test_compose import DEMO_RUN_MAX_BYTES, _config


@pytest.fixture(scope="module")
def demo_prometheus(
    collector: Collector, prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    prometheus = Prometheus(
        binary=prometheus_binary,
        workdir=Path(tmp_path_factory.mktemp("prometheus-demo")),
        targets=[f"127.0.0.1:{collector.prometheus_port}"],
    )
    prometheus.start()
    yield prometheus
    prometheus.stop()


def _has_data(answer: dict[str, Any]) -> bool:
    """Some series matched. Unlike the pipeline test, NaN counts: the demo's servers may
    do all their calls between two scrapes, and a ratio of two zero rates is NaN."""
    return bool(answer.get("result"))


def test_compose_demo_feeds_every_dashboard_query(
    collector: Collector, demo_prometheus: Prometheus, tmp_path: Path
) -> None:
    service = _config()["services"]["demo"]
    command = list(service["command"])
    command[command.index("--out") + 1] = str(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({k: str(v) for k, v in service["environment"].items()})
    port = (
        collector.grpc_port if env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc" else collector.http_port
    )
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "500"  # compose: 5000, too slow for a test
    env["PYTHONPATH"] = str(REPO / "src")
    job = env["OTEL_SERVICE_NAME"]

    result = subprocess.run(
        [sys.executable, "-m", "mcp_otel", *command],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # What one compose run leaves in the demo-data volume (the bound docs/stack.md gives).
    written = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert 0 < written <= DEMO_RUN_MAX_BYTES, written

    expected_calls = 1
    for option in ("--processes", "--clients", "--calls"):
        expected_calls *= int(command[command.index(option) + 1])
    total = f'sum(max_over_time(mcp_otel_tool_calls_total{{job="{job}"}}[5m]))'

    def calls_in_prometheus() -> float:
        answer = demo_prometheus.query(total)["result"]
        return float(answer[0]["value"][1]) if answer else -1.0

    wait_until(lambda: calls_in_prometheus() == expected_calls, f"{expected_calls} demo calls")

    missing = []
    for path in dash.dashboards():
        tools = demo_prometheus.label_values(
            "gen_ai_tool_name", f'mcp_otel_tool_calls_total{{job="{job}"}}'
        )
        assert len(tools) >= 4, tools
        for query in dash.prometheus_queries(path):
            expr = dash.substitute(query.expr, {"service": job, "tool": ".*"})
            try:
                wait_until(lambda e=expr: _has_data(demo_prometheus.query(e)), expr, 10)
            except AssertionError:
                missing.append(f"{query.panel} [{query.ref}]: {expr}")
    assert not missing, "dashboard queries without data for the demo:\n" + "\n".join(missing)
