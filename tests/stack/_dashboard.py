"""Reading the Grafana dashboards the way Grafana would, for PromQL checks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.stack._peers import REPO

DASHBOARD_DIR = REPO / "grafana" / "dashboards"
PROMETHEUS_UID = "prometheus"

# Grafana's built-in interval macros, with the values Grafana would pick for a dashboard
# over the last minutes with a 1 s scrape interval (rate windows must span >= 2 scrapes).
MACROS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
    "__interval_ms": "15000",
}


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str


def dashboards() -> list[Path]:
    return sorted(DASHBOARD_DIR.rglob("*.json"))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _is_prometheus(ds: Any) -> bool:
    return isinstance(ds, dict) and ds.get("uid") == PROMETHEUS_UID


def prometheus_queries(path: Path) -> list[Query]:
    """Every PromQL expression of every panel target in the dashboard."""
    dash = json.loads(path.read_text())
    out = []
    for panel in _panels(dash.get("panels", [])):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource")
            if _is_prometheus(ds) and target.get("expr"):
                out.append(Query(dash["title"], panel["title"], target["refId"], target["expr"]))
    return out


def variable_queries(path: Path) -> dict[str, str]:
    """Template variable name -> its ``label_values(...)`` query."""
    dash = json.loads(path.read_text())
    out = {}
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query" and _is_prometheus(var.get("datasource")):
            query = var["query"]
            out[var["name"]] = query["query"] if isinstance(query, dict) else query
    return out


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<expr>.+),\s*)?(?P<label>[a-zA-Z_]\w*)\)$")


def split_label_values(query: str) -> tuple[str, str]:
    """``label_values(expr, label)`` -> (expr, label)."""
    match = _LABEL_VALUES.match(query.strip())
    if not match or not match.group("expr"):
        raise ValueError(f"not a label_values(expr, label) query: {query!r}")
    return match.group("expr"), match.group("label")


_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana macros and dashboard variables (``$x``, ``${x}``, ``${x:regex}``).

    An unknown variable is an error: Grafana would send it to Prometheus literally.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name in MACROS:
            return MACROS[name]
        if name in variables:
            return variables[name]
        raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")

    return _VARIABLE.sub(replace, expr)
