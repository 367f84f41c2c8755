"""Timing: how much work a measurement does, and how it is repeated and summarised.

A subject and its floor are timed in alternation (floor, subject, floor, subject...)
so that a slow patch of the machine (another process, a page-cache flush) hits both;
the median of the repetitions is reported. Timers are :func:`time.perf_counter`.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrate import Engine
from orchestrate.store import InMemoryStore

STEPS = 10
"""Length of the chain every measurement runs."""


@dataclass(frozen=True)
class Plan:
    """How much work each measurement does (full run or ``--quick`` smoke)."""

    quick: bool
    repeats: int
    """Repetitions of each timed batch; the median is reported."""
    warmup_runs: int
    memory_runs: int
    """Runs per repetition for in-memory chains."""
    floor_calls: int
    """Plain-chain calls per repetition (the floor is fast: many calls for a stable time)."""
    thread_runs: int
    """Runs per repetition for sync steps in threads (slower than in-memory async)."""
    durable_runs: int
    """Runs per repetition on SQLite with ``synchronous=FULL`` (one fsync per commit)."""
    normal_runs: int
    """Runs per repetition on SQLite with ``synchronous=NORMAL``."""
    floor_commits: int
    """Bare ``INSERT`` + ``COMMIT`` per repetition (the durable floor)."""
    concurrent_runs: int
    """Runs started at once for the throughput measurement."""
    map_items: int
    map_runs: int
    peer_runs: int
    """Runs per repetition for in-memory peers."""
    peer_durable_runs: int
    """Runs per repetition for durable peers."""

    @classmethod
    def full(cls) -> Plan:
        return cls(
            quick=False,
            repeats=5,
            warmup_runs=200,
            memory_runs=2000,
            floor_calls=20000,
            thread_runs=500,
            durable_runs=40,
            normal_runs=300,
            floor_commits=300,
            concurrent_runs=100,
            map_items=1000,
            map_runs=10,
            peer_runs=300,
            peer_durable_runs=20,
        )

    @classmethod
    def smoke(cls) -> Plan:
        return cls(
            quick=True,
            repeats=2,
            warmup_runs=5,
            memory_runs=50,
            floor_calls=500,
            thread_runs=20,
            durable_runs=3,
            normal_runs=10,
            floor_commits=20,
            concurrent_runs=100,
            map_items=1000,
            map_runs=2,
            peer_runs=10,
            peer_durable_runs=2,
        )


@dataclass
class Row:
    """One measurement: a subject's time per step against its floor's.

    ``per_step_us`` is the subject's wall time per step (a run's time divided by its
    steps, a map's time divided by its items); ``floor_per_step_us`` is the floor's,
    measured in the same process; ``overhead_per_step_us`` their difference and
    ``ratio`` their quotient.
    """

    key: str
    group: str
    system: str
    label: str
    floor: str
    per_step_us: float | None = None
    floor_per_step_us: float | None = None
    overhead_per_step_us: float | None = None
    ratio: float | None = None
    runs: int = 0
    repeats: int = 0
    samples_us: list[float] = field(default_factory=list)
    floor_samples_us: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(row: Row, subject: list[float], floor: list[float], *, per: int) -> Row:
    """Fill ``row`` from per-repetition seconds (per run, per floor call), divided by ``per``."""
    row.samples_us = [round(s / per * 1e6, 3) for s in subject]
    row.floor_samples_us = [round(s / per * 1e6, 3) for s in floor]
    row.per_step_us = round(statistics.median(subject) / per * 1e6, 3)
    row.floor_per_step_us = round(statistics.median(floor) / per * 1e6, 3)
    row.overhead_per_step_us = round(row.per_step_us - row.floor_per_step_us, 3)
    row.ratio = round(row.per_step_us / row.floor_per_step_us, 3) if row.floor_per_step_us else None
    row.repeats = len(subject)
    return row


def skipped(key: str, group: str, system: str, label: str, reason: str) -> Row:
    """A row for a measurement that could not run (a peer not installed)."""
    return Row(key=key, group=group, system=system, label=label, floor="", skipped=reason)


def time_calls(fn: Callable[[], Any], n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls (after a garbage collection)."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


async def time_async_calls(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    """Seconds per awaited call of ``fn`` over ``n`` calls (after a garbage collection)."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - start) / n


def paired(
    subject: Callable[[], Any], floor: Callable[[], Any], *, runs: int, floor_runs: int, repeats: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Time ``floor`` and ``subject`` in alternation; seconds per call for each repetition."""
    for _ in range(warmup):
        subject()
    for _ in range(min(warmup, floor_runs)):
        floor()
    subject_s: list[float] = []
    floor_s: list[float] = []
    for _ in range(repeats):
        floor_s.append(time_calls(floor, floor_runs))
        subject_s.append(time_calls(subject, runs))
    return subject_s, floor_s


async def paired_async(
    subject: Callable[[], Awaitable[Any]],
    floor: Callable[[], Awaitable[Any]],
    *,
    runs: int,
    floor_runs: int,
    repeats: int,
    warmup: int,
) -> tuple[list[float], list[float]]:
    """Like :func:`paired` for coroutine functions."""
    for _ in range(warmup):
        await subject()
    for _ in range(min(warmup, floor_runs)):
        await floor()
    subject_s: list[float] = []
    floor_s: list[float] = []
    for _ in range(repeats):
        floor_s.append(await time_async_calls(floor, floor_runs))
        subject_s.append(await time_async_calls(subject, runs))
    return subject_s, floor_s


async def paired_fresh_engines(
    workflows: Sequence[Any],
    subject: Callable[[Engine], Awaitable[Any]],
    floor: Callable[[], Awaitable[Any]],
    *,
    runs: int,
    floor_runs: int,
    repeats: int,
    warmup: int,
) -> tuple[list[float], list[float]]:
    """Like :func:`paired_async`, with a fresh engine on a fresh ``InMemoryStore`` per repetition.

    An in-memory store keeps every run it was given; a fresh one per repetition keeps the
    heap, and so the garbage collector's work, the same for every repetition and for the
    floor timed beside it.
    """
    subject_s: list[float] = []
    floor_s: list[float] = []
    for _ in range(repeats):
        async with Engine(InMemoryStore(), workflows=workflows) as engine:

            async def once(engine: Engine = engine) -> None:
                await subject(engine)

            for _ in range(max(1, warmup // repeats)):
                await once()
                await floor()
            floor_s.append(await time_async_calls(floor, floor_runs))
            subject_s.append(await time_async_calls(once, runs))
    return subject_s, floor_s
