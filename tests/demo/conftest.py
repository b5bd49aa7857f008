"""Fixtures shared by the instrument/demo/stats/testing tests.

Two things are process-wide and would leak into other test packages: the data directory
(the shared span provider resolves its file path under ``MCP_OTEL_DIR`` when it is built)
and the global tracer provider that ``instrument``/``capture`` install for the ``mcp``
SDK's own spans. Both are scoped to this package and put back afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="package")
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("mcp-otel-data")
    previous = os.environ.get("MCP_OTEL_DIR")
    os.environ["MCP_OTEL_DIR"] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("MCP_OTEL_DIR", None)
        else:
            os.environ["MCP_OTEL_DIR"] = previous


@pytest.fixture(autouse=True, scope="package")
def _restore_global_tracer_provider() -> Iterator[None]:
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    from mcp_otel import _setup

    was_set = trace._TRACER_PROVIDER is not None
    yield
    if was_set:
        return
    # Test-only: the API allows one set_tracer_provider per process; undo ours (as the
    # OpenTelemetry test utilities do) so later packages start from a clean process state.
    _setup.force_flush()
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()
