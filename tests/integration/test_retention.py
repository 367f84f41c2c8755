"""Retention: ended runs are pruned by command, by ``Client.prune`` and by workers; listings read summaries.

What a user would notice: ``orchestrate runs prune --older-than 30d`` deletes the runs that
ended before then (with their steps, history and review items) and nothing else,
``--dry-run`` deletes nothing, a worker started with ``--retain`` prunes on its own, and
``runs list`` does not read the runs' inputs and outputs unless asked.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrate import Client, Engine, RunStatus, Step, Workflow
from orchestrate.cli import cli
from orchestrate.errors import InvalidInputError
from orchestrate.store import InMemoryStore, open_store
from orchestrate.testing import FakeClock

DAY = 86_400.0
START = 1_700_000_000.0  # in the past: the prune command measures from the real now


def echo(value: object) -> object:
    return value


def boom(value: object) -> object:
    raise ValueError("no")


flow = Workflow("flow", [Step("echo", echo)], version="1")
broken = Workflow("broken", [Step("boom", boom)], version="1")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


async def _history(url: str, clock: FakeClock) -> dict[str, str]:
    """Runs that ended 40, 20 and 1 day(s) ago (succeeded), one dead 40 days ago, one waiting; by name."""
    ids: dict[str, str] = {}
    async with Client(engine=Engine(open_store(url), workflows=[flow, broken], clock=clock)) as client:
        for name, days in [("old", 40), ("middle", 20), ("recent", 1)]:
            clock.set(START - days * DAY)
            ids[name] = (await client.run(flow, {"big": "x" * 5000, "name": name})).run_id
        clock.set(START - 40 * DAY)
        ids["dead"] = (await client.run(broken, 1)).run_id
        ids["pending"] = await client.start(flow, "later")  # created 40 days ago, never ran
        clock.set(START)
    return ids


async def _left(url: str) -> set[str]:
    async with Client(url) as client:
        return {r.run_id for r in await client.list(limit=100, values=False)}


async def test_client_prune_deletes_what_ended_before_the_cutoff(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    clock = FakeClock(START)
    ids = await _history(url, clock)
    async with Client(engine=Engine(open_store(url), clock=clock)) as client:
        assert await client.prune(older_than="30d", dry_run=True) == 1
        assert await client.prune(older_than=30 * DAY) == 1
        assert await client.get(ids["dead"])  # the dead-letter queue is kept unless named
        assert await client.prune(older_than="10d", status="succeeded", batch=1) == 1
        assert await client.prune(older_than="30d", status=["dead"]) == 1
        with pytest.raises(InvalidInputError, match="only ended runs"):
            await client.prune(older_than="1d", status="pending")
        for bad in ("0s", "soon", -5, "30"):
            with pytest.raises(InvalidInputError):
                await client.prune(older_than=bad)  # type: ignore[arg-type]
    assert await _left(url) == {ids["recent"], ids["pending"]}


def test_the_prune_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    ids = asyncio.run(_history(url, FakeClock(START)))
    # The runs ended in the fake past of START; the command's clock is the real one.
    dry = invoke("runs", "prune", "--older-than", "30d", "--dry-run", "--store", url)
    assert dry.exit_code == 0, dry.output
    assert "nothing was deleted" in dry.stdout
    count = int(dry.stdout.split()[0])
    assert count == 3  # old, middle and recent: succeeded; the dead run is kept unless named
    assert asyncio.run(_left(url)) == set(ids.values())  # a dry run deletes nothing
    pruned = invoke("runs", "prune", "--older-than", "30d", "--status", "succeeded,dead", "--store", url)
    assert pruned.exit_code == 0, pruned.output
    assert pruned.stdout.startswith("deleted ")
    assert asyncio.run(_left(url)) == {ids["pending"]}  # all ended before the real now - 30 days
    bad = invoke("runs", "prune", "--older-than", "30", "--store", url)
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ") and "add a unit" in bad.stderr
    live = invoke("runs", "prune", "--older-than", "1d", "--status", "running", "--store", url)
    assert live.exit_code == 2 and "only ended runs" in live.stderr


def test_runs_list_reads_summaries_unless_asked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    asyncio.run(_history(url, FakeClock(START)))
    listed = invoke("runs", "list", "--json", "--store", url)
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.stdout)
    assert runs and all("input" not in r and "output" not in r for r in runs)
    assert {r["status"] for r in runs} == {"succeeded", "dead", "pending"}
    full = json.loads(invoke("runs", "list", "--json", "--full", "--store", url).stdout)
    assert {r["input"]["name"] for r in full if isinstance(r["input"], dict)} == {"old", "middle", "recent"}
    dead = json.loads(invoke("dlq", "list", "--json", "--store", url).stdout)
    assert len(dead) == 1 and "input" not in dead[0]


async def test_a_worker_with_retain_prunes_on_its_own() -> None:
    store = InMemoryStore()
    clock = FakeClock(START - 40 * DAY)
    async with Engine(store, workflows=[flow], clock=clock) as engine:
        old = [await engine.run_record(flow, i) for i in range(3)]
        clock.set(START)
        fresh = await engine.run_record(flow, "fresh")
    assert all(r.status is RunStatus.SUCCEEDED for r in [*old, fresh])
    worker = Engine(store, workflows=[flow], clock=clock, retain_seconds=30 * DAY)
    stop = asyncio.Event()
    async with worker:
        working = asyncio.create_task(worker.work(stop=stop, poll_seconds=0.01))
        for _ in range(200):
            if len(await store.list_runs()) == 1:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await working
    assert [r.run_id for r in await store.list_runs()] == [fresh.run_id]
    assert await Engine(store).prune_ended() == 0  # no retention: keeps everything


@pytest.mark.parametrize("bad", [0, -1.0, "30d"])
def test_retain_seconds_must_be_positive_seconds(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="retain_seconds"):
        Engine(InMemoryStore(), retain_seconds=bad)  # type: ignore[arg-type]


def test_worker_retain_takes_a_duration(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("from orchestrate import Step, Workflow\nflow = Workflow('flow', [Step('e', lambda x: x)])\n")
    bad = invoke("worker", "--app", f"{app}:flow", "--retain", "soon", "--store", f"sqlite:///{tmp_path / 'o.db'}")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ") and "--retain" in bad.stderr
