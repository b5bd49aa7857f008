"""Constructor arguments and their environment defaults, shared by the three exporters.

``None`` always means "from the environment"; a bad explicit argument raises
``ValueError`` (a programming error), a bad environment value falls back to the default
with one line on stderr (a deployment typo must not stop the host server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from mcp_otel.exporters._file import FSYNC_POLICIES, FsyncPolicy, RotationPolicy, _stderr

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

_warned: set[str] = set()


def _warn(name: str, value: str, fallback: object) -> None:
    if name in _warned:
        return
    _warned.add(name)
    _stderr(f"mcp-otel: ignoring {name}={value!r} (invalid); using {fallback!r}\n")


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value and value.strip() else None


def data_dir() -> Path:
    """``MCP_OTEL_DIR`` or ``./mcp-otel-data`` (same rule as ``mcp_otel._setup``)."""
    return Path(_env(ENV_DIR) or DEFAULT_DIR)


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true``: the exporters then create no file and write nothing."""
    return (os.environ.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true"


def default_path(signal: str) -> Path:
    """``<dir>/{logs,traces,metrics}/{signal}_{date}.jsonl`` unless a path variable is set."""
    override = _env(ENV_PATH[signal])
    if override:
        return Path(override)
    return data_dir() / signal / f"{signal}_{{date}}.jsonl"


def _resolve_choice(
    value: str | None, allowed: frozenset[str], arg: str, env_name: str, default: str
) -> str:
    """An explicit ``value`` must be one of ``allowed``; otherwise ``env_name`` (any case),
    falling back to ``default`` with a warning when it is not one of them."""
    if value is not None:
        if value not in allowed:
            raise ValueError(f"{arg} must be one of {sorted(allowed)}, not {value!r}")
        return value
    env = _env(env_name)
    if env is None:
        return default
    if env.lower() in allowed:
        return env.lower()
    _warn(env_name, env, default)
    return default


def resolve_format(value: str | None) -> LineFormat:
    choice = _resolve_choice(value, FORMATS, "format", ENV_FORMAT, DEFAULT_FORMAT)
    return choice  # type: ignore[return-value]


def resolve_fsync(value: str | None) -> FsyncPolicy:
    choice = _resolve_choice(value, FSYNC_POLICIES, "fsync", ENV_FSYNC, DEFAULT_FSYNC)
    return choice  # type: ignore[return-value]


def _env_int(name: str) -> int | None:
    env = _env(name)
    if env is None:
        return None
    try:
        value = int(env)
    except ValueError:
        _warn(name, env, None)
        return None
    if value < 0:
        _warn(name, env, None)
        return None
    return value


def _env_bool(name: str) -> bool | None:
    env = _env(name)
    if env is None:
        return None
    if env.lower() in {"1", "true", "yes", "on"}:
        return True
    if env.lower() in {"0", "false", "no", "off"}:
        return False
    _warn(name, env, False)
    return None


def resolve_bool(value: bool | None, env_name: str) -> bool:
    if value is not None:
        return bool(value)
    return bool(_env_bool(env_name))


# timedelta's own limit (999,999,999 days), rounded down: a larger age overflows.
_MAX_AGE_LIMIT_S = 86_000_000_000_000.0


def resolve_rotation(
    max_bytes: int | None,
    max_files: int | None,
    max_age: timedelta | float | None,
    compress: bool | None,
) -> RotationPolicy:
    if max_bytes is None:
        max_bytes = _env_int(ENV_MAX_BYTES) or None
    if max_files is None:
        max_files = _env_int(ENV_MAX_FILES)
    if max_age is None:
        env_age = _env(ENV_MAX_AGE)
        if env_age is not None:
            try:
                seconds = float(env_age)
                if not 0 <= seconds < _MAX_AGE_LIMIT_S:  # also NaN and inf
                    raise ValueError
                max_age = seconds
            except ValueError:
                _warn(ENV_MAX_AGE, env_age, None)
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
        compress=resolve_bool(compress, ENV_COMPRESS),
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
