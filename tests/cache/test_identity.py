"""Cache identity: no request ever reads, or invalidates, another request's entry.

Osiris joined the key fields with ``|``, so ``("tenantA|db", "comp")`` and
``("tenantA", "db|comp")`` were one entry, and ``get`` never looked at what it read.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from mcp_otel.cache import _identity as identity_module

# Pairs of requests that were one entry under Osiris' ``|``-joined derivation.
COLLIDING = [
    (("tenantA|db", "comp", 0), ("tenantA", "db|comp", 0)),
    (("a", "b|1", 3), ("a|b", "1", 3)),
    (("", "|x", 0), ("|", "x", 0)),
]


def _osiris_ids(conn: str, comp: str, samples: int, idem: str | None = None) -> tuple[str, str]:
    base = f"{conn}|{comp}|{samples}"
    disc = "disc_" + hashlib.sha256(base.encode()).hexdigest()[:16]
    key = "cache_" + hashlib.sha256(f"{base}|{idem or ''}".encode()).hexdigest()[:16]
    return disc, key


def _entry_files(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.glob("disc_*.json"))


@pytest.mark.parametrize("first,second", COLLIDING, ids=["conn-comp", "comp-samples", "empty"])
async def test_requests_that_osiris_merged_are_separate_entries(
    first, second, make_cache, cache_dir
) -> None:
    assert _osiris_ids(*first) == _osiris_ids(*second)  # the case is real
    cache = make_cache()
    await cache.set(*first, {"owner": "first"})
    # From memory (the same object) and from disk (a fresh cache on the same directory).
    assert await cache.get(*second) is None
    assert await make_cache().get(*second) is None

    await cache.set(*second, {"owner": "second"})
    assert len(_entry_files(cache_dir)) == 2
    for tier in (cache, make_cache()):
        got_first, got_second = await tier.get(*first), await tier.get(*second)
        assert got_first["data"] == {"owner": "first"}
        assert (got_first["connection_id"], got_first["component_id"]) == first[:2]
        assert got_second["data"] == {"owner": "second"}
        assert (got_second["connection_id"], got_second["component_id"]) == second[:2]


def _collide_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request hashes alike: a 64-bit collision of the truncated ids, made certain."""
    monkeypatch.setattr(identity_module, "_digests", lambda *_: ("0" * 16, "1" * 16))


async def test_get_checks_the_stored_identity_in_both_tiers(
    make_cache, cache_dir, telemetry, monkeypatch
) -> None:
    _collide_everything(monkeypatch)
    cache = make_cache()
    disc = await cache.set("tenantA", "tables", 0, {"secret": "A"})
    assert disc == "disc_" + "0" * 16

    # Memory holds tenantA's record under the shared cache_key; disk holds its file.
    assert await cache.get("tenantB", "tables") is None
    assert telemetry.events()["identity_mismatch"] == 2  # memory, then disk
    span = telemetry.finished("cache.get")[-1]
    assert span.attributes["cache.hit"] is False
    mismatches = [e for e in span.events if e.name == "cache.identity_mismatch"]
    assert [e.attributes["mcp_otel.cache.tier"] for e in mismatches] == ["memory", "disk"]

    fresh = make_cache()  # disk only
    assert await fresh.get("tenantB", "tables") is None
    assert telemetry.events()["identity_mismatch"] == 3
    # The owner still gets its entry, from both tiers; nothing was removed.
    assert (await cache.get("tenantA", "tables"))["data"] == {"secret": "A"}
    assert (await fresh.get("tenantA", "tables"))["data"] == {"secret": "A"}
    assert _entry_files(cache_dir) == [f"{disc}.json"]

    # Same connection and component, other samples or idempotency key: still not served.
    assert await fresh.get("tenantA", "tables", 1) is None
    assert await fresh.get("tenantA", "tables", 0, "idem") is None


async def test_an_entry_whose_fields_name_another_request_is_a_miss(
    make_cache, cache_dir, telemetry
) -> None:
    """A file at the right name holding another request's entry (copied, edited)."""
    cache = make_cache()
    mine = await cache.set("tenantB", "tables", 0, {"v": "B"})
    theirs = await cache.set("tenantA", "tables", 0, {"secret": "A"})
    foreign = orjson.loads((cache_dir / f"{theirs}.json").read_bytes())
    mine_entry = orjson.loads((cache_dir / f"{mine}.json").read_bytes())
    # Everything the file-level checks look at is right; only the identity is tenantA's.
    foreign["discovery_id"], foreign["cache_key"] = mine, mine_entry["cache_key"]
    (cache_dir / f"{mine}.json").write_bytes(orjson.dumps(foreign))

    assert await make_cache().get("tenantB", "tables") is None
    assert telemetry.events()["identity_mismatch"] == 1
    assert telemetry.events()["corrupt_removed"] == 0


