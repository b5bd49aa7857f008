"""Values that break naive code: shared by the value tests of each area and the
property-based suite (tests/properties).

Each class breaks one thing the library might call on a value it was handed: ``str()``,
``repr()``, ``bool()``, ``==``, ``hash()``, iteration, or a base type's conversion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

#: ``str()`` of it raises ``ValueError`` (over CPython's 4,300-digit limit).
HUGE = 10**5000
#: :func:`mcp_otel.limits.int_text` of :data:`HUGE`.
HUGE_TEXT = "<int of 16610 bits, ~5001 digits>"


def _boom(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise RuntimeError("boom")


class Unprintable:
    """``str()`` and ``repr()`` raise."""

    __str__ = __repr__ = __format__ = _boom


class NoTruth:
    """``bool()`` raises (as numpy arrays and pandas frames do)."""

    __bool__ = __len__ = _boom
    __str__ = __repr__ = _boom


class NoEquality:
    """``==``/``!=`` raise, and so do ``str()`` and ``repr()``."""

    __eq__ = __ne__ = _boom  # type: ignore[assignment]
    __hash__ = object.__hash__
    __str__ = __repr__ = _boom


class NoItems(dict):  # type: ignore[type-arg]
    """A dict whose every Python-level accessor raises (orjson, and mcp-otel, read it
    through ``dict`` itself)."""

    items = keys = values = __iter__ = __len__ = __getitem__ = _boom  # type: ignore[assignment]
    __str__ = __repr__ = _boom


class NoMapping(Mapping):  # type: ignore[type-arg]
    """A Mapping (not a dict) whose every accessor raises."""

    __getitem__ = __iter__ = __len__ = items = keys = values = _boom  # type: ignore[assignment]
    __str__ = __repr__ = _boom


class NoIter(list):  # type: ignore[type-arg]
    """A list whose iteration (and ``str``/``repr``) raises."""

    __iter__ = __len__ = __getitem__ = _boom  # type: ignore[assignment]
    __str__ = __repr__ = _boom


class BadInt(int):
    """An int whose own conversions raise (``int.__int__`` still works)."""

    __int__ = __index__ = __str__ = __repr__ = __format__ = __float__ = _boom
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _boom  # type: ignore[assignment]
    __hash__ = int.__hash__


class BadFloat(float):
    """A float whose own conversions and comparisons raise."""

    __float__ = __str__ = __repr__ = __format__ = __round__ = __truediv__ = _boom
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _boom  # type: ignore[assignment]
    __hash__ = float.__hash__


class BadStr(str):
    """A str whose own methods raise (``str.__str__`` still works)."""

    __str__ = __repr__ = __format__ = encode = strip = isascii = _boom  # type: ignore[assignment]
    __eq__ = __ne__ = __hash__ = __len__ = __iter__ = __getitem__ = _boom  # type: ignore[assignment]


def deep_list(depth: int) -> list[Any]:
    """``[[[...]]]`` nested ``depth`` levels (built iteratively: no recursion limit)."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


#: One of each, for the "any value" tests.
ODD_VALUES: dict[str, Any] = {
    "huge_int": HUGE,
    "huge_negative_int": -HUGE,
    "unprintable": Unprintable(),
    "no_truth": NoTruth(),
    "no_equality": NoEquality(),
    "no_items": NoItems(a=1),
    "no_mapping": NoMapping(),
    "no_iter": NoIter([1]),
    "bad_int": BadInt(7),
    "bad_float": BadFloat(1.5),
    "bad_str": BadStr("name"),
    "bytes": b"\x00\xffbytes",
    "nan": float("nan"),
    "inf": float("inf"),
    "deep": deep_list(100_000),
    "cycle": (lambda c: (c.append(c), c)[1])([]),
}
