"""Which MCP frameworks the demo can run on here, and the demo server built on each.

``NAMES`` in preference order: the default framework is the first one installed. Finding
out what is installed reads package metadata only (nothing is imported), so the command
line can refuse an unknown or missing framework at once, naming the ones it has.

Each framework serves the same tools and resource (:mod:`.tools`) over its own
streamable HTTP ASGI app, in that framework's own style:

- ``mcp2``: the official SDK 2.x ``MCPServer``, ``streamable_http_app()``;
- ``mcp1``: the official SDK 1.x ``mcp.server.fastmcp.FastMCP``, ``streamable_http_app()``
  (mcp 1.8 and later: earlier releases have no streamable HTTP server);
- ``fastmcp``: standalone ``fastmcp.FastMCP`` 2.9+ (the oldest release mcp-otel
  instruments), ``http_app()``; tools registered with ``@server.tool`` on 4.x and
  ``@server.tool()`` before, as each line documents.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from dataclasses import dataclass
from typing import Any

from mcp_otel._demo.tools import CATALOG_URI, DemoState, catalog, make_tools

#: In preference order: the default is the first one installed.
NAMES = ("mcp2", "mcp1", "fastmcp")
_SERVER_NAME = "mcp-otel-demo"
_SERVER_VERSION = "0.1.0"


class FrameworkError(Exception):
    """The framework asked for cannot run the demo here; the message says why."""


@dataclass(frozen=True)
class Framework:
    """One framework as installed in this environment."""

    name: str
    #: The distribution and its version, e.g. ``mcp 1.30.0``.
    package: str
    version: str
    #: Why the demo cannot run on it, or None when it can.
    unusable: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.package} {self.version})"

    @property
    def meta_on_raised_errors(self) -> bool:
        """Whether a tool that raises answers with the correlation id in ``_meta``.

        fastmcp turns the exception into an error result after its middleware chain,
        where mcp-otel's middleware has no place for it (docs/fastmcp.md); the audit,
        telemetry and span still carry the id.
        """
        return self.name != "fastmcp"

    @property
    def meta_on_results(self) -> bool:
        """Whether a result carries ``_meta`` at all (fastmcp before 2.14 hands its
        middleware a bare content list)."""
        return not (self.name == "fastmcp" and _release(self.version) < (2, 14))


def _release(version: str) -> tuple[int, ...]:
    """``1.30.0`` -> (1, 30, 0); a pre-release counts as its release."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed() -> dict[str, Framework]:
    """The frameworks installed here, in preference order (usable or not)."""
    found: dict[str, Framework] = {}
    mcp = _version("mcp")
    if mcp is not None:
        release = _release(mcp)
        if release[:1] == (2,):
            found["mcp2"] = Framework("mcp2", "mcp", mcp)
        elif release[:1] == (1,):
            found["mcp1"] = Framework(
                "mcp1", "mcp", mcp,
                None if release >= (1, 8) else
                f"mcp {mcp} has no streamable HTTP server: it came in mcp 1.8")
    fastmcp = _version("fastmcp")
    if fastmcp is not None:
        found["fastmcp"] = Framework(
            "fastmcp", "fastmcp", fastmcp,
            None if (2, 9) <= _release(fastmcp) < (5,) else
            f"mcp-otel instruments fastmcp 2.9 to 4.x, not {fastmcp}")
    return {name: found[name] for name in NAMES if name in found}


def describe(frameworks: dict[str, Framework]) -> str:
    """``mcp1 (mcp 1.30.0), fastmcp (fastmcp 2.14.7)`` or ``none``."""
    return ", ".join(f.label for f in frameworks.values()) or "none"


def resolve(name: str | None) -> Framework:
    """The framework to run on: ``name``, or the first usable one installed."""
    found = installed()
    if name is None:
        usable = [f for f in found.values() if f.unusable is None]
        if usable:
            return usable[0]
        reasons = "; ".join(f.unusable for f in found.values() if f.unusable)
        if reasons:
            raise FrameworkError(
                f"no MCP framework here can run the demo ({reasons}); in an environment of "
                f"its own, pip install 'mcp-otel[demo]' brings the official mcp SDK 2.x")
        raise FrameworkError(
            "no MCP framework installed: pip install 'mcp-otel[demo]' brings the official "
            "mcp SDK 2.x (mcp 1.8+ or fastmcp 2.9-4.x also run the demo)")
    if name not in NAMES:
        raise FrameworkError(f"unknown framework {name!r}: choose one of {', '.join(NAMES)} "
                             f"(installed: {describe(found)})")
    framework = found.get(name)
    if framework is None:
        raise FrameworkError(f"framework {name!r} is not installed here "
                             f"(installed: {describe(found)})")
    if framework.unusable is not None:
        raise FrameworkError(f"framework {name!r} cannot run the demo: {framework.unusable} "
                             f"(installed: {describe(found)})")
    return framework


# --------------------------------------------------------------------------- servers
# Imported only in the server process, and only the chosen framework.


def build(name: str, state: DemoState) -> tuple[Any, Any]:
    """(server, its streamable HTTP ASGI app) on framework ``name``."""
    builders = {"mcp2": _mcp2, "mcp1": _mcp1, "fastmcp": _fastmcp}
    return builders[name](state)


def _mcp2(state: DemoState) -> tuple[Any, Any]:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer(_SERVER_NAME, version=_SERVER_VERSION, log_level="WARNING")
    for tool in make_tools(state, ToolError):
        server.tool()(tool)
    server.resource(CATALOG_URI)(catalog)
    return server, server.streamable_http_app()


def _mcp1(state: DemoState) -> tuple[Any, Any]:
    from mcp.server.fastmcp import FastMCP
    from mcp.server.fastmcp.exceptions import ToolError

    server = FastMCP(_SERVER_NAME, log_level="WARNING")
    for tool in make_tools(state, ToolError):
        server.tool()(tool)
    server.resource(CATALOG_URI)(catalog)
    return server, server.streamable_http_app()


def _fastmcp(state: DemoState) -> tuple[Any, Any]:
    import fastmcp
    from fastmcp.exceptions import ToolError

    server = fastmcp.FastMCP(_SERVER_NAME, version=_SERVER_VERSION)
    bare = _release(importlib.metadata.version("fastmcp")) >= (4,)
    for tool in make_tools(state, ToolError):
        if bare:
            server.tool(tool)  # fastmcp 4 documents the bare decorator
        else:
            server.tool()(tool)
    server.resource(CATALOG_URI)(catalog)
    _quiet_expected_failures()
    return server, server.http_app()


class _DropExpectedFailures(logging.Filter):
    """fastmcp logs every tool failure (with a traceback before 4.x); ``flaky_query``
    fails on purpose about one call in four, which would bury the demo's progress.
    Other tools' failures and every other record still get through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Error calling tool 'flaky_query'")


def _quiet_expected_failures() -> None:
    # A logger's filters see only its own records, so each fastmcp logger gets one; they
    # exist by now (fastmcp creates them at import, as "fastmcp.*" or, in 2.x, "FastMCP.*").
    drop = _DropExpectedFailures()
    for name in list(logging.Logger.manager.loggerDict):
        if name.lower() == "fastmcp" or name.lower().startswith("fastmcp."):
            logging.getLogger(name).addFilter(drop)
