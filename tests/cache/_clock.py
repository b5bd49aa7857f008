"""Test clocks for ``DiscoveryCache(clock=...)``."""

from __future__ import annotations

import time


class Clock:
    """A settable clock for ``DiscoveryCache(clock=...)``: it stands still until a test
    moves it, so an entry is live until the test says its TTL has passed, however slowly a
    loaded machine runs the code in between, and expires without any wait."""

    def __init__(self) -> None:
        self.now = time.time()  # a realistic start: entries carry real-looking dates

    def __call__(self) -> float:
        return self.now

    def move_to(self, timestamp: float) -> None:
        self.now = timestamp

    def advance(self, seconds: float) -> None:
        self.now += seconds
