"""Property-based tests (hypothesis): the public API of the audit logger, the telemetry
emitter and the discovery cache, driven with arbitrary JSON-like and odd values, from one
thread, from several threads sharing one instance, and from forked processes sharing one
audit directory. Issue 12, item 9.

The properties, for every drawn input:

* no exception reaches the caller (the calls are made bare: any exception fails the test);
* every audit call is one record in the file (none is declared lost here: the disk is
  healthy), every line is within its caps, and ``verify --strict`` passes (the library
  function per example, the ``mcp-otel`` command in the process test);
* telemetry counts every call exactly (``tool_calls`` and ``errors``), and writes one
  event per call;
* the cache stores any data and reads back exactly what it wrote.

Values: JSON-like trees (``st.recursive``) whose leaves include huge ints (``str()``
raises), bytes, NaN/±inf, lone surrogates, long text, deep nesting, cycles and objects
whose ``__str__``/``__repr__``/``__bool__``/``__eq__``/conversions raise. Each test keeps
its examples few (``max_examples``) so the module runs in about half a minute.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider

from mcp_otel import _json, integrity
from mcp_otel.audit import AuditLogger
from mcp_otel.cache import DiscoveryCache
from mcp_otel.limits import MAX_CACHE_ID_CHARS
from mcp_otel.telemetry import TelemetryEmitter
from tests._odd_values import (
    BadFloat,
    BadInt,
    BadStr,
    NoEquality,
    NoItems,
    NoIter,
    NoMapping,
    NoTruth,
    Unprintable,
    deep_list,
)

#: Longest audit or telemetry line any drawn input may produce: the caps keep every
#: field to a few kilobytes (payload previews 4 KiB, scalar fields 256 to 4096 chars).
MAX_LINE_BYTES = 64 * 1024



def _settings(max_examples: int) -> settings:
    """Few examples (the module runs in about half a minute), no deadline (a loaded CI
    machine is slow, not wrong), and no example database: nothing is written into the
    checkout (``.hypothesis/``); a failure prints its reproduction blob instead."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module", autouse=True)
def _private_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Whatever the library writes on its own (shared providers) goes to a temporary
    directory, never to the checkout; no OTLP export."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCP_OTEL_DIR", str(tmp_path_factory.mktemp("data")))
        mp.setenv("MCP_OTEL_LOCAL_EXPORT", "false")
        for name in [n for n in os.environ if n.startswith("OTEL_EXPORTER_OTLP")]:
            mp.delenv(name)
        yield


# --------------------------------------------------------------------------- values
#
# The strategies draw *recipes* (plain data and small dataclasses) and each test builds the
# values from them: hypothesis prints a failing example with ``repr()``, which raises for
# exactly the values under test (an unprintable object, an int over 4,300 digits), and a
# failure must be readable.


@dataclass(frozen=True)
class Huge:
    """``sign * 10**digits``: ``str()`` of it raises."""

    digits: int
    sign: int = 1

    def build(self) -> int:
        return self.sign * 10**self.digits


ODD_FACTORIES: dict[str, Callable[[], Any]] = {
    "Unprintable": Unprintable, "NoTruth": NoTruth, "NoEquality": NoEquality,
    "NoItems": lambda: NoItems(a=1), "NoMapping": NoMapping, "NoIter": lambda: NoIter([1]),
    "BadInt": lambda: BadInt(7), "BadFloat": lambda: BadFloat(2.5),
    "BadStr": lambda: BadStr("s"),
    "cycle": lambda: (lambda c: (c.append(c), c)[1])(["cycle"]),
}


@dataclass(frozen=True)
class Odd:
    """One of the misbehaving objects of tests/_odd_values.py, made fresh."""

    name: str

    def build(self) -> Any:
        return ODD_FACTORIES[self.name]()


@dataclass(frozen=True)
class Deep:
    """A list nested ``depth`` levels deep."""

    depth: int

    def build(self) -> Any:
        return deep_list(self.depth)


@dataclass(frozen=True)
class OddStr:
    """A str subclass whose own methods raise, holding ``text``."""

    text: str

    def build(self) -> Any:
        return BadStr(self.text)


Recipe = Huge | Odd | Deep | OddStr


