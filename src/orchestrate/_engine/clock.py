"""Clocks: wall time for durable timestamps, and a sleep the engine can await."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Time as the engine sees it; :class:`orchestrate.testing.FakeClock` replaces it in tests."""

    def now(self) -> float:
        """POSIX seconds, persisted in the store (timers, leases, timestamps)."""

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """``time.time()``."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(max(seconds, 0.0))
