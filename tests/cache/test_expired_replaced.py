"""An entry seen expired but replaced by a fresh ``set`` before its reap is a hit, not a miss.

The interleaving is forced, not hoped for: the reading cache's ``_reap`` is wrapped so that
another cache on the same directory (a separate memory tier, like another process) writes a
fresh entry of the same key after the reader decided the entry had expired and before the
reap takes the stripe lock and re-reads the file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from mcp_otel.cache import DiscoveryCache

if TYPE_CHECKING:
    from tests.cache._clock import Clock
    from tests.cache.conftest import Telemetry


def _set_before_first_reap(
    monkeypatch: pytest.MonkeyPatch, reader: DiscoveryCache, writer: DiscoveryCache
) -> list[str]:
    """Make ``writer`` store ``{"v": "fresh"}`` just before ``reader``'s first reap."""
    landed: list[str] = []
    real_reap = reader._reap

    def reap(key: Any, span: Any) -> int:
        if not landed:
            # The reap runs in a worker thread (no event loop there): run the set to the end.
            landed.append(asyncio.run(writer.set("conn", "comp", 0, {"v": "fresh"})))
        return real_reap(key, span)

    monkeypatch.setattr(reader, "_reap", reap)
    return landed


def _expiry(cache_dir: Path, disc: str) -> float:
    entry = orjson.loads((cache_dir / f"{disc}.json").read_bytes())
    return datetime.fromisoformat(entry["expires_at"]).timestamp()


@pytest.mark.parametrize("tier", ["disk", "memory"])
async def test_expired_entry_replaced_before_its_reap_is_served_fresh(
    tier: str,
    make_cache: Callable[..., DiscoveryCache],
    cache_dir: Path,
    telemetry: Telemetry,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old_writer, fresh_writer = make_cache(clock=clock), make_cache(clock=clock)
    disc = await old_writer.set("conn", "comp", 0, {"v": "old"}, None, timedelta(seconds=30))
    reader = make_cache(clock=clock)
    if tier == "memory":
        assert (await reader.get("conn", "comp"))["data"] == {"v": "old"}  # now in memory
    clock.move_to(_expiry(cache_dir, disc))  # the old entry has just expired
    landed = _set_before_first_reap(monkeypatch, reader, fresh_writer)
    requests_before = telemetry.requests()
    events_before = telemetry.events()

    entry = await reader.get("conn", "comp")

    assert landed == [disc]  # the racing set did happen between expiry check and reap
    assert entry is not None and entry["data"] == {"v": "fresh"}
    requests = telemetry.requests()
    assert requests[("miss", "none")] == requests_before[("miss", "none")]
    assert requests[("hit", "disk")] == requests_before[("hit", "disk")] + 1
    span = telemetry.finished("cache.get")[-1]
    assert span.attributes["cache.hit"] is True
    assert span.attributes["mcp_otel.cache.tier"] == "disk"
    # Nothing was removed from disk, so no disk-tier expiry or eviction is reported; only
    # the reader's own expired memory copy (when it had one) was dropped.
    events = [(e.name, dict(e.attributes)) for e in span.events]
    if tier == "memory":
        assert [name for name, _ in events] == ["cache.expired", "cache.memory_evicted"]
        assert events[0][1]["mcp_otel.cache.tier"] == "memory"
    else:
        assert events == []
    delta = {k: v - events_before[k] for k, v in telemetry.events().items()}
    assert delta["disk_evicted"] == 0
    assert delta["expired"] == (1 if tier == "memory" else 0)
    # The fresh entry is still on disk, and the reader now holds it in memory.
    assert orjson.loads((cache_dir / f"{disc}.json").read_bytes())["data"] == {"v": "fresh"}
    assert (await reader.get("conn", "comp"))["data"] == {"v": "fresh"}
    assert telemetry.finished("cache.get")[-1].attributes["mcp_otel.cache.tier"] == "memory"
