"""The seeds' decorators inside a durable run on real stores: steps of that run, replayed
after a crash by a fresh engine, never run twice.

Every test runs on a SQLite file in ``tmp_path`` and on the real PostgreSQL named by
``ORCHESTRATE_TEST_POSTGRES`` (default: the local one, database ``orchestrate_test``), in
a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Client, Engine, RunContext, RunStatus, branch, fallback, parallel, reduce, workflow
from orchestrate.store import open_store
from tests.postgres import in_schema


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL on SQLite, or on PostgreSQL in a fresh schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'decorators.db'}"
        return
    yield from in_schema()


calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


class Crash(BaseException):
    """The process dies: nothing is recorded, the run stays ``running``."""


@branch(on="complexity_score")
def route_query(query: str) -> str:
    calls["route_query"] += 1
    return "complex"


def local_model(query: str) -> str:
    calls["local_model"] += 1
    return f"[local] {query}"


@fallback(strategy="model_switch", to=local_model)
def handle_complex(query: str) -> str:
    calls["handle_complex"] += 1
    return f"[hosted] {query}"


route_query.route("complex")(handle_complex)


@parallel(max_workers=2)
def extract(path: str) -> dict[str, str]:
    calls["extract"] += 1
    return {path: path.rsplit(".", 1)[-1]}


@reduce(strategy="merge")
def merge(merged: dict[str, str]) -> list[str]:
    calls["merge"] += 1
    return sorted(merged)


def deliver(report: dict[str, Any]) -> dict[str, Any]:
    calls["deliver"] += 1
    if calls["deliver"] == 1:
        raise Crash
    return report


@workflow(name="intake_report", version="1")
async def intake_report(ctx: RunContext, query: str) -> dict[str, Any]:
    answer = await route_query.run(query)
    files = await merge(await extract.map(["a.pdf", "b.jpg", "c.txt"]))
    report: dict[str, Any] = await ctx.step(deliver, {"answer": answer, "files": files})
    return report


async def test_a_crashed_run_resumes_on_a_fresh_engine_without_calling_decorated_functions_again(
    store_url: str,
) -> None:
    async with Client(store_url, workflows=[intake_report]) as first:
        with pytest.raises(Crash):
            await first.run(intake_report, "drug interactions?")
        (crashed,) = await first.list()
        before = [s.step_key for s in (await first.detail(crashed.run_id)).steps]
    assert crashed.status is RunStatus.RUNNING
    assert before == ["complexity_score", "handle_complex", "extract[0]", "extract[1]", "extract[2]", "merge"]
    assert calls == Counter(route_query=1, handle_complex=1, extract=3, merge=1, deliver=1)

    async with Engine(open_store(store_url), workflows=[intake_report]) as engine:  # a new process
        resumed = await engine.execute(crashed.run_id, force=True)
        steps = await engine.store.get_steps(crashed.run_id)
        runs = await engine.store.list_runs()

    assert resumed is not None and resumed.status is RunStatus.SUCCEEDED
    assert resumed.output == {"answer": "[hosted] drug interactions?", "files": ["a.pdf", "b.jpg", "c.txt"]}
    assert [s.step_key for s in steps] == [*before, "deliver"]
    assert [r.run_id for r in runs] == [crashed.run_id]
    assert calls == Counter(route_query=1, handle_complex=1, extract=3, merge=1, deliver=2)


@parallel(max_workers=3)
def score(item: int) -> int:
    calls[f"score[{item}]"] += 1
    if item == 1 and calls["score[1]"] == 1:
        raise Crash
    return item * 10


@workflow(name="scores", version="1")
async def scores(ctx: RunContext, items: list[int]) -> list[int]:
    return list(await score.map(items))


async def test_a_map_interrupted_half_way_resumes_and_runs_only_the_missing_items(store_url: str) -> None:
    async with Client(store_url, workflows=[scores]) as first:
        with pytest.raises(Crash):
            await first.run(scores, [0, 1, 2])
        (crashed,) = await first.list()

    async with Engine(open_store(store_url), workflows=[scores]) as engine:
        resumed = await engine.execute(crashed.run_id, force=True)

    assert resumed is not None and resumed.status is RunStatus.SUCCEEDED, resumed and resumed.error
    assert resumed.output == [0, 10, 20]
    assert calls == Counter({"score[0]": 1, "score[1]": 2, "score[2]": 1})
