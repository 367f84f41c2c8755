"""``FakeClock``: time moves only when the test moves it."""

from __future__ import annotations

import asyncio

import pytest

from orchestrate import Clock
from orchestrate.testing import FakeClock
from orchestrate.testing.clock import DEFAULT_START


def test_starts_at_a_plausible_time_and_stands_still() -> None:
    clock = FakeClock()
    assert clock.now() == DEFAULT_START == 1_700_000_000.0
    assert clock.now() == clock.now()
    assert FakeClock(5.0).now() == 5.0


def test_is_a_clock() -> None:
    clock: Clock = FakeClock()  # structural: the engine accepts it
    assert callable(clock.now) and asyncio.iscoroutinefunction(clock.sleep)


def test_advance_and_set_move_time() -> None:
    clock = FakeClock(100.0)
    clock.advance(2.5)
    assert clock.now() == 102.5
    clock.set(50.0)  # wall clocks can jump back
    assert clock.now() == 50.0
    with pytest.raises(ValueError, match="seconds >= 0"):
        clock.advance(-1)
    assert clock.now() == 50.0


async def test_sleep_blocks_until_the_clock_passes_its_deadline() -> None:
    clock = FakeClock(0.0)
    task = asyncio.create_task(clock.sleep(10))
    await clock.wait_for_sleepers(1)
    clock.advance(9.999)
    await asyncio.sleep(0)
    assert not task.done()
    assert clock.sleepers == 1
    clock.advance(0.001)
    await asyncio.wait_for(task, timeout=5)
    assert clock.sleepers == 0
    assert clock.now() == 10.0


async def test_set_forward_wakes_sleepers() -> None:
    clock = FakeClock(0.0)
    task = asyncio.create_task(clock.sleep(10))
    await clock.wait_for_sleepers(1)
    clock.set(100.0)
    await asyncio.wait_for(task, timeout=5)


async def test_advance_wakes_due_sleepers_in_deadline_order() -> None:
    clock = FakeClock(0.0)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [
        asyncio.create_task(sleeper(name, seconds))
        for name, seconds in [("c", 30), ("a", 10), ("late", 100), ("b", 20), ("a2", 10)]
    ]
    await clock.wait_for_sleepers(5)
    assert clock.next_deadline == 10.0
    clock.advance(30)
    await asyncio.gather(*tasks[:2], tasks[3], tasks[4])
    assert woke == ["a", "a2", "b", "c"]  # same deadline: in the order they slept
    assert clock.sleepers == 1 and clock.next_deadline == 100.0
    tasks[2].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[2]


async def test_advance_to_next_jumps_one_deadline_at_a_time() -> None:
    clock = FakeClock(0.0)
    first = asyncio.create_task(clock.sleep(5))
    second = asyncio.create_task(clock.sleep(50))
    await clock.wait_for_sleepers(2)
    assert await clock.advance_to_next() is True
    assert clock.now() == 5.0
    assert first.done() and not second.done()
    assert await clock.advance_to_next() is True
    assert clock.now() == 50.0 and second.done()
    assert await clock.advance_to_next() is False
    assert clock.now() == 50.0


async def test_advance_stepwise_gives_a_loop_one_turn_per_deadline() -> None:
    clock = FakeClock(0.0)
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            await clock.sleep(10)
            ticks.append(clock.now())

    task = asyncio.create_task(heartbeat())
    await clock.wait_for_sleepers(1)
    await clock.advance_stepwise(35)
    assert ticks == [10.0, 20.0, 30.0]
    assert clock.now() == 35.0
    # A plain advance jumps: the loop wakes once.
    clock.advance(100)
    await clock.wait_for_sleepers(1)
    assert ticks == [10.0, 20.0, 30.0, 135.0]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == 0


async def test_zero_and_negative_sleeps_only_yield() -> None:
    clock = FakeClock(0.0)
    await asyncio.wait_for(clock.sleep(0), timeout=5)
    await asyncio.wait_for(clock.sleep(-3), timeout=5)
    assert clock.now() == 0.0 and clock.sleepers == 0


async def test_cancelled_sleeper_is_forgotten() -> None:
    clock = FakeClock(0.0)
    task = asyncio.create_task(clock.sleep(10))
    await clock.wait_for_sleepers(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == 0 and clock.next_deadline is None
    assert await clock.advance_to_next() is False
    assert clock.now() == 0.0


async def test_auto_advance_runs_timers_without_a_driver() -> None:
    clock = FakeClock(0.0, auto_advance=True)
    await asyncio.wait_for(clock.sleep(3600), timeout=5)
    assert clock.now() == 3600.0


async def test_auto_advance_wakes_the_earliest_deadline_first() -> None:
    clock = FakeClock(0.0, auto_advance=True)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    await asyncio.wait_for(
        asyncio.gather(sleeper("long", 60), sleeper("short", 1), sleeper("mid", 30)),
        timeout=5,
    )
    assert woke == [("short", 1.0), ("mid", 30.0), ("long", 60.0)]


async def test_auto_advance_cancelled_sleeper_leaves_no_trace() -> None:
    clock = FakeClock(0.0, auto_advance=True)
    task = asyncio.create_task(clock.sleep(100))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == 0


async def test_engine_sleeps_through_a_long_backoff_on_the_fake_clock() -> None:
    from orchestrate import Engine, Retry
    from orchestrate.store import InMemoryStore
    from orchestrate.workflow import Step, Workflow

    attempts: list[float] = []
    clock = FakeClock(auto_advance=True)

    def flaky(x: str) -> str:
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise ConnectionError("model endpoint reset")
        return f"{x}: ok"

    wf = Workflow(
        "backoff", [Step("call", flaky, retry=Retry(max_attempts=5, initial_delay=600, backoff=1, jitter=0.0))]
    )
    async with Engine(InMemoryStore(), workflows=[wf], clock=clock) as engine:
        record = await asyncio.wait_for(engine.run_record(wf, "x"), timeout=30)
    assert record.output == "x: ok"
    start = DEFAULT_START
    assert attempts == [start, start + 600, start + 1200]  # ten-minute backoffs, no real wait
