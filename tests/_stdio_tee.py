"""Watch what an MCP stdio server writes to stdout, byte for byte (any framework).

``python tests/_stdio_tee.py LOG -- CMD...`` runs CMD with this process's stdin and
stderr and copies its stdout to our stdout *and* to LOG, then exits with its status.
The stdio tests put it between the MCP client and the server, so they can check that
every byte the server wrote is a JSON-RPC message: mcp-otel must never write to stdout,
where a stdio server speaks the protocol (clients skip lines they cannot parse, so only
a copy shows a stray one). It also makes every SDK's client behave like today's on
close (stdin closed, then the server is waited for): stdio clients before about mcp 1.2x
send SIGTERM the moment they close, which the tee takes instead of the server (CMD then
sees stdin end). What SIGTERM itself does to an instrumented server is the lifecycle
tests' subject, not these.

Standard library only: it runs under every framework line's interpreter.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def tee_command(log: Path, *command: str) -> tuple[str, list[str]]:
    """(command, args) for a stdio client's server parameters: ``command`` under the tee."""
    return sys.executable, [str(HERE), str(log), "--", *command]


def jsonrpc_messages(log: Path) -> list[dict[str, Any]]:
    """Every line the server wrote to stdout, each a JSON-RPC 2.0 message, or fail."""
    raw = log.read_bytes()
    assert raw, "the server wrote nothing to stdout"
    assert raw.endswith(b"\n"), "the server's stdout ends in a partial line"
    messages = []
    for line in raw.splitlines():
        message = json.loads(line)  # a stray byte from anyone breaks the protocol here
        assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", line[:200]
        messages.append(message)
    return messages


def _tee(log: str, command: list[str]) -> int:
    # A Python handler, not SIG_IGN: the child must not inherit an ignored SIGTERM.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    with open(log, "wb") as copy:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        out: Any = sys.stdout.buffer
        while chunk := proc.stdout.read1(65536):
            copy.write(chunk)
            copy.flush()
            if out is not None:
                try:
                    out.write(chunk)
                    out.flush()
                except OSError:  # the client is gone; keep the copy complete
                    out = None
        return proc.wait()


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: _stdio_tee.py LOG -- CMD...")
    sys.exit(_tee(sys.argv[1], sys.argv[3:]))
