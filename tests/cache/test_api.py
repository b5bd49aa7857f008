"""The Osiris-compatible surface: derivation, entry fields, layout, argument checks."""

from __future__ import annotations

import hashlib
import inspect
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from opentelemetry.trace import NoOpTracerProvider

import mcp_otel
from mcp_otel.cache import DiscoveryCache


def _field(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw).to_bytes(8, "big") + raw


def _ids(conn: str, comp: str, samples: int, idem: str | None) -> tuple[str, str]:
    """The documented derivation (docs/cache.md), written out independently."""
    head = _field(conn) + _field(comp) + _field(format(samples, "x"))
    disc = "disc_" + hashlib.sha256(head).hexdigest()[:16]
    key = "cache_" + hashlib.sha256(head + _field(idem or "")).hexdigest()[:16]
    return disc, key


def _osiris_ids(conn: str, comp: str, samples: int, idem: str | None) -> tuple[str, str]:
    """Osiris' own derivation: the fields joined with ``|``."""
    base = f"{conn}|{comp}|{samples}"
    disc = "disc_" + hashlib.sha256(base.encode()).hexdigest()[:16]
    key = "cache_" + hashlib.sha256(f"{base}|{idem or ''}".encode()).hexdigest()[:16]
    return disc, key


def test_signatures_keep_osiris_positional_order() -> None:
    params = list(inspect.signature(DiscoveryCache).parameters)
    assert params[:2] == ["cache_dir", "default_ttl_hours"]
    # What mcp-otel adds is keyword-only, so Osiris' positional calls mean what they meant.
    extra = [inspect.signature(DiscoveryCache).parameters[p] for p in params[2:]]
    assert [p.name for p in extra] == ["tracer_provider", "meter_provider", "clock"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extra)
    assert extra[-1].default is time.time
    get = list(inspect.signature(DiscoveryCache.get).parameters)
    assert get == ["self", "connection", "component", "samples", "idempotency_key"]
    set_ = list(inspect.signature(DiscoveryCache.set).parameters)
    assert set_ == ["self", "connection", "component", "samples", "data", "idempotency_key", "ttl"]
    assert mcp_otel.DiscoveryCache is DiscoveryCache


async def test_entry_fields_ids_and_file(make_cache, cache_dir: Path) -> None:
    cache = make_cache()
    before = datetime.now(UTC)
    disc_id = await cache.set("pg-main", "mysql.extractor", 5, {"tables": ["a"]}, "idem-1")
    after = datetime.now(UTC)
    disc, key = _ids("pg-main", "mysql.extractor", 5, "idem-1")
    assert disc_id == disc
    entry = await cache.get("pg-main", "mysql.extractor", 5, "idem-1")
    assert entry is not None
    assert set(entry) == {
        "discovery_id", "cache_key", "connection_id", "component_id", "samples",
        "idempotency_key", "data", "created_at", "expires_at", "ttl_seconds",
    }  # fmt: skip
    assert (entry["discovery_id"], entry["cache_key"]) == (disc, key)
    assert entry["connection_id"] == "pg-main" and entry["component_id"] == "mysql.extractor"
    assert entry["samples"] == 5 and entry["idempotency_key"] == "idem-1"
    assert entry["data"] == {"tables": ["a"]} and entry["ttl_seconds"] == 24 * 3600
    created = datetime.fromisoformat(entry["created_at"])
    assert before <= created <= after and created.tzinfo is not None
    expires = datetime.fromisoformat(entry["expires_at"])
    assert expires - created == timedelta(hours=24)
    path = cache_dir / f"{disc}.json"
    assert orjson.loads(path.read_bytes()) == entry
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache_dir / ".mcp_otel").stat().st_mode) == 0o700
    # A different idempotency key shares the file name but is a different entry: a miss.
    assert await cache.get("pg-main", "mysql.extractor", 5, "other") is None
    assert await cache.get("pg-main", "mysql.extractor", 5) is None


async def test_custom_ttl_and_default_ttl_hours(cache_dir: Path) -> None:
    cache = DiscoveryCache(cache_dir, 2, tracer_provider=NoOpTracerProvider())
    await cache.set("c", "k", 0, {})
    assert (await cache.get("c", "k"))["ttl_seconds"] == 7200
    await cache.set("c", "k", 1, {}, None, timedelta(minutes=5))
    assert (await cache.get("c", "k", 1))["ttl_seconds"] == 300


async def test_bad_arguments_raise_clear_errors(make_cache) -> None:
    cache = make_cache()
    with pytest.raises(TypeError):
        await cache.get("c", "k", "0")
    with pytest.raises(TypeError):
        await cache.get("c", "k", True)
    with pytest.raises(TypeError):
        await cache.get(None, "k")
    with pytest.raises(TypeError):
        await cache.set("c", "k", 0, {}, 5)
    with pytest.raises(TypeError):
        await cache.set("c", "k", 0, {}, None, 30)
    with pytest.raises(ValueError):
        await cache.set("c", "k", 0, {}, None, timedelta(0))
    with pytest.raises(ValueError):
        DiscoveryCache(Path("/nonexistent-never-created"), 0)
    assert cache.get_cache_stats()["disk_files"] == 0


