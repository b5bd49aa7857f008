"""The ``mcp-otel demo`` driver: server processes, real clients, then a cross-check.

Why a cross-check and not just a pretty summary: the point of mcp-otel is that the numbers
can be trusted, so the demo counts what the clients saw and compares it with what every
sink wrote (audit trail, telemetry events, metric snapshots, spans), then verifies the
audit hash chain and looks for the secrets it sent in every file. Any disagreement makes
the command exit 1.

The servers run on the framework chosen with ``--framework`` (:mod:`.frameworks`); the
clients are framework-neutral (:mod:`.client`: raw JSON-RPC over streamable HTTP), so the
same clients and the same checks serve every framework. Clients alternate between the
handshake era (``initialize``, an ``Mcp-Session-Id``, a session span) and ``auto``, which
takes the 2026 per-request era where the server speaks it (mcp 2.x) and the handshake
elsewhere, so every path a framework has is exercised against the same server processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from mcp_otel._demo.frameworks import Framework, resolve
from mcp_otel._demo.tools import CATALOG_URI
from mcp_otel.cli._stats import render_table
from mcp_otel.reader import JsonlError, metric_attributes, read_records

_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 60.0
_CONNECTIONS = ("sales", "crm", "billing", "hr")
_COMPONENTS = ("orders", "customers", "invoices")
#: Tool mix of the generated calls (weights).
_MIX = (("discover_schema", 40), ("flaky_query", 20), ("slow_report", 15),
        ("connect_database", 15))


@dataclass
class DemoOptions:
    """The command line, as a value."""

    clients: int = 4
    calls: int = 25
    processes: int = 2
    out: Path = Path("mcp-otel-data")
    seed: int | None = None
    #: ``mcp2``, ``mcp1`` or ``fastmcp``; None: the first one installed.
    framework: str | None = None


@dataclass
class Tally:
    """What the clients observed; the reference the files are checked against."""

    calls: int = 0
    errors: int = 0
    by_tool: Counter[str] = field(default_factory=Counter)
    errors_by_tool: Counter[str] = field(default_factory=Counter)
    correlation_ids: set[str] = field(default_factory=set)
    #: Responses without a correlation id in ``_meta``, errors and results apart: some
    #: frameworks have no place for it (see ``Framework.meta_on_*``).
    missing_meta_errors: int = 0
    missing_meta_results: int = 0
    #: Sizes the responses' ``_meta`` reported, by correlation id.
    meta_bytes: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: The size of the arguments the clients sent (compact JSON), over every call.
    args_bytes: int = 0
    cache_hits: int = 0
    cache_lookups: int = 0
    resource_reads: int = 0
    #: Client connections that made the initialize handshake (each is a server session).
    handshake_sessions: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def bytes_in(self) -> int:
        return sum(b_in for b_in, _ in self.meta_bytes.values())

    @property
    def bytes_out(self) -> int:
        return sum(b_out for _, b_out in self.meta_bytes.values())


@dataclass
class ServerProcess:
    """One running demo server and what it reported."""

    proc: subprocess.Popen[str]
    port: int
    lines: queue.Queue[str | None]
    done: dict[str, Any] | None = None
    #: The mcp-otel adapter that instrumented it (``Instrumentation.framework``).
    adapter: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@dataclass
class Check:
    """One row of the summary: a figure, what it was compared with, and the verdict."""

    name: str
    observed: str
    expected: str
    ok: bool


# --------------------------------------------------------------------------- processes


def _reader(stream: IO[str], sink: queue.Queue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def _next_message(server: ServerProcess, key: str, deadline: float) -> dict[str, Any] | None:
    """The next stdout JSON object carrying ``key``, or None at EOF or the deadline."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            line = server.lines.get(timeout=remaining)
        except queue.Empty:
            return None
        if line is None:
            return None
        with contextlib.suppress(ValueError):
            message = orjson.loads(line)
            if isinstance(message, dict) and key in message:
                return message


