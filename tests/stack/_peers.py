"""Real third-party programs for the stack tests: the collector built from our manifest,
an OTLP sink standing in for Loki and Tempo, and Prometheus.

Every process is started on 127.0.0.1 with free ports and stopped by its PID; readiness is
polled on the program's own endpoint with a deadline, never waited for with a sleep.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests._otlp_sink import GrpcSink, log_records, spans
from tests._support import free_port, stop_process, wait_until

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "collector" / "builder-config.yaml"
COLLECTOR_CONFIG = REPO / "collector-config.yaml"


# --------------------------------------------------------------------------- helpers


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET ``url``; (status, body), or (0, b"") when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException):
        return 0, b""


# --------------------------------------------------------------------------- the collector


def cached_collector_path() -> Path:
    """Where scripts/build-collector.sh puts the binary for the current manifest."""
    cache = os.environ.get("MCP_OTEL_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mcp-otel"
    )
    digest = hashlib.sha256(MANIFEST.read_bytes()).hexdigest()
    return Path(cache) / "collector" / digest / "otelcol-mcp"


def find_collector() -> str | None:
    """``MCP_OTEL_COLLECTOR_BIN``, else the cached build; never starts a build (minutes)."""
    configured = os.environ.get("MCP_OTEL_COLLECTOR_BIN")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    cached = cached_collector_path()
    return str(cached) if os.access(cached, os.X_OK) else None


def manifest_version() -> str:
    """dist.version of the builder manifest."""
    import yaml

    return str(yaml.safe_load(MANIFEST.read_text())["dist"]["version"])


@dataclass
class Collector:
    """The real collector running the repository's collector-config.yaml."""

    binary: str
    workdir: Path
    tempo_endpoint: str
    loki_endpoint: str
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    self_metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def archive_dir(self) -> Path:
        return self.workdir / "archive"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"collector-{self.starts}.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            MCP_OTELCOL_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{self.grpc_port}",
            MCP_OTELCOL_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{self.http_port}",
            MCP_OTELCOL_PROMETHEUS_ENDPOINT=f"127.0.0.1:{self.prometheus_port}",
            MCP_OTELCOL_HEALTH_ENDPOINT=f"127.0.0.1:{self.health_port}",
            MCP_OTELCOL_SELF_METRICS_HOST="127.0.0.1",
            MCP_OTELCOL_SELF_METRICS_PORT=str(self.self_metrics_port),
            MCP_OTELCOL_TEMPO_ENDPOINT=self.tempo_endpoint,
            MCP_OTELCOL_LOKI_ENDPOINT=self.loki_endpoint,
            MCP_OTELCOL_ARCHIVE_DIR=str(self.archive_dir),
            MCP_OTELCOL_BATCH_TIMEOUT="100ms",
        )
        return env

    def validate(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "validate", f"--config={COLLECTOR_CONFIG}"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "collector already running"
        self.starts += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"--config={COLLECTOR_CONFIG}"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(self._healthy, f"collector health_check on :{self.health_port}")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"collector exited with {self.proc.returncode}:\n{self.log_tail()}"
            )
        status, _ = http_get(f"http://127.0.0.1:{self.health_port}/")
        return status == 200

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no collector log>"

    def otlp_env(self, protocol: str) -> dict[str, str]:
        """Environment for an mcp-otel process exporting to this collector."""
        port = self.grpc_port if protocol == "grpc" else self.http_port
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        }


# --------------------------------------------------------------------------- OTLP sink


@dataclass
class Sink:
    """oteltest's accumulating handler behind two real OTLP servers on 127.0.0.1.

    gRPC stands in for Tempo (the collector's ``otlp_grpc`` exporter) and HTTP/protobuf for
    Loki's OTLP endpoint (``otlp_http``, gzip-compressed as in production).
    """

    handler: Any = None
    grpc_port: int = 0
    http_port: int = 0
    _grpc: GrpcSink | None = None
    _http: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._grpc = GrpcSink.start()
        self.handler = self._grpc.handler
        self.grpc_port = self._grpc.port
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _make_http_handler(self.handler))
        self.http_port = int(self._http.server_address[1])
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def tempo_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def loki_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/otlp"

    def log_records(self) -> list[Any]:
        return log_records(self.handler)

    def spans(self) -> list[Any]:
        return spans(self.handler)

    def log_paths(self) -> set[str]:
        return {
            str(req.headers.get("path", "")) for req in list(self.handler.telemetry.log_requests)
        }


