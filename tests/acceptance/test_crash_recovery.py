"""Kill -9 in the middle of a step; restart; the run finishes with nothing lost or doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrate import Client, Engine, Retry, RunStatus, Step, Workflow
from orchestrate.store import open_store
from orchestrate.testing import FakeClock

APP = Path(__file__).with_name("crash_app.py")


def _spawn(url: str, workdir: Path, *args: str, hang: float = 600) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), url, str(workdir), *args],
        env={**os.environ, "HANG_SECONDS": str(hang)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen[str], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process exited early: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.05)


def _ledger(workdir: Path) -> list[list[str]]:
    return [line.split() for line in (workdir / "ledger").read_text().splitlines()]


async def _steps(url: str, run_id: str):
    store = open_store(url)
    await store.open()
    try:
        return await Client(store).detail(run_id)
    finally:
        await store.close()


def test_sigkill_in_step_3_resumes_without_rerunning_steps_1_and_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    first = _spawn(url, tmp_path, "start", "crash-run")
    _wait_for(tmp_path / "in_step3", first)
    first.send_signal(signal.SIGKILL)
    first.communicate()

    detail = asyncio.run(_steps(url, "crash-run"))
    assert detail.run.status is RunStatus.RUNNING  # held by a dead process
    assert [s.step_key for s in detail.steps] == ["s1", "s2"]

    second = _spawn(url, tmp_path, "resume")
    _out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err

    detail = asyncio.run(_steps(url, "crash-run"))
    assert detail.run.status is RunStatus.SUCCEEDED and detail.run.output == 5
    assert [s.step_key for s in detail.steps] == ["s1", "s2", "s3", "s4", "s5"]
    executed = [row[0] for row in _ledger(tmp_path)]
    assert executed == ["s1", "s2", "s3", "s4", "s5"]  # s1, s2 not re-executed; s3 interrupted before its ledger line
    pids = {row[0]: row[2] for row in _ledger(tmp_path)}
    assert pids["s1"] == pids["s2"] == str(first.pid)
    assert pids["s3"] == pids["s4"] == pids["s5"] == str(second.pid)
    assert any(e.kind == "run_resumed" and e.data["replayed_steps"] == 2 for e in detail.events)


def test_retry_backoff_spans_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    (tmp_path / "fail_s2_once").touch()
    (tmp_path / "in_step3").touch()  # step 3 does not hang in this test
    first = _spawn(url, tmp_path, "backoff", "backoff-run")
    deadline = time.monotonic() + 60
    while not (tmp_path / "ledger").exists() or "s2-failed" not in (tmp_path / "ledger").read_text():
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)  # let the retry timer be written
    first.send_signal(signal.SIGKILL)
    first.communicate()

    detail = asyncio.run(_steps(url, "backoff-run"))
    retry = next(e for e in detail.events if e.kind == "step_retry")
    next_at = retry.at + retry.data["delay"]
    assert detail.run.status is not RunStatus.SUCCEEDED

    second = _spawn(url, tmp_path, "resume")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    detail = asyncio.run(_steps(url, "backoff-run"))
    assert detail.run.status is RunStatus.SUCCEEDED
    s2 = next(s for s in detail.steps if s.step_key == "s2")
    assert s2.attempts == 2
    rows = _ledger(tmp_path)
    second_attempt = next(r for r in rows if r[0] == "s2")
    assert second_attempt[1] == "2" and float(second_attempt[3]) >= next_at  # not before the timer
    assert second_attempt[2] == str(second.pid)


async def test_ten_minute_backoff_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    calls: list[float] = []
    clock = FakeClock()

    def flaky(x: int) -> int:
        calls.append(clock.now())
        if len(calls) == 1:
            raise ConnectionError("model endpoint reset")
        return x * 2

    wf = Workflow(
        "slow_retry", [Step("call", flaky, retry=Retry(max_attempts=2, initial_delay=600, jitter=0))], version="1"
    )
    async with Engine(open_store(url), workflows=[wf], clock=clock) as first:
        run_id = await first.start(wf, 21)
        parked = await first.execute(run_id)
        assert parked is not None and parked.status is RunStatus.WAITING
        assert parked.wake_at == pytest.approx(calls[0] + 600)

    later = FakeClock(start=clock.now(), auto_advance=True)
    clock_ref = later
    async with Engine(open_store(url), workflows=[wf], clock=later) as second:
        clock = clock_ref  # the step reads the new process's clock
        record = await second.settle(run_id)
    assert record.status is RunStatus.SUCCEEDED and record.output == 42
    assert len(calls) == 2 and calls[1] >= calls[0] + 600


def test_paused_worker_loses_its_lease_and_its_late_write_is_rejected(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    first = _spawn(url, tmp_path, "start", "paused-run", hang=4)
    _wait_for(tmp_path / "in_step3", first)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        time.sleep(2.5)  # past the 2 s lease; the paused process cannot renew it
        # The marker exists now, so the new holder's step 3 does not hang.
        second = _spawn(url, tmp_path, "resume")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _first_out, first_err = first.communicate(timeout=60)
    detail = asyncio.run(_steps(url, "paused-run"))
    assert detail.run.status is RunStatus.SUCCEEDED and detail.run.output == 5
    by_step = {s.step_key: s for s in detail.steps}
    assert len(by_step) == 5
    assert "lease_lost" in first_err
    # The paused worker's step 3 did run to its end (execution is at-least-once) but its
    # record was refused: the stored s3 is the winner's, written before the late one.
    late = [r for r in _ledger(tmp_path) if r[0] == "s3" and r[2] == str(first.pid)]
    assert len(late) == 1
    assert by_step["s3"].finished_at < float(late[0][3])
