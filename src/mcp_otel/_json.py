"""Safe, fast JSON encoding shared by every sink.

Every line mcp-otel writes goes through :func:`dumps`. It must never raise into the host
server (a telemetry failure must not become an outage) and it must never write something
a JSON parser rejects, so values JSON cannot hold are turned into a documented form:

==========================  ===============================================================
value                       written as
==========================  ===============================================================
``float`` NaN / ±inf        the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (the
                            proto3/OTLP JSON spelling; orjson alone would silently write
                            ``null``)
``bytes``/``bytearray``/    ``{"$base64": "<standard base64>"}`` (lossless)
``memoryview``
``tuple``                   a JSON array
``set``/``frozenset``       a JSON array, sorted when the items are mutually orderable,
                            else sorted by their encoded form (deterministic)
``datetime``/``date``/      RFC 3339 / ISO 8601 text; naive datetimes are taken as UTC
``time``
``int`` beyond 64 bits      its decimal digits as a string (lossless); beyond
                            ``limits.MAX_INT_BITS`` (about 4,300 digits, where ``str()``
                            raises) the summary ``"<int of N bits, ~D digits>"``
``str`` with lone           the surrogate written as the six characters ``\\udXXX``
surrogates                  (``backslashreplace``: the code point survives as text)
other ``Mapping`` types     a JSON object (``os.environ``, ``MappingProxyType``,
(not ``dict``)              ``UserDict``, ...), keys converted like a dict's
non-``str`` dict keys       ``str(key)`` (``true``/``false``/``null`` for bool/None, like
                            orjson); if that collides with another key, the converted
                            key gets `` (<type name>)`` appended
``Enum``                    its value
dataclass, ``UUID``         orjson's native form (object / canonical text)
``Decimal``                 its exact decimal text as a string
anything else               ``repr(value)`` (a string; never the object's ``__json__``);
                            a ``repr()`` that raises gives the default
                            ``<Type object at 0x...>``
subclasses of ``dict``,     read through the base type (``dict.items``,
``list``, ``int``, ...      ``int.__int__``, ...), as orjson reads them: their own
                            overrides are not called
a value whose conversion    ``"<unrepresentable Type>"``, for that value only (a
raises                      ``Mapping`` whose ``items()`` raises, ...): its siblings are
                            kept
cycles / nesting > 64       the string ``"<cycle>"`` / ``"<max depth>"`` at level 64, when
                            the value takes the careful path (it holds a value orjson
                            cannot encode, or a NaN/inf); a value that is otherwise plain
                            JSON is written whole up to orjson's 255 levels
==========================  ===============================================================

The fast path is a single ``orjson.dumps`` call; only values that make it fail (or that
contain ``null``, which might be a NaN orjson flattened) are walked in Python.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import orjson

from mcp_otel import limits

__all__ = ["bounded", "clean_bounded", "dumps", "dumps_line", "to_jsonable"]

_OPTS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
_MAX_DEPTH = 64
_NAN = "NaN"
_INF = "Infinity"
_NINF = "-Infinity"
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1
_NULL = b"null"


def _float(value: float) -> float | str:
    if value != value:  # NaN
        return _NAN
    if value in (math.inf, -math.inf):
        return _INF if value > 0 else _NINF
    return value


def _str(value: str) -> str:
    if type(value) is not str:  # a subclass may override encode()
        value = str.__str__(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _key(key: Any) -> str:
    if isinstance(key, str):
        return _str(key)
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, float):
        return str(_float(float.__float__(key)))
    if isinstance(key, int):
        return limits.int_text(int.__int__(key))
    if isinstance(key, enum.Enum):
        return _key(key.value)
    if isinstance(key, _dt.datetime | _dt.date | _dt.time):
        return key.isoformat()
    try:
        return _str(str(key))
    except Exception:  # a broken __str__ must not break the record
        return _str(object.__repr__(key))


def _repr(value: Any) -> str:
    try:
        return _str(repr(value))
    except Exception:
        return _str(object.__repr__(value))


def _sorted_items(items: Any, depth: int, stack: set[int]) -> list[Any]:
    converted = [_walk(v, depth, stack) for v in items]
    try:
        return sorted(converted)
    except TypeError:
        return sorted(converted, key=lambda v: orjson.dumps(v, option=_OPTS))


def _walk(value: Any, depth: int, stack: set[int]) -> Any:
    # Exact-type checks first: they are by far the common case.
    t = type(value)
    if t is str:
        return _str(value)
    if value is None or t is bool:
        return value
    if t is int:
        return value if _INT64_MIN <= value <= _UINT64_MAX else limits.int_text(value)
    if t is float:
        return _float(value)
    if depth >= _MAX_DEPTH:
        return "<max depth>"
    try:
        return _walk_other(value, depth, stack)
    except Exception:  # this value only: its siblings and parents are kept
        return limits.unrepresentable(value)


def _walk_other(value: Any, depth: int, stack: set[int]) -> Any:
    if isinstance(value, dict | list | tuple | set | frozenset | Mapping):
        ident = id(value)
        if ident in stack:
            return "<cycle>"
        stack.add(ident)
        try:
            if isinstance(value, Mapping):
                out: dict[str, Any] = {}
                converted_later: list[tuple[str, Any, Any]] = []
                # A dict subclass is read as orjson reads it, through the dict itself:
                # its own items() may raise or differ, and the fast and slow paths must
                # agree on what it holds.
                items = dict.items(value) if isinstance(value, dict) else value.items()
                for k, v in items:
                    if isinstance(k, str):
                        out[_str(k)] = _walk(v, depth + 1, stack)
                    else:
                        converted_later.append((_key(k), k, v))
                for name, k, v in converted_later:
                    while name in out:  # never overwrite: suffix until the name is free
                        name = f"{name} ({type(k).__name__})"
                    out[name] = _walk(v, depth + 1, stack)
                return out
            if isinstance(value, set | frozenset):
                base = set if isinstance(value, set) else frozenset
                return _sorted_items(base.__iter__(value), depth + 1, stack)
            base_seq = list if isinstance(value, list) else tuple
            return [_walk(v, depth + 1, stack) for v in base_seq.__iter__(value)]
        finally:
            stack.discard(ident)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, enum.Enum):
        return _walk(value.value, depth + 1, stack)
    if isinstance(value, bool):
        return bool(value)
    # The base type's own conversion: a subclass may override __int__/__float__/__str__.
    if isinstance(value, int):
        return _walk(int.__int__(value), depth, stack)
    if isinstance(value, float):
        return _float(float.__float__(value))
    if isinstance(value, str):
        return _str(str.__str__(value))
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        try:
            return orjson.loads(orjson.dumps(value, option=_OPTS))
        except (TypeError, orjson.JSONEncodeError):
            return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        except Exception:
            return _repr(value)
        return _walk(fields, depth, stack)
    try:
        # UUID and friends: whatever orjson natively supports, minus what broke above.
        return orjson.loads(orjson.dumps(value, option=_OPTS))
    except (TypeError, orjson.JSONEncodeError):
        return _repr(value)


def to_jsonable(value: Any) -> Any:
    """A plain-JSON copy of ``value`` (see the module table); never raises.

    Used directly by callers that need a canonical, JSON-safe structure (hash chains,
    previews) and as the slow path of :func:`dumps`.
    """
    try:
        return _walk(value, 0, set())
    except RecursionError:
        return "<max depth>"
    except Exception:  # pragma: no cover - defensive: nothing may escape
        return limits.unrepresentable(value)


def bounded(value: Any, cap: int) -> Any:
    """A plain-JSON ``value`` whose text is at most ``cap`` characters (plus the marker).

    A string is cut (:func:`mcp_otel.limits.cut`); a number, bool or None is kept; a list
    or object is kept when its compact JSON fits, else it becomes that JSON text, cut.
    """
    t = type(value)
    if t is str:
        return limits.cut(value, cap)
    if value is None or t is bool or t is int or t is float:
        return value
    text = dumps(value).decode("utf-8")
    return value if len(text) <= cap else limits.cut(text, cap)


def clean_bounded(clean: Callable[[Any], Any], value: Any, cap: int) -> Any:
    """``clean(value)`` (a redactor's masking, which returns plain JSON) made
    :func:`bounded` by ``cap``; never raises.

    Text is cut to ``cap + limits.SCAN_MARGIN_CHARS`` before ``clean``, so masking a
    50 MB string costs a few kilobytes of work. If ``clean`` raises on an odd value (a
    mapping whose ``items()`` raises, an ``int`` subclass whose ``__int__`` does), the value
    is made plain JSON first (:func:`to_jsonable`: only the odd parts get their safe form)
    and cleaned again.
    """
    scan = cap + limits.SCAN_MARGIN_CHARS
    dropped = 0
    if type(value) is str and len(value) > scan:
        dropped, value = len(value) - scan, value[:scan]
    try:
        cleaned = clean(value)
    except Exception:
        plain = to_jsonable(value)
        if type(plain) is str and len(plain) > scan:
            dropped, plain = len(plain) - scan, plain[:scan]
        try:
            cleaned = clean(plain)
        except Exception:  # pragma: no cover - plain JSON cleans without raising
            cleaned = limits.unrepresentable(value)
    if dropped and type(cleaned) is str:
        return limits.cut(cleaned, cap, dropped)
    return bounded(cleaned, cap)


def _default(value: Any) -> Any:
    # Called by orjson for types it does not know; anything not handled here makes
    # orjson raise, which sends the whole value through the slow path.
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):  # os.environ, MappingProxyType, UserDict, ...: an object
        return dict(value)
    raise TypeError


#: How deep :func:`_has_nonfinite` looks: everywhere orjson could go (it refuses more than
#: 255 levels). Bailing out earlier sent any deep value with a ``null`` through the slow
#: path, which cuts at ``_MAX_DEPTH``: an audit record hashed whole was written cut.
_SCAN_DEPTH = 256


def _has_nonfinite(value: Any, depth: int = 0) -> bool:
    t = type(value)
    if t is float:
        return value != value or value in (math.inf, -math.inf)
    if depth > _SCAN_DEPTH:  # pragma: no cover - orjson refuses what is this deep
        return True
    if t is dict:
        return any(_has_nonfinite(v, depth + 1) for v in value.values())
    if t is list or t is tuple:
        return any(_has_nonfinite(v, depth + 1) for v in value)
    if t is str or t is int or t is bool or value is None:
        return False
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return True  # orjson serialised it natively; let the slow path look inside
    # subclasses, and mappings _default turned into dicts: the slow path decides
    return isinstance(value, float | dict | list | tuple | Mapping)


_LINE_OPTS = _OPTS | orjson.OPT_APPEND_NEWLINE


def _encoder(option: int, name: str, doc: str) -> Callable[[Any], bytes]:
    """The never-raising encoder for one orjson ``option`` set.

    orjson handles the common case in one C call; a ``null`` in its output may be a
    NaN/inf orjson flattened, so only then do we look for non-finite floats. Built once
    per option set (a closure, not a wrapper) so the hot path has no extra call.
    """

    def encode(value: Any) -> bytes:
        try:
            out = orjson.dumps(value, default=_default, option=option)
        except Exception:  # TypeError, JSONEncodeError, RecursionError, a raising Mapping
            return orjson.dumps(to_jsonable(value), option=option)
        if _NULL in out:
            try:
                nonfinite = _has_nonfinite(value)
            except RecursionError:  # a caller already deep in its stack: be careful
                nonfinite = True
            if nonfinite:
                return orjson.dumps(to_jsonable(value), option=option)
        return out

    encode.__name__ = encode.__qualname__ = name
    encode.__doc__ = doc
    return encode


dumps = _encoder(
    _OPTS,
    "dumps",
    "Compact UTF-8 JSON bytes for ``value``; never raises, never writes invalid JSON.",
)
dumps_line = _encoder(
    _LINE_OPTS,
    "dumps_line",
    ":func:`dumps` plus a trailing ``\\n`` (appended by orjson, saving a copy per line).",
)
