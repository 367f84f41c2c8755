"""Schedules without I/O: the misfire decision, slots in a time zone, the serve loop on
FakeClock, and `orchestrate schedules list`."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from orchestrate import Client, Engine, Workflow
from orchestrate.cli import cli
from orchestrate.errors import InvalidInputError
from orchestrate.store import InMemoryStore
from orchestrate.testing import FakeClock
from orchestrate.triggers import Misfire, Schedule

PARIS = ZoneInfo("Europe/Paris")


def tick(x: object) -> object:
    return x


WF = Workflow("tick", [tick])


def test_misfire_fires_on_time_slots_and_the_last_n_missed() -> None:
    slots = [0.0, 60.0, 120.0, 180.0, 240.0]
    assert Misfire().slots_to_fire(slots, now=250.0) == [240.0]
    assert Misfire(catch_up=2).slots_to_fire(slots, now=250.0) == [120.0, 180.0, 240.0]
    assert Misfire(catch_up=9).slots_to_fire(slots, now=250.0) == slots
    assert Misfire(grace_seconds=0).slots_to_fire(slots, now=250.0) == []
    assert Misfire.of("skip") == Misfire() and Misfire.of("catch_up:3") == Misfire(catch_up=3) == Misfire.of(3)


@pytest.mark.parametrize("bad", ["sometimes", "catch_up:-1", -1, 1.5, None])
def test_a_bad_misfire_policy_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="misfire|catch_up"):
        Misfire.of(bad)  # type: ignore[arg-type]


def test_bad_expressions_and_zones_are_refused_naming_the_schedule() -> None:
    with pytest.raises(InvalidInputError, match="'nightly'.*not a cron expression"):
        Schedule("nightly", workflow=WF, cron="0 25 * * *")
    with pytest.raises(InvalidInputError, match="unknown time zone 'Mars/Olympus'"):
        Schedule("nightly", workflow=WF, cron="0 2 * * *", timezone="Mars/Olympus")


def test_slots_follow_the_zone_across_a_dst_change() -> None:
    schedule = Schedule("nightly", workflow=WF, cron="30 2 * * *", timezone="Europe/Paris")
    after = dt.datetime(2024, 3, 29, 12, tzinfo=PARIS)
    found = schedule.next_firings(3, after=after)
    # 02:30 does not exist on 31 March in Paris: that night's slot is at 03:00 CEST.
    assert [w.isoformat() for w in found] == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
    ]


def test_a_long_outage_costs_only_the_slots_that_may_fire() -> None:
    schedule = Schedule("minutely", workflow=WF, cron="* * * * *", misfire="catch_up:3")
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
    year = 366 * 86400
    slots = schedule.slots_between(start, start + year)
    # Two on time (within the 60 s grace of now), the three most recent missed ones.
    assert slots == [start + year - 240 + 60 * i for i in range(5)]


async def test_serve_fires_each_slot_on_the_engine_clock_until_stopped() -> None:
    clock = FakeClock(dt.datetime(2024, 1, 1, 8, 59, tzinfo=PARIS).timestamp())
    store = InMemoryStore()
    clients = [Client(engine=Engine(store, workflows=[WF], clock=clock)) for _ in range(2)]
    schedules = [
        Schedule("hourly", workflow="tick", cron="0 * * * *", timezone="Europe/Paris", input=lambda w: w.hour)
        for _ in clients
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.serve(c, stop=stop)) for s, c in zip(schedules, clients, strict=True)]
    await clock.wait_for_sleepers(2)
    await clock.advance_stepwise(3 * 3600)  # to 11:59: 09:00, 10:00 and 11:00
    stop.set()
    await asyncio.gather(*tasks)
    runs = await clients[0].list()
    assert sorted(r.input for r in runs) == [9, 10, 11]


def test_schedules_list_shows_the_next_firings(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "from orchestrate import Workflow\n"
        "from orchestrate.triggers import Schedule\n"
        "def tick(x):\n    return x\n"
        "wf = Workflow('tick', [tick])\n"
        "triggers = [Schedule('nightly', workflow=wf, cron='30 2 * * *', timezone='Europe/Paris',"
        " misfire='catch_up:2')]\n"
    )
    result = CliRunner().invoke(cli, ["schedules", "list", "--triggers", f"{app}:triggers", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert (row["name"], row["workflow"], row["misfire"]) == ("nightly", "tick", "catch_up:2")
    firings = [dt.datetime.fromisoformat(w) for w in row["next"]]
    assert len(firings) == 3 and all(w.astimezone(PARIS).strftime("%M") in ("30", "00") for w in firings)
    table = CliRunner().invoke(cli, ["schedules", "list", "--triggers", f"{app}:triggers"])
    assert table.exit_code == 0 and "nightly" in table.output and "30 2 * * *" in table.output


def test_a_triggers_target_that_is_not_a_trigger_is_one_line(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("triggers = [42]\n")
    result = CliRunner().invoke(cli, ["schedules", "list", "--triggers", f"{app}:triggers"])
    assert result.exit_code == 2
    assert "holds a int, not a trigger" in result.output and "Traceback" not in result.output
