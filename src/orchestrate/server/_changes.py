"""Waking the live streams when this process changes the store.

A decision made through the API, or a step, park or end of a run the embedded worker
drives, calls :meth:`Changes.notify`; every stream waiting in :meth:`Changes.wait`
reads the store at once instead of at its next poll. Changes made by other processes
(workers elsewhere, the CLI) are still found by polling: a wake-up only saves time, a
missed one costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from orchestrate.observe.observer import Observer


class Changes:
    """A broadcast: :meth:`notify` wakes every waiter of the current generation.

    A reader takes :meth:`next` *before* it reads the store and waits on it after an
    empty read, so that a change made between the two is not slept through.
    """

    def __init__(self) -> None:
        self._waiter: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    def next(self) -> asyncio.Event:
        """The event the next :meth:`notify` sets."""
        if self._waiter is None:
            self._waiter = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._thread = threading.get_ident()
        return self._waiter

    def notify(self) -> None:
        """Wake every waiter (callable from any thread)."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._thread:
            self._wake()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.set()

    async def wait(self, waiter: asyncio.Event, seconds: float) -> None:
        """Until ``waiter`` is set or ``seconds`` pass."""
        if waiter.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), seconds)


class ChangeObserver(Observer):
    """An engine observer that wakes the streams on every step, run and review event."""

    def __init__(self, changes: Changes) -> None:
        self._changes = changes

    def _any(self, **_kwargs: Any) -> None:
        self._changes.notify()

    step_started = step_attempt_failed = step_retried = step_fallback = _any
    step_succeeded = step_failed = run_created = run_resumed = run_parked = run_ended = _any
    review_created = review_decided = review_escalated = _any
