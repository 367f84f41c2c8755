"""`orchestrate worker --triggers` SIGKILLed between storing a message's run and
acknowledging it: the next worker gets the message again and finds its run. 0 lost,
0 duplicate runs, each step recorded once, every message acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrate import Client, RunStatus
from orchestrate.triggers import event_run_id
from tests.acceptance.trigger_app import publish, remove
from tests.integration.test_triggers_brokers import _pending
from tests.postgres import in_schema

APP = Path(__file__).with_name("trigger_app.py")
EVENTS = 12


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from in_schema()


def _spawn(url: str, broker: str, name: str, hang: Path | None) -> subprocess.Popen[str]:
    env = {**os.environ, "TRIGGER_BROKER": broker, "TRIGGER_NAME": name}
    env.pop("TRIGGER_HANG", None)
    if hang is not None:
        env["TRIGGER_HANG"] = str(hang)
    command = [sys.executable, "-m", "orchestrate.cli", "worker", "--store", url, "--app", f"{APP}:orders"]
    command += ["--triggers", f"{APP}:triggers", "--poll", "0.1", "--lease", "2", "--log-level", "warning"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def _state(url: str) -> tuple[list, dict[str, int]]:
    async with Client(url) as client:
        runs = await client.list(limit=100)
        steps = {r.run_id: len((await client.detail(r.run_id)).steps) for r in runs}
    return runs, steps


def _scenario(url: str, broker: str, workdir: Path) -> None:
    name = f"k{uuid.uuid4().hex[:12]}"
    messages = [(f"{name}-{i}", json.dumps({"order_id": f"o{i}", "amount": i}).encode()) for i in range(EVENTS)]
    messages.insert(3, (f"{name}-poison", b"\xff\xfe not json"))
    asyncio.run(publish(broker, name, messages))
    marker = workdir / f"{name}.hang"
    try:
        first = _spawn(url, broker, name, marker)
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first worker never reached an acknowledgement"
            time.sleep(0.05)
        hung_key = marker.read_text()
        first.send_signal(signal.SIGKILL)
        first.communicate()

        runs, _ = asyncio.run(_state(url))
        assert event_run_id(name, hung_key) in {r.run_id for r in runs}  # stored, never acknowledged

        second = _spawn(url, broker, name, None)
        deadline = time.monotonic() + 60
        while True:
            assert second.poll() is None, second.communicate()
            runs, _ = asyncio.run(_state(url))
            settled = [r for r in runs if r.status in (RunStatus.SUCCEEDED, RunStatus.DEAD)]
            if len(settled) == EVENTS + 1 and not asyncio.run(_pending(broker, name)):
                break
            assert time.monotonic() < deadline, f"{len(settled)} of {EVENTS + 1} runs settled"
            time.sleep(0.1)
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
    finally:
        marker.unlink(missing_ok=True)
        asyncio.run(remove(broker, name))

    runs, steps = asyncio.run(_state(url))
    assert len(runs) == EVENTS + 1  # 0 lost, 0 duplicates
    ok = [r for r in runs if r.status is RunStatus.SUCCEEDED]
    assert {r.run_id for r in ok} == {event_run_id(name, f"{name}-{i}") for i in range(EVENTS)}
    assert sorted(r.output["amount"] for r in ok) == list(range(EVENTS))
    assert all(steps[r.run_id] == 1 for r in ok)  # each step recorded once
    (dead,) = [r for r in runs if r.status is RunStatus.DEAD]
    assert dead.error["reason"] == "poison" and dead.input["raw"].endswith(" not json")


@pytest.mark.parametrize("broker", ["nats", "redis", "rabbitmq"])
def test_sigkill_before_the_acknowledgement_loses_and_doubles_nothing(broker: str, tmp_path: Path) -> None:
    _scenario(f"sqlite:///{tmp_path}/runs.db", broker, tmp_path)


def test_sigkill_before_the_acknowledgement_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    _scenario(pg_url, "redis", tmp_path)
