"""SIGKILL a worker in the middle of an agent's fifth model turn; the resumed run re-sends nothing.

The agent calls an OpenAI-compatible server (a real HTTP server in this process,
speaking the chat-completions wire format with native tool calls) that counts every
request it gets. Turns 1-4 each call the ``forecast`` tool for one city; the fifth
request is held open until the test has killed the worker; a new worker resumes the
run. Turns 1-4 must not reach the model again, no tool may run twice, and the answer
must be the one an uninterrupted run gives.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Client, RunStatus
from orchestrate.store import open_store
from tests.integration.models.wire_servers import OpenAIWire, Said
from tests.postgres import in_schema

APP = Path(__file__).with_name("agent_app.py")
CITIES = ["Lisbon", "Porto", "Seville", "Valencia", "Lyon"]


class Planner:
    """The scripted model: one forecast per turn, then an answer built from the tool results."""

    def __init__(self, *, hold_turn: int | None) -> None:
        self.hold_turn = hold_turn
        self.release = threading.Event()

    def __call__(self, body: dict[str, Any]) -> Said:
        messages = body["messages"]
        turn = sum(1 for m in messages if m["role"] == "assistant") + 1
        results = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
        hold = None
        if turn == self.hold_turn and not self.release.is_set():
            hold = self.release  # the first request of this turn waits while the worker is killed
        if turn <= len(CITIES):
            return Said(calls=[("forecast", {"city": CITIES[turn - 1]})], hold=hold)
        warmest = max(results, key=lambda r: r["high_c"])
        return Said(text=f"Go to {warmest['city']} ({len(results)} forecasts checked).")


def turn_of(request: dict[str, Any]) -> int:
    return sum(1 for m in request["body"]["messages"] if m["role"] == "assistant") + 1


def spawn(url: str, workdir: Path, model_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), url, str(workdir), model_url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


async def detail_of(url: str, run_id: str):
    store = open_store(url)
    await store.open()
    try:
        return await Client(store).detail(run_id)
    finally:
        await store.close()


def uninterrupted(url: str, workdir: Path) -> dict[str, Any]:
    server = OpenAIWire(Planner(hold_turn=None)).start()
    try:
        proc = spawn(url, workdir, server.url, "start", "calm")
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    finally:
        server.stop()
    detail = asyncio.run(detail_of(url, "calm"))
    assert detail.run.status is RunStatus.SUCCEEDED
    return detail.run.output


def crash_in_turn_five(url: str, workdir: Path) -> tuple[OpenAIWire, Any, list[str]]:
    planner = Planner(hold_turn=5)
    server = OpenAIWire(planner).start()
    try:
        first = spawn(url, workdir, server.url, "start", "crashy")
        server.wait_for(5)  # the fifth turn's request is in flight, held by the server
        first.send_signal(signal.SIGKILL)
        first.communicate()
        planner.release.set()
        ledger_before = (workdir / "ledger").read_text().splitlines()
        second = spawn(url, workdir, server.url, "resume")
        _out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
    finally:
        server.stop()
    detail = asyncio.run(detail_of(url, "crashy"))
    return server, detail, ledger_before


def check(url: str, tmp_path: Path) -> None:
    calm_dir, crash_dir = tmp_path / "calm", tmp_path / "crash"
    calm_dir.mkdir()
    crash_dir.mkdir()
    expected = uninterrupted(url, calm_dir)
    server, detail, ledger_before = crash_in_turn_five(url, crash_dir)

    assert detail.run.status is RunStatus.SUCCEEDED
    assert detail.run.output == expected
    assert expected["output"] == "Go to Valencia (5 forecasts checked)." and expected["turns"] == 6
    # Each of turns 1-4 reached the model once; turn 5 twice (killed, then resumed); turn 6 once.
    turns = [turn_of(r) for r in server.requests]
    assert turns == [1, 2, 3, 4, 5, 5, 6]
    # The resumed worker sent the whole transcript, rebuilt from the store, in its one request for turn 5.
    resent = server.requests[5]["body"]["messages"]
    assert [m["role"] for m in resent] == ["system", "user"] + ["assistant", "tool"] * 4
    # No tool ran twice: four calls before the kill, one more after; each with its step's idempotency key.
    ledger = (crash_dir / "ledger").read_text().splitlines()
    assert len(ledger_before) == 4
    assert [line.split()[0] for line in ledger] == CITIES
    keys = [line.split()[1] for line in ledger]
    assert keys == [f"crashy:agent:planner:tool:{n}:0" for n in range(1, 6)]
    steps = [s.step_key for s in detail.steps]
    assert steps == [key for n in range(1, 6) for key in (f"agent:planner:turn:{n}", f"agent:planner:tool:{n}:0")] + [
        "agent:planner:turn:6"
    ]
    # Tokens are counted once per turn, recorded ones included.
    assert detail.run.output["tokens"] == 6 * 25


def test_sigkill_in_the_fifth_turn_on_sqlite(tmp_path: Path) -> None:
    check(f"sqlite:///{tmp_path}/runs.db", tmp_path)


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from in_schema()


def test_sigkill_in_the_fifth_turn_on_postgres(tmp_path: Path, pg_url: str) -> None:
    check(pg_url, tmp_path)
