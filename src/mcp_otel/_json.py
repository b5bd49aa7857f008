"""Safe, fast JSON encoding shared by every sink.

INITIAL VERSION: the exporters work (issue 2) owns and refines this module; keep the
names ``to_jsonable`` and ``dumps``. Nothing here raises into the caller.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
from typing import Any

import orjson

_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


def to_jsonable(value: Any) -> Any:
    """Turn what orjson cannot hold into a documented, JSON-safe form."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return repr(value)  # "nan", "inf", "-inf"
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [to_jsonable(v) for v in items]
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int):
        return value
    return repr(value)


def dumps(value: Any) -> bytes:
    """Compact JSON bytes for ``value``; falls back to :func:`to_jsonable` on anything odd."""
    try:
        return orjson.dumps(value, option=_OPTS)
    except (TypeError, orjson.JSONEncodeError):
        return orjson.dumps(to_jsonable(value), option=_OPTS)
