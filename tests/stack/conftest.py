"""Fixtures for the stack tests: the real collector, an OTLP sink and Prometheus.

They are module-scoped: each test module starts its own programs once (a few hundred ms
each) and stops them by PID at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support import require, require_program
from tests.stack._peers import Collector, Sink, find_collector


@pytest.fixture(scope="session")
def collector_binary() -> str:
    binary = find_collector()
    require(
        binary,
        "OpenTelemetry Collector not built: run scripts/build-collector.sh "
        "(or set MCP_OTEL_COLLECTOR_BIN)",
    )
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return require_program("prometheus")


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    s = Sink()
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def collector(
    collector_binary: str, sink: Sink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Collector]:
    c = Collector(
        binary=collector_binary,
        workdir=Path(tmp_path_factory.mktemp("collector")),
        tempo_endpoint=sink.tempo_endpoint,
        loki_endpoint=sink.loki_endpoint,
    )
    c.start()
    yield c
    c.stop()