def build(recipe: Any) -> Any:
    """The value a recipe describes (containers rebuilt, recipes made)."""
    if isinstance(recipe, Recipe):
        return recipe.build()
    if type(recipe) is list:
        return [build(v) for v in recipe]
    if type(recipe) is tuple:
        return tuple(build(v) for v in recipe)
    if type(recipe) is dict:
        return {build(k): build(v) for k, v in recipe.items()}
    return recipe


huge_ints = st.builds(Huge, st.integers(4_301, 6_000), st.sampled_from([1, -1]))
odd_objects = st.sampled_from(sorted(ODD_FACTORIES)).map(Odd)
any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # lone surrogates too
long_text = st.builds(lambda c, n: c * n, st.sampled_from(list("x=@:/ é")),
                      st.integers(200, 20_000))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), huge_ints, st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf]), any_text, long_text,
    st.binary(max_size=16), odd_objects, st.integers(60, 5_000).map(Deep),
    st.sampled_from(["password=hunter2", "postgres://u:pw@db/x", "Bearer abcdefghij"]),
)
keys = st.one_of(any_text, st.sampled_from(["password", "api_key", "token", ""]),
                 st.integers(), huge_ints, st.binary(max_size=4))
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
        st.tuples(children, children),
    ),
    max_leaves=12,
)


# --------------------------------------------------------------------------- audit

AUDIT_PARAMS = {
    "log_tool_call": ["tool", "params_bytes", "correlation_id", "tool_name", "arguments"],
    "log_tool_result": ["tool", "duration_ms", "result_bytes", "correlation_id", "event_id",
                        "success", "payload_bytes", "result"],
    "log_tool_error": ["tool", "duration_ms", "error_code", "correlation_id", "event_id",
                       "error"],
    "log_resource_access": ["resource_uri", "operation", "success"],
}


@st.composite
def audit_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    method = draw(st.sampled_from(sorted(AUDIT_PARAMS)))
    params = AUDIT_PARAMS[method]
    required = params if method == "log_resource_access" else []
    chosen = draw(st.lists(st.sampled_from(params), unique=True, max_size=len(params)))
    kwargs = {name: draw(values) for name in {*required, *chosen}}
    return method, kwargs


async def _run_audit(logger: AuditLogger, calls: list[tuple[str, dict[str, Any]]]) -> None:
    for method, kwargs in calls:
        await getattr(logger, method)(**kwargs)


def _audit_logger(directory: Path, wait: str) -> AuditLogger:
    return AuditLogger(directory, wait=wait, otlp=False,  # type: ignore[arg-type]
                       meter_provider=MeterProvider())


def _check_trail(directory: Path, sessions: int, records: int) -> None:
    """Strictly verified; ``sessions`` ended sessions holding ``records`` call records in
    all; every line within :data:`MAX_LINE_BYTES`."""
    report = integrity.verify_paths([directory], strict=True)
    assert report.ok, [(f.code, f.message) for f in report.errors]
    assert len(report.sessions) == sessions
    assert all(s.ended and s.declared_lost == 0 for s in report.sessions.values())
    lines = [line for path in sorted(directory.glob("*.jsonl"))
             for line in path.read_bytes().splitlines()]
    assert max(len(line) for line in lines) <= MAX_LINE_BYTES
    events = [orjson.loads(line)["event"] for line in lines]
    assert len(events) - events.count("session_end") == records


@_settings(60)
@given(calls=st.lists(audit_calls(), min_size=1, max_size=5),
       wait=st.sampled_from(["written", "queued"]))
def test_audit_any_values(calls: list[tuple[str, dict[str, Any]]], wait: str) -> None:
    calls = build(calls)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "audit"
        logger = _audit_logger(directory, wait)
        asyncio.run(_run_audit(logger, calls))
        summary = logger.get_session_summary()
        logger.shutdown()
        assert summary["records_lost"] == 0
        _check_trail(directory, sessions=1, records=len(calls))


# --------------------------------------------------------------------------- telemetry

statuses = st.one_of(st.sampled_from(["ok", "error"]), values)


@st.composite
def tool_calls(draw: st.DrawFn) -> dict[str, Any]:
    kwargs = {
        "tool": draw(values), "status": draw(statuses), "duration_ms": draw(values),
        "bytes_in": draw(values), "bytes_out": draw(values),
    }
    for name in draw(st.lists(st.sampled_from(["error", "metadata", "error_type"]),
                              unique=True)):
        kwargs[name] = draw(values)
    return kwargs


def _is_error(status: Any) -> bool:
    return isinstance(status, str) and str.__eq__(status, "error") is True


