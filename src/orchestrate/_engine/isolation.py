"""Where a sync step's call runs: on the loop, a thread of the engine's pool, or a process.

A sync step in the default mode runs on the event loop, without a thread hop, once its
function has shown itself quick (:class:`SyncPlacement`): its first call runs in a pool
thread and is timed there; if it returned within :data:`QUICK_SECONDS`, its next calls
run inline, each timed; one that holds the loop :data:`SLOW_SECONDS` or more, or three
that each take longer than the quick bound within a minute, send the function back to
the threads for the engine's life (``step_sync_threaded``): a quick call that the
machine merely preempted once does not. The loop is then held by a quick call at
a time, as by an async step's code between two awaits; heartbeats and other runs wait
for it no longer than that. A call that ran inline past its attempt's timeout is
recorded as timed out (its result discarded, as when a thread's call outlives it).

Threads cannot be stopped from outside: a sync step that times out in the default
thread mode keeps running in its thread until it returns (its result is discarded).
:class:`StepThreads` says so in the log and starts another thread in its place, so that
such calls cannot starve the steps that still run. Steps declared with
``isolation="process"`` run in a fresh process instead (:func:`call_in_process`); on
timeout the process is killed. The function and its arguments must be picklable (a
module-level function), and the result too.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import pickle
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from orchestrate.errors import IsolatedProcessError

_REPORT_MAX_SECONDS = 600.0
"""The longest interval between two reports of the same stuck thread."""

QUICK_SECONDS = 0.001
"""A sync call that returned within this time lets its function's next calls run inline."""

SLOW_SECONDS = 0.01
"""An inline call that held the loop this long sends its function back to the threads at once."""

_STRIKES = 3
"""Inline calls over the quick bound (and under :data:`SLOW_SECONDS`) that send a function back..."""

_STRIKE_WINDOW_SECONDS = 60.0
"""...when they fall within this time of each other."""

_BLOCKING_SECONDS = 0.1
"""An inline call that held the loop this long is reported as a warning, not at info level."""


class SyncPlacement:
    """Where the next call of a sync step function runs (default isolation), learned per function.

    A function is *quick* once a call of it, timed in its thread, returned within
    :data:`QUICK_SECONDS`; a quick function's calls run inline on the loop. An inline call
    that held the loop :data:`SLOW_SECONDS` or more, or the third over the quick bound
    within a minute, makes the function *slow* for good: its calls go to the threads
    again. A lone call a little over the bound is what a preempted process shows, not a
    slow function. No I/O and no clock of its own: the callers time the calls with
    :func:`time.perf_counter` and pass the times.
    """

    __slots__ = ("_quick", "_slow", "_strikes", "log")

    def __init__(self, *, log: Any) -> None:
        self.log = log
        self._quick: set[Any] = set()
        self._slow: set[Any] = set()
        self._strikes: dict[Any, tuple[int, float]] = {}

    def inline(self, fn: Any) -> bool:
        """Whether ``fn``'s next call runs on the loop."""
        return fn in self._quick

    def ran_in_thread(self, fn: Any, seconds: float) -> None:
        """A call of ``fn`` took ``seconds`` in its thread: quick enough to run inline next time?"""
        if seconds <= QUICK_SECONDS and fn not in self._slow:
            self._quick.add(fn)

    def ran_inline(self, fn: Any, seconds: float, about: dict[str, Any], *, now: float) -> None:
        """A call of ``fn`` ended at ``now`` after holding the loop ``seconds``: still quick?"""
        if seconds <= QUICK_SECONDS:
            return
        if seconds < SLOW_SECONDS:
            count, last = self._strikes.get(fn, (0, now))
            count = count + 1 if now - last <= _STRIKE_WINDOW_SECONDS else 1
            if count < _STRIKES:
                self._strikes[fn] = (count, now)
                return
        self._strikes.pop(fn, None)
        self._quick.discard(fn)
        self._slow.add(fn)
        report = self.log.warning if seconds >= _BLOCKING_SECONDS else self.log.info
        report(
            "step_sync_threaded",
            **about,
            held_loop_seconds=round(seconds, 6),
            message="this sync step held the event loop too long to run there; "
            "its calls run in the engine's threads from now on",
        )


