"""What a real client sees per tool call, uninstrumented vs instrumented, per framework.

For one framework (the one importable in the running interpreter, or ``--framework``):

1. four servers are started, each in its own process (``_framework_server.py``: one
   trivial tool, uvicorn, streamable HTTP): ``off`` and ``off-b`` (both uninstrumented:
   the A/A pair that shows the noise), ``queued`` (``instrument()`` with
   ``AuditLogger(wait="queued")``) and ``written`` (``wait="written"``);
2. ``--clients`` client processes (``_framework_client.py``, raw JSON-RPC over httpx) are
   started once and open one session per server; each server gets a warm-up
   (``--warmup`` seconds of calls, not counted);
3. the uninstrumented maximum: the clients call ``off`` back to back for ``--max-seconds``;
4. ``--rounds`` rounds; in each, every server in turn (the order rotates from round to
   round) gets ``--seconds`` of open-loop load at half that maximum, spread evenly over
   the clients, latency counted from each call's scheduled start.

Reported per variant: p50 and p99 as the median over rounds, the p99's range over rounds,
the p99 ratio to ``off`` as the median of the per-round ratios (both sides of a ratio
share a round's load), and the server process's CPU time per call over the rounds (all
its threads, from ``/proc``: far less sensitive to other jobs on the machine than a
latency, and what the instrumentation adds shows there first). ``off-b / off`` is the
noise floor: what a ratio looks like when nothing differs. Goals (issue 11): ``queued``
p99 at most 1.25x ``off`` p99; ``written`` p99 at most ``queued`` p99 + 5 ms. Every
instrumented server is checked at the end: its audit trail holds one ``tool_call`` and
one ``tool_result`` per call made.

Usage (in the environment that holds the framework)::

    python benchmarks/bench_frameworks.py [--framework mcp2|mcp1|fastmcp] [--clients 4]
        [--seconds 8] [--rounds 5] [--warmup 2] [--max-seconds 5]

or, for several framework lines at once (each in its own environment under ``--envs``,
default ``$MCP_OTEL_ENVS_DIR`` or ``.envs``; see ``scripts/framework-envs.sh``)::

    python benchmarks/bench_frameworks.py --lines mcp2-new,mcp1-new,fastmcp4-new
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import cpu_model

HERE = Path(__file__).resolve().parent
VARIANTS = ("off", "off-b", "queued", "written")
MODES = {"off": "off", "off-b": "off", "queued": "queued", "written": "written"}


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


def _load() -> float:
    return os.getloadavg()[0]


class Server:
    def __init__(self, framework: str, mode: str, out: Path) -> None:
        self.out = out
        self.mode = mode
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_framework_server.py"), "--framework", framework,
             "--mode", mode, "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, "MCP_OTEL_DIR": str(out)})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {framework} server ({mode}) did not start")
        self.url = f"http://127.0.0.1:{json.loads(line)['ready']}/mcp"
        self.calls = 0
        self.cpu_seconds = 0.0  # the server process's CPU over the measured rounds
        self.measured_calls = 0

    def cpu(self) -> float:
        """CPU seconds (user + system, all threads) the server process has used so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # not Linux: the column stays empty
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


