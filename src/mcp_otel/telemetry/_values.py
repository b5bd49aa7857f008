"""What the emitter does with the values a host passes: counts, labels, event fields.

Why a module of its own: every ``emit_*`` argument may come straight from an MCP client
(tool names, error texts, metadata) or from a buggy host (negative sizes, NaN, objects
whose ``__str__`` raises). The rules here turn any of them into a bounded, JSON-safe,
secret-free value without raising, so the host server never crashes because of telemetry.
"""

from __future__ import annotations

import time
from typing import Any

from mcp_otel import _json, limits

#: Distinct tool names (and error types) an emitter puts on metrics; later ones share
#: ``_OTHER``. Keeps series bounded when a client invents tool names. (The caps live in
#: :mod:`mcp_otel.limits`, with every other one.)
MAX_TOOL_NAMES = limits.MAX_TOOL_NAMES
MAX_ERROR_TYPES = limits.MAX_ERROR_TYPES
MAX_NAME_LENGTH = limits.MAX_LABEL_CHARS
#: Largest value one call adds to a counter (exact in JSON doubles and OTLP int64 sums).
MAX_VALUE = 2**53 - 1
#: Longest numeric string :func:`_as_count` parses (a count has at most 16 digits).
MAX_COUNT_TEXT = 64
_OTHER = "_other"


def _as_count(value: Any) -> tuple[int, bool]:
    """A non-negative int for a counter, and whether ``value`` had to be transformed.

    Counters only go up (an OTel counter drops a negative ``add``, which would leave
    ``tool_calls`` counted but ``bytes`` not). So: ints are kept, finite floats rounded,
    numeric strings parsed; negatives, NaN/inf and anything else count as 0, and values
    above 2**53 - 1 (beyond what JSON and OTLP backends hold exactly) are capped there.
    The event line lists every transformed field under ``mcp_otel.invalid_fields``.
    Subclasses are read through their base type (``int.__int__``, ...), so no override of
    theirs can raise here; a numeric string longer than :data:`MAX_COUNT_TEXT` counts 0.
    """
    if type(value) is int and 0 <= value <= MAX_VALUE:
        return value, False
    if isinstance(value, bool):
        return int(value), True
    if isinstance(value, int):
        number: int = int.__int__(value)
    elif isinstance(value, float):
        real = float.__float__(value)
        if real != real or real in (float("inf"), float("-inf")):
            return 0, True
        number = round(real)
        if number == real and 0 <= number <= MAX_VALUE:
            return number, False
    elif isinstance(value, str):
        text = str.__str__(value)
        if len(text) > MAX_COUNT_TEXT:
            return 0, True
        text = text.strip()
        try:
            number = int(text)
        except ValueError:
            try:  # "12.7": a numeric string is parsed as a number, then rounded like one
                parsed = float(text)
            except ValueError:
                return 0, True
            if parsed != parsed or parsed in (float("inf"), float("-inf")):
                return 0, True
            number = round(parsed)
    else:
        return 0, True
    return min(max(number, 0), MAX_VALUE), True


def _is_error(status: Any) -> bool:
    """Osiris' ``status == "error"``, without calling a foreign ``__eq__``."""
    return isinstance(status, str) and str.__eq__(status, "error") is True


def _label(value: Any) -> str:
    text = limits.safe_str(value)
    if len(text) > MAX_NAME_LENGTH:
        text = text[:MAX_NAME_LENGTH]
    return text


def _bounded_label(value: Any, seen: set[str], limit: int) -> str:
    """``_label(value)``, or ``_OTHER`` once ``seen`` (the caller's set) holds ``limit``
    other labels: names come from clients, and metric series must stay bounded."""
    label = _label(value)
    if label not in seen:
        if len(seen) >= limit:
            return _OTHER
        seen.add(label)
    return label


def _seconds(raw: Any, fallback_ms: int) -> float:
    """Histogram value in seconds: the exact float when the caller gave one."""
    if isinstance(raw, float):
        real = float.__float__(raw)
        if real >= 0 and real != float("inf"):
            return real / 1000.0
    return fallback_ms / 1000.0


_stamp_cache: tuple[int, str] = (-1, "")


def _stamps(ns: int) -> tuple[str, str]:
    """Osiris' ``datetime.now(UTC).isoformat()`` form and the RFC 3339 form with
    nanoseconds (the flat format's ``otel.timestamp``) of one timestamp.

    The date and time up to the second are formatted once per second (one tuple, read
    and replaced atomically); like ``isoformat()`` the fraction is left out of the first
    when its microseconds are zero.
    """
    global _stamp_cache
    seconds, rest = divmod(ns, 1_000_000_000)
    cached, prefix = _stamp_cache
    if cached != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _stamp_cache = (seconds, prefix)
    fraction = "%09d" % rest  # noqa: UP031 - faster than a format spec on this path
    if rest < 1000:  # no microseconds: isoformat() writes none
        return f"{prefix}+00:00", f"{prefix}.{fraction}Z"
    return f"{prefix}.{fraction[:6]}+00:00", f"{prefix}.{fraction}Z"


def _iso(ns: int) -> str:
    """Osiris' ``datetime.now(UTC).isoformat()`` form of ``ns``."""
    return _stamps(ns)[0]


def _clean(value: Any, cap: int) -> Any:
    """Secrets masked, JSON-safe and at most ``cap`` characters, before any sink.

    Uses the audit trail's masking policy (:func:`mcp_otel.redaction.policy`: Osiris' key
    rules plus URL/DSN passwords) through :func:`_json.clean_bounded`, as the audit
    trail's scalar fields do: a value that raises gets its safe form, text is cut before
    masking, a list or object whose JSON is longer than ``cap`` becomes that JSON text, cut.
    """
    from mcp_otel import redaction

    return _json.clean_bounded(redaction.policy().clean, value, cap)
