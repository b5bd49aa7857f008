"""One benchmark client process for ``bench_frameworks.py``: raw JSON-RPC over streamable
HTTP (httpx), so the same client measures every framework. Blocking, one call at a time;
responses (JSON or SSE) are read by the demo's framework-neutral client's decoder.

The process lives for the whole benchmark (imports and sessions are paid once, not per
round) and takes one JSON command per line on stdin, answering each with one JSON line on
stdout:

* ``{"op": "connect", "urls": [...]}``: one session (``initialize``) per server;
  answers ``{"ok": true}``.
* ``{"op": "closed", "url": U, "at": T, "seconds": S}``: from wall-clock time ``T``,
  back-to-back ``tools/call`` for ``S`` seconds; answers ``{"calls": n}``.
* ``{"op": "open", "url": U, "at": T, "seconds": S, "rate": R, "phase": P}``: calls
  scheduled at ``R`` per second from ``T + P / R`` for ``S`` seconds; each latency runs
  from the *scheduled* start (a late start counts against the server, as a real client
  would see it: no coordinated omission). Answers ``{"latencies_ms": [...]}``.

Every client of a round gets the same ``T``, so no client starts while another is still
being set up; the ``phase`` spreads the clients' schedules evenly over one interval.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any

import httpx

from mcp_otel._demo.client import HANDSHAKE_VERSION as PROTOCOL
from mcp_otel._demo.client import decode_response


class Session:
    def __init__(self, url: str) -> None:
        # TCP_NODELAY: the request's headers and body may leave in two writes; Nagle would
        # hold the second one until the server's (delayed) ACK. Redirects followed:
        # fastmcp 2.9 answers "/mcp" with a 307 to "/mcp/".
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self._client = httpx.Client(timeout=30.0, follow_redirects=True, transport=transport)
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


_PAUSE = threading.Event()  # never set: Event.wait is an interruptible sleep


def _sleep_until_wall(at: float) -> float:
    """Sleep until wall-clock ``at``; return the monotonic clock's reading for it."""
    delay = at - time.time()
    if delay > 0:
        _PAUSE.wait(delay)  # open-loop pacing of the offered load, not synchronisation
    return time.monotonic() + min(0.0, at - time.time())


def _closed(session: Session, at: float, seconds: float) -> dict[str, Any]:
    end = _sleep_until_wall(at) + seconds
    count = 0
    while time.monotonic() < end:
        session.call("x")
        count += 1
    return {"calls": count}


def _open(session: Session, at: float, seconds: float, rate: float,
          phase: float) -> dict[str, Any]:
    start = _sleep_until_wall(at) + phase / rate
    latencies: list[float] = []
    for i in range(int(seconds * rate)):
        due = start + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            _PAUSE.wait(wait)
        session.call("x")
        latencies.append((time.monotonic() - due) * 1000)
    return {"latencies_ms": latencies}


def main() -> None:
    sessions: dict[str, Session] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "connect":
            for url in cmd["urls"]:
                sessions[url] = Session(url)
            answer: dict[str, Any] = {"ok": True}
        elif op == "closed":
            answer = _closed(sessions[cmd["url"]], cmd["at"], cmd["seconds"])
        elif op == "open":
            answer = _open(sessions[cmd["url"]], cmd["at"], cmd["seconds"], cmd["rate"],
                           cmd["phase"])
        else:
            raise SystemExit(f"unknown command {op!r}")
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
