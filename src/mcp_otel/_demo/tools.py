"""The demo's tools and resource, written once for every framework.

No ``from __future__ import annotations`` here: the frameworks build each tool's input
schema from its signature, and the older ones (mcp 1.x before about 1.10, fastmcp 2.9)
cannot read annotations that are strings.
"""

import asyncio
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp_otel import _json

#: Keep secrets out of the tool result: the driver checks no file contains them.
CONNECT_OK = "connected"
CATALOG_URI = "demo://catalog"


@dataclass
class DemoState:
    """What the tools share: the cache from the instrumentation handle."""

    cache: Any = None


def flaky_fails(query: str, attempt: int) -> bool:
    """Deterministic "sometimes": about one call in four fails, decided by the arguments."""
    return zlib.crc32(f"{query}|{attempt}".encode()) % 4 == 0


def make_tools(state: DemoState, tool_error: type[Exception]
               ) -> list[Callable[..., Any]]:
    """The four tools; ``tool_error`` is the framework's ``ToolError`` (its documented way
    for a tool to answer with an error result)."""

    async def discover_schema(connection: str, component: str,
                              samples: int = 0) -> dict[str, Any]:
        """Discover a component's schema, served from the DiscoveryCache when possible."""
        cache = state.cache
        entry = await cache.get(connection, component, samples) if cache is not None else None
        if entry is not None:
            return {"discovery_id": entry.get("discovery_id"), "cached": True,
                    "data": entry.get("data")}
        data = {
            "component": component,
            "fields": [{"name": f"{component}_col{i}", "type": "string"} for i in range(4)],
            "rows_sampled": samples,
        }
        discovery_id = await cache.set(connection, component, samples, data) if cache else None
        return {"discovery_id": discovery_id, "cached": False, "data": data}

    async def flaky_query(query: str, attempt: int) -> dict[str, Any]:
        """A query against an unreliable upstream: fails about one time in four."""
        if flaky_fails(query, attempt):
            raise tool_error(f"upstream timed out for attempt {attempt}")
        return {"query": query, "rows": attempt % 7 + 1}

    async def slow_report(rows: int) -> dict[str, Any]:
        """A report that takes 20-60 ms to build."""
        await asyncio.sleep(0.02 + (rows % 5) * 0.01)
        return {"rows": rows, "report": "ok"}

    async def connect_database(dsn: str, password: str, api_key: str) -> dict[str, Any]:
        """Takes secrets as arguments; mcp-otel must mask them before any file."""
        del password, api_key
        return {"status": CONNECT_OK, "driver": dsn.split(":", 1)[0]}

    return [discover_schema, flaky_query, slow_report, connect_database]


def catalog() -> str:
    """The list of demo connections."""
    return _json.dumps({"connections": ["sales", "crm", "billing", "hr"]}).decode()
