"""What a real client sees per tool call, uninstrumented vs instrumented, per framework.

For one framework (the one importable in the running interpreter, or ``--framework``):

1. the uninstrumented server's maximum: ``--clients`` client processes call a trivial
   tool back to back over streamable HTTP for ``--seconds``;
2. at a fixed offered rate of half that maximum, spread over the same client processes
   (open loop, latency from the scheduled start), each variant in turn, ``--rounds``
   times alternating: ``off`` (uninstrumented), ``queued`` (``instrument()`` with
   ``AuditLogger(wait="queued")``) and ``written`` (``wait="written"``).

Goals (issue 11): ``queued`` p99 at most 1.25x ``off`` p99; ``written`` p99 at most
``queued`` p99 + 5 ms. Every instrumented run is checked: the audit trail holds one
``tool_call`` and one ``tool_result`` per call made. Usage::

    python benchmarks/bench_frameworks.py [--framework mcp2|mcp1|fastmcp] [--seconds 5]
        [--clients 4] [--calls 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import cpu_model

HERE = Path(__file__).resolve().parent
VARIANTS = ("off", "queued", "written")


def _detect() -> str:
    for name, module in (("fastmcp", "fastmcp"), ("mcp2", "mcp.server.mcpserver"),
                         ("mcp1", "mcp.server.fastmcp")):
        try:
            __import__(module)
        except Exception:
            continue
        return name
    raise SystemExit("no supported MCP framework is importable here")


def _version(framework: str) -> str:
    dist = "fastmcp" if framework == "fastmcp" else "mcp"
    return f"{dist} {importlib.metadata.version(dist)}"


class Server:
    def __init__(self, framework: str, mode: str, out: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_framework_server.py"), "--framework", framework,
             "--mode", mode, "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, "MCP_OTEL_DIR": str(out)})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {framework} server did not start")
        self.url = f"http://127.0.0.1:{json.loads(line)['ready']}/mcp"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def _clients(url: str, argv: list[str], count: int) -> list[dict[str, Any]]:
    procs = [subprocess.Popen([sys.executable, str(HERE / "_framework_client.py"), url,
                               *argv], stdout=subprocess.PIPE) for _ in range(count)]
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=600)
        if proc.returncode:
            raise SystemExit("a benchmark client failed")
        out.append(json.loads(stdout))
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _audit_counts(out: Path) -> tuple[int, int]:
    calls = results = 0
    for path in (out / "audit").glob("*.jsonl"):
        for line in path.read_bytes().splitlines():
            event = json.loads(line).get("event")
            calls += event == "tool_call"
            results += event == "tool_result"
    return calls, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", choices=["mcp2", "mcp1", "fastmcp"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--calls", type=int, default=400, help="per client per run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    framework = args.framework or _detect()

    with tempfile.TemporaryDirectory(prefix="mcp-otel-bench-") as tmp:
        server = Server(framework, "off", Path(tmp) / "max")
        try:
            counts = _clients(server.url, ["closed", str(args.seconds)], args.clients)
        finally:
            server.stop()
        maximum = sum(c["calls"] for c in counts) / args.seconds
        rate = maximum / 2
        per_client = rate / args.clients
        p50: dict[str, list[float]] = {v: [] for v in VARIANTS}
        p99: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for round_no in range(args.rounds):
            for variant in VARIANTS:
                out = Path(tmp) / f"{variant}-{round_no}"
                server = Server(framework, variant, out)
                try:
                    runs = _clients(server.url, ["open", str(per_client), str(args.calls)],
                                    args.clients)
                finally:
                    server.stop()
                latencies = [x for run in runs for x in run["latencies_ms"]]
                p50[variant].append(_percentile(latencies, 0.50))
                p99[variant].append(_percentile(latencies, 0.99))
                if variant != "off":
                    expected = args.clients * args.calls
                    if _audit_counts(out) != (expected, expected):
                        raise SystemExit(f"{variant}: audit trail incomplete "
                                         f"{_audit_counts(out)} for {expected} calls")

    print(f"# bench_frameworks: {_version(framework)} ({framework}), "
          f"{_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"# uninstrumented maximum {maximum:,.0f} calls/s ({args.clients} closed-loop "
          f"clients, {args.seconds:.0f} s); offered rate {rate:,.0f} calls/s; "
          f"medians of {args.rounds} rounds")
    print("| variant | p50 ms | p99 ms | p99 / off | goal |")
    print("|---|---:|---:|---:|---|")
    m50 = {v: statistics.median(p50[v]) for v in VARIANTS}
    m99 = {v: statistics.median(p99[v]) for v in VARIANTS}
    queued_ok = m99["queued"] <= 1.25 * m99["off"]
    written_ok = m99["written"] <= m99["queued"] + 5
    goals = {"off": "", "queued": f"<= 1.25x: {'met' if queued_ok else 'NOT met'}",
             "written": f"<= queued + 5 ms: {'met' if written_ok else 'NOT met'}"}
    for v in VARIANTS:
        print(f"| {v} | {m50[v]:.2f} | {m99[v]:.2f} | {m99[v] / m99['off']:.2f}x | {goals[v]} |")


if __name__ == "__main__":
    main()
