"""One way to build a server and call it, whatever framework line this environment holds.

The shared suite runs unchanged in every framework environment (see
``scripts/framework-envs.sh``); what differs per line lives here and only here:

- ``current_line()``: the line named by ``MCP_OTEL_FRAMEWORK_LINE``, as listed in
  ``tests/frameworks/lines.toml``;
- ``SERVER_KINDS``: the server objects a user of this line holds (mcp 1.x: a low-level
  ``Server`` built with the decorator API, as Osiris builds it, and
  ``mcp.server.fastmcp.FastMCP``; mcp 2.x: a low-level ``Server`` built with ``on_*``
  handlers and ``MCPServer``; fastmcp: its ``FastMCP``);
- ``make_server(tools, resources, kind=...)``: such a server, written in that framework's own
  style, so an instrumentation test sees exactly what a user's server looks like;
- ``connect(server)`` / ``call_tool`` / ``read_resource``: the framework's own in-memory
  client, with its results normalised into ``CallOutcome``.

Tool functions take keyword arguments annotated with ``int``, ``float``, ``str``, ``bool``,
``dict`` or ``list`` and return ``str`` (every framework sends a ``str`` as one text block, so
``CallOutcome.text`` compares across lines). The annotations must be real, not strings: a
module defining tools must not use ``from __future__ import annotations``, which mcp 1.10's
FastMCP cannot read. A tool that raises is the framework's business: the high-level
frameworks and the mcp 1.x decorator answer with an error result, the mcp 2.x low-level
server with a JSON-RPC error (``CallOutcome.protocol_error``).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.frameworks._lines import LINE_VARIABLE, LINES_FILE, Line, all_lines

__all__ = ["LINE", "SERVER_KINDS", "CallOutcome", "Line", "ResourceSpec", "Session", "ToolSpec",
           "call_tool", "connect", "current_line", "installed_version", "make_server",
           "read_resource"]


def current_line() -> Line:
    """The line this environment was built for; a clear error when run outside one."""
    name = os.environ.get(LINE_VARIABLE, "")
    lines = all_lines()
    if name not in lines:
        raise RuntimeError(
            f"{LINE_VARIABLE}={name!r} names no line in {LINES_FILE} (known: "
            f"{', '.join(lines)}); run this suite through tests/frameworks/test_lines.py"
        )
    return lines[name]


def installed_version(package: str) -> str:
    return importlib.metadata.version(package)


LINE = current_line()

#: The server objects a user of this line can hand to ``mcp_otel.instrument``.
SERVER_KINDS: tuple[str, ...] = {
    "mcp1": ("lowlevel", "fastmcp"),
    "mcp2": ("lowlevel", "mcpserver"),
    "fastmcp2": ("fastmcp",),
    "fastmcp3": ("fastmcp",),
    "fastmcp4": ("fastmcp",),
}[LINE.family]


#: A tool body: called with the call's arguments as keywords, sync or async, returns text.
ToolFn = Callable[..., str | Awaitable[str]]


@dataclass(frozen=True)
class ToolSpec:
    """A tool: ``fn(**arguments)`` (sync or async) returns the text of the result."""

    name: str
    fn: ToolFn
    description: str = "a test tool"


@dataclass(frozen=True)
class ResourceSpec:
    """A static text resource: ``fn()`` returns its text."""

    uri: str
    fn: Callable[[], str]
    name: str = "resource"


@dataclass(frozen=True)
class CallOutcome:
    """A tool call as the client saw it, the same shape on every line."""

    is_error: bool
    text: str
    #: The response ``_meta`` (empty when the framework sent none).
    meta: dict[str, Any] = field(default_factory=dict)
    #: True when the server answered with a JSON-RPC error instead of a result.
    protocol_error: bool = False
    raw: Any = None


# --------------------------------------------------------------------------- servers


def make_server(
    tools: Sequence[ToolSpec],
    resources: Sequence[ResourceSpec] = (),
    *,
    kind: str | None = None,
    name: str = "frameworks-suite",
) -> Any:
    """A server of ``kind`` (default: the line's first kind) serving ``tools`` and ``resources``."""
    kind = kind or SERVER_KINDS[0]
    if kind not in SERVER_KINDS:
        raise ValueError(f"line {LINE.name} has server kinds {SERVER_KINDS}, not {kind!r}")
    if LINE.family == "mcp1":
        builder = _mcp1_lowlevel if kind == "lowlevel" else _mcp1_fastmcp
    elif LINE.family == "mcp2":
        builder = _mcp2_lowlevel if kind == "lowlevel" else _mcp2_mcpserver
    else:
        builder = _fastmcp
    return builder(name, tools, resources)


async def _invoke(fn: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    result = fn(**arguments)
    if inspect.isawaitable(result):
        result = await result
    return result


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean",
               dict: "object", list: "array"}


def _input_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema a low-level server declares for ``fn``'s keyword arguments."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for pname, param in inspect.signature(fn, eval_str=True).parameters.items():
        json_type = _JSON_TYPES.get(param.annotation)
        properties[pname] = {"type": json_type} if json_type else {}
        if param.default is inspect.Parameter.empty:
            required.append(pname)
    return {"type": "object", "properties": properties, "required": required}


def _mcp1_lowlevel(name: str, tools: Sequence[ToolSpec], resources: Sequence[ResourceSpec]
                   ) -> Any:
    """Osiris' shape: ``Server(name)`` and the decorator API, handlers returning content."""
    import mcp.types as types
    from mcp.server.lowlevel import Server

    server = Server(name)
    by_name = {tool.name: tool for tool in tools}

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [types.Tool(name=t.name, description=t.description, inputSchema=_input_schema(t.fn))
                for t in tools]

    @server.call_tool()
    async def call_tool(tool_name: str, arguments: dict[str, Any]) -> list[types.TextContent]:
        tool = by_name.get(tool_name)
        if tool is None:
            raise ValueError(f"unknown tool {tool_name!r}")
        result = await _invoke(tool.fn, arguments or {})
        return [types.TextContent(type="text", text=_as_text(result))]

    if resources:
        by_uri = {r.uri: r for r in resources}

        @server.list_resources()
        async def list_resources() -> list[types.Resource]:
            return [types.Resource(uri=r.uri, name=r.name) for r in resources]

        @server.read_resource()
        async def read_resource(uri: Any) -> str:
            return by_uri[str(uri)].fn()

    return server


def _register_decorated(server: Any, tools: Sequence[ToolSpec],
                        resources: Sequence[ResourceSpec], *, bare_tool: bool) -> Any:
    """Register on a FastMCP-style server: ``@server.tool()`` (or ``@server.tool``)."""
    for tool in tools:
        if bare_tool:
            server.tool(tool.fn, name=tool.name, description=tool.description)
        else:
            server.tool(name=tool.name, description=tool.description)(tool.fn)
    for resource in resources:
        server.resource(resource.uri, name=resource.name)(resource.fn)
    return server


def _mcp1_fastmcp(name: str, tools: Sequence[ToolSpec], resources: Sequence[ResourceSpec]
                  ) -> Any:
    from mcp.server.fastmcp import FastMCP

    return _register_decorated(FastMCP(name), tools, resources, bare_tool=False)


def _mcp2_lowlevel(name: str, tools: Sequence[ToolSpec], resources: Sequence[ResourceSpec]
                   ) -> Any:
    """mcp 2.x's low-level shape: handlers are constructor arguments taking ``(ctx, params)``."""
    import mcp.types as types
    from mcp.server.lowlevel import Server

    by_name = {tool.name: tool for tool in tools}
    by_uri = {r.uri: r for r in resources}

    async def on_list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=[
            types.Tool(name=t.name, description=t.description, input_schema=_input_schema(t.fn))
            for t in tools])

    async def on_call_tool(ctx: Any, params: Any) -> Any:
        tool = by_name.get(params.name)
        if tool is None:
            raise ValueError(f"unknown tool {params.name!r}")
        result = await _invoke(tool.fn, params.arguments or {})
        return types.CallToolResult(content=[types.TextContent(type="text", text=_as_text(result))])

    async def on_list_resources(ctx: Any, params: Any) -> Any:
        return types.ListResourcesResult(
            resources=[types.Resource(uri=r.uri, name=r.name) for r in resources])

    async def on_read_resource(ctx: Any, params: Any) -> Any:
        uri = str(params.uri)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, text=by_uri[uri].fn())])

    handlers: dict[str, Any] = {"on_list_tools": on_list_tools, "on_call_tool": on_call_tool}
    if resources:
        handlers |= {"on_list_resources": on_list_resources, "on_read_resource": on_read_resource}
    return Server(name, **handlers)