def _telemetry_lines(directory: Path) -> list[bytes]:
    return [line for path in sorted(directory.glob("mcp_telemetry_*.jsonl"))
            for line in path.read_bytes().splitlines()]


@_settings(40)
@given(calls=st.lists(tool_calls(), min_size=1, max_size=5), extra=values)
def test_telemetry_any_values(calls: list[dict[str, Any]], extra: Any) -> None:
    calls, extra = build(calls), build(extra)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        emitter = TelemetryEmitter(output_dir=directory)
        try:
            emitter.emit_server_start(extra, extra)
            for kwargs in calls:
                emitter.emit_tool_call(**kwargs)
            emitter.emit_handshake(extra, extra, extra)
            emitter.record_session_duration(extra)
            metrics = emitter.metrics
            assert metrics["tool_calls"] == len(calls)
            assert metrics["errors"] == sum(_is_error(c["status"]) for c in calls)
            emitter.emit_server_stop(extra)
            assert emitter.force_flush() is True
        finally:
            emitter.shutdown()
        lines = _telemetry_lines(directory)
        assert max(len(line) for line in lines) <= MAX_LINE_BYTES
        events = [orjson.loads(line)["event"] for line in lines]
        assert events.count("tool_call") == len(calls)
        assert events.count("server_start") == events.count("handshake") == 1


# --------------------------------------------------------------------------- cache

names = st.one_of(any_text, long_text, st.builds(OddStr, any_text))
samples_values = st.one_of(st.integers(), huge_ints)


def _as_written(data: Any) -> Any:
    """What an entry holds for ``data``: the same encoding at the same depth.

    Only for data nested less than 64 levels: deeper data is written whole when the
    entry is otherwise plain JSON and cut at level 64 when something else in it needs
    the careful path (documented in mcp_otel._json), so its form depends on the entry.
    """
    return orjson.loads(_json.dumps({"data": data}))["data"]


def _has_deep(recipe: Any) -> bool:
    if isinstance(recipe, Deep):
        return True
    if type(recipe) in (list, tuple):
        return any(_has_deep(v) for v in recipe)
    if type(recipe) is dict:
        return any(_has_deep(v) for v in recipe.values())
    return False


async def _cache_round_trip(root: Path, recipes: list[tuple[Any, ...]]) -> None:
    writer, reader = DiscoveryCache(root), DiscoveryCache(root)
    kept: list[tuple[Any, ...]] = []
    for item, recipe in zip(build(recipes), recipes, strict=True):
        connection, component, _samples, data, idem = item
        names = (connection, component, "" if idem is None else idem)
        if max(map(str.__len__, names)) > MAX_CACHE_ID_CHARS:
            # identifiers over the cap are a documented ValueError, and nothing is stored
            with pytest.raises(ValueError, match="at most"):
                await writer.set(connection, component, 0, data, idem)
            continue
        kept.append((item, recipe))
    items = [item for item, _ in kept]
    for (connection, component, samples, data, idem), recipe in kept:
        disc = await writer.set(connection, component, samples, data, idem)
        entry = await reader.get(connection, component, samples, idem)  # from disk
        assert entry is not None and entry["discovery_id"] == disc
        assert entry == await writer.get(connection, component, samples, idem)  # memory
        if not _has_deep(recipe[3]):
            assert entry["data"] == _as_written(data)
        assert orjson.loads(orjson.dumps(entry)) == entry  # plain JSON
    for connection, *_ in items:
        await writer.invalidate_connection(connection)
    for connection, component, samples, _data, idem in items:
        assert await reader.get(connection, component, samples, idem) is None


@_settings(40)
@given(items=st.lists(st.tuples(names, names, samples_values, values,
                                st.one_of(st.none(), names)), min_size=1, max_size=4))
def test_cache_any_values(items: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_cache_round_trip(Path(tmp) / "cache", items))


# --------------------------------------------------------------------------- threads

THREADS = 4


@_settings(10)
@given(per_thread=st.lists(st.lists(values, min_size=3, max_size=8),
                           min_size=THREADS, max_size=THREADS),
       wait=st.sampled_from(["written", "queued"]))