class _Call:
    """One sync call handed to the pool, and what the pool knows about its thread."""

    __slots__ = ("about", "args", "fn", "future", "kwargs", "next_report", "owner", "started", "stuck", "thread")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        owner: tuple[str, str] | None,
        about: dict[str, Any] | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.owner = owner
        self.about = about or {}
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.thread = ""
        self.started = 0.0
        self.stuck = False
        self.next_report = 0.0


class StepThreads:
    """The engine's threads for sync steps, which replaces a thread that a call still holds
    after the engine stopped waiting for it.

    When the awaiting side gives up on a call (its attempt timed out, or its run was
    cancelled) while the call is still running, its thread is *stuck*: the pool logs a
    warning (``step_thread_stuck``: workflow, run, step, attempt, thread, how long it has
    run, how many threads are stuck), logs it again while it stays stuck (after as long
    again as it has run, at most every ten minutes), and counts it out of its capacity:
    for each stuck thread one more thread may start, so calls still awaited keep
    ``max_threads`` threads. A stuck thread whose call returns goes back to work, or
    ends if the pool has more threads than it may have by then (``step_thread_released``).

    Two bounds keep a hung dependency from taking threads without end:

    * one step (``owner``: workflow and step name) holds at most ``max_threads // 2``
      stuck threads (at least one); its next calls wait for one of them to return before
      they take a thread, under their own timeout, so they time out without starting
      and without taking capacity from any other step;
    * the pool grows by at most ``4 * max_threads`` threads in all; past that, stuck
      threads count against it again.

    At exit the process waits for the calls still running, stuck ones included, as
    :mod:`concurrent.futures` threads make it do (the threads are daemons only so that
    idle ones do not hold the exit up). Queued calls are cancelled by :meth:`close`; a
    closed pool takes no more calls.
    """

    def __init__(self, max_threads: int, *, log: Any, name: str = "orchestrate-step") -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads!r}")
        self.max_threads = max_threads
        self.per_step = max(1, max_threads // 2)
        self.max_extra = 4 * max_threads
        self.log = log
        self._name = name
        self._numbers = itertools.count()
        self._work: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        # Released by a worker each time it goes back to waiting: acquired without
        # blocking, it says a worker is free to take the call just queued (TPE's scheme).
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0
        self._workers: set[threading.Thread] = set()
        self._stuck: set[_Call] = set()
        self._stuck_of: dict[tuple[str, str], int] = {}
        # Calls of a step at its bound, waiting for one of its stuck threads to return.
        self._waiters: dict[tuple[str, str], list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}
        self._watch = threading.Condition(self._lock)
        self._watching = False
        self.closed = False
        self.placement = SyncPlacement(log=log)
        """Where the engine's sync steps of the default isolation run (learned per function)."""
        _POOLS.add(self)

    @property
    def stuck(self) -> int:
        """How many threads are running calls that nobody awaits any more."""
        return len(self._stuck)

    async def call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        owner: tuple[str, str] | None = None,
        about: dict[str, Any] | None = None,
    ) -> Any:
        """Call ``fn(*args, **kwargs)`` on a pool thread and return its result.

        Args:
            owner: the step the call belongs to (workflow, step name), whose stuck
                threads are bounded.
            about: fields naming the call in log lines (workflow, run_id, step, attempt).
        """
        if owner is not None and self._stuck_of.get(owner, 0) >= self.per_step:
            await self._admitted(owner, about)
        call = _Call(fn, args, kwargs, owner, about)
        self._submit(call)
        try:
            return await asyncio.wrap_future(call.future)
        except asyncio.CancelledError:
            self._abandon(call)
            raise

    def close(self) -> None:
        """Cancel the calls not started yet and let idle threads end; running calls go on."""
        with self._lock:
            self.closed = True
            self._watch.notify_all()
        while True:
            try:
                call = self._work.get_nowait()
            except queue.Empty:
                break
            if call is not None:
                call.future.cancel()
        self._work.put(None)  # each worker that meets it passes it on and ends

    # the pool side ---------------------------------------------------------------------------
    def _capacity(self) -> int:
        return self.max_threads + min(len(self._stuck), self.max_extra)

    def _submit(self, call: _Call) -> None:
        if self.closed:
            raise RuntimeError("the engine's step threads are closed")
        self._work.put(call)
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            if self._threads < self._capacity():
                self._start_thread()

    def _start_thread(self) -> None:
        """Start a worker (the lock held)."""
        self._threads += 1
        thread = threading.Thread(target=self._worker, name=f"{self._name}_{next(self._numbers)}", daemon=True)
        self._workers.add(thread)
        thread.start()

    def _worker(self) -> None:
        name = threading.current_thread().name
        while True:
            call = self._work.get()
            if call is None:
                self._work.put(None)
                with self._lock:
                    self._threads -= 1
                    self._workers.discard(threading.current_thread())
                return
            if call.future.set_running_or_notify_cancel():
                call.thread, call.started = name, time.monotonic()
                try:
                    result = call.fn(*call.args, **call.kwargs)
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side
                    call.future.set_exception(exc)
                else:
                    call.future.set_result(result)
                    del result
                # Read under the lock, after the result is set: ``_abandon`` decides under
                # it too, so a call is either stuck and released here, or never stuck.
                with self._lock:
                    stuck = call.stuck
                if stuck and self._released(call):
                    with self._lock:
                        self._workers.discard(threading.current_thread())
                    return
            del call  # hold no call's arguments while waiting for the next
            self._idle.release()

    def _released(self, call: _Call) -> bool:
        """Account a stuck call that returned; whether its thread should end."""
        with self._lock:
            self._stuck.discard(call)
            owner = call.owner
            if owner is not None:
                left = self._stuck_of.get(owner, 1) - 1
                if left:
                    self._stuck_of[owner] = left
                else:
                    self._stuck_of.pop(owner, None)
                for loop, waiter in self._waiters.pop(owner, ()):
                    try:
                        loop.call_soon_threadsafe(_wake, waiter)
                    except RuntimeError:  # that loop is closed: nobody waits there any more
                        pass
            leave = self._threads > self._capacity()
            if leave:
                self._threads -= 1
            stuck = len(self._stuck)
            if not stuck:
                self._watch.notify_all()  # the reporter ends
        self.log.info(
            "step_thread_released",
            **call.about,
            thread=call.thread,
            running_seconds=round(time.monotonic() - call.started, 3),
            stuck_threads=stuck,
        )
        return leave

    def _abandon(self, call: _Call) -> None:
        """The awaiting side gave up on ``call``: if it is still running, its thread is stuck."""
        future = call.future
        with self._lock:
            if not future.running():  # not started (cancelled from the queue) or finished
                return
            call.stuck = True
            self._stuck.add(call)
            if call.owner is not None:
                self._stuck_of[call.owner] = self._stuck_of.get(call.owner, 0) + 1
            # Calls may be queued behind the thread that just got stuck: replace it now.
            if not self.closed and not self._work.empty() and self._threads < self._capacity():
                self._start_thread()
            running = time.monotonic() - call.started
            call.next_report = call.started + 2 * max(running, 0.5)
            stuck = len(self._stuck)
            step_stuck = self._stuck_of.get(call.owner, 0) if call.owner is not None else None
            if not self._watching:
                self._watching = True
                threading.Thread(target=self._reporter, name=f"{self._name}-watch", daemon=True).start()
            else:
                self._watch.notify_all()
        self.log.warning(
            "step_thread_stuck",
            **call.about,
            thread=call.thread,
            running_seconds=round(running, 3),
            stuck_threads=stuck,
            step_stuck_threads=step_stuck,
            message="the engine stopped waiting for this sync call but its thread is still running "
            "(a thread cannot be stopped; use isolation='process' for code that must be)",
        )

    def _reporter(self) -> None:
        """Log each stuck thread again while it stays stuck; end when none is left."""
        with self._lock:
            while self._stuck and not self.closed:
                now = time.monotonic()
                due = [c for c in self._stuck if c.next_report <= now]
                for c in due:
                    running = now - c.started
                    c.next_report = now + min(max(running, 0.5), _REPORT_MAX_SECONDS)
                stuck = len(self._stuck)
                if due:
                    self._lock.release()
                    try:
                        for c in due:
                            self.log.warning(
                                "step_thread_stuck",
                                **c.about,
                                thread=c.thread,
                                running_seconds=round(now - c.started, 3),
                                stuck_threads=stuck,
                            )
                    finally:
                        self._lock.acquire()
                    continue
                self._watch.wait(min(c.next_report for c in self._stuck) - now)
            self._watching = False

    async def _admitted(self, owner: tuple[str, str], about: dict[str, Any] | None) -> None:
        """Wait until ``owner`` holds fewer stuck threads than its bound."""
        loop = asyncio.get_running_loop()
        reported = False
        while True:
            with self._lock:
                held = self._stuck_of.get(owner, 0)
                if held < self.per_step:
                    return
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.setdefault(owner, []).append((loop, waiter))
            if not reported:
                reported = True
                self.log.warning(
                    "step_threads_exhausted",
                    **(about or {}),
                    step_stuck_threads=held,
                    message="this step's calls wait for one of its stuck threads to return",
                )
            try:
                await waiter
            finally:
                with self._lock:
                    waiting = self._waiters.get(owner)
                    if waiting is not None and (loop, waiter) in waiting:
                        waiting.remove((loop, waiter))
                        if not waiting:
                            del self._waiters[owner]


