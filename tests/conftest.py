"""What every test starts from: none of the developer's OpenTelemetry or mcp-otel settings.

A shell with ``MCP_OTEL_DIR`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` set would otherwise send
test data into that directory or collector, and make results depend on the shell. Tests
that need a setting set it themselves (``monkeypatch.setenv``; subprocesses inherit the
cleaned environment). Kept: the variables that locate test machinery, not settings.
"""

from __future__ import annotations

import os

import pytest

#: Test machinery (where programs and environments are), read by the tests themselves.
MACHINERY = frozenset({
    "MCP_OTEL_CACHE_DIR", "MCP_OTEL_COLLECTOR_BIN", "MCP_OTEL_ENVS_DIR",
    "MCP_OTEL_ENVS_PYTHON", "MCP_OTEL_FRAMEWORK_LINE", "MCP_OTEL_PDATACHECK_BIN",
    "MCP_OTEL_SKIP_MEMORY_TEST",
    # Read once at import (the audit writer's wake-up): running the suite with it set is
    # how that path is tested; tests/audit/test_audit_wakeup.py skips accordingly.
    "MCP_OTEL_AUDIT_PLAIN_WAKEUP",
})


def pytest_configure(config: pytest.Config) -> None:
    """Before collection, so that module-level code and session fixtures (which set their
    own ``MCP_OTEL_DIR``) see the cleaned environment too."""
    for name in list(os.environ):
        if (name.startswith("OTEL_") or name.startswith("MCP_OTEL_")) and name not in MACHINERY:
            del os.environ[name]