def _mcp2_mcpserver(name: str, tools: Sequence[ToolSpec], resources: Sequence[ResourceSpec]
                    ) -> Any:
    from mcp.server.mcpserver import MCPServer

    return _register_decorated(MCPServer(name), tools, resources, bare_tool=False)


def _fastmcp(name: str, tools: Sequence[ToolSpec], resources: Sequence[ResourceSpec]) -> Any:
    from fastmcp import FastMCP

    # fastmcp 4 documents the bare decorator (@server.tool); 2.x and 3.x the called one.
    return _register_decorated(FastMCP(name), tools, resources,
                               bare_tool=LINE.family == "fastmcp4")


# --------------------------------------------------------------------------- clients


def _result_is_error(result: Any) -> bool:
    # mcp 2.x types (also under fastmcp 4) name it is_error; mcp 1.x types isError.
    field_name = "is_error" if "is_error" in type(result).model_fields else "isError"
    return bool(getattr(result, field_name))


def _result_text(contents: Sequence[Any]) -> str:
    return "".join(getattr(c, "text", "") or "" for c in contents)


def _outcome(result: Any) -> CallOutcome:
    return CallOutcome(is_error=_result_is_error(result), text=_result_text(result.content),
                       meta=dict(result.meta or {}), raw=result)


def _protocol_error_type() -> type[Exception]:
    """What the client raises for a JSON-RPC error answer (renamed in mcp 2.x)."""
    from mcp.shared import exceptions

    error_type: type[Exception] = getattr(exceptions, "MCPError", None) or exceptions.McpError
    return error_type