def test_threads_share_one_logger_emitter_and_cache(
        per_thread: list[list[Any]], wait: str) -> None:
    """Each thread runs its own event loop and drives the shared instances with its own
    values; the counts are exact and the trail verifies."""
    recipes, per_thread = per_thread, build(per_thread)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        logger = _audit_logger(root / "audit", wait)
        emitter = TelemetryEmitter(output_dir=root / "telemetry")
        cache = DiscoveryCache(root / "cache")
        failures: list[BaseException] = []
        start = threading.Barrier(THREADS)

        async def drive(index: int, items: list[Any]) -> None:
            for i, value in enumerate(items):
                cid = await logger.log_tool_call(value, arguments={"v": value})
                await logger.log_tool_result(value, value, correlation_id=cid, result=value)
                emitter.emit_tool_call(value, "error" if i % 2 else value, value, 1, 1,
                                       error=value, metadata={"v": value})
                await cache.set(f"conn{index}", f"comp{i}", i, {"v": value})
                entry = await cache.get(f"conn{index}", f"comp{i}", i)
                assert entry is not None
                if not _has_deep(recipes[index][i]):  # see _as_written
                    assert entry["data"] == _as_written({"v": value})

        def worker(index: int) -> None:
            try:
                start.wait()
                asyncio.run(drive(index, per_thread[index]))
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = sum(len(items) for items in per_thread)
        try:
            assert not failures, failures
            metrics = emitter.metrics
            assert metrics["tool_calls"] == total
            assert metrics["errors"] == sum(len(items) // 2 for items in per_thread)
            assert emitter.force_flush() is True
        finally:
            emitter.shutdown()
            logger.shutdown()
        _check_trail(root / "audit", sessions=1, records=2 * total)
        events = [orjson.loads(line)["event"] for line in _telemetry_lines(root / "telemetry")]
        assert events.count("tool_call") == total


# --------------------------------------------------------------------------- processes

CHILDREN = 2


def _child(logger: AuditLogger, items: list[Any]) -> None:
    """In a forked child: the inherited logger starts a session of its own."""

    async def run() -> None:
        for value in items:
            await logger.log_tool_call(value, params_bytes=value, arguments=[value])
            await logger.log_tool_error(value, value, value, error=value)

    asyncio.run(run())
    logger.shutdown()  # an exception above makes the exit code non-zero


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@_settings(6)
@given(parent_items=st.lists(values, min_size=1, max_size=4),
       child_items=st.lists(st.lists(values, min_size=1, max_size=6),
                            min_size=CHILDREN, max_size=CHILDREN),
       wait=st.sampled_from(["written", "queued"]))
def test_forked_processes_share_one_audit_directory(
        parent_items: list[Any], child_items: list[list[Any]], wait: str) -> None:
    """The parent and its forked children write the same files at the same time; the
    ``mcp-otel verify --strict`` command accepts the result."""
    parent_items, child_items = build(parent_items), build(child_items)
    ctx = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "audit"
        logger = _audit_logger(directory, wait)
        asyncio.run(logger.log_tool_call("before-fork"))
        logger.force_flush()
        children = [ctx.Process(target=_child, args=(logger, items)) for items in child_items]
        for child in children:
            child.start()

        async def parent() -> None:
            for value in parent_items:
                await logger.log_tool_result(value, value, value, result=value)

        asyncio.run(parent())
        for child in children:
            child.join(60)
        logger.shutdown()
        assert [c.exitcode for c in children] == [0] * CHILDREN
        records = 1 + len(parent_items) + sum(2 * len(items) for items in child_items)
        _check_trail(directory, sessions=1 + CHILDREN, records=records)
        proc = subprocess.run(
            [sys.executable, "-m", "mcp_otel", "verify", "--strict", str(directory)],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.startswith("OK:")


# --------------------------------------------------------------------------- sanity


def test_the_strategies_reach_the_odd_values() -> None:
    """The properties above are only as strong as the values drawn: check the leaves
    include each family (a failure here means a strategy lost its reach)."""
    seen: set[str] = set()

    @_settings(300)
    @given(scalars)
    def collect(recipe: Any) -> None:
        value = build(recipe)
        if type(value) is int and value.bit_length() > 14_284:
            seen.add("huge")
        elif type(value) is float and not math.isfinite(value):
            seen.add("nonfinite")
        elif type(value) is bytes:
            seen.add("bytes")
        elif isinstance(recipe, Deep):
            seen.add("deep")
        elif type(value) is str and len(value) >= 200:
            seen.add("long")
        elif isinstance(recipe, Odd):
            seen.add("odd")

    collect()
    assert seen == {"huge", "nonfinite", "bytes", "deep", "long", "odd"}