def start_servers(count: int, out: Path, framework: str) -> list[ServerProcess]:
    """Start ``count`` server processes on ``framework`` sharing ``out``; wait until each
    listens."""
    env = dict(os.environ)
    env["MCP_OTEL_DIR"] = str(out)
    # The checks read the local files back: they must be written whatever the shell says.
    env["MCP_OTEL_LOCAL_EXPORT"] = "true"
    env.setdefault("OTEL_SERVICE_NAME", "mcp-otel-demo")
    servers: list[ServerProcess] = []
    try:
        for _ in range(count):
            proc = subprocess.Popen(
                [sys.executable, "-m", "mcp_otel._demo.server", "--out", str(out),
                 "--framework", framework],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, env=env,
            )
            lines: queue.Queue[str | None] = queue.Queue()
            assert proc.stdout is not None
            threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
            servers.append(ServerProcess(proc=proc, port=0, lines=lines))
        deadline = time.monotonic() + _READY_TIMEOUT_S
        for server in servers:
            message = _next_message(server, "ready", deadline)
            if message is None:
                raise RuntimeError(
                    f"demo server (pid {server.proc.pid}) did not start "
                    f"(exit status {server.proc.poll()})"
                )
            server.port = int(message["ready"])
            server.adapter = message.get("framework")
    except BaseException:
        stop_servers(servers)
        raise
    return servers


def stop_servers(servers: list[ServerProcess]) -> None:
    """SIGTERM each server by PID, wait for its final report, SIGKILL only on a hang."""
    for server in servers:
        if server.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    for server in servers:
        if server.done is None:
            message = _next_message(server, "done", deadline)
            server.done = message["done"] if message else None
        try:
            server.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.proc.pid, signal.SIGKILL)
            server.proc.wait()


# --------------------------------------------------------------------------- clients


@dataclass
class _Secrets:
    password: str
    api_key: str
    dsn_password: str

    def values(self) -> list[str]:
        return [self.password, self.api_key, self.dsn_password]


def _plan(rng: random.Random, index: int, calls: int,
          sec: _Secrets) -> list[tuple[str, dict[str, Any]]]:
    names = [name for name, _ in _MIX]
    weights = [w for _, w in _MIX]
    plan = []
    for i in range(calls):
        tool = rng.choices(names, weights)[0]
        if tool == "discover_schema":
            args: dict[str, Any] = {"connection": rng.choice(_CONNECTIONS),
                                    "component": rng.choice(_COMPONENTS), "samples": 0}
        elif tool == "flaky_query":
            args = {"query": f"select * from t{index}", "attempt": i}
        elif tool == "slow_report":
            args = {"rows": rng.randint(1, 100)}
        else:
            args = {"dsn": f"postgresql://demo:{sec.dsn_password}@127.0.0.1:5432/sales",
                    "password": sec.password, "api_key": sec.api_key}
        plan.append((tool, args))
    return plan


async def _run_client(url: str, index: int, plan: list[tuple[str, dict[str, Any]]],
                      tally: Tally, progress: Callable[[], None]) -> None:
    from mcp_otel._demo.client import DemoClient

    try:
        async with DemoClient(url, era="handshake" if index % 2 == 0 else "auto") as client:
            if not client.modern:
                tally.handshake_sessions += 1
            await client.read_resource(CATALOG_URI)
            tally.resource_reads += 1
            for tool, args in plan:
                tally.args_bytes += len(orjson.dumps(args))
                result = await client.call_tool(tool, args)
                tally.calls += 1
                tally.by_tool[tool] += 1
                if result.is_error:
                    tally.errors += 1
                    tally.errors_by_tool[tool] += 1
                cid = result.meta.get("correlation_id")
                if isinstance(cid, str):
                    tally.correlation_ids.add(cid)
                    tally.meta_bytes[cid] = (int(result.meta.get("bytes_in") or 0),
                                             int(result.meta.get("bytes_out") or 0))
                elif result.is_error:
                    tally.missing_meta_errors += 1
                else:
                    tally.missing_meta_results += 1
                if tool == "discover_schema" and not result.is_error:
                    tally.cache_lookups += 1
                    if isinstance(result.data, dict) and result.data.get("cached") is True:
                        tally.cache_hits += 1
                progress()
    except Exception as exc:  # report, never hide: the summary then fails
        tally.failures.append(f"client {index}: {type(exc).__name__}: {exc}")


async def run_clients(servers: list[ServerProcess], options: DemoOptions, sec: _Secrets,
                      progress: Callable[[], None]) -> Tally:
    tally = Tally()
    seed = options.seed if options.seed is not None else secrets.randbits(32)
    tasks = []
    for p, server in enumerate(servers):
        for c in range(options.clients):
            index = p * options.clients + c
            rng = random.Random(seed * 1_000_003 + index)
            plan = _plan(rng, index, options.calls, sec)
            tasks.append(_run_client(server.url, index, plan, tally, progress))
    await asyncio.gather(*tasks)
    return tally


# --------------------------------------------------------------------------- progress


