from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest


class PatientClock:
    """Virtual time that jumps to the next deadline once every task has waited a while.

    ``orchestrate.testing.FakeClock(auto_advance=True)`` jumps after a single event-loop
    turn, which is too early for a hedge: the task woken by the hedge timer needs a few
    turns before it starts the backup call and registers the backup's latency. This clock
    gives every woken task ``idle_ticks`` turns before moving time again.
    """

    def __init__(self, start: float = 1_700_000_000.0, *, idle_ticks: int = 20) -> None:
        self._now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self.idle_ticks = idle_ticks

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._wake_due()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._timers, (self._now + seconds, next(self._seq), future))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        await future

    def _wake_due(self) -> None:
        while self._timers and self._timers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._timers)
            if not future.done():
                future.set_result(None)

    async def _drive(self) -> None:
        while True:
            for _ in range(self.idle_ticks):
                await asyncio.sleep(0)
            self._timers = [t for t in self._timers if not t[2].done()]
            heapq.heapify(self._timers)
            if not self._timers:
                return
            self._now = max(self._now, self._timers[0][0])
            self._wake_due()


@pytest.fixture
def clock() -> PatientClock:
    """Virtual time: every sleep returns as soon as its deadline is the next one due."""
    return PatientClock()
