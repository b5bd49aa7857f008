"""Real OTLP peers for the telemetry tests: the ``rotel`` collector (a Rust binary shipped
on PyPI) in front of an in-test gRPC sink built from oteltest's servicers.

Everything listens on 127.0.0.1 only; processes are stopped by PID; readiness is polled
with a deadline (another process cannot notify us), never waited for with a sleep.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests._otlp_sink import GrpcSink, attributes
from tests._support import free_port, require, stop_process, wait_until

#: How long a stopped peer gets between SIGTERM and SIGKILL.
STOP_TIMEOUT_S = 10.0


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def grpc_sink() -> Iterator[GrpcSink]:
    try:
        sink = GrpcSink.start()
    except ImportError as exc:  # pragma: no cover - dev extra
        require(False, f"grpcio/oteltest not installed: {exc}")
        raise
    try:
        yield sink
    finally:
        sink.stop()


def rotel_binary() -> Path:
    try:
        import rotel
    except ImportError:  # pragma: no cover - dev extra
        require(False, "rotel (PyPI) is not installed")
        raise
    path = Path(rotel.__file__).parent / "rotel-agent"
    require(path.is_file() and os.access(path, os.X_OK), f"rotel-agent binary missing: {path}")
    return path


@contextmanager
def rotel_collector(forward_to: int, log_dir: Path) -> Iterator[int]:
    """rotel receiving OTLP/gRPC on a free port, forwarding to 127.0.0.1:``forward_to``."""
    grpc_port, http_port = free_port(), free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "rotel.log", "wb") as log:
        proc = subprocess.Popen(
            [
                str(rotel_binary()),
                "start",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{grpc_port}",
                "--otlp-http-endpoint",
                f"127.0.0.1:{http_port}",
                "--exporter",
                "otlp",
                "--otlp-exporter-endpoint",
                f"http://127.0.0.1:{forward_to}",
                "--otlp-exporter-protocol",
                "grpc",
                "--batch-timeout",
                "100ms",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: proc.poll() is not None or _accepts(grpc_port), "rotel to listen", 20)
        if proc.poll() is not None:
            raise AssertionError(
                f"rotel exited with {proc.returncode}: {(log_dir / 'rotel.log').read_text()}"
            )
        yield grpc_port
    finally:
        stop_process(proc, STOP_TIMEOUT_S)


# --------------------------------------------------------------------------- decoding


def latest_sums(requests: list[Any]) -> dict[str, dict[str, float]]:
    """Per ``service.instance.id`` and metric name: the sum over attribute sets of each
    series' latest cumulative value."""
    latest: dict[tuple[str, str, tuple[Any, ...]], tuple[int, float]] = {}
    for req in requests:
        for rm in req.resource_metrics:
            instance = str(attributes(rm.resource.attributes).get("service.instance.id"))
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.WhichOneof("data") != "sum":
                        continue
                    for point in metric.sum.data_points:
                        key = (
                            instance,
                            metric.name,
                            tuple(sorted(attributes(point.attributes).items())),
                        )
                        value = point.as_int if point.HasField("as_int") else point.as_double
                        if key not in latest or point.time_unix_nano >= latest[key][0]:
                            latest[key] = (point.time_unix_nano, value)
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (instance, name, _), (_, value) in latest.items():
        out[instance][name] += value
    return {k: dict(v) for k, v in out.items()}


def log_events(requests: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(service.instance.id, attributes) of every log record received."""
    out = []
    for req in requests:
        for rl in req.resource_logs:
            instance = str(attributes(rl.resource.attributes).get("service.instance.id"))
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    attrs = attributes(record.attributes)
                    attrs["event_name"] = record.event_name
                    out.append((instance, attrs))
    return out
