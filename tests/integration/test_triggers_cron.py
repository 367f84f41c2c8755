"""Cron schedules on SQLite and PostgreSQL: one run per slot with two workers over a
simulated day on FakeClock, misfires across a restart, delayed starts."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from orchestrate import Client, Engine, RunStatus, Workflow
from orchestrate.errors import InvalidInputError
from orchestrate.store import open_store
from orchestrate.testing import FakeClock
from orchestrate.triggers import EventOutcome, Schedule, event_run_id
from tests.postgres import in_schema

NY = ZoneInfo("America/New_York")
MIDNIGHT = dt.datetime(2024, 3, 10, 0, 0, tzinfo=NY).timestamp()  # the day New York springs forward


def report(day: dict) -> dict:
    return {"slot": day["slot"]}


REPORT = Workflow("report", [report])


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/runs.db"
    else:
        yield from in_schema()


def _worker(url: str, clock: FakeClock) -> Client:
    return Client(engine=Engine(open_store(url), workflows=[REPORT], clock=clock))


def _schedule(**options) -> Schedule:
    return Schedule(
        "quarter-hourly",
        workflow=REPORT,
        cron="*/15 * * * *",
        timezone="America/New_York",
        input=lambda when: {"slot": when.isoformat()},
        **options,
    )


async def _runs(client: Client) -> list:
    return await client.list(workflow="report", limit=10_000)


async def test_two_workers_over_a_simulated_day_fire_each_slot_once(url: str) -> None:
    clock = FakeClock(MIDNIGHT)
    a, b = _worker(url, clock), _worker(url, clock)
    schedule_a, schedule_b = _schedule(), _schedule()  # each worker loads its own copy
    async with a, b:
        outcomes: list[EventOutcome] = []
        # Every 5 minutes of the day, B a few seconds behind A half of the time.
        for step in range(24 * 12 + 1):
            clock.set(MIDNIGHT + step * 300)
            if step % 2:
                first = await asyncio.gather(schedule_a.tick(a), schedule_b.tick(b))
                outcomes += [s.outcome for found in first for s in found]
            else:
                outcomes += [s.outcome for s in await schedule_a.tick(a)]
                clock.advance(7)
                outcomes += [s.outcome for s in await schedule_b.tick(b)]
        runs = await _runs(a)

    # The day New York springs forward has 23 hours: 92 quarter-hours after midnight,
    # through 01:00 the next day (24 h of POSIX time).
    assert len(runs) == 96
    slots = sorted(dt.datetime.fromisoformat(r.input["slot"]) for r in runs)
    assert len(set(slots)) == 96
    assert all((later - earlier).total_seconds() == 900 for earlier, later in itertools.pairwise(slots))
    assert slots[0] == dt.datetime(2024, 3, 10, 0, 15, tzinfo=NY)
    assert str(slots[8].utcoffset()) == "-1 day, 20:00:00"  # 03:00 EDT: the 02:xx slots do not exist
    assert outcomes.count(EventOutcome.CREATED) == 96
    assert {r.options["trigger"]["name"] for r in runs} == {"quarter-hourly"}
    assert all(r.run_id == event_run_id("quarter-hourly", r.options["trigger"]["key"]) for r in runs)


@pytest.mark.parametrize(("misfire", "late"), [("skip", 0), ("catch_up:2", 2)])
async def test_a_restart_after_an_outage_applies_the_misfire_policy(url: str, misfire: str, late: int) -> None:
    clock = FakeClock(MIDNIGHT)
    first = _worker(url, clock)
    async with first:
        for minute in range(0, 61, 15):  # 00:15 .. 01:00 fired on time
            clock.set(MIDNIGHT + minute * 60)
            await _schedule(misfire=misfire).tick(first)
    # Every worker down from 01:00 to 04:00:20 (EDT); a new process starts.
    clock.set(dt.datetime(2024, 3, 10, 4, 0, 20, tzinfo=NY).timestamp())
    second = _worker(url, clock)
    async with second:
        schedule = _schedule(misfire=misfire)
        started = await schedule.tick(second)
        assert await schedule.cursor(second) == clock.now()
        again = await schedule.tick(second)  # nothing more to decide
        runs = await _runs(second)

    fired = sorted(dt.datetime.fromisoformat(r.input["slot"]).astimezone(NY).strftime("%H:%M") for r in runs)
    on_time = ["00:15", "00:30", "00:45", "01:00"]
    caught_up = ["03:30", "03:45"][2 - late :] if late else []
    assert fired == [*on_time, *caught_up, "04:00"]
    assert len(started) == 1 + late and again == []


async def test_a_schedule_never_fires_slots_from_before_it_was_first_served(url: str) -> None:
    clock = FakeClock(MIDNIGHT + 3 * 3600)
    client = _worker(url, clock)
    async with client:
        schedule = _schedule(misfire="catch_up:5")
        assert await schedule.cursor(client) is None
        assert await schedule.tick(client) == []
        clock.advance(15 * 60)
        assert [s.outcome for s in await schedule.tick(client)] == [EventOutcome.CREATED]
        assert len(await _runs(client)) == 1


async def test_a_delayed_start_is_not_claimed_before_its_time(tmp_path: Path) -> None:
    clock = FakeClock(MIDNIGHT)
    client = _worker(f"sqlite:///{tmp_path}/runs.db", clock)
    async with client:
        at = dt.datetime(2024, 3, 10, 9, 0, tzinfo=NY)
        run_id = await client.start(REPORT, {"slot": "nine"}, start_at=at)
        assert await client.engine.execute(run_id) is None  # not due: nobody may claim it
        assert (await client.get(run_id)).status is RunStatus.PENDING
        clock.set(at.timestamp() - 1)
        assert await client.engine.execute(run_id) is None
        clock.set(at.timestamp())
        done = await client.engine.execute(run_id)
        assert done is not None and done.status is RunStatus.SUCCEEDED and done.output == {"slot": "nine"}


async def test_a_delayed_start_on_postgresql_waits_for_the_database_clock() -> None:
    # PostgreSQL judges due times by its own clock (as it does leases): real time here.
    for url in in_schema():
        client = _worker(url, FakeClock(time.time()))
        async with client:
            later = await client.start(REPORT, {"slot": "later"}, start_at=time.time() + 3600)
            now = await client.start(REPORT, {"slot": "now"}, start_at=time.time() - 1)
            assert await client.engine.execute(later) is None
            assert (await client.get(later)).status is RunStatus.PENDING
            done = await client.engine.execute(now)
            assert done is not None and done.status is RunStatus.SUCCEEDED


async def test_start_at_refuses_a_naive_datetime(tmp_path: Path) -> None:
    client = _worker(f"sqlite:///{tmp_path}/runs.db", FakeClock(MIDNIGHT))
    async with client:
        with pytest.raises(InvalidInputError, match="timezone-aware"):
            await client.start(REPORT, {"slot": "x"}, start_at=dt.datetime(2024, 3, 10, 9, 0))
        assert await _runs(client) == []
