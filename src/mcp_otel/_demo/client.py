"""A framework-neutral MCP client: raw JSON-RPC over streamable HTTP, with httpx.

Why not a framework's own client: the demo must drive whichever framework is installed
(mcp 1.x, mcp 2.x, fastmcp 2.x-4.x), and each ships a different client API (or, under
fastmcp 2.x/3.x, mcp 1.x's). The wire is the same for all of them, so one small client
speaks it directly and reads back exactly what the server sent, ``_meta`` included.

Two eras, as the ``mcp`` 2.x SDK's own client has them:

- ``handshake``: ``initialize`` (protocol ``2025-06-18``) and ``notifications/initialized``,
  then every request under the ``Mcp-Session-Id`` the server assigned; ``DELETE`` ends
  the session. Every framework serves it.
- ``auto``: probe ``server/discover`` at ``2026-07-28`` (the per-request era: no
  handshake, no session, each request carries the protocol version and client info in
  ``params._meta``); a server that does not answer with that version gets the handshake
  instead, as the SDK's ``mode="auto"`` does.

A response is either one JSON body or an SSE stream (``text/event-stream``) whose events
carry JSON-RPC messages; the one with the request's id is the answer, anything else
(notifications, logs) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import httpx
import orjson

HANDSHAKE_VERSION = "2025-06-18"
MODERN_VERSION = "2026-07-28"
_CLIENT_INFO = {"name": "mcp-otel-demo", "version": "1"}
_TIMEOUT_S = 60.0

Era = Literal["handshake", "auto"]


class RpcError(Exception):
    """The server answered with a JSON-RPC error, or not with a JSON-RPC answer at all."""


@dataclass(frozen=True)
class ToolOutcome:
    """One ``tools/call`` result as the client received it."""

    is_error: bool
    meta: dict[str, Any]
    #: ``structuredContent``, else the first text block parsed as JSON, else None.
    data: Any
    result: dict[str, Any] = field(repr=False)


def decode_response(content_type: str, body: bytes, request_id: int) -> dict[str, Any]:
    """The JSON-RPC message answering ``request_id`` from a JSON or SSE response body."""
    if content_type.startswith("text/event-stream"):
        for event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
            data = b"\n".join(line[5:].lstrip(b" ") for line in event.split(b"\n")
                              if line.startswith(b"data:"))
            if not data:
                continue
            try:
                message = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(message, dict) and message.get("id") == request_id:
                return message
        raise RpcError(f"no answer to request {request_id} in the event stream")
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RpcError(f"not JSON ({content_type or 'no content type'}): "
                       f"{body[:200]!r}") from None
    if not isinstance(message, dict):
        raise RpcError(f"not a JSON-RPC message: {body[:200]!r}")
    return message


def _result_data(result: dict[str, Any]) -> Any:
    structured = result.get("structuredContent")
    if structured is not None:
        return structured
    for block in result.get("content") or ():
        if isinstance(block, dict) and block.get("type") == "text":
            try:
                return orjson.loads(block.get("text") or "")
            except orjson.JSONDecodeError:
                return None
    return None


class DemoClient:
    """One client connection (``async with DemoClient(url, era) as client``)."""

    def __init__(self, url: str, era: Era = "handshake") -> None:
        self._url = url
        self._era = era
        # Redirects followed as the SDKs' own HTTP clients do: fastmcp 2.9 serves "/mcp/"
        # and answers "/mcp" with a 307 (which keeps the method and body).
        self._http = httpx.AsyncClient(timeout=_TIMEOUT_S, follow_redirects=True)
        self._headers = {"accept": "application/json, text/event-stream",
                         "content-type": "application/json"}
        self._next_id = 0
        self.modern = False
        self.session_id: str | None = None

    async def __aenter__(self) -> DemoClient:
        try:
            if self._era == "auto" and await self._discover():
                self.modern = True
            else:
                await self._handshake()
        except BaseException:
            await self._http.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self.session_id is not None:
                # Ends the server's session now (its span and duration), not at shutdown.
                # 405 is a server that does not let clients end sessions: nothing to do.
                await self._http.delete(self._url, headers=self._headers)
        finally:
            await self._http.aclose()

    # ------------------------------------------------------------------ era negotiation

    async def _discover(self) -> bool:
        """Whether the server speaks the per-request era (any failure: it does not)."""
        try:
            message = await self._post("server/discover", {}, modern=True)
        except (RpcError, httpx.HTTPStatusError):
            return False
        result = message.get("result")
        versions = result.get("supportedVersions") if isinstance(result, dict) else None
        return isinstance(versions, list) and MODERN_VERSION in versions

    async def _handshake(self) -> None:
        message = await self._post("initialize", {
            "protocolVersion": HANDSHAKE_VERSION, "capabilities": {},
            "clientInfo": _CLIENT_INFO})
        _result(message, "initialize")
        version = message["result"].get("protocolVersion") or HANDSHAKE_VERSION
        self._headers["mcp-protocol-version"] = str(version)
        response = await self._http.post(self._url, headers=self._headers, content=orjson.dumps(
            {"jsonrpc": "2.0", "method": "notifications/initialized"}))
        response.raise_for_status()

    # ------------------------------------------------------------------ requests

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        message = await self._post("tools/call", {"name": name, "arguments": arguments},
                                   target=name)
        result = _result(message, f"tools/call {name}")
        meta = result.get("_meta")
        return ToolOutcome(is_error=bool(result.get("isError")),
                           meta=dict(meta) if isinstance(meta, dict) else {},
                           data=_result_data(result), result=result)

    async def read_resource(self, uri: str) -> list[dict[str, Any]]:
        message = await self._post("resources/read", {"uri": uri}, target=uri)
        contents = _result(message, f"resources/read {uri}").get("contents")
        return list(contents) if isinstance(contents, list) else []

    async def _post(self, method: str, params: dict[str, Any], *, target: str | None = None,
                    modern: bool | None = None) -> dict[str, Any]:
        self._next_id += 1
        request_id = self._next_id
        headers = dict(self._headers)
        if self.modern if modern is None else modern:
            # The per-request era: the version and client in every request, mirrored in
            # headers the server checks against the body.
            params = {**params, "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
                "io.modelcontextprotocol/clientInfo": _CLIENT_INFO,
                "io.modelcontextprotocol/clientCapabilities": {}}}
            headers["mcp-protocol-version"] = MODERN_VERSION
            headers["mcp-method"] = method
            if target is not None:
                headers["mcp-name"] = target
        response = await self._http.post(self._url, headers=headers, content=orjson.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
        if response.status_code >= 400 and not response.content:
            response.raise_for_status()
        session_id = response.headers.get("mcp-session-id")
        if session_id and method == "initialize":
            self.session_id = session_id
            self._headers["mcp-session-id"] = session_id
        try:
            return decode_response(response.headers.get("content-type", ""),
                                   response.content, request_id)
        except RpcError:
            response.raise_for_status()
            raise


def _result(message: dict[str, Any], what: str) -> dict[str, Any]:
    result = message.get("result")
    if isinstance(result, dict):
        return result
    error = message.get("error")
    if isinstance(error, dict):
        raise RpcError(f"{what}: error {error.get('code')}: {error.get('message')}")
    raise RpcError(f"{what}: no result in {message!r:.200}")