def _protocol_error(exc: Exception) -> CallOutcome:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or str(exc)
    return CallOutcome(is_error=True, text=message, protocol_error=True, raw=exc)


async def _mcp1_call_with_meta(session: Any, name: str, arguments: dict[str, Any],
                               meta: dict[str, Any]) -> Any:
    """``tools/call`` with ``params._meta`` on an mcp 1.x ``ClientSession``.

    ``ClientSession.call_tool`` took no ``meta`` before about 1.2x, so the request is sent as
    the typed message it is on every 1.x release.
    """
    import mcp.types as types

    request = types.ClientRequest(types.CallToolRequest(
        method="tools/call",
        params=types.CallToolRequestParams(name=name, arguments=arguments, _meta=meta)))
    return await session.send_request(request, types.CallToolResult)


class Session:
    """An open in-memory client connection to one server, normalised across lines."""

    def __init__(self, family: str, client: Any) -> None:
        self._family = family
        self._client = client

    @property
    def client(self) -> Any:
        """The framework's own client object, for what this class does not cover."""
        return self._client

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, *,
                        meta: dict[str, Any] | None = None) -> CallOutcome:
        arguments = arguments or {}
        try:
            if self._family == "mcp1":
                result = (await _mcp1_call_with_meta(self._client, name, arguments, meta)
                          if meta else await self._client.call_tool(name, arguments))
            elif self._family == "mcp2":
                result = await self._client.call_tool(name, arguments, meta=meta)
            else:
                result = await self._fastmcp_call(name, arguments, meta)
        except _protocol_error_type() as exc:
            return _protocol_error(exc)
        return _outcome(result)

    async def _fastmcp_call(self, name: str, arguments: dict[str, Any],
                            meta: dict[str, Any] | None) -> Any:
        call = self._client.call_tool_mcp
        if not meta:
            return await call(name, arguments)
        if "meta" in inspect.signature(call).parameters:
            return await call(name, arguments, meta=meta)
        # fastmcp before 2.1x has no meta= here; its session is an mcp 1.x ClientSession.
        return await _mcp1_call_with_meta(self._client.session, name, arguments, meta)

    async def read_resource(self, uri: str) -> str:
        result = await self._client.read_resource(uri)
        contents = result if isinstance(result, list) else result.contents
        return _result_text(contents)


@asynccontextmanager
async def connect(server: Any) -> AsyncIterator[Session]:
    """The line's own in-memory client, connected to ``server`` for the block."""
    family = LINE.family
    if family == "mcp1":
        from mcp.shared.memory import create_connected_server_and_client_session

        # Before 1.2x the helper takes only a low-level Server; FastMCP keeps its own at
        # _mcp_server (tests may reach it; the library only through the mcp1 adapter).
        lowlevel = getattr(server, "_mcp_server", server)
        async with create_connected_server_and_client_session(lowlevel) as session:
            yield Session(family, session)
    elif family == "mcp2":
        from mcp.client import Client

        async with Client(server) as client:
            yield Session(family, client)
    else:
        import fastmcp

        async with fastmcp.Client(server) as client:
            yield Session(family, client)


async def call_tool(server: Any, name: str, arguments: dict[str, Any] | None = None, *,
                    meta: dict[str, Any] | None = None) -> CallOutcome:
    """One tool call over a fresh in-memory connection."""
    async with connect(server) as session:
        return await session.call_tool(name, arguments, meta=meta)


async def read_resource(server: Any, uri: str) -> str:
    """One resource read over a fresh in-memory connection."""
    async with connect(server) as session:
        return await session.read_resource(uri)

