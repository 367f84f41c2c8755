"""Timing: how much work a measurement does, and how it is repeated and summarised.

A subject and its floor are timed in short rounds, their order shuffled in each round
(:func:`rounds`), so that a slow patch of the machine (another process, a page-cache
flush) hits both; each round gives one ratio (the subject's time over the floor's, both
taken within a fraction of a second), and a row reports the median of these per-round
ratios with their interquartile range and the number of rounds (:func:`summarise`).
A ratio of neighbours is steady where the quotient of two medians taken seconds apart
is not (a loaded machine speeds up and slows down between them). Timers are
:func:`time.perf_counter`.
"""

from __future__ import annotations

import gc
import inspect
import random
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
    rounds: int
    """Rounds of :func:`rounds` (each case once per round, in shuffled order)."""
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
            rounds=15,
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
            rounds=3,
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


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile of ``values`` (inclusive method)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def summarise(row: Row, subject: list[float], floor: list[float], *, per: int) -> Row:
    """Fill ``row`` from per-round seconds (per run, per floor call), divided by ``per``.

    ``subject[i]`` and ``floor[i]`` are taken in the same round: the row's ``ratio`` is
    the median of the per-round ratios ``subject[i] / floor[i]``, and ``extra`` holds
    their interquartile range (``ratio_q1``, ``ratio_q3``) and the number of rounds. The
    per-step figures are the medians of each side.
    """
    row.samples_us = [round(s / per * 1e6, 3) for s in subject]
    row.floor_samples_us = [round(s / per * 1e6, 3) for s in floor]
    row.per_step_us = round(statistics.median(subject) / per * 1e6, 3)
    row.floor_per_step_us = round(statistics.median(floor) / per * 1e6, 3)
    row.overhead_per_step_us = round(row.per_step_us - row.floor_per_step_us, 3)
    ratios = [s / f for s, f in zip(subject, floor, strict=True) if f > 0]
    if ratios:
        q1, median, q3 = quartiles(ratios)
        row.ratio = round(median, 3)
        row.extra.update(ratio_q1=round(q1, 3), ratio_q3=round(q3, 3), rounds=len(ratios))
    else:
        row.ratio = None
    row.repeats = len(subject)
    return row


def times_over(peer: Row, ours: Sequence[float]) -> dict[str, Any]:
    """How many times ``peer``'s overhead per step is ours, round by round.

    ``ours`` holds our overhead per step (µs) in each of ``peer``'s rounds (timed in the
    same round, beside the peer and the floor); the median of the per-round quotients and
    their interquartile range.
    """
    quotients = [
        (subject - floor) / mine
        for subject, floor, mine in zip(peer.samples_us, peer.floor_samples_us, ours, strict=True)
        if mine > 0
    ]
    if not quotients:
        return {}
    q1, median, q3 = quartiles(quotients)
    return {
        "ours_overhead_per_step_us": round(statistics.median(ours), 3),
        "times_ours": round(median, 2),
        "times_ours_q1": round(q1, 2),
        "times_ours_q3": round(q3, 2),
        "rounds": len(quotients),
    }


@dataclass
class Case:
    """One thing timed in :func:`rounds`: a call (sync or async), how many calls per round.

    ``fresh`` (optional, untimed) runs before each of the case's batches: for our engine,
    a new engine on a new ``InMemoryStore``, so that the heap (and the collector's work)
    is the same in every round.
    """

    name: str
    call: Callable[[], Any]
    runs: int
    fresh: Callable[[], Awaitable[None]] | None = None
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.call)


async def rounds(cases: Sequence[Case], *, rounds: int, warmup: int, seed: int = 14) -> dict[str, list[float]]:
    """Time every case once per round, in an order shuffled each round; seconds per call.

    A round is short (a fraction of a second per case): whatever slows the machine down
    for a while weighs on every case of the round alike, and per-round ratios cancel it.
    Sync calls are timed in a plain loop (no coroutine around them), async ones awaited.
    """
    order = list(cases)
    shuffle = random.Random(seed).shuffle
    for case in order:
        if case.fresh is not None:
            await case.fresh()
        for _ in range(warmup):
            result = case.call()
            if case.is_async:
                await result
    times: dict[str, list[float]] = {case.name: [] for case in order}
    for _ in range(rounds):
        shuffle(order)
        for case in order:
            if case.fresh is not None:
                await case.fresh()
            if case.is_async:
                times[case.name].append(await time_async_calls(case.call, case.runs))
            else:
                times[case.name].append(time_calls(case.call, case.runs))
    return times


class FreshEngine:
    """Our engine for :func:`rounds`: a new one on a new ``InMemoryStore`` before each batch."""

    def __init__(self, workflows: Sequence[Any], workflow: Any, value: Any) -> None:
        self.workflows = list(workflows)
        self.workflow = workflow
        self.value = value
        self.engine: Engine | None = None

    async def fresh(self) -> None:
        """Close the engine of the last batch, open a new one and run the workflow once."""
        await self.close()
        self.engine = Engine(InMemoryStore(), workflows=self.workflows)
        await self.engine.__aenter__()
        await self.engine.run(self.workflow, self.value)

    async def call(self) -> None:
        """One run of the workflow."""
        assert self.engine is not None
        await self.engine.run(self.workflow, self.value)

    async def close(self) -> None:
        """Close the current engine, if any."""
        if self.engine is not None:
            engine, self.engine = self.engine, None
            await engine.__aexit__(None, None, None)


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
