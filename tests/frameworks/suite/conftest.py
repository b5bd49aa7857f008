"""The framework suite: each ``test_<family>.py`` runs only where its framework line is.

``test_smoke.py``, ``test_instrumentation.py``, ``test_demo.py`` and ``test_auto.py`` run
everywhere; ``test_fastmcp.py`` runs on every fastmcp line (``fastmcp2``, ``fastmcp3``,
``fastmcp4``): a module's family is a prefix of the line's.

The suite runs once per framework environment (``tests/frameworks/test_lines.py`` sets
``MCP_OTEL_FRAMEWORK_LINE=<family>-old|new``, see ``tests/frameworks/lines.toml``). A module
for another family is not collected at all: the main development venv (mcp 2.x) and the
other lines' environments must not even import it, since its framework imports would fail
there. Without the variable (a developer running the suite by hand) a module is collected
when its framework is importable in the running interpreter.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_LINE = "MCP_OTEL_FRAMEWORK_LINE"
#: Modules collected on every line.
_EVERYWHERE = frozenset({"smoke", "instrumentation", "demo", "auto"})


def _major(dist: str) -> int | None:
    try:
        return int(importlib.metadata.version(dist).split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def family_installed(family: str) -> bool:
    """Whether the running interpreter has the framework ``family`` (mcp1, mcp2, fastmcpN)."""
    if family in ("mcp1", "mcp2"):
        return _major("mcp") == int(family[-1])
    if family == "fastmcp":
        return _major("fastmcp") is not None
    if family.startswith("fastmcp") and family[len("fastmcp"):].isdigit():
        return _major("fastmcp") == int(family[len("fastmcp"):])
    return False


def _family_of(path: Path) -> str | None:
    name = path.name
    if path.parent != Path(__file__).parent or not (name.startswith("test_")
                                                    and name.endswith(".py")):
        return None
    return name[len("test_"):-len(".py")]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    family = _family_of(Path(collection_path))
    if family is None or family in _EVERYWHERE:
        return None
    line = os.environ.get(ENV_LINE, "").strip()
    if line:
        return None if line.split("-", 1)[0].startswith(family) else True
    return None if family_installed(family) else True


@pytest.fixture(autouse=True, scope="session")
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """mcp-otel's default files (``MCP_OTEL_DIR``) go to a temporary directory."""
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