async def test_invalidate_removes_exactly_one_connection(make_cache, cache_dir) -> None:
    names = ["a", "ab", "a|b", "a|", "|a", "", "b", "tenantA", "tenantA|db"]
    # With these, ("a", "b|x") / ("a|b", "x") and ("tenantA", "db|comp") /
    # ("tenantA|db", "comp") were one entry each under Osiris' derivation.
    comps = ("x", "b|x", "comp", "db|comp")
    assert _osiris_ids("a", "b|x", 0) == _osiris_ids("a|b", "x", 0)
    cache = make_cache()
    for name in names:
        for comp in comps:
            await cache.set(name, comp, 0, {"conn": name, "comp": comp})
    await cache.set("tenantA", "db|comp", 1, {"conn": "tenantA", "comp": "db|comp"})
    assert len(_entry_files(cache_dir)) == len(comps) * len(names) + 1
    other = make_cache()
    for name in names:  # another process' memory tier holds entries too
        assert (await other.get(name, "x"))["data"]["conn"] == name

    removed = {}
    for name in ("a", "tenantA", ""):
        removed[name] = await cache.invalidate_connection(name)
        for tier in (cache, other, make_cache()):
            for comp in comps:
                assert await tier.get(name, comp) is None
    assert removed == {"a": 4, "tenantA": 5, "": 4}

    for name in set(names) - set(removed):
        for tier in (cache, other, make_cache()):
            for comp in comps:
                entry = await tier.get(name, comp)
                assert entry is not None, (name, comp)
                assert entry["data"] == {"conn": name, "comp": comp}
    assert len(_entry_files(cache_dir)) == len(comps) * (len(names) - 3)


async def test_invalidate_tells_a_lone_surrogate_from_its_escaped_text(make_cache) -> None:
    """``"bad\\ud800"`` is stored as the text ``bad\\ud800``, which is also a name."""
    real, text = "bad\ud800", "bad\\ud800"
    cache = make_cache()
    for conn in (real, text):
        await cache.set(conn, "plain", 0, {"conn": conn == real})
        await cache.set(conn, "c\udc00", 0, {"conn": conn == real})
        await cache.set(conn, "c\\udc00", 0, {"conn": conn == real})
    fresh = make_cache()
    for conn in (real, text):
        for comp in ("plain", "c\udc00", "c\\udc00"):
            assert (await fresh.get(conn, comp))["data"] == {"conn": conn == real}

    assert await cache.invalidate_connection(text) == 3
    assert await cache.invalidate_connection(text) == 0
    for comp in ("plain", "c\udc00", "c\\udc00"):
        assert await make_cache().get(text, comp) is None
        assert (await make_cache().get(real, comp))["data"] == {"conn": True}
    assert await cache.invalidate_connection(real) == 3
    assert cache.get_cache_stats()["disk_files"] == 0


def _write_osiris_entry(cache_dir: Path, conn: str, comp: str, samples: int, ttl_s: int) -> str:
    """An entry as Osiris (or mcp-otel before the key change) wrote it."""
    disc, key = _osiris_ids(conn, comp, samples)
    now = datetime.now(UTC)
    entry = {
        "discovery_id": disc, "cache_key": key, "connection_id": conn, "component_id": comp,
        "samples": samples, "idempotency_key": None, "data": {"old": True},
        "created_at": now.isoformat(), "expires_at": (now + timedelta(seconds=ttl_s)).isoformat(),
        "ttl_seconds": ttl_s,
    }  # fmt: skip
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / f"{disc}.json").write_bytes(orjson.dumps(entry, option=orjson.OPT_INDENT_2))
    return disc


async def test_entries_of_the_old_key_format_are_misses_then_removed(
    make_cache, cache_dir, telemetry
) -> None:
    old = _write_osiris_entry(cache_dir, "tenantA|db", "comp", 0, 3600)
    old_other = _write_osiris_entry(cache_dir, "pg", "tables", 0, 3600)
    cache = make_cache()
    current = await cache.set("kept", "k", 2**80, {"new": True}, "idem\ud801")
    surrogates = await cache.set("bad\ud800", "c\udc00", 0, {"new": True}, "i\\ud801")
    for request in (("tenantA|db", "comp"), ("tenantA", "db|comp"), ("pg", "tables")):
        assert await cache.get(*request) is None
    assert set(_entry_files(cache_dir)) == {
        f"{old}.json", f"{old_other}.json", f"{current}.json", f"{surrogates}.json"
    }

    # clear_expired removes what no request can read, and keeps every current entry.
    assert await cache.invalidate_connection("pg") == 1  # an old entry still belongs to it
    assert await cache.clear_expired() == 1
    assert set(_entry_files(cache_dir)) == {f"{current}.json", f"{surrogates}.json"}
    assert telemetry.events()["identity_mismatch"] == 1
    span = telemetry.finished("cache.clear_expired")[-1]
    reasons = [e.attributes.get("reason") for e in span.events if e.name == "cache.disk_evicted"]
    assert reasons == ["identity_mismatch"]
    fresh = make_cache()
    assert (await fresh.get("kept", "k", 2**80, "idem\ud801"))["data"] == {"new": True}
    assert (await fresh.get("bad\ud800", "c\udc00", 0, "i\\ud801"))["data"] == {"new": True}
    assert sorted(os.listdir(cache_dir)) == sorted(
        [".mcp_otel", f"{current}.json", f"{surrogates}.json"]
    )


async def test_no_idempotency_key_and_an_empty_one_are_the_same_request(make_cache) -> None:
    """As in Osiris (``idempotency_key or ''``)."""
    cache = make_cache()
    await cache.set("c", "k", 0, {"v": 1}, "")
    assert (await cache.get("c", "k"))["data"] == {"v": 1}
    assert (await make_cache().get("c", "k", 0, None))["data"] == {"v": 1}
    await cache.set("c", "k", 0, {"v": 2})
    assert (await make_cache().get("c", "k", 0, ""))["data"] == {"v": 2}