class Progress:
    """A bar redrawn in place on a terminal; plain lines every 10% otherwise."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        self._last = -1

    def __call__(self) -> None:
        self.done += 1
        pct = self.done * 100 // self.total
        if self.tty:
            if pct != self._last or self.done == self.total:
                width = 30
                filled = width * self.done // self.total
                self.stream.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] "
                                  f"{self.done}/{self.total} calls")
                self.stream.flush()
        elif pct // 10 != self._last // 10 or self.done == self.total:
            self.stream.write(f"  {self.done}/{self.total} calls ({pct}%)\n")
            self.stream.flush()
        self._last = pct

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- the files


@dataclass
class FileFigures:
    """What the data directory says."""

    files: list[Path] = field(default_factory=list)
    audit_events: Counter[str] = field(default_factory=Counter)
    audit_errors_by_tool: Counter[str] = field(default_factory=Counter)
    audit_cids_started: set[str] = field(default_factory=set)
    audit_cids_closed: list[str] = field(default_factory=list)
    #: Per correlation id: the closing event (tool_result / tool_error) and the sizes
    #: (an Osiris ``tool_error`` record has no ``bytes_out``).
    audit_closing_event: dict[str, str] = field(default_factory=dict)
    audit_bytes_in: dict[str, int] = field(default_factory=dict)
    audit_bytes_out: dict[str, int] = field(default_factory=dict)
    telemetry_calls: int = 0
    telemetry_errors: int = 0
    telemetry_bytes_in: int = 0
    telemetry_bytes_out: int = 0
    #: Telemetry sizes by the (trace id, span id) the event was emitted under: the call's
    #: SERVER span, which names its correlation id (``span_cids``).
    telemetry_bytes_by_span: dict[tuple[str, str], tuple[int, int]] = field(
        default_factory=dict)
    span_cids: dict[tuple[str, str], str] = field(default_factory=dict)
    metric_totals: dict[str, float] = field(default_factory=dict)
    metric_errors: float = 0.0
    metric_cache_hits: float = 0.0
    metric_cache_lookups: float = 0.0
    tool_spans: int = 0
    tool_error_spans: int = 0
    session_spans: int = 0
    cache_get_spans: int = 0
    cache_hit_spans: int = 0
    bad_files: list[str] = field(default_factory=list)


_SUMMED_METRICS = ("mcp_otel.tool.calls", "mcp_otel.tool.errors", "mcp_otel.tool.input",
                   "mcp_otel.tool.output", "mcp_otel.cache.requests")


def snapshot_sizes(out: Path) -> dict[Path, int]:
    """Sizes of the files already in ``out``, so a run counts only what it appended."""
    sizes: dict[Path, int] = {}
    for path in out.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file():
                sizes[path] = path.stat().st_size
    return sizes


def read_files(out: Path, before: dict[Path, int] | None = None) -> FileFigures:
    """Count this run's records: what was appended to each file since ``before``.

    The JSONL files are append-only, so an earlier run's lines in the same ``--out`` are
    simply skipped; compressed (rotated) files that existed before are skipped whole.
    """
    before = before or {}
    figures = FileFigures()
    figures.files = sorted(
        p for p in out.rglob("*")
        if p.is_file() and (p not in before or p.stat().st_size != before[p])
    )
    # (metric, series key) -> (timestamp, value): each process's cumulative series ends
    # on its total, so the totals are the sum of each series' latest point.
    latest: dict[tuple[str, tuple[Any, ...]], tuple[str, float]] = {}
    for path in figures.files:
        if not (path.name.endswith(".jsonl") or path.name.endswith(".jsonl.gz")):
            continue
        if path in before and path.name.endswith(".gz"):
            continue
        try:
            records = list(read_records(path, offset=before.get(path, 0)))
        except JsonlError as exc:
            figures.bad_files.append(str(exc))
            continue
        except OSError as exc:
            figures.bad_files.append(f"{path}: cannot read ({exc.strerror or exc})")
            continue
        kind = path.parent.name
        for rec in records:
            if kind == "audit":
                _audit_record(figures, rec)
            elif "span_id" in rec and "kind" in rec and "name" in rec:
                _span_record(figures, rec)
            elif "metric" in rec and "type" in rec:
                _metric_record(latest, rec)
            elif rec.get("event") == "tool_call" and "status" in rec:
                figures.telemetry_calls += 1
                figures.telemetry_errors += int(rec.get("status") == "error")
                sizes = (int(rec.get("bytes_in") or 0), int(rec.get("bytes_out") or 0))
                figures.telemetry_bytes_in += sizes[0]
                figures.telemetry_bytes_out += sizes[1]
                figures.telemetry_bytes_by_span[(str(rec.get("trace_id")),
                                                 str(rec.get("span_id")))] = sizes
    for (metric, key), (_ts, value) in latest.items():
        figures.metric_totals[metric] = figures.metric_totals.get(metric, 0.0) + value
        if metric == "mcp_otel.cache.requests":
            figures.metric_cache_lookups += value
            if ("mcp_otel.cache.result", repr("hit")) in key:
                figures.metric_cache_hits += value
    return figures


def _audit_record(figures: FileFigures, rec: dict[str, Any]) -> None:
    event = str(rec.get("event") or rec.get("event_name") or "?")
    figures.audit_events[event] += 1
    cid = rec.get("correlation_id")
    if event == "tool_call" and isinstance(cid, str):
        figures.audit_cids_started.add(cid)
        figures.audit_bytes_in[cid] = int(rec.get("bytes_in") or 0)
    elif event in ("tool_result", "tool_error") and isinstance(cid, str):
        figures.audit_cids_closed.append(cid)
        figures.audit_closing_event[cid] = event
        figures.audit_bytes_out[cid] = int(rec.get("bytes_out") or 0)
        if event == "tool_error":
            figures.audit_errors_by_tool[str(rec.get("tool"))] += 1


def _span_record(figures: FileFigures, rec: dict[str, Any]) -> None:
    name = str(rec.get("name"))
    if rec.get("mcp.method.name") == "tools/call" and rec.get("kind") == "SERVER":
        figures.tool_spans += 1
        if rec.get("error.type") is not None:
            figures.tool_error_spans += 1
        cid = rec.get("mcp_otel.correlation_id")
        if isinstance(cid, str):
            figures.span_cids[(str(rec.get("trace_id")), str(rec.get("span_id")))] = cid
    elif name == "mcp.session":
        figures.session_spans += 1
    elif name == "cache.get" and isinstance(rec.get("cache.hit"), bool):
        figures.cache_get_spans += 1
        figures.cache_hit_spans += int(rec["cache.hit"])


def _metric_record(latest: dict[tuple[str, tuple[Any, ...]], tuple[str, float]],
                   rec: dict[str, Any]) -> None:
    metric = rec.get("metric")
    value = rec.get("value")
    if metric not in _SUMMED_METRICS or not isinstance(value, int | float):
        return
    attrs = tuple(sorted((k, repr(v)) for k, v in metric_attributes(rec).items()))
    resource = rec.get("resource")
    instance = resource.get("service.instance.id") if isinstance(resource, dict) else None
    key = (str(metric), (instance, str(rec.get("start_timestamp") or ""), *attrs))
    ts = str(rec.get("timestamp") or "")
    previous = latest.get(key)
    if previous is None or ts >= previous[0]:
        latest[key] = (ts, float(value))


def scan_secrets(files: list[Path], values: list[str]) -> list[str]:
    """Files that contain any of the secret values (as bytes, whatever the format)."""
    needles = [v.encode() for v in values]
    leaks = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if path.name.endswith(".gz"):
            import gzip

            with contextlib.suppress(OSError, EOFError):
                data = gzip.decompress(data)
        if any(n in data for n in needles):
            leaks.append(str(path))
    return leaks


def verify_audit(out: Path) -> tuple[bool | None, str]:
    """Verify the audit hash chains under ``out/audit`` (strict: every session ended)."""
    audit_dir = out / "audit"
    try:
        from mcp_otel.integrity import verify_paths
    except ImportError:
        return None, "verifier not available"
    if not audit_dir.is_dir():
        return False, "no audit directory"
    try:
        report = verify_paths([audit_dir], strict=True)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    sessions = len(report.sessions)
    if report.ok:
        return True, f"ok ({report.lines} lines, {sessions} chain(s))"
    first = report.errors[0]
    where = f" at {Path(first.path).name}:{first.line}" if first.path else ""
    return False, f"{report.error_count} error(s): {first.code}{where}"


# --------------------------------------------------------------------------- checks


def build_checks(tally: Tally, figures: FileFigures, servers: list[ServerProcess],
                 verified: tuple[bool | None, str], leaks: list[str],
                 framework: Framework | None = None) -> list[Check]:
    """The checks, each comparing what the files say with what it must be.

    The reference is what the clients saw. Sizes: every call's ``bytes_in`` is the size
    of the arguments the client sent; ``bytes_out`` is known to the client only from the
    response's ``_meta``, so the files' sizes are compared per call (by correlation id;
    telemetry events through the SERVER span they were emitted under) for the calls whose
    response carried it, and the metric totals with the telemetry totals over all calls.
    """
    checks: list[Check] = []

    def add(name: str, observed: Any, expected: Any, ok: bool | None = None) -> None:
        checks.append(Check(name, _fmt(observed), _fmt(expected),
                            observed == expected if ok is None else ok))

    add("client failures", len(tally.failures), 0)
    if framework is not None:
        add("servers instrumented by the adapter",
            ", ".join(sorted({str(s.adapter) for s in servers})), framework.name)
    add("server processes reported", sum(1 for s in servers if s.done), len(servers))
    add("audit tool_call records", figures.audit_events["tool_call"], tally.calls)
    closed = figures.audit_events["tool_result"] + figures.audit_events["tool_error"]
    add("audit result+error records", closed, tally.calls)
    add("audit tool_error records", figures.audit_events["tool_error"], tally.errors)
    started = figures.audit_cids_started
    add("correlation ids (response _meta = audit)",
        len(tally.correlation_ids & started), len(tally.correlation_ids),
        ok=tally.correlation_ids <= started
        and len(started) == tally.calls
        and len(figures.audit_cids_closed) == len(set(figures.audit_cids_closed))
        and set(figures.audit_cids_closed) == started)
    # The calls whose response had no correlation id are exactly the audit's other ids,
    # and only the kind the framework cannot annotate.
    unseen = started - tally.correlation_ids
    unseen_errors = sum(figures.audit_closing_event.get(c) == "tool_error" for c in unseen)
    expected_missing = _expected_missing_meta(tally, framework)
    add("responses without _meta (errors / results)",
        (tally.missing_meta_errors, tally.missing_meta_results), expected_missing,
        ok=(tally.missing_meta_errors, tally.missing_meta_results) == expected_missing
        and len(unseen) == sum(expected_missing) and unseen_errors == expected_missing[0])
    seen = tally.correlation_ids
    results_seen = [c for c in seen if figures.audit_closing_event.get(c) == "tool_result"]
    add("audit bytes in / results' bytes out",
        (sum(figures.audit_bytes_in.values()),
         sum(figures.audit_bytes_out.get(c, 0) for c in results_seen)),
        (tally.args_bytes, sum(tally.meta_bytes.get(c, (0, 0))[1] for c in results_seen)))
    add("audit resource_access records", figures.audit_events["resource_access"],
        tally.resource_reads)
    add("telemetry tool_call events", figures.telemetry_calls, tally.calls)
    add("telemetry error events", figures.telemetry_errors, tally.errors)
    by_cid = {figures.span_cids[key]: sizes
              for key, sizes in figures.telemetry_bytes_by_span.items()
              if key in figures.span_cids}
    add("telemetry bytes in / bytes out",
        (figures.telemetry_bytes_in, sum(by_cid[c][1] for c in seen if c in by_cid)),
        (tally.args_bytes, tally.bytes_out),
        ok=figures.telemetry_bytes_in == tally.args_bytes
        and all(by_cid.get(c) == tally.meta_bytes.get(c) for c in seen))
    add("metric mcp_otel.tool.calls", _int(figures.metric_totals.get("mcp_otel.tool.calls")),
        tally.calls)
    add("metric mcp_otel.tool.errors",
        _int(figures.metric_totals.get("mcp_otel.tool.errors")), tally.errors)
    add("metric tool input/output bytes (= telemetry)",
        (_int(figures.metric_totals.get("mcp_otel.tool.input")),
         _int(figures.metric_totals.get("mcp_otel.tool.output"))),
        (figures.telemetry_bytes_in, figures.telemetry_bytes_out))
    add("tools/call spans", figures.tool_spans, tally.calls)
    add("tools/call error spans", figures.tool_error_spans, tally.errors)
    add("session spans (handshake clients)", figures.session_spans, tally.handshake_sessions)
    add("cache hits (spans / clients)", (figures.cache_hit_spans, figures.cache_get_spans),
        (tally.cache_hits, tally.cache_lookups))
    add("cache hits (metrics / clients)",
        (_int(figures.metric_cache_hits), _int(figures.metric_cache_lookups)),
        (tally.cache_hits, tally.cache_lookups))
    server_calls = sum(int((s.done or {}).get("tool_calls", 0)) for s in servers)
    add("calls counted by the servers", server_calls, tally.calls)
    sink_errors = sum(int((s.done or {}).get("sink_errors", 0)) for s in servers)
    add("sink errors in the servers", sink_errors, 0)
    add("unreadable JSONL files", len(figures.bad_files), 0)
    ok, detail = verified
    checks.append(Check("audit verify", detail, "chain intact", ok is True))
    add("files containing a secret", len(leaks), 0)
    return checks


def _expected_missing_meta(tally: Tally, framework: Framework | None) -> tuple[int, int]:
    """(errors, results) whose response cannot carry the correlation id on ``framework``.

    Every error of the demo is raised by its tool (``ToolError``), so a framework that
    annotates no raised error leaves all of them without it.
    """
    if framework is None or (framework.meta_on_results and framework.meta_on_raised_errors):
        return (0, 0)
    if not framework.meta_on_results:
        return (tally.errors, tally.calls - tally.errors)
    return (tally.errors, 0)


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return " / ".join(_fmt(v) for v in value)
    return "-" if value is None else str(value)


def render_summary(tally: Tally, figures: FileFigures, checks: list[Check],
                   out: Path, elapsed: float, framework: Framework | None = None) -> str:
    hit_ratio = (100 * tally.cache_hits / tally.cache_lookups) if tally.cache_lookups else 0.0
    head = [
        ["figure", "value"],
        ["framework", framework.label if framework else "-"],
        ["tool calls", str(tally.calls)],
        ["errors", f"{tally.errors} ({100 * tally.errors / max(1, tally.calls):.1f}%)"],
        ["audit records", str(sum(figures.audit_events.values()))],
        ["metric totals (calls/errors/in/out)",
         " / ".join(_fmt(_int(figures.metric_totals.get(m))) for m in _SUMMED_METRICS[:4])],
        ["cache hit ratio", f"{hit_ratio:.1f}% ({tally.cache_hits}/{tally.cache_lookups})"],
        ["spans (tool calls / sessions / cache.get)",
         f"{figures.tool_spans} / {figures.session_spans} / {figures.cache_get_spans}"],
        ["files written", f"{len(figures.files)} under {out}"],
        ["elapsed", f"{elapsed:.1f} s"],
    ]
    rows = [["check", "files say", "expected", "ok"]]
    rows += [[c.name, c.observed, c.expected, "yes" if c.ok else "NO"] for c in checks]
    parts = [render_table(head), "", render_table(rows)]
    if tally.failures:
        parts += ["", *tally.failures[:10]]
    if figures.bad_files:
        parts += ["", *figures.bad_files[:10]]
    return "\n".join(parts)


# --------------------------------------------------------------------------- entry


def run(options: DemoOptions, stdout: IO[str] | None = None, stderr: IO[str] | None = None,
        ) -> int:
    """Run the demo; 0 when every count agrees, 1 otherwise.

    Raises ``FrameworkError`` when ``options.framework`` cannot run here (before anything
    is written).
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    framework = resolve(options.framework)
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    sec = _Secrets(password=f"pw-{secrets.token_hex(12)}", api_key=f"sk-{secrets.token_hex(16)}",
                   dsn_password=f"dsnpw{secrets.token_hex(10)}")
    total = options.processes * options.clients * options.calls
    otlp = " and OTLP" if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else ""
    stderr.write(f"mcp-otel demo on {framework.label}: {options.processes} server process(es) "
                 f"x {options.clients} client(s) x {options.calls} call(s); writing JSONL{otlp} "
                 f"to {out}\n")
    started = time.monotonic()
    before = snapshot_sizes(out)
    servers = start_servers(options.processes, out, framework.name)
    progress = Progress(total, stderr)
    try:
        tally = asyncio.run(run_clients(servers, options, sec, progress))
    finally:
        progress.finish()
        stop_servers(servers)
    figures = read_files(out, before)
    verified = verify_audit(out)
    leaks = scan_secrets(sorted(p for p in out.rglob("*") if p.is_file()), sec.values())
    checks = build_checks(tally, figures, servers, verified, leaks, framework)
    elapsed = time.monotonic() - started
    stdout.write(render_summary(tally, figures, checks, out, elapsed, framework) + "\n")
    failed = [c for c in checks if not c.ok]
    if failed:
        stdout.write(f"\n{len(failed)} check(s) disagree: "
                     f"{', '.join(c.name for c in failed)}\n")
        return 1
    stdout.write("\nall counts agree\n")
    return 0
