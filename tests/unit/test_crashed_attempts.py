"""Crashed attempts: a run whose attempts keep dying with their process goes to the DLQ.

A process that dies in a step leaves no record; the store counts the attempt when the next
worker claims the run (see the conformance suite). These tests play the dead workers by
claiming runs under other owner names and letting their leases run out, and check what
the engine does with the count: it drives a run below ``max_crashes``, noting the crash in
its history; at ``max_crashes`` it moves the run to the dead-letter queue without running
a step; and a worker drives one suspect at a time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from orchestrate import Client, Engine, RunStatus, Step, Workflow
from orchestrate.errors import InvalidInputError
from orchestrate.store import InMemoryStore

calls: list[str] = []


def check(value: dict[str, Any]) -> dict[str, Any]:
    calls.append(value["name"])
    return value


checks = Workflow("checks", [Step("check", check)], version="1")


async def _crash(store: InMemoryStore, run_id: str, *, times: int) -> None:
    """Let ``times`` workers claim the run and die (their leases ran out long ago)."""
    for i in range(times):
        got = await store.claim_run(run_id, owner=f"ghost-{i}", now=time.time() - 1000 + i * 10, lease_seconds=1)
        assert got is not None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_max_crashes_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="max_crashes"):
        Engine(InMemoryStore(), max_crashes=bad)


async def test_a_run_below_the_cap_is_driven_and_its_crash_noted() -> None:
    calls.clear()
    store = InMemoryStore()
    async with Client(store, workflows=[checks]) as client:
        run_id = await client.start(checks, {"name": "a"})
        await _crash(store, run_id, times=2)
        record = await client.engine.execute(run_id)
        assert record is not None and record.status is RunStatus.SUCCEEDED
        detail = await client.detail(run_id)
    assert calls == ["a"]
    crashed = [e.data for e in detail.events if e.kind == "attempt_crashed"]
    assert crashed == [{"crashes": 2, "max_crashes": 3, "owner": "ghost-1"}]


async def test_at_the_cap_the_run_goes_to_the_dead_letter_queue_without_running() -> None:
    calls.clear()
    store = InMemoryStore()
    async with Client(store, workflows=[checks]) as client:
        run_id = await client.start(checks, {"name": "poison"})
        await _crash(store, run_id, times=3)
        record = await client.engine.execute(run_id)
        assert record is not None and record.status is RunStatus.DEAD
        dead = await client.dead_letters()
        detail = await client.detail(run_id)
    assert calls == []
    assert [r.run_id for r in dead] == [run_id]
    error = dead[0].error
    assert error is not None
    assert (error["reason"], error["crashes"], error["owner"], error["name"]) == (
        "crashed",
        3,
        "ghost-2",
        "RunCrashedError",
    )
    assert "3 times in a row" in error["message"] and "ghost-2" in error["message"]
    assert [e.kind for e in detail.events][-1] == "run_dead"
    assert detail.events[-1].data["error"] == error


async def test_the_cap_is_the_engines() -> None:
    calls.clear()
    store = InMemoryStore()
    async with Engine(store, workflows=[checks], max_crashes=5) as engine:
        run_id = await engine.start(checks, {"name": "b"})
        await _crash(store, run_id, times=4)
        record = await engine.execute(run_id)
    assert record is not None and record.status is RunStatus.SUCCEEDED
    assert calls == ["b"]


in_flight: dict[str, int] = {"suspects": 0, "most": 0, "others_beside": 0}


async def probe(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("suspect"):
        in_flight["suspects"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["suspects"])
        await asyncio.sleep(0.05)
        in_flight["suspects"] -= 1
    else:
        if in_flight["suspects"]:
            in_flight["others_beside"] += 1
        await asyncio.sleep(0.01)
    return value


probes = Workflow("probes", [Step("probe", probe)], version="1")


async def test_a_worker_drives_one_suspect_at_a_time_beside_its_other_runs() -> None:
    in_flight.update(suspects=0, most=0, others_beside=0)
    store = InMemoryStore()
    async with Engine(store, workflows=[probes]) as engine:
        suspects = [await engine.start(probes, {"suspect": True}) for _ in range(4)]
        for run_id in suspects:
            await _crash(store, run_id, times=1)
        others = [await engine.start(probes, {}) for _ in range(20)]
        driven = await engine.work(concurrency=8, until_idle=True, poll_seconds=0.01)
        runs = [await store.get_run(r) for r in suspects + others]
    assert driven == 24
    assert all(r is not None and r.status is RunStatus.SUCCEEDED for r in runs)
    assert in_flight["most"] == 1  # never two suspects at once
    assert in_flight["others_beside"] > 0  # while the other slots kept working
