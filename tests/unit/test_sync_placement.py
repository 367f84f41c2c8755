"""Where a plain ``def`` step runs: in a thread until its calls prove quick, then on the loop."""

from __future__ import annotations

import io
import json
import threading
import time
from unittest.mock import ANY

import pytest

from orchestrate import Engine, RunContext, Step, Workflow, workflow
from orchestrate._engine.isolation import SyncPlacement
from orchestrate.observe import configure_logging
from orchestrate.policies import StepPolicy
from orchestrate.store import InMemoryStore


@pytest.fixture
def logs():
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    yield stream
    configure_logging("warning")


def lines(stream: io.StringIO, event: str) -> list[dict]:
    found = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [line for line in found if line["event"] == event]


class Where:
    """A step function that notes the thread of each call; it sleeps when told to."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.sleep = 0.0

    def __call__(self, x: int) -> int:
        self.threads.append(threading.get_ident())
        if self.sleep:
            time.sleep(self.sleep)
        return x + 1


async def until_inline(engine: Engine, wf: Workflow, fn: Where) -> None:
    """Run ``wf`` until a call of ``fn`` ran on the loop (a call descheduled on a loaded
    machine may take longer than the quick bound in its thread: the next one learns)."""
    loop_thread = threading.get_ident()
    for i in range(20):
        await engine.run(wf, i)
        if fn.threads[-1] == loop_thread:
            return
    raise AssertionError("the quick step never ran on the loop")


def test_the_default_isolation_is_auto():
    assert StepPolicy().isolation == "auto"
    assert Step("s", lambda x: x).policy.isolation == "auto"


async def test_a_quick_def_step_runs_in_a_thread_once_then_on_the_loop():
    fn = Where()
    wf = Workflow("quick_def", [Step("s", fn)])
    loop_thread = threading.get_ident()
    async with Engine(InMemoryStore()) as engine:
        assert await engine.run(wf, 0) == 1
        await until_inline(engine, wf, fn)
        assert [await engine.run(wf, i) for i in range(3)] == [1, 2, 3]
    assert fn.threads[0] != loop_thread
    assert fn.threads[-3:] == [loop_thread] * 3


async def test_a_durable_function_def_step_runs_on_the_loop_once_quick():
    fn = Where()

    @workflow(name="quick_def_fn")
    async def chain(ctx: RunContext, x: int) -> int:
        return await ctx.step(fn, x)

    loop_thread = threading.get_ident()
    async with Engine(InMemoryStore(), workflows=[chain]) as engine:
        assert await engine.run(chain, 0) == 1
        for _ in range(20):
            await engine.run(chain, 1)
            if fn.threads[-1] == loop_thread:
                break
        assert [await engine.run(chain, i) for i in range(2)] == [1, 2]
    assert fn.threads[0] != loop_thread
    assert fn.threads[-3:] == [loop_thread] * 3


async def test_a_step_with_a_timeout_always_runs_where_the_timeout_can_stop_waiting():
    fn = Where()
    wf = Workflow("timed_def", [Step("s", fn, timeout=30)])
    loop_thread = threading.get_ident()
    async with Engine(InMemoryStore()) as engine:
        for i in range(25):
            assert await engine.run(wf, i) == i + 1
    assert loop_thread not in fn.threads


async def test_isolation_thread_always_runs_in_a_thread():
    fn = Where()
    wf = Workflow("always_thread", [Step("s", fn, isolation="thread")])
    loop_thread = threading.get_ident()
    async with Engine(InMemoryStore()) as engine:
        for i in range(3):
            assert await engine.run(wf, i) == i + 1
    assert loop_thread not in fn.threads


async def test_a_slow_first_call_keeps_the_function_in_threads():
    fn = Where()
    fn.sleep = 0.01
    wf = Workflow("slow_def", [Step("s", fn)])
    loop_thread = threading.get_ident()
    async with Engine(InMemoryStore()) as engine:
        for i in range(3):
            assert await engine.run(wf, i) == i + 1
    assert loop_thread not in fn.threads


async def test_an_inline_call_that_held_the_loop_sends_the_function_back_to_threads(logs):
    fn = Where()
    wf = Workflow("turns_slow", [Step("s", fn)])
    loop_thread = threading.get_ident()
    async with Engine(InMemoryStore()) as engine:
        await until_inline(engine, wf, fn)
        fn.threads.clear()
        fn.sleep = 0.01
        await engine.run(wf, 2)  # on the loop, slow: back to the threads
        fn.sleep = 0.0
        await engine.run(wf, 3)
        await engine.run(wf, 4)
    assert [t == loop_thread for t in fn.threads] == [True, False, False]
    [moved] = lines(logs, "step_sync_threaded")
    assert moved["step"] == "s" and moved["workflow"] == "turns_slow" and moved["attempt"] == 1
    assert moved["held_loop_seconds"] >= 0.01
    assert moved["level"] == "info"


class Recorded:
    """A logger that keeps what it was told."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def info(self, event: str, **fields: object) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: object) -> None:
        self.lines.append(("warning", event, fields))


def test_a_lone_overrun_is_forgiven_three_within_a_minute_are_not():
    log = Recorded()
    placement = SyncPlacement(log=log)

    def fn() -> None: ...

    placement.ran_in_thread(fn, 0.002)
    assert not placement.inline(fn)  # not quick yet
    placement.ran_in_thread(fn, 0.0005)
    assert placement.inline(fn)
    placement.ran_inline(fn, 0.002, {}, now=0.0)
    placement.ran_inline(fn, 0.002, {}, now=100.0)  # a minute later: counted afresh
    placement.ran_inline(fn, 0.002, {}, now=101.0)
    assert placement.inline(fn) and not log.lines
    placement.ran_inline(fn, 0.002, {"step": "s"}, now=102.0)
    assert not placement.inline(fn)
    assert log.lines == [("info", "step_sync_threaded", {"step": "s", "held_loop_seconds": 0.002, "message": ANY})]
    placement.ran_in_thread(fn, 0.0001)
    assert not placement.inline(fn)  # slow for good


def test_one_call_that_held_the_loop_long_sends_the_function_back_at_once():
    log = Recorded()
    placement = SyncPlacement(log=log)

    def fn() -> None: ...

    placement.ran_in_thread(fn, 0.0001)
    placement.ran_inline(fn, 0.25, {}, now=0.0)
    assert not placement.inline(fn)
    assert [(level, event) for level, event, _ in log.lines] == [("warning", "step_sync_threaded")]
