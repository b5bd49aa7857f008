"""The caps and safe text forms of :mod:`mcp_otel.limits`, and how :mod:`mcp_otel._json`
uses them: a value that cannot be converted gets its own safe form, never its
container's. Issue 12, items 2 and 3."""

from __future__ import annotations

import math
import sys
import threading
from typing import Any

import orjson
import pytest

from mcp_otel import _json, limits
from tests._odd_values import (
    HUGE,
    HUGE_TEXT,
    BadFloat,
    BadInt,
    BadStr,
    NoItems,
    NoIter,
    NoMapping,
    NoTruth,
    Unprintable,
    deep_list,
)


def test_int_text_is_decimal_up_to_the_bit_cap_and_a_summary_beyond() -> None:
    widest = 2**limits.MAX_INT_BITS - 1
    assert limits.int_text(widest) == str(widest)
    assert limits.int_text(-widest) == str(-widest)
    assert limits.int_text(widest + 1) == "<int of 14285 bits, ~4300 digits>"
    assert limits.int_text(-HUGE) == "<negative " + HUGE_TEXT[1:]
    assert limits.int_text(HUGE) == HUGE_TEXT


def test_int_text_follows_a_lower_interpreter_limit() -> None:
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        assert limits.int_text(10**700) == "<int of 2326 bits, ~701 digits>"
        assert orjson.loads(_json.dumps({"n": 10**700})) == {"n": "<int of 2326 bits, ~701 digits>"}
    finally:
        sys.set_int_max_str_digits(previous)


def test_cut_counts_what_was_removed() -> None:
    assert limits.cut("abc", 3) == "abc"
    assert limits.cut("abcdef", 4) == "abcd…[cut: 2 chars]"
    assert limits.cut("ab", 4, dropped=10) == "ab…[cut: 10 chars]"
    assert limits.cut("abcdef", 4, dropped=10) == "abcd…[cut: 12 chars]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("s", "s"), (BadStr("s"), "s"), (12, "12"), (HUGE, HUGE_TEXT), (BadInt(3), "3"),
     (Unprintable(), "<unrepresentable Unprintable>"), ([1], "[1]"), (None, "None")],
    ids=["str", "str-subclass", "int", "huge", "int-subclass", "unprintable", "list", "none"])
def test_safe_str(value: Any, expected: str) -> None:
    text = limits.safe_str(value)
    assert type(text) is str and text == expected


def test_truth_and_timeouts() -> None:
    assert limits.truth(NoTruth(), True) is True and limits.truth(NoTruth(), False) is False
    assert limits.truth([], True) is False
    assert limits.safe_timeout(2, 30.0) == 2.0
    for bad in (math.nan, -1, "x", Unprintable(), -HUGE):
        assert limits.safe_timeout(bad, 30.0) == 30.0
    assert limits.safe_timeout(math.inf, 30.0) == threading.TIMEOUT_MAX
    assert limits.safe_timeout(HUGE, 30.0) == threading.TIMEOUT_MAX


def test_a_huge_int_changes_only_its_own_value() -> None:
    """The whole value used to become ``"<dict object at 0x...>"``."""
    value = {"a": HUGE, "b": [1, -HUGE], "c": "x", HUGE: "key"}
    assert orjson.loads(_json.dumps(value)) == {
        "a": HUGE_TEXT, "b": [1, "<negative " + HUGE_TEXT[1:]], "c": "x", HUGE_TEXT: "key"}


def test_a_value_whose_conversion_raises_changes_only_itself() -> None:
    value = {"items": NoItems(a=1), "iter": NoIter([1]), "int": BadInt(4),
             "float": BadFloat(2.5), "str": BadStr("s"), "ok": 1, "set": {BadInt(9)}}
    assert orjson.loads(_json.dumps([value])) == [{
        "items": {"a": 1}, "iter": [1],  # read through dict/list, as orjson reads them
        "int": 4, "float": 2.5, "str": "s", "ok": 1, "set": [9]}]
    assert _json.to_jsonable({"m": NoItems(a=1), "n": NoIter([2]), "ok": 1}) == {
        "m": {"a": 1}, "n": [2], "ok": 1}
    assert _json.to_jsonable([NoMapping(), 2]) == ["<unrepresentable NoMapping>", 2]
    assert orjson.loads(_json.dumps({"m": NoMapping(), "ok": 1})) == {
        "m": "<unrepresentable NoMapping>", "ok": 1}


def test_deep_nesting_is_cut_at_the_depth_limit() -> None:
    out = orjson.loads(_json.dumps({"deep": deep_list(100_000)}))
    depth = 0
    node = out["deep"]
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert node == "<max depth>" and depth < 70


def test_bounded_keeps_what_fits_and_cuts_the_rest() -> None:
    assert _json.bounded("x" * 5, 4) == "xxxx…[cut: 1 chars]"
    assert _json.bounded(HUGE_TEXT, 100) == HUGE_TEXT
    assert _json.bounded({"a": 1}, 7) == {"a": 1}
    assert _json.bounded({"a": 12}, 7) == '{"a":12…[cut: 1 chars]'
    assert _json.bounded(1.5, 1) == 1.5


def test_clean_bounded_masks_after_a_cut_with_a_margin_and_counts_it() -> None:
    calls: list[int] = []

    def clean(value: Any) -> Any:
        calls.append(len(value) if isinstance(value, str) else -1)
        return value

    out = _json.clean_bounded(clean, "y" * 1_000_000, 10)
    assert calls == [10 + limits.SCAN_MARGIN_CHARS]  # the masking saw the cap + margin only
    assert out == "y" * 10 + "…[cut: 999990 chars]"

    def raising(value: Any) -> Any:
        """A cleaner that accepts only text and lists of text."""
        if type(value) is str or (type(value) is list and all(type(v) is str for v in value)):
            return value
        raise RuntimeError("odd")

    # raising on the value, then on its plain form too: the value's safe form
    assert _json.clean_bounded(raising, BadInt(3), 40) == "<unrepresentable BadInt>"
    # raising on the value only: its plain form, cleaned
    expected = ["<unrepresentable NoMapping>", "s"]
    assert _json.clean_bounded(raising, [NoMapping(), "s"], 60) == expected
    assert _json.clean_bounded(raising, NoMapping(), 40) == "<unrepresentable NoMapping>"
