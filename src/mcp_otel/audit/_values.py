"""Small helpers that turn what a caller passes into what an audit record carries.

Osiris' API takes anything for any argument, and a host must never get an exception (or
lose a record) over an odd value: a truth value that raises, a payload the redactor
cannot handle. Each helper has a safe answer for those, and ``_iso`` writes the
timestamp as Osiris did at one ``strftime`` per second. The logger (``_logger``) and the
session's seal in the writer thread (``_session``) share them.
"""

from __future__ import annotations

import time
from typing import Any

from mcp_otel import _settings, limits, redaction

_stderr = _settings.stderr_line

_iso_cache: tuple[int, str] = (-1, "")


def _iso(ns: int) -> str:
    """ISO 8601 UTC with microseconds, as Osiris writes it (``...+00:00``)."""
    global _iso_cache
    sec, frac = divmod(ns, 1_000_000_000)
    cached, prefix = _iso_cache
    if cached != sec:  # one strftime per second, not per record
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _iso_cache = (sec, prefix)
    return f"{prefix}.{frac // 1000:06d}+00:00"


def _given(value: Any) -> bool:
    """Osiris' truth test for an optional argument (``x or default``), where a truth value
    that raises counts as given; exact ``None`` and ``str`` are decided inline."""
    if value is None:
        return False
    if type(value) is str:
        return value != ""
    return limits.truth(value, True)


def _flag(value: Any) -> bool | str:
    """``bool(value)``, or :func:`limits.unrepresentable` when its truth value raises."""
    if value is True or value is False:
        return value
    try:
        return bool(value)
    except Exception:
        return limits.unrepresentable(value)


def _redact(redactor: redaction.Redactor, snap: redaction.Snapshot) -> redaction.RedactedValue:
    """Mask a payload snapshot; a redactor failure gives a placeholder, never the raw value,
    never an exception into the host, never a lost record."""
    try:
        return redactor.redact_snapshot(snap)
    except Exception as exc:
        _stderr(f"mcp-otel audit: cannot redact a payload: {exc!r}")
        return redaction.RedactedValue("<unredactable>", len(snap.json), False)
