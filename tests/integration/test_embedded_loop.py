"""An engine embedded in an application's event loop: it lets the loop's other tasks run
while it drives runs one after another, and keeps nothing of a run once it has ended."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrate import Engine, RunContext, workflow
from orchestrate.store import open_store
from tests.postgres import in_schema

contexts: list[weakref.ref[RunContext]] = []


async def inc(x: int) -> int:
    return x + 1


@workflow(name="short_run")
async def short_run(ctx: RunContext, x: int) -> int:
    """Three steps that never suspend: on SQLite the engine never waits for anything."""
    contexts.append(weakref.ref(ctx))
    for _ in range(3):
        x = await ctx.step(inc, x)
    return x


def _pg_url() -> Iterator[str]:
    """A fresh schema in the test database."""
    yield from in_schema()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'loop.db'}"
    else:
        yield from _pg_url()


def _traced_elsewhere() -> int:
    """Bytes traced outside this file (which keeps a weak reference per run)."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, __file__)])
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def _runs_leave_nothing_behind(url: str, runs: int) -> None:
    contexts.clear()
    async with Engine(open_store(url), workflows=[short_run]) as engine:
        for _ in range(100):  # caches, statement plans, the store's first pages
            await engine.run(short_run, 0)
        gc.collect()
        tracemalloc.start()
        try:
            before = _traced_elsewhere()
            for _ in range(runs):
                assert await engine.run(short_run, 0) == 3
            gc.collect()
            grown = _traced_elsewhere() - before
        finally:
            tracemalloc.stop()
        alive = sum(ref() is not None for ref in contexts)
    assert len(contexts) == runs + 100
    # At most the last run's context, held by what it scheduled until the loop next turns.
    assert alive <= 1, f"{alive} finished runs' contexts are still held"
    assert grown < 16 * runs, f"memory grew by {grown} bytes over {runs} finished runs"


async def test_finished_runs_leave_nothing_behind_on_sqlite(tmp_path: Path) -> None:
    await _runs_leave_nothing_behind(f"sqlite:///{tmp_path / 'loop.db'}?synchronous=normal", 2000)


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_soak_10000_finished_runs_leave_nothing_behind(store_url: str) -> None:
    await _runs_leave_nothing_behind(store_url, 10_000)


async def test_a_ticker_keeps_ticking_while_runs_execute_one_after_another(tmp_path: Path) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks.append(time.monotonic())

    # synchronous=normal: the disk's flushes are not what is measured here.
    url = f"sqlite:///{tmp_path / 'loop.db'}?synchronous=normal"
    async with Engine(open_store(url), workflows=[short_run]) as engine:
        task = asyncio.create_task(ticker())
        try:
            started = time.monotonic()
            for _ in range(1000):
                await engine.run(short_run, 0)
            ended = time.monotonic()
        finally:
            task.cancel()
    during = [t for t in ticks if t <= ended]
    assert len(during) >= 2, "the ticker did not run while the runs executed"
    waits = [b - a for a, b in zip([started, *during], [*during, ended], strict=True)]
    # A 10 ms ticker is woken within a run or two (a generous bound for a loaded machine).
    assert max(waits) < 0.5, f"the ticker waited {max(waits):.3f}s"
