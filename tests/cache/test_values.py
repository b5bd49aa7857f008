"""Any value the cache is handed: stored with the documented safe form, names cut to their
cap in the entry; the argument contract (types, positive TTL) raises a clear error.
Issue 12, items 2 and 3."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from mcp_otel.cache import DiscoveryCache
from tests._odd_values import (
    HUGE,
    HUGE_TEXT,
    ODD_VALUES,
    BadStr,
    NoEquality,
    Unprintable,
)

Make = Callable[..., DiscoveryCache]


async def test_data_with_a_huge_int_is_stored_and_read_back(make_cache: Make) -> None:
    """``set`` raised ``TypeError: string indices must be integers`` (the entry had become
    the text ``"<dict object at 0x...>"``)."""
    cache = make_cache()
    disc = await cache.set("c", "comp", 0, {"n": HUGE, "ok": [1, 2]})
    for reader in (cache, make_cache()):  # memory tier, then another cache's disk read
        entry = await reader.get("c", "comp", 0)
        assert entry is not None and entry["discovery_id"] == disc
        assert entry["data"] == {"n": HUGE_TEXT, "ok": [1, 2]}


@pytest.mark.parametrize("name", ODD_VALUES, ids=list(ODD_VALUES))
async def test_any_data_value_is_stored(name: str, make_cache: Make) -> None:
    cache = make_cache()
    await cache.set("c", "comp", 0, {"v": ODD_VALUES[name], "k": 1})
    entry = await make_cache().get("c", "comp", 0)
    assert entry is not None and entry["data"]["k"] == 1
    orjson.dumps(entry)  # plain JSON


async def test_huge_samples_are_a_distinct_key(make_cache: Make) -> None:
    """``str(samples)`` in the key derivation raised ``ValueError``."""
    cache = make_cache()
    a = await cache.set("c", "comp", HUGE, {"v": "a"})
    b = await cache.set("c", "comp", HUGE + 1, {"v": "b"})
    c = await cache.set("c", "comp", 5, {"v": "c"})
    assert len({a, b, c}) == 3
    other = make_cache()
    assert (await other.get("c", "comp", HUGE))["data"] == {"v": "a"}  # type: ignore[index]
    assert (await other.get("c", "comp", HUGE + 1))["data"] == {"v": "b"}  # type: ignore[index]
    assert (await other.get("c", "comp", HUGE))["samples"] == HUGE_TEXT  # type: ignore[index]


async def test_str_subclasses_with_raising_methods_are_used_as_their_text(
        make_cache: Make) -> None:
    """A subclass's ``__hash__``/``__format__``/``encode`` raised from the key lookup."""
    cache = make_cache()
    disc = await cache.set(BadStr("conn"), BadStr("comp"), 0, {"v": 1}, BadStr("idem"))
    assert disc == await cache.set("conn", "comp", 0, {"v": 1}, "idem")
    entry = await make_cache().get(BadStr("conn"), BadStr("comp"), 0, BadStr("idem"))
    assert entry is not None and entry["connection_id"] == "conn"
    assert await cache.invalidate_connection(BadStr("conn")) == 1


async def test_a_ttl_beyond_the_year_9999_never_expires(make_cache: Make) -> None:
    """``now + timedelta.max`` raised ``OverflowError``."""
    cache = make_cache()
    await cache.set("c", "comp", 0, {"v": 1}, ttl=timedelta.max)
    entry = await make_cache().get("c", "comp", 0)
    assert entry is not None and entry["expires_at"].startswith("9999-12-31T23:59:59")


@pytest.mark.parametrize("hours", [math.inf, 10**12], ids=["inf", "beyond-timedelta"])
def test_a_default_ttl_too_large_is_a_clear_error(hours: float, cache_dir: Path) -> None:
    """Argument contract: it raised ``OverflowError`` from ``timedelta``."""
    with pytest.raises(ValueError, match="default_ttl_hours is too large"):
        DiscoveryCache(cache_dir, default_ttl_hours=hours)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ((1, "comp", 0, None), "connection and component must be str"),
        (("c", ["comp"], 0, None), "connection and component must be str"),
        (("c", "comp", 0, 3), "idempotency_key must be str or None"),
        (("c", "comp", 1.0, None), "samples must be an int"),
        (("c", "comp", True, None), "samples must be an int"),
    ],
    ids=["int-connection", "list-component", "int-idempotency", "float-samples", "bool"],
)
async def test_the_argument_contract_stays_a_clear_type_error(
        key: tuple[Any, Any, Any, Any], message: str, make_cache: Make) -> None:
    conn, comp, samples, idem = key
    cache = make_cache()
    with pytest.raises(TypeError, match=message):
        await cache.set(conn, comp, samples, {"v": 1}, idem)
    with pytest.raises(TypeError, match=message):
        await cache.get(conn, comp, samples, idem)


def test_get_discovery_uri_never_raises(make_cache: Make) -> None:
    cache = make_cache()
    assert cache.get_discovery_uri(HUGE, Unprintable()) == (
        f"osiris://mcp/discovery/{HUGE_TEXT}/<unrepresentable Unprintable>.json")
    assert cache.get_discovery_uri(NoEquality(), "schema") == (
        "osiris://mcp/discovery/<unrepresentable NoEquality>/schema.json")


async def test_samples_key_does_not_depend_on_the_interpreter_digit_limit(
        make_cache: Make) -> None:
    """A host that lowers ``sys.set_int_max_str_digits`` derives the same key as any other
    process (a 1,001-digit ``samples``: under our bit cap, over the host's digit limit)."""
    samples = -(10**1000 + 12345)
    disc = await make_cache().set("c", "comp", samples, {"v": 1})
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        entry = await make_cache().get("c", "comp", samples)
    finally:
        sys.set_int_max_str_digits(previous)
    assert entry is not None and entry["discovery_id"] == disc
