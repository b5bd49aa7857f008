"""Every size cap mcp-otel applies to values it receives, and the safe text forms.

Why one module: the caps are a security property (an MCP client controls tool names,
arguments and error texts, so an unbounded field lets it grow audit lines, telemetry
events and cache files at will) and are documented in one table (docs/audit.md,
"Caps and safe forms"); reviewers and users find them here, by name, not as literals
spread over the writers.

A cut keeps the first ``cap`` characters and appends :data:`CUT_MARKER` with the number of
characters removed, so a reader always sees that, and how much, text is missing::

    >>> cut("abcdef", 4)
    'abcd…[cut: 2 chars]'

Nothing here raises for any input: these helpers are what the writers fall back on when
a value misbehaves.
"""

from __future__ import annotations

import math
import threading
from typing import Any

__all__ = [
    "CUT_MARKER",
    "MAX_CACHE_ID_CHARS",
    "MAX_ERROR_TYPES",
    "MAX_ID_CHARS",
    "MAX_INT_BITS",
    "MAX_LABEL_CHARS",
    "MAX_NAME_CHARS",
    "MAX_STRUCT_CHARS",
    "MAX_TEXT_CHARS",
    "MAX_TOOL_NAMES",
    "MAX_URI_CHARS",
    "MAX_VALUE_CHARS",
    "PREVIEW_BYTES",
    "PREVIEW_HEAD_BYTES",
    "SCAN_MARGIN_CHARS",
    "cut",
    "int_text",
    "safe_str",
    "safe_timeout",
    "truth",
    "unrepresentable",
]

# ------------------------------------------------------------------------ audit records

#: ``tool``/``tool_name``, ``error_code``, ``operation`` (audit); ``tool``, ``status``,
#: ``version``, ``protocol_version`` (telemetry events). MCP tool names are at most 128.
MAX_NAME_CHARS = 256
#: ``correlation_id``/``event_id`` as written (the caller's own id is returned unchanged).
MAX_ID_CHARS = 256
#: ``resource_uri``.
MAX_URI_CHARS = 4096
#: Fields that normally hold a number or a flag (``duration_ms``, ``bytes_in``,
#: ``bytes_out``, ``success``) when the caller passes something else (text, an object).
MAX_VALUE_CHARS = 256
#: ``arguments``/``result``/``error`` (audit): compact JSON above this many bytes becomes a
#: preview of its first :data:`PREVIEW_HEAD_BYTES` bytes (``AuditLogger(preview_bytes=)``,
#: ``MCP_OTEL_AUDIT_PREVIEW_BYTES``), marked ``... [TRUNCATED: N bytes total]``.
PREVIEW_BYTES = 4096
PREVIEW_HEAD_BYTES = 2048

# ------------------------------------------------------------------------ telemetry events

#: ``error`` and ``reason`` (free text) of telemetry events.
MAX_TEXT_CHARS = 4096
#: ``metadata`` and ``client_info`` of telemetry events: larger compact JSON is written as
#: its first characters (a string) plus the cut marker.
MAX_STRUCT_CHARS = 4096
#: Metric label values (``gen_ai.tool.name``, ``error.type``): cut without a marker (a
#: label is an identifier, and must stay equal to the instrumentation's labels).
MAX_LABEL_CHARS = 128
#: Distinct tool names / error types per emitter on metrics; later ones share ``_other``.
MAX_TOOL_NAMES = 256
MAX_ERROR_TYPES = 64

# ------------------------------------------------------------------------ cache entries

#: ``connection_id``, ``component_id``, ``idempotency_key`` as written into an entry (the
#: key and discovery id are hashes of the full values).
MAX_CACHE_ID_CHARS = 1024

# ------------------------------------------------------------------------ every value

#: Integers wider than this many bits (about 4,300 decimal digits, CPython's default
#: ``sys.get_int_max_str_digits()``) are written as :func:`int_text`'s summary, never as
#: digits: ``str()`` of them raises, and converting them costs time quadratic in size.
MAX_INT_BITS = 14_284
#: Text longer than ``cap + SCAN_MARGIN_CHARS`` is cut to that length *before* secrets are
#: masked (then masked, then cut to ``cap``): the masking cost stays bounded by the cap, and
#: a secret that starts within the kept text is still seen whole unless it is longer than
#: the margin.
SCAN_MARGIN_CHARS = 4096

CUT_MARKER = "…[cut: {n} chars]"

def cut(text: str, cap: int, dropped: int = 0) -> str:
    """``text`` itself when it has at most ``cap`` characters, else its first ``cap``
    characters and the cut marker, which counts the characters removed (plus ``dropped``:
    those a caller already removed before, see :data:`SCAN_MARGIN_CHARS`)."""
    if len(text) <= cap and not dropped:
        return text
    kept = text[:cap]
    return kept + CUT_MARKER.format(n=len(text) - len(kept) + dropped)


def unrepresentable(value: Any) -> str:
    """The form of a value whose ``str()``/``repr()`` (or walk) raised: its type name."""
    try:
        name = type(value).__name__
    except Exception:  # pragma: no cover - a metaclass that breaks __name__
        name = "object"
    if type(name) is not str:  # pragma: no cover - same
        name = "object"
    return f"<unrepresentable {cut(name, MAX_NAME_CHARS)}>"


def int_text(value: int) -> str:
    """The decimal digits of an exact ``int``; a summary when it is wider than
    :data:`MAX_INT_BITS` (or the interpreter's digit limit refuses it):
    ``"<int of 16610 bits, ~5001 digits>"`` (``"<negative int of ...>"``). The bit count
    is exact; the digit count comes from a float logarithm, so it may be one off right
    at a power of ten (an exact count would cost a huge power of ten).
    """
    bits = value.bit_length()
    if bits <= MAX_INT_BITS:
        try:
            return int.__repr__(value)
        except ValueError:  # a lower sys.set_int_max_str_digits() in the host
            pass
    digits = math.floor(math.log10(abs(value))) + 1  # log10 reads big ints exactly enough
    sign = "negative " if value < 0 else ""
    return f"<{sign}int of {bits} bits, ~{digits} digits>"


def safe_str(value: Any) -> str:
    """``str(value)`` as an exact ``str``; never raises.

    A huge ``int`` gives :func:`int_text`, a ``__str__`` that raises (or returns no
    string) gives :func:`unrepresentable`.
    """
    t = type(value)
    if t is str:
        return value
    if t is int:
        return int_text(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return int_text(int.__int__(value))
        except Exception:  # pragma: no cover - int.__int__ of an int cannot fail
            return unrepresentable(value)
    try:
        text = str(value)
        return text if type(text) is str else str.__str__(text)
    except Exception:
        return unrepresentable(value)


def truth(value: Any, default: bool) -> bool:
    """``bool(value)``, or ``default`` when its ``__bool__``/``__len__`` raises."""
    try:
        return bool(value)
    except Exception:
        return default


def safe_timeout(value: Any, default: float) -> float:
    """A timeout in seconds the threading primitives accept: NaN, a negative number or a
    non-number gives ``default``; a larger one (``inf``, a huge ``int``) is clamped to
    ``threading.TIMEOUT_MAX``."""
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond the float range
        return threading.TIMEOUT_MAX if isinstance(value, int) and value > 0 else default
    except Exception:
        return default
    if seconds != seconds or seconds < 0:
        return default
    return min(seconds, threading.TIMEOUT_MAX)