class Clients:
    """The client processes, each driven by one JSON command per line."""

    def __init__(self, count: int) -> None:
        self.procs = [subprocess.Popen(
            [sys.executable, str(HERE / "_framework_client.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True) for _ in range(count)]

    def all(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for proc, cmd in zip(self.procs, commands, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(cmd) + "\n")
            proc.stdin.flush()
        out = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise SystemExit("a benchmark client failed")
            out.append(json.loads(line))
        return out

    def same(self, cmd: dict[str, Any]) -> list[dict[str, Any]]:
        return self.all([cmd] * len(self.procs))

    def open_loop(self, server: Server, rate: float, seconds: float) -> list[float]:
        """``rate`` calls/s in total for ``seconds``, spread evenly over the clients."""
        n = len(self.procs)
        at = time.time() + 0.3
        runs = self.all([{"op": "open", "url": server.url, "at": at, "seconds": seconds,
                          "rate": rate / n, "phase": i / n} for i in range(n)])
        latencies = [x for run in runs for x in run["latencies_ms"]]
        server.calls += len(latencies)
        return latencies

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            proc.wait(timeout=60)


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


def measure(args: argparse.Namespace, framework: str) -> dict[str, Any]:
    """Run one framework's benchmark; the result is what :func:`table` prints."""
    loads = [_load()]
    with tempfile.TemporaryDirectory(prefix="mcp-otel-bench-") as tmp:
        servers = {v: Server(framework, MODES[v], Path(tmp) / v) for v in VARIANTS}
        clients = Clients(args.clients)
        try:
            clients.same({"op": "connect", "urls": [s.url for s in servers.values()]})
            # Warm-up at a modest rate (imports, caches, first files, thread starts).
            for server in servers.values():
                clients.open_loop(server, 20 * args.clients, args.warmup)
            at = time.time() + 0.3
            counts = clients.same({"op": "closed", "url": servers["off"].url, "at": at,
                                   "seconds": args.max_seconds})
            servers["off"].calls += sum(c["calls"] for c in counts)
            maximum = sum(c["calls"] for c in counts) / args.max_seconds
            rate = maximum / 2
            rounds: list[dict[str, list[float]]] = []
            for round_no in range(args.rounds):
                order = VARIANTS[round_no % 4:] + VARIANTS[:round_no % 4]
                lat = {}
                for v in order:
                    before = servers[v].cpu()
                    lat[v] = clients.open_loop(servers[v], rate, args.seconds)
                    servers[v].cpu_seconds += servers[v].cpu() - before
                    servers[v].measured_calls += len(lat[v])
                rounds.append(lat)
                loads.append(_load())
        finally:
            clients.close()
            for server in servers.values():
                server.stop()
        for v in ("queued", "written"):
            expected = servers[v].calls
            got = _audit_counts(servers[v].out)
            if got != (expected, expected):
                raise SystemExit(f"{v}: audit trail incomplete {got} for {expected} calls")
    return {"framework": framework, "version": _version(framework), "maximum": maximum,
            "rate": rate, "clients": args.clients, "seconds": args.seconds,
            "rounds": [{v: [_percentile(r[v], 0.50), _percentile(r[v], 0.99), len(r[v])]
                        for v in VARIANTS} for r in rounds],
            "load": [min(loads), max(loads)],
            "cpu_us": {v: 1e6 * servers[v].cpu_seconds / max(1, servers[v].measured_calls)
                       for v in VARIANTS},
            "when": f"{_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC"}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    rounds = result["rounds"]
    out: dict[str, Any] = {}
    for v in VARIANTS:
        p50 = [r[v][0] for r in rounds]
        p99 = [r[v][1] for r in rounds]
        ratio = [r[v][1] / r["off"][1] for r in rounds]
        out[v] = {"p50": statistics.median(p50), "p99": statistics.median(p99),
                  "p99_min": min(p99), "p99_max": max(p99),
                  "ratio": statistics.median(ratio), "calls": rounds[0][v][2]}
    out["queued_ok"] = out["queued"]["ratio"] <= 1.25
    out["written_ok"] = statistics.median(
        r["written"][1] - r["queued"][1] for r in rounds) <= 5.0
    out["written_minus_queued"] = statistics.median(
        r["written"][1] - r["queued"][1] for r in rounds)
    return out


def table(result: dict[str, Any]) -> None:
    s = summary(result)
    print(f"# bench_frameworks: {result['version']} ({result['framework']}), "
          f"{result['when']}, {cpu_model()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average {result['load'][0]:.1f}-"
          f"{result['load'][1]:.1f}")
    print(f"# uninstrumented maximum {result['maximum']:,.0f} calls/s ({result['clients']} "
          f"closed-loop clients); offered rate {result['rate']:,.0f} calls/s, open loop; "
          f"{len(result['rounds'])} rounds of {result['seconds']:.0f} s "
          f"(~{s['off']['calls']:,} calls) per variant; medians over rounds")
    print("| variant | p50 ms | p99 ms | p99 range ms | p99 / off | server CPU µs/call | goal |")
    print("|---|---:|---:|---:|---:|---:|---|")
    goals = {"off": "", "off-b": "(A/A: the noise floor)",
             "queued": f"<= 1.25x: {'met' if s['queued_ok'] else 'NOT met'}",
             "written": f"<= queued + 5 ms ({s['written_minus_queued']:+.1f} ms): "
                        f"{'met' if s['written_ok'] else 'NOT met'}"}
    for v in VARIANTS:
        r = s[v]
        print(f"| {v} | {r['p50']:.2f} | {r['p99']:.2f} | {r['p99_min']:.1f}-"
              f"{r['p99_max']:.1f} | {r['ratio']:.2f}x | {result['cpu_us'][v]:,.0f} | "
              f"{goals[v]} |")


def _lines(args: argparse.Namespace) -> None:
    envs = Path(args.envs or os.environ.get("MCP_OTEL_ENVS_DIR") or HERE.parent / ".envs")
    results = []
    for line in args.lines.split(","):
        python = envs / line / "bin" / "python"
        if not python.exists():
            print(f"# {line}: no environment at {python.parent.parent}, skipped",
                  file=sys.stderr)
            continue
        argv = [str(python), str(Path(__file__).resolve()), "--json",
                *(f"--{k.replace('_', '-')}={getattr(args, k)}"
                  for k in ("clients", "seconds", "rounds", "warmup", "max_seconds"))]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True)
        result = json.loads(proc.stdout)
        result["line"] = line
        results.append(result)
        table(result)
        print()
    print("| line | framework | max calls/s | load | off p50 / p99 ms | off-b / off "
          "(A/A) | queued p50 / p99 ms (p99 / off) | written p50 / p99 ms "
          "(- queued p99) | server CPU µs/call off / queued / written | goals |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---|")
    for result in results:
        s = summary(result)
        cpu = result["cpu_us"]
        goals = ("both met" if s["queued_ok"] and s["written_ok"] else
                 "neither met" if not (s["queued_ok"] or s["written_ok"]) else
                 "`queued` met, `written` not" if s["queued_ok"] else
                 "`written` met, `queued` not")
        print(f"| {result['line']} | {result['version']} | {result['maximum']:,.0f} | "
              f"{result['load'][0]:.1f}-{result['load'][1]:.1f} | "
              f"{s['off']['p50']:.1f} / {s['off']['p99']:.1f} | {s['off-b']['ratio']:.2f}x | "
              f"{s['queued']['p50']:.1f} / {s['queued']['p99']:.1f} "
              f"({s['queued']['ratio']:.2f}x) | {s['written']['p50']:.1f} / "
              f"{s['written']['p99']:.1f} ({s['written_minus_queued']:+.1f} ms) | "
              f"{cpu['off']:,.0f} / {cpu['queued']:,.0f} / {cpu['written']:,.0f} | {goals} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=["mcp2", "mcp1", "fastmcp"])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="open-loop seconds per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of uncounted calls per server first")
    parser.add_argument("--max-seconds", type=float, default=5.0,
                        help="closed-loop seconds for the uninstrumented maximum")
    parser.add_argument("--lines", help="comma-separated framework lines, each run in "
                        "its own environment under --envs")
    parser.add_argument("--envs", help="directory of the line environments")
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    args = parser.parse_args()
    # A terminated benchmark still stops its servers and clients (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if args.lines:
        _lines(args)
        return
    result = measure(args, args.framework or _detect())
    if args.json:
        print(json.dumps(result))
    else:
        table(result)


if __name__ == "__main__":
    main()
