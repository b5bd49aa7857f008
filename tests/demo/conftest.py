"""Keep every file the in-process tests write (spans of the shared provider) in a temp dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
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
