"""Constructor arguments and their environment defaults, shared by the three exporters.

``None`` always means "from the environment"; a bad explicit argument raises
``ValueError`` (a programming error), a bad environment value falls back to the default
with one line on stderr (a deployment typo must not stop the host server).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from mcp_otel import _settings
from mcp_otel.exporters._file import FSYNC_POLICIES, FsyncPolicy, RotationPolicy

LineFormat = Literal["flat", "otlp"]
FORMATS: frozenset[str] = frozenset({"flat", "otlp"})

ENV_DIR = "MCP_OTEL_DIR"
ENV_FORMAT = "MCP_OTEL_JSONL_FORMAT"
ENV_FSYNC = "MCP_OTEL_FSYNC"
ENV_MAX_BYTES = "MCP_OTEL_JSONL_MAX_BYTES"
ENV_MAX_FILES = "MCP_OTEL_JSONL_MAX_FILES"
ENV_MAX_AGE = "MCP_OTEL_JSONL_MAX_AGE"
ENV_COMPRESS = "MCP_OTEL_JSONL_COMPRESS"
ENV_RESOURCE = "MCP_OTEL_JSONL_RESOURCE"
ENV_PATH = {
    "logs": "MCP_OTEL_JSONL_LOGS_PATH",
    "traces": "MCP_OTEL_JSONL_TRACES_PATH",
    "metrics": "MCP_OTEL_JSONL_METRICS_PATH",
}
DEFAULT_DIR = "./mcp-otel-data"
DEFAULT_FORMAT: LineFormat = "flat"
DEFAULT_FSYNC: FsyncPolicy = "interval"

def _env(name: str) -> str | None:
    return _settings.env_text(name)


def data_dir() -> Path:
    """``MCP_OTEL_DIR`` or ``./mcp-otel-data`` (same rule as ``mcp_otel._setup``)."""
    return Path(_env(ENV_DIR) or DEFAULT_DIR)


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true``: the exporters then create no file and write nothing."""
    return (_settings.env_text("OTEL_SDK_DISABLED") or "").lower() == "true"


def default_path(signal: str) -> Path:
    """``<dir>/{logs,traces,metrics}/{signal}_{date}.jsonl`` unless a path variable is set."""
    override = _env(ENV_PATH[signal])
    if override:
        return Path(override)
    return data_dir() / signal / f"{signal}_{{date}}.jsonl"


def resolve_format(value: str | None) -> LineFormat:
    choice = _settings.choice_setting(value, ENV_FORMAT, FORMATS, DEFAULT_FORMAT, arg="format")
    return choice  # type: ignore[return-value]


def resolve_fsync(value: str | None) -> FsyncPolicy:
    choice = _settings.choice_setting(value, ENV_FSYNC, FSYNC_POLICIES, DEFAULT_FSYNC, arg="fsync")
    return choice  # type: ignore[return-value]


def _env_count(name: str) -> int | None:
    """A non-negative integer variable, ``None`` when unset or invalid (no limit)."""
    return _settings.env_number(name, None, int, minimum=0)  # type: ignore[arg-type]


def resolve_bool(value: bool | None, env_name: str, arg: str) -> bool:
    return _settings.bool_setting(value, env_name, False, arg=arg)


# timedelta's own limit (999,999,999 days), rounded down: a larger age overflows.
_MAX_AGE_LIMIT_S = 86_000_000_000_000.0


def resolve_rotation(
    max_bytes: int | None,
    max_files: int | None,
    max_age: timedelta | float | None,
    compress: bool | None,
) -> RotationPolicy:
    if max_bytes is None:
        max_bytes = _env_count(ENV_MAX_BYTES) or None
    if max_files is None:
        max_files = _env_count(ENV_MAX_FILES)
    if max_age is None:
        max_age = _settings.env_number(
            ENV_MAX_AGE, None, float, minimum=0, maximum=_MAX_AGE_LIMIT_S  # type: ignore[arg-type]
        )
    if isinstance(max_age, int | float) and not isinstance(max_age, bool):
        if not 0 <= max_age < _MAX_AGE_LIMIT_S:
            raise ValueError(
                f"max_age must be a finite number of seconds below {_MAX_AGE_LIMIT_S:.0f}"
            )
        max_age = timedelta(seconds=max_age)
    if max_age is not None and not isinstance(max_age, timedelta):
        raise ValueError("max_age must be a timedelta or a number of seconds")
    for name, v in (("max_bytes", max_bytes), ("max_files", max_files)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise ValueError(f"{name} must be an int")
    return RotationPolicy(
        max_bytes=max_bytes,
        max_files=max_files,
        max_age=max_age,
        compress=resolve_bool(compress, ENV_COMPRESS, arg="compress"),
    )


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    """Everything an exporter resolved at construction (exposed as ``exporter.config``)."""

    path: str
    format: LineFormat
    fsync: FsyncPolicy
    file_mode: int
    dir_mode: int
    rotation: RotationPolicy
    include_resource: bool
    disabled: bool
