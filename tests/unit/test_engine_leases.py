"""Leases on the engine's clock: the heartbeat renews them as ``FakeClock`` moves, and
``Workflow.run_sync`` runs a workflow from code with no event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from orchestrate import Engine, RunContext, Step, Workflow, workflow
from orchestrate._definitions import seam
from orchestrate.store import InMemoryStore, open_store
from orchestrate.testing import FakeClock
from orchestrate.types import RunStatus

LEASE = 30.0


async def _lease_of(url: str, run_id: str) -> float | None:
    store = open_store(url)
    await store.open()
    try:
        run = await store.get_run(run_id)
        assert run is not None
        return run.lease_expires_at
    finally:
        await store.close()


async def _until_lease_is(url: str, run_id: str, expected: float) -> None:
    while await _lease_of(url, run_id) != expected:
        await asyncio.sleep(0.01)


async def test_the_heartbeat_renews_the_lease_as_the_engine_s_clock_moves(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    clock = FakeClock()
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(x: int) -> int:
        started.set()
        await release.wait()  # held for as long as the test moves the clock
        return x + 1

    wf = Workflow("slow", [Step("slow", slow)], version="1")
    async with Engine(open_store(url), workflows=[wf], clock=clock, lease_seconds=LEASE) as engine:
        run_id = await engine.start(wf, 1)
        driving = asyncio.create_task(engine.execute(run_id))
        await started.wait()
        taken_at = clock.now()
        assert await _lease_of(url, run_id) == taken_at + LEASE

        # A third of the lease on, the heartbeat renews it from the clock's time.
        clock.advance(LEASE / 3)
        await _until_lease_is(url, run_id, clock.now() + LEASE)

        # Past where the first lease ended: renewed again, still this engine's run.
        clock.advance(LEASE / 3)
        await _until_lease_is(url, run_id, clock.now() + LEASE)
        clock.advance(LEASE / 3 + 1)
        assert clock.now() > taken_at + LEASE
        await _until_lease_is(url, run_id, clock.now() + LEASE)
        thief = open_store(url)
        await thief.open()
        try:
            assert await thief.claim_run(run_id, owner="thief", now=clock.now(), lease_seconds=5) is None
        finally:
            await thief.close()

        release.set()
        record = await driving
    assert record is not None and record.status is RunStatus.SUCCEEDED and record.output == 2


async def test_without_moving_the_clock_the_lease_is_not_renewed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    clock = FakeClock()
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(x: int) -> int:
        started.set()
        await release.wait()
        return x

    wf = Workflow("slow", [Step("slow", slow)], version="1")
    async with Engine(open_store(url), workflows=[wf], clock=clock, lease_seconds=LEASE) as engine:
        run_id = await engine.start(wf, 1)
        driving = asyncio.create_task(engine.execute(run_id))
        await started.wait()
        first = await _lease_of(url, run_id)
        for _ in range(5):  # real time passes, the engine's clock does not
            await asyncio.sleep(0.06)
        assert await _lease_of(url, run_id) == first
        release.set()
        await driving


def test_run_sync_runs_a_workflow_from_code_with_no_event_loop() -> None:
    async def double(x: int) -> int:
        return 2 * x

    @workflow(version="1", state_store=InMemoryStore())
    async def doubled(ctx: RunContext, x: int) -> int:
        return await ctx.step(double, x)

    graph = Workflow("graph", [Step("double", double)], version="1", state_store=InMemoryStore())
    results: list[object] = []

    def script() -> None:  # a thread of its own: no loop runs there, as in a script
        try:
            results.append(doubled.run_sync(21))
            results.append(doubled.run_sync(4))  # the same loop again, and its engine
            results.append(graph.run_sync(5))
        finally:
            runner = getattr(seam._LOOPS, "runner", None)
            if runner is not None:
                runner.close()

    thread = threading.Thread(target=script)
    thread.start()
    thread.join()
    assert results == [42, 8, 10]


async def test_run_sync_inside_async_code_says_to_await_instead() -> None:
    async def same(x: int) -> int:
        return x

    wf = Workflow("same", [Step("same", same)], version="1", state_store=InMemoryStore())
    with pytest.raises(RuntimeError, match=r"use `await wf.run\(...\)` instead"):
        wf.run_sync(1)
