"""The framework lines of ``lines.toml``, for the runners here and the suite inside each env."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

LINES_FILE = Path(__file__).resolve().parent / "lines.toml"
#: Names the line a suite run is for; set by test_lines.py for the run inside each env.
LINE_VARIABLE = "MCP_OTEL_FRAMEWORK_LINE"
#: Where scripts/framework-envs.sh put the environments (default: <repo>/.envs).
ENVS_VARIABLE = "MCP_OTEL_ENVS_DIR"
REPO = LINES_FILE.parents[2]


@dataclass(frozen=True)
class Line:
    """One framework line as ``lines.toml`` describes it."""

    name: str
    family: str
    package: str
    version: str
    constraints: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def all_lines() -> dict[str, Line]:
    with LINES_FILE.open("rb") as f:
        table = tomllib.load(f)
    return {
        name: Line(name, entry["family"], entry["package"], entry["version"],
                   tuple(entry.get("constraints", ())))
        for name, entry in table.items()
    }


def envs_dir() -> Path:
    return Path(os.environ.get(ENVS_VARIABLE) or REPO / ".envs")
