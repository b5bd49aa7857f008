"""One benchmark client process for ``bench_frameworks.py``: raw JSON-RPC over streamable
HTTP (httpx), so the same client measures every framework. Blocking, one call at a time;
responses (JSON or SSE) are read by the demo's framework-neutral client's decoder.

``closed SECONDS``: back-to-back ``tools/call`` for that long, prints the count.
``open RATE CALLS``: calls scheduled at a fixed rate; each latency runs from the
*scheduled* start (a late start counts against the server, as a real client would see
it: no coordinated omission). Prints ``{"latencies_ms": [...]}``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import httpx

from mcp_otel._demo.client import HANDSHAKE_VERSION as PROTOCOL
from mcp_otel._demo.client import decode_response


class Session:
    def __init__(self, url: str) -> None:
        # Redirects followed: fastmcp 2.9 answers "/mcp" with a 307 to "/mcp/".
        self._client = httpx.Client(timeout=30.0, follow_redirects=True)
        self._url = url
        self._headers = {"accept": "application/json, text/event-stream",
                         "content-type": "application/json"}
        self._id = 0
        self._rpc("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                 "clientInfo": {"name": "bench", "version": "1"}})
        self._headers["mcp-protocol-version"] = PROTOCOL
        self._client.post(self._url, headers=self._headers,
                          json={"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._id += 1
        response = self._client.post(self._url, headers=self._headers, json={
            "jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        response.raise_for_status()
        sid = response.headers.get("mcp-session-id")
        if sid:
            self._headers["mcp-session-id"] = sid
        return decode_response(response.headers.get("content-type", ""), response.content,
                               self._id)

    def call(self, text: str) -> None:
        message = self._rpc("tools/call", {"name": "echo", "arguments": {"text": text}})
        result = message.get("result")
        if not isinstance(result, dict) or result.get("isError"):
            raise RuntimeError(f"tool call failed: {message}")


def main() -> None:
    url, kind = sys.argv[1], sys.argv[2]
    session = Session(url)
    if kind == "closed":
        end = time.monotonic() + float(sys.argv[3])
        count = 0
        while time.monotonic() < end:
            session.call("x")
            count += 1
        print(json.dumps({"calls": count}))
        return
    rate, calls = float(sys.argv[3]), int(sys.argv[4])
    pause = threading.Event()
    latencies: list[float] = []
    start = time.monotonic() + 0.05
    for i in range(calls):
        due = start + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            pause.wait(wait)  # open-loop pacing of the offered load, not synchronisation
        session.call("x")
        latencies.append((time.monotonic() - due) * 1000)
    print(json.dumps({"latencies_ms": latencies}))


if __name__ == "__main__":
    main()
