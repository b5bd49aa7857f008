"""What the benchmark scripts share: the CPU model, per-round ratios, a discarding exporter.

Imported by the scripts run as ``python benchmarks/bench_<name>.py`` (their directory is
then first on ``sys.path``).
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else ``unknown CPU``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def median_ratio(values: Sequence[float], baseline: Sequence[float]) -> float:
    """Median of the per-round ratios: both sides of a ratio share a round's load."""
    return statistics.median(v / b for v, b in zip(values, baseline, strict=True))


class DiscardExporter(LogRecordExporter):
    """Counts and drops: what ``Logger.emit`` and the batch processor cost on their own."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        with self._lock:
            self.count += len(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
