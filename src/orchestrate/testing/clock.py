"""``FakeClock``: time that moves only when a test says so.

The engine reads time through the :class:`~orchestrate.Clock` protocol; hand it a
``FakeClock`` and retry backoffs, timers, leases and deadlines become instant and
deterministic::

    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(30))
    await clock.wait_for_sleepers(1)
    clock.advance(30)          # the sleeper is due: it wakes
    await task

With ``auto_advance=True`` every ``sleep`` jumps the clock to the earliest pending
deadline as soon as the other ready tasks had their turn, so code that sleeps through
timers (``Engine.settle``, a retry backoff) runs to the end without a test driving it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

DEFAULT_START = 1_700_000_000.0
"""Where a ``FakeClock`` starts: 2023-11-14T22:13:20Z, a plausible POSIX time."""

_SETTLE_YIELDS = 10  # event-loop turns given to woken tasks by the async helpers


class FakeClock:
    """A manually driven clock implementing :class:`~orchestrate.Clock`.

    Sleepers wake when the clock is moved to or past their deadline, in deadline order
    (sleepers with the same deadline wake in the order they went to sleep). Moving the
    clock wakes them but does not run them: they run at the test's next ``await``.

    Args:
        start: the initial time, POSIX seconds.
        auto_advance: jump to the next deadline whenever a sleeper would otherwise wait
            (see the module docstring).
    """

    def __init__(self, start: float = DEFAULT_START, *, auto_advance: bool = False) -> None:
        self._now = float(start)
        self._auto_advance = auto_advance
        # (deadline, sequence, future): the sequence keeps equal deadlines in FIFO order.
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()
        self._watchers: list[asyncio.Future[None]] = []

    # the Clock protocol -------------------------------------------------------------------
    def now(self) -> float:
        """The current fake time, POSIX seconds."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been moved ``seconds`` past the current time.

        A zero or negative duration only yields to the event loop once, like
        ``asyncio.sleep(0)``.
        """
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._sequence), future))
        self._notify_watchers()
        try:
            while self._auto_advance and not future.done():
                # Let every other ready task run (and register its own sleep) first, so
                # that the jump goes to the earliest deadline, not to this one.
                await asyncio.sleep(0)
                if not future.done():
                    self._advance_to_earliest()
            await future
        finally:
            # A cancelled sleeper stays in the heap as a done future; drop it eagerly so
            # that ``sleepers`` and ``next_deadline`` stay truthful.
            if not future.done():
                future.cancel()
            self._discard_done()

    # driving time -------------------------------------------------------------------------
    @property
    def sleepers(self) -> int:
        """How many sleepers are waiting for the clock to move."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline of a waiting sleeper, or ``None`` when nobody sleeps."""
        self._discard_done()
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every sleeper that became due, in deadline order.

        Args:
            seconds: how far to move; must not be negative.

        Raises:
            ValueError: ``seconds`` is negative (use :meth:`set` to move time back).
        """
        if seconds < 0:
            raise ValueError(f"FakeClock.advance needs seconds >= 0, got {seconds!r}")
        self.set(self._now + seconds)

    def set(self, when: float) -> None:
        """Set the clock to ``when``; moving forward wakes the sleepers that became due.

        Moving backwards is allowed (wall clocks do jump back) and wakes nobody; sleepers
        keep their absolute deadlines.
        """
        self._now = float(when)
        self._wake_due()

    async def advance_to_next(self) -> bool:
        """Jump to the earliest sleeper's deadline, wake it, and let woken tasks run.

        Returns:
            ``True`` if a sleeper was woken, ``False`` if nobody was sleeping.
        """
        if not self._advance_to_earliest():
            return False
        await _settle()
        return True

    async def advance_stepwise(self, seconds: float) -> None:
        """Move forward ``seconds`` one deadline at a time, letting woken tasks run at each.

        Unlike :meth:`advance`, a loop that sleeps repeatedly (a heartbeat, a poller)
        gets one turn per deadline it passes, as it would in real time.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"FakeClock.advance_stepwise needs seconds >= 0, got {seconds!r}")
        target = self._now + seconds
        while (deadline := self.next_deadline) is not None and deadline <= target:
            self.set(max(deadline, self._now))  # never backwards
            await _settle()
        self.set(target)
        await _settle()

    async def wait_for_sleepers(self, count: int = 1) -> None:
        """Wait until at least ``count`` sleepers wait on this clock.

        Use it before :meth:`advance` so that a task started with ``create_task`` has
        reached its ``sleep`` (otherwise it would register after the clock moved).
        """
        while self.sleepers < count:
            watcher: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._watchers.append(watcher)
            try:
                await watcher
            finally:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)

    # internals ----------------------------------------------------------------------------
    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def _advance_to_earliest(self) -> bool:
        deadline = self.next_deadline
        if deadline is None:
            return False
        self.set(max(deadline, self._now))  # never backwards
        return True

    def _discard_done(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _notify_watchers(self) -> None:
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            if not watcher.done():
                watcher.set_result(None)


async def _settle() -> None:
    # Woken sleepers resume on the loop's next turns; give them a few so that they run
    # up to their next await. Work that waits on threads or sockets may need more.
    for _ in range(_SETTLE_YIELDS):
        await asyncio.sleep(0)
