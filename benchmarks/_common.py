"""What the benchmark scripts share: the CPU model and per-round ratios.

Imported by the scripts run as ``python benchmarks/bench_<name>.py`` (their directory is
then first on ``sys.path``).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path


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
