"""An entry seen corrupt or unreadable but replaced by a fresh ``set`` before its reap is a
hit, not a miss, and nothing is reported removed (like an expired one, see
test_expired_replaced.py).

The interleaving is forced, not hoped for: the reading cache's ``_reap`` is wrapped so that
another cache on the same directory (a separate memory tier, like another process) writes a
fresh entry of the same key after the reader found the file corrupt or unreadable and
before the reap takes the stripe lock and re-reads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from mcp_otel.cache import DiscoveryCache

from .test_expired_replaced import _set_before_first_reap

if TYPE_CHECKING:
    from tests.cache.conftest import Telemetry


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("not-json", id="corrupt-not-json"),  # _parse raises _Corrupt
        pytest.param("other-id", id="corrupt-entry-of-another-file"),  # _Corrupt as well
        pytest.param("symlink", id="unreadable-symlink"),  # O_NOFOLLOW: OSError
        pytest.param("fifo", id="unreadable-fifo"),  # not a regular file: OSError
    ],
)
async def test_corrupt_entry_replaced_before_its_reap_is_served_fresh(
    damage: str,
    make_cache: Callable[..., DiscoveryCache],
    cache_dir: Path,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    old_writer, fresh_writer = make_cache(), make_cache()
    disc = await old_writer.set("conn", "comp", 0, {"v": "old"})
    path = cache_dir / f"{disc}.json"
    good = path.read_bytes()
    if damage == "not-json":
        path.write_bytes(b"\x00\xffnot json")
    elif damage == "other-id":
        path.write_bytes(
            orjson.dumps({**orjson.loads(good), "discovery_id": "disc_0000000000000000"})
        )
    elif damage == "symlink":
        outside = tmp_path / "outside.json"
        outside.write_bytes(good)
        path.unlink()
        path.symlink_to(outside)
    else:
        path.unlink()
        os.mkfifo(path, 0o600)
    reader = make_cache()  # a process without the entry in memory: it reads the disk
    landed = _set_before_first_reap(monkeypatch, reader, fresh_writer)
    requests_before = telemetry.requests()
    events_before = telemetry.events()

    entry = await reader.get("conn", "comp")

    assert landed == [disc]  # the racing set did happen between the bad read and the reap
    assert entry is not None and entry["data"] == {"v": "fresh"}
    requests = telemetry.requests()
    assert requests.get(("miss", "none"), 0) == requests_before.get(("miss", "none"), 0)
    assert requests[("hit", "disk")] == requests_before.get(("hit", "disk"), 0) + 1
    span = telemetry.finished("cache.get")[-1]
    assert span.attributes["cache.hit"] is True
    assert span.attributes["mcp_otel.cache.tier"] == "disk"
    # The fresh file was not removed, so no corrupt removal or eviction is reported.
    assert [e.name for e in span.events] == []
    delta = {k: v - events_before[k] for k, v in telemetry.events().items()}
    assert delta["corrupt_removed"] == 0
    assert delta["disk_evicted"] == 0
    # The fresh entry is still on disk (a regular file), and the reader now holds it.
    assert not path.is_symlink()
    assert orjson.loads(path.read_bytes())["data"] == {"v": "fresh"}
    assert (await reader.get("conn", "comp"))["data"] == {"v": "fresh"}
    assert telemetry.finished("cache.get")[-1].attributes["mcp_otel.cache.tier"] == "memory"