_POOLS: weakref.WeakSet[StepThreads] = weakref.WeakSet()


@atexit.register
def _finish_at_exit() -> None:
    """Let the calls already running end before the process does."""
    for pool in list(_POOLS):
        pool.close()
        with pool._lock:
            workers = list(pool._workers)
        for thread in workers:
            thread.join()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _child(
    conn: multiprocessing.connection.Connection, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    try:
        result: tuple[bool, Any] = (True, fn(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - sent back to the parent
        result = (False, exc)
    try:
        conn.send(result)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        conn.send((False, IsolatedProcessError(f"result could not be sent back: {exc}")))
    finally:
        conn.close()


async def call_in_process(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``fn(*args, **kwargs)`` in a new process; kill it if the awaiting task is cancelled.

    No thread waits for the process: the loop watches its pipe and its exit, so any
    number of process steps may run at once, and one that never returns holds nothing
    once it is killed.
    """
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(child, fn, args, kwargs), daemon=True)
    try:
        process.start()
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        parent.close()
        raise IsolatedProcessError(
            f"cannot run {getattr(fn, '__qualname__', fn)!r} in a process: {exc}; "
            "process isolation needs a module-level function and picklable arguments"
        ) from exc
    finally:
        child.close()
    try:
        try:
            await _readable(parent, process.sentinel)
            if parent.poll():
                # The result is arriving: reading it may take a moment, not the loop's.
                ok, value = await asyncio.to_thread(_receive, parent)
            else:
                ok, value = False, _died()
        except BaseException:
            process.kill()
            raise
        finally:
            await _ended(process)
    finally:
        parent.close()
    if not ok:
        raise value
    return value


async def _readable(*handles: Any) -> None:
    """Wait until one of ``handles`` (connections or file descriptors) can be read."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fds = [h if isinstance(h, int) else h.fileno() for h in handles]
    watched: list[int] = []
    try:
        for fd in fds:
            loop.add_reader(fd, _wake, ready)
            watched.append(fd)
    except NotImplementedError:  # a loop without readers (Windows' proactor): a thread waits
        for fd in watched:
            loop.remove_reader(fd)
        await asyncio.to_thread(multiprocessing.connection.wait, list(handles))
        return
    try:
        await ready
    finally:
        for fd in watched:
            loop.remove_reader(fd)


async def _ended(process: multiprocessing.process.BaseProcess, grace_seconds: float = 5.0) -> None:
    """Wait until the process has exited and is reaped; kill it if it outlives ``grace_seconds``."""
    try:
        await asyncio.wait_for(_reaped(process), grace_seconds)
    except TimeoutError:
        process.kill()  # it sent its result, or died, but does not exit
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_reaped(process), grace_seconds)


async def _reaped(process: multiprocessing.process.BaseProcess) -> None:
    await _readable(process.sentinel)
    # An exiting process closes its pipes a moment before it can be reaped.
    while process.exitcode is None:
        await asyncio.sleep(0.001)


def _died() -> IsolatedProcessError:
    return IsolatedProcessError("the step's process died before returning a result")


def _receive(conn: multiprocessing.connection.Connection) -> tuple[bool, Any]:
    try:
        result: tuple[bool, Any] = conn.recv()
    except EOFError:
        return False, _died()
    return result
