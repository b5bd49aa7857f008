"""Values JSON cannot hold: a documented form, never an exception, never invalid JSON."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource

from mcp_otel._json import dumps, to_jsonable
from mcp_otel.exporters import JsonlLogExporter


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: float
    y: Any


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


CASES: list[tuple[Any, Any]] = [
    (float("nan"), "NaN"),
    (float("inf"), "Infinity"),
    (float("-inf"), "-Infinity"),
    ({"a": [1.5, float("nan")]}, {"a": [1.5, "NaN"]}),
    (b"\x00\x01\xff", {"$base64": "AAH/"}),
    (bytearray(b"hi"), {"$base64": "aGk="}),
    ((1, (2, 3)), [1, [2, 3]]),
    ({3, 1, 2}, [1, 2, 3]),
    (frozenset({"b", "a"}), ["a", "b"]),
    ({1, "a"}, ["a", 1]),  # mixed: sorted by encoded form (b'"a"' < b'1')
    (dt.datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=dt.UTC), "2026-01-02T03:04:05.600000Z"),
    (dt.datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05Z"),  # naive = UTC
    (dt.date(2026, 1, 2), "2026-01-02"),
    (2**70, str(2**70)),
    (-(2**64), str(-(2**64))),
    ("ok\udc80x", "ok\\udc80x"),
    ({"k\ud800": 1}, {"k\\ud800": 1}),
    ({2: "a", None: "b", False: "c"}, {"2": "a", "null": "b", "false": "c"}),
    ({1: "int", "1": "str"}, {"1": "str", "1 (int)": "int"}),
    ({(1, 2): "t"}, {"(1, 2)": "t"}),
    (Color.RED, "red"),
    (Decimal("1.10"), "1.10"),
    (Point(1.0, float("inf")), {"x": 1.0, "y": "Infinity"}),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    (Opaque(), "<Opaque>"),
    ({"o": Opaque(), "n": None}, {"o": "<Opaque>", "n": None}),
]


@pytest.mark.parametrize(("value", "expected"), CASES)
def test_documented_encoding(value: Any, expected: Any) -> None:
    out = dumps(value)
    assert json.loads(out) == expected
    assert orjson.loads(out) == expected  # strict parsers accept it too
    assert to_jsonable(value) == expected


def test_cycles_depth_and_broken_repr_never_raise() -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    assert json.loads(dumps(cyclic)) == [1, "<cycle>"]
    deep: Any = "leaf"
    for _ in range(500):
        deep = [deep]
    text = dumps(deep)
    assert b"<max depth>" in text
    json.loads(text)
    assert json.loads(dumps(BadRepr())).startswith("<")
    assert json.loads(dumps({"x": BadRepr()}))["x"].startswith("<")


def test_fast_path_unchanged_for_plain_values() -> None:
    plain = {"a": 1, "b": [True, None, 2.5, "s"], "c": {"d": "e"}}
    assert dumps(plain) == orjson.dumps(plain)


def test_odd_values_through_the_exporter(tmp_path: Path) -> None:
    """The SDK passes log attributes (AnyValue) through; the line still parses."""
    exp = JsonlLogExporter(tmp_path / "odd.jsonl")
    attrs = {"s": "bad\udcff", "b": b"\x01", "big": 2**80, "f": float("-inf"), "t": (1, 2)}
    rec = ReadableLogRecord(
        LogRecord(body={"k": float("nan")}, attributes=attrs), resource=Resource.create({})
    )
    assert exp.export([rec]).name == "SUCCESS"
    exp.shutdown()
    line = orjson.loads((tmp_path / "odd.jsonl").read_bytes())
    assert line["s"] == "bad\\udcff"
    assert line["b"] == {"$base64": "AQ=="}
    assert line["big"] == str(2**80)
    assert line["f"] == "-Infinity"
    assert line["t"] == [1, 2]
    assert line["body"] == {"k": "NaN"}


def test_converted_keys_never_overwrite_each_other() -> None:
    out = orjson.loads(dumps({1: "a", "1": "b", "1 (int)": "c"}))
    assert sorted(out.values()) == ["a", "b", "c"]


def test_nan_deeper_than_the_depth_limit_is_not_null() -> None:
    value: object = float("nan")
    for _ in range(70):
        value = [value]
    text = dumps(value).decode()
    assert "null" not in text and "<max depth>" in text


def test_any_mapping_is_an_object_not_its_repr() -> None:
    """os.environ, MappingProxyType, UserDict...: objects, so that keys stay keys (the audit
    trail masks secrets by key; a repr would hide them in free text)."""
    import collections
    import types

    proxy = types.MappingProxyType({"password": "p", "n": float("nan")})
    user = collections.UserDict({"api_key": "k", 1: "one"})
    chained = collections.ChainMap({"a": 1}, {"b": {"c": proxy}})
    value = {"proxy": proxy, "user": user, "chained": chained}
    expected = {"proxy": {"password": "p", "n": "NaN"}, "user": {"api_key": "k", "1": "one"},
                "chained": {"b": {"c": {"password": "p", "n": "NaN"}}, "a": 1}}
    assert orjson.loads(dumps(value)) == expected
    assert to_jsonable(value) == expected
    assert orjson.loads(dumps(types.MappingProxyType({"x": 1}))) == {"x": 1}  # fast path
    selfish: collections.UserDict[str, Any] = collections.UserDict()
    selfish["me"] = selfish
    assert orjson.loads(dumps(selfish)) == {"me": "<cycle>"}