def _make_http_handler(handler: Any) -> type[BaseHTTPRequestHandler]:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
    )
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    routes = {
        "v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse, handler.handle_logs),
        "v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse, handler.handle_trace),
        "v1/metrics": (
            ExportMetricsServiceRequest,
            ExportMetricsServiceResponse,
            handler.handle_metrics,
        ),
    }

    class _OtlpHttp(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            route = next((r for suffix, r in routes.items() if path.endswith(suffix)), None)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if route is None:
                self._answer(404, b"", "text/plain")
                return
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request_cls, response_cls, handle = route
            request = request_cls()
            request.ParseFromString(body)
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["path"] = path
            handle(request, headers)
            self._answer(200, response_cls().SerializeToString(), "application/x-protobuf")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return _OtlpHttp


# --------------------------------------------------------------------------- Prometheus


@dataclass
class Prometheus:
    """Prometheus scraping the collector's exporter every second, like the compose stack."""

    binary: str
    workdir: Path
    targets: list[str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import yaml

        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    # The exporter already sets job/instance from service.name and
                    # service.instance.id; honor_labels keeps them (as in deploy/).
                    "job_name": "otel-collector",
                    "honor_labels": True,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        log = (self.workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_until(self._ready, f"prometheus /-/ready on :{self.port}")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = (self.workdir / "prometheus.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{log}")
        return http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def query(self, expr: str) -> dict[str, Any]:
        """The instant query's JSON answer; a bad expression raises with Prometheus' error."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        status, body = http_get(url, timeout=10)
        answer = json.loads(body or b"{}")
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"prometheus rejected {expr!r}: {status} {answer}")
        return answer["data"]

    def exemplars(self, expr: str, window_s: float = 600.0) -> list[dict[str, Any]]:
        """Exemplars stored for ``expr`` over the last ``window_s`` seconds."""
        now = time.time()
        url = f"http://127.0.0.1:{self.port}/api/v1/query_exemplars?" + urllib.parse.urlencode(
            {"query": expr, "start": f"{now - window_s:.3f}", "end": f"{now + 60:.3f}"}
        )
        status, body = http_get(url, timeout=10)
        answer = json.loads(body or b"{}")
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"prometheus rejected exemplars for {expr!r}: {answer}")
        return [e for series in answer["data"] for e in series.get("exemplars", [])]

    def label_values(self, label: str, match: str) -> list[str]:
        """What Grafana's ``label_values(match, label)`` asks Prometheus for."""
        url = f"http://127.0.0.1:{self.port}/api/v1/label/{label}/values?" + urllib.parse.urlencode(
            {"match[]": match}
        )
        status, body = http_get(url, timeout=10)
        answer = json.loads(body or b"{}")
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"prometheus rejected label_values({match!r}, {label}): {answer}")
        return sorted(answer["data"])


# --------------------------------------------------------------------------- JSONL files


# --------------------------------------------------------------------------- the load


@dataclass
class LoadProcess:
    """``tests/stack/_load.py`` running as its own process: an instrumented MCP server
    under load, pausing on ``PAUSED`` lines until told to go on."""

    protocol: str
    data_dir: Path
    proc: subprocess.Popen[str]
    events: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        collector: Collector,
        protocol: str,
        data_dir: Path,
        service: str,
        load_args: list[str],
        **env: str,
    ) -> LoadProcess:
        """Start the load exporting to ``collector`` over ``protocol``; ``env`` adds to the
        shared settings (short export intervals, ``MCP_OTEL_DIR=data_dir``)."""
        full_env = dict(os.environ)
        full_env.update(collector.otlp_env(protocol))
        full_env.update(
            MCP_OTEL_DIR=str(data_dir),
            OTEL_SERVICE_NAME=service,
            OTEL_METRIC_EXPORT_INTERVAL="300",
            OTEL_BLRP_SCHEDULE_DELAY="100",
            OTEL_BSP_SCHEDULE_DELAY="100",
            PYTHONPATH=str(REPO / "src"),
        )
        full_env.update(env)
        args = [sys.executable, str(REPO / "tests" / "stack" / "_load.py"), *load_args]
        # stderr to a file: a chatty pipe nobody reads could block the process.
        with cls._stderr_path(data_dir).open("w") as stderr:
            proc = subprocess.Popen(
                args,
                env=full_env,
                cwd=str(data_dir),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        return cls(protocol, data_dir, proc)

    @staticmethod
    def _stderr_path(data_dir: Path) -> Path:
        return data_dir.parent / f"{data_dir.name}.stderr"

    def wait_for(self, prefix: str) -> str:
        """Read stdout up to the next line starting with ``prefix`` (blocking, bounded by
        the pytest timeout: the load pauses there by itself)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(
            f"load ({self.protocol}) ended before {prefix!r}: rc={self.proc.wait()}\n"
            + self.stderr()
        )

    def stderr(self) -> str:
        path = self._stderr_path(self.data_dir)
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def resume(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout_s: float = 60) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=timeout_s)
        assert self.proc.returncode == 0, f"load ({self.protocol}) failed:\n{self.stderr()}"
        self.summary = json.loads(out.strip().splitlines()[-1])
        return self.summary

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def jsonl_lines(paths: Iterator[Path] | list[Path]) -> list[dict[str, Any]]:
    """Every line of the given JSONL files, parsed (a corrupt line fails the test)."""
    out: list[dict[str, Any]] = []
    for path in sorted(paths):
        with path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError as exc:
                    raise AssertionError(f"{path}:{number} is not JSON: {line[:200]!r}") from exc
    return out