async def test_default_directory_is_under_mcp_otel_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MCP_OTEL_DIR", str(tmp_path / "data"))
    cache = DiscoveryCache(tracer_provider=NoOpTracerProvider())
    assert cache.cache_dir == tmp_path / "data" / "cache"
    await cache.set("c", "k", 0, {"x": 1})
    assert len(list((tmp_path / "data" / "cache").glob("disc_*.json"))) == 1


async def test_stats_uri_clear_and_invalidate(make_cache, cache_dir: Path) -> None:
    cache = make_cache()
    for comp in ("a", "b", "c"):
        await cache.set("conn-1", comp, 0, {"comp": comp})
    await cache.set("conn-2", "a", 0, {"comp": "a"})
    stats = cache.get_cache_stats()
    assert stats["memory_entries"] == 4 and stats["disk_files"] == 4
    assert stats["expired_entries"] == 0 and stats["cache_directory"] == str(cache_dir)
    assert stats["disk_size_bytes"] == sum(p.stat().st_size for p in cache_dir.glob("disc_*"))
    assert (
        cache.get_discovery_uri("disc_1", "tables") == "osiris://mcp/discovery/disc_1/tables.json"
    )

    other = make_cache()  # another process' view: it must see the invalidation too
    assert (await other.get("conn-1", "a"))["data"] == {"comp": "a"}
    assert await cache.invalidate_connection("conn-1") == 3
    assert await other.get("conn-1", "a") is None
    assert await cache.get("conn-1", "b") is None
    assert (await other.get("conn-2", "a"))["data"] == {"comp": "a"}
    assert await cache.invalidate_connection("conn-1") == 0

    assert await cache.clear_all() == 1
    assert await other.get("conn-2", "a") is None
    assert cache.get_cache_stats()["disk_files"] == 0
    assert cache.get_cache_stats()["memory_entries"] == 0
    # The bookkeeping directory survives clear_all.
    assert (cache_dir / ".mcp_otel" / "generations").stat().st_size == 4096 * 8


async def test_memory_tier_is_bounded(make_cache, monkeypatch, telemetry) -> None:
    monkeypatch.setenv("MCP_OTEL_CACHE_MAX_MEMORY_ENTRIES", "3")
    cache = make_cache()
    for i in range(5):
        await cache.set("c", f"k{i}", 0, {"i": i})
    assert cache.get_cache_stats()["memory_entries"] == 3
    assert telemetry.events()["memory_evicted"] == 2
    # Evicted from memory is not lost: disk still answers.
    assert (await cache.get("c", "k0"))["data"] == {"i": 0}
    assert telemetry.requests()[("hit", "disk")] == 1


async def test_data_is_stored_as_json_not_by_reference(make_cache) -> None:
    cache = make_cache()
    data = {"tables": ["a"], "when": datetime(2025, 1, 1, tzinfo=UTC), "raw": b"\x00\x01"}
    await cache.set("c", "k", 0, data)
    data["tables"].append("mutated-after-set")
    entry = await cache.get("c", "k")
    assert entry["data"]["tables"] == ["a"]
    # Non-JSON values take mcp_otel._json's documented form, in memory as on disk.
    assert datetime.fromisoformat(entry["data"]["when"]) == datetime(2025, 1, 1, tzinfo=UTC)
    assert not isinstance(entry["data"]["raw"], bytes)
    assert entry == await make_cache().get("c", "k")  # disk and memory agree


async def test_osiris_written_entry_is_read(make_cache, cache_dir: Path) -> None:
    """A file in Osiris' file format (indent=2) under the current ids is a valid entry."""
    disc, key = _ids("c", "k", 0, None)
    now = datetime.now(UTC)
    entry = {
        "discovery_id": disc, "cache_key": key, "connection_id": "c", "component_id": "k",
        "samples": 0, "idempotency_key": None, "data": {"v": 1},
        "created_at": now.isoformat(), "expires_at": (now + timedelta(hours=1)).isoformat(),
        "ttl_seconds": 3600,
    }  # fmt: skip
    cache_dir.mkdir(parents=True)
    (cache_dir / f"{disc}.json").write_bytes(orjson.dumps(entry, option=orjson.OPT_INDENT_2))
    assert await make_cache().get("c", "k") == entry
    assert sorted(os.listdir(cache_dir)) == [".mcp_otel", f"{disc}.json"]


async def test_fsync_can_be_turned_off_and_writes_stay_atomic(make_cache, monkeypatch) -> None:
    monkeypatch.setenv("MCP_OTEL_CACHE_FSYNC", "false")
    cache = make_cache()
    disc = await cache.set("c", "k", 0, {"v": 1})
    await cache.set("c", "k", 0, {"v": 2})
    assert (await make_cache().get("c", "k"))["data"] == {"v": 2}
    names = os.listdir(cache.cache_dir)
    assert sorted(names) == [".mcp_otel", f"{disc}.json"]
