"""Exact counts under threads: the race-condition report's tests (RC-002) and harder ones."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from mcp_otel.telemetry import METRIC_KEYS, TelemetryEmitter

Factory = Callable[..., TelemetryEmitter]


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as CPython allows, to make any lost update show up."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def test_report_100_threads_x_100_calls_with_enabled_false(make_emitter: Factory) -> None:
    # The report's own seed test: in Osiris a disabled emitter counts nothing.
    telemetry = make_emitter(enabled=False)
    num_threads, calls_per_thread = 100, 100

    def emit_calls() -> None:
        for _ in range(calls_per_thread):
            telemetry.emit_tool_call(
                tool="test", status="ok", duration_ms=1, bytes_in=100, bytes_out=200
            )

    threads = [threading.Thread(target=emit_calls) for _ in range(num_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    expected = num_threads * calls_per_thread
    assert telemetry.metrics == {
        "tool_calls": expected,
        "total_bytes_in": 100 * expected,
        "total_bytes_out": 200 * expected,
        "total_duration_ms": expected,
        "errors": 0,
    }


def test_report_thread_pool_1000_calls_bytes_exact(make_emitter: Factory) -> None:
    telemetry = make_emitter(enabled=False)
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as executor:
        futures = [
            executor.submit(
                telemetry.emit_tool_call,
                tool=f"tool_{i}",
                status="ok",
                duration_ms=1,
                bytes_in=100,
                bytes_out=200,
            )
            for i in range(1000)
        ]
        concurrent.futures.wait(futures)
    for f in futures:
        assert f.exception() is None

    assert telemetry.metrics["tool_calls"] == 1000
    assert telemetry.metrics["total_bytes_in"] == 100_000
    assert telemetry.metrics["total_bytes_out"] == 200_000


def test_8_threads_x_20000_calls_fast_switching_exact(
    make_emitter: Factory, fast_switching: None
) -> None:
    telemetry = make_emitter(enabled=False)
    threads_n, calls = 8, 20_000
    barrier = threading.Barrier(threads_n)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(calls):
            telemetry.emit_tool_call(
                f"tool_{k % 3}",
                "error" if i % 10 == 0 else "ok",
                duration_ms=i % 7,
                bytes_in=k + 1,
                bytes_out=i % 5,
            )

    threads = [threading.Thread(target=work, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    per_thread_duration = sum(i % 7 for i in range(calls))
    per_thread_out = sum(i % 5 for i in range(calls))
    assert telemetry.metrics == {
        "tool_calls": threads_n * calls,
        "total_bytes_in": sum(k + 1 for k in range(threads_n)) * calls,
        "total_bytes_out": threads_n * per_thread_out,
        "total_duration_ms": threads_n * per_thread_duration,
        "errors": threads_n * (calls // 10),
    }


def test_summaries_read_while_writers_run_are_never_torn(
    make_emitter: Factory, fast_switching: None
) -> None:
    # Every call adds 1 call, 3 bytes in, 5 bytes out, 2 ms, and every 4th is an error,
    # so a consistent snapshot satisfies exact ratios; a torn one would not.
    telemetry = make_emitter(enabled=False)
    writers, calls = 6, 3_000
    done = threading.Event()
    snapshots: list[dict[str, int]] = []
    started = threading.Barrier(writers + 1)

    def write() -> None:
        started.wait()
        for i in range(calls):
            telemetry.emit_tool_call("t", "error" if i % 4 == 3 else "ok", 2, 3, 5)

    def read() -> None:
        started.wait()
        while not done.is_set():
            snapshots.append(telemetry.get_session_summary()["metrics"])
            snapshots.append(telemetry.metrics)

    reader = threading.Thread(target=read)
    threads = [threading.Thread(target=write) for _ in range(writers)]
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()

    assert len(snapshots) >= 2
    previous = -1
    for snap in snapshots:
        n = snap["tool_calls"]
        assert snap["total_bytes_in"] == 3 * n
        assert snap["total_bytes_out"] == 5 * n
        assert snap["total_duration_ms"] == 2 * n
        # errors: each writer's calls 3, 7, 11, ...; at most one pending per writer
        assert 0 <= snap["errors"] <= n // 4 + writers
        assert n >= previous  # totals never go backwards
        previous = n
    final = telemetry.metrics
    assert final["tool_calls"] == writers * calls
    assert final["errors"] == writers * (calls // 4)


def test_two_emitters_never_mix(make_emitter: Factory) -> None:
    a = make_emitter(enabled=False)
    b = make_emitter(enabled=False)
    barrier = threading.Barrier(8)

    def work(emitter: TelemetryEmitter, n: int) -> None:
        barrier.wait()
        for _ in range(n):
            emitter.emit_tool_call("shared_tool", "error", 1, 1, 1)

    threads = [threading.Thread(target=work, args=(a, 500)) for _ in range(4)]
    threads += [threading.Thread(target=work, args=(b, 300)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.metrics == dict.fromkeys(METRIC_KEYS, 2000)
    assert b.metrics == dict.fromkeys(METRIC_KEYS, 1200)
    assert a.session_id != b.session_id
