"""Sync steps whose timeout fired while their thread kept running: logged, and never starving others."""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import time

import pytest

from orchestrate import Engine, Fallback, Retry, RunStatus, Step, Workflow
from orchestrate.observe import configure_logging
from orchestrate.store import InMemoryStore

TWICE = Retry(max_attempts=2, initial_delay=0.001, jitter=0.0)


@pytest.fixture
def release():
    """Released at the end of the test: what the stuck steps wait for."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def logs():
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    yield stream
    configure_logging("warning")


def lines(stream: io.StringIO, event: str, run_id: str | None = None) -> list[dict]:
    """The log lines of ``event`` (of one run): threads of earlier tests may still log."""
    found = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [line for line in found if line["event"] == event and run_id in (None, line.get("run_id"))]


def hanging(release: threading.Event) -> Workflow:
    def block(x: int) -> int:
        release.wait(30)
        return x

    return Workflow("hangs", [Step("block", block, timeout=0.05, retry=TWICE, fallback=Fallback.value(-1))])


async def test_other_workflows_keep_every_thread_while_one_steps_threads_are_stuck(release):
    # 20 runs, two attempts each: 40 calls that never return by themselves, more than
    # the engine's 32 threads.
    async with Engine(InMemoryStore()) as engine:
        stuck = await asyncio.gather(*(engine.run_record(hanging(release), i) for i in range(20)))
        assert all(r.output == -1 for r in stuck)

        quick = Workflow("quick", [Step("inc", lambda x: x + 1, timeout=10)])
        done = await asyncio.gather(*(engine.run_record(quick, i) for i in range(10)))
        assert [r.status for r in done] == [RunStatus.SUCCEEDED] * 10
        assert [r.output for r in done] == list(range(1, 11))

        # Full capacity: 32 calls of another workflow run at the same time (each waits
        # for all 32 to be running).
        together = threading.Barrier(32, timeout=10)

        def meet(x: int) -> int:
            together.wait()
            return x

        wide = Workflow("wide", [Step("meet", meet, timeout=20)])
        done = await asyncio.gather(*(engine.run_record(wide, i) for i in range(32)))
        assert [r.status for r in done] == [RunStatus.SUCCEEDED] * 32


async def test_a_stuck_thread_is_logged_with_its_run_step_and_thread_and_again_while_stuck(release, logs):
    async with Engine(InMemoryStore()) as engine:
        record = await engine.run_record(hanging(release), 7)
        [first, second] = lines(logs, "step_thread_stuck", record.run_id)[:2]
        assert first["level"] == "warning"
        assert first["workflow"] == "hangs" and first["run_id"] == record.run_id and first["step"] == "block"
        assert (first["attempt"], second["attempt"]) == (1, 2)
        assert first["thread"].startswith("orchestrate-step") and first["thread"] != second["thread"]
        assert first["running_seconds"] >= 0 and first["stuck_threads"] >= 1

        async def reported_again() -> list[dict]:
            while len(again := lines(logs, "step_thread_stuck", record.run_id)) < 3:
                await asyncio.sleep(0.05)
            return again

        again = await asyncio.wait_for(reported_again(), 20)
        assert again[2]["running_seconds"] > again[0]["running_seconds"]

        release.set()

        async def released() -> list[dict]:
            while len(found := lines(logs, "step_thread_released", record.run_id)) < 2:
                await asyncio.sleep(0.02)
            return found

        found = await asyncio.wait_for(released(), 10)
        assert {line["attempt"] for line in found} == {1, 2}
        assert sorted(line["stuck_threads"] for line in found) == [0, 1]


async def test_one_step_holds_at_most_half_the_threads_stuck_and_resumes_when_they_return(release, logs):
    calls: list[int] = []

    def block(x: int) -> int:
        calls.append(x)
        release.wait(30)
        return x

    wf = Workflow("hangs", [Step("block", block, timeout=0.05, fallback=Fallback.value(-1))])
    async with Engine(InMemoryStore(), max_threads=4) as engine:
        for i in range(6):
            assert (await engine.run_record(wf, i)).output == -1
        # Two stuck (half of 4): the next attempts timed out waiting, without a thread.
        assert calls == [0, 1]
        assert lines(logs, "step_threads_exhausted")[0]["step"] == "block"
        quick = Workflow("quick", [Step("inc", lambda x: x + 1, timeout=10)])
        assert await engine.run(quick, 1) == 2

        release.set()
        record = await engine.run_record(Workflow("then", [Step("block", block, timeout=10)]), 9)
        assert record.output == 9 and calls[-1] == 9


def gone(pid_file: str) -> bool:
    """Whether the process that wrote ``pid_file`` is gone (and reaped), if it got that far."""
    if not os.path.exists(pid_file):
        return True  # killed before it reached the step function
    with open(pid_file) as f:
        pid = int(f.read())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def write_pid_and_sleep(path: str) -> int:
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)
    return 0


async def test_a_process_isolated_step_is_killed_when_it_times_out(tmp_path):
    path = str(tmp_path / "pid")
    wf = Workflow(
        "iso",
        [Step("sleeps", write_pid_and_sleep, timeout=4, isolation="process", fallback=Fallback.value(-1))],
    )
    async with Engine(InMemoryStore()) as engine:
        assert (await engine.run_record(wf, path)).output == -1
    assert gone(path)  # killed and reaped: not running on in the background


async def test_process_isolated_steps_hold_no_thread_while_they_wait(tmp_path):
    paths = [str(tmp_path / f"pid{i}") for i in range(8)]
    wf = Workflow(
        "iso_many",
        [Step("sleeps", write_pid_and_sleep, timeout=4, isolation="process", fallback=Fallback.value(-1))],
    )
    async with Engine(InMemoryStore()) as engine:
        threads = threading.active_count()
        runs = asyncio.gather(*(engine.run_record(wf, path) for path in paths))
        await asyncio.sleep(1)
        waiting = threading.active_count() - threads
        assert [r.output for r in await runs] == [-1] * 8
    assert waiting < 8, f"{waiting} threads waited for 8 processes"
    assert all(gone(path) for path in paths)
