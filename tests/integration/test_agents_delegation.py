"""Delegation (seed 002) on SQLite and PostgreSQL: code decomposes, workers run in parallel as child
steps, a failing worker is retried, and after three failed retries a person decides; the
resumed run does not run finished workers again. In durable-function and graph styles."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrate import Client, Engine, RunContext, RunStatus, workflow
from orchestrate.agents import Agent, SubTaskOutcome, Supervisor
from orchestrate.errors import AgentError
from orchestrate.policies import Retry
from orchestrate.store import open_store
from orchestrate.testing.models import FakeModel

MODELS: dict[str, FakeModel] = {}
BARRIER: dict[str, asyncio.Barrier] = {}
MET: list[str] = []


async def meet() -> str:
    """Wait until the other worker is here too (only parallel workers both arrive)."""
    async with asyncio.timeout(10):
        await BARRIER["now"].wait()
    MET.append("met")  # a sequential run times out here instead (the tool's failure goes to the model)
    return "met"


def worker(name: str) -> Agent:
    return Agent(name, role=f"You do {name} work.", model=MODELS[name], tools=[meet], max_steps=2)


def supervisor() -> Supervisor:
    return Supervisor({"refund": worker("refund"), "technical": worker("technical")}, route=lambda t: "technical")


def split(ticket: str) -> list[tuple[str, str]]:
    return [("refund", f"refund part of: {ticket}"), ("technical", f"technical part of: {ticket}")]


def join(done: list[SubTaskOutcome]) -> str:
    return " | ".join(f"{d.worker}={d.output}" for d in done)


@workflow(name="delegated_ticket", version="1")
async def delegated_ticket(ctx: RunContext, ticket: str) -> dict[str, Any]:
    outcome = await supervisor().delegate(
        ctx, ticket, decompose=split, synthesise=join, retries=3, escalate_roles=["support_lead"]
    )
    return {"output": outcome.output, "attempts": [p.attempts for p in outcome.parts]}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/runs.db"
    else:
        from tests.postgres import in_schema

        yield from in_schema()


def step(tool: str | None = None, final: str | None = None) -> str:
    return json.dumps({"tool": tool, "args": {}} if tool else {"final": final})


async def test_workers_run_in_parallel_as_child_steps(url: str) -> None:
    BARRIER["now"] = asyncio.Barrier(2)  # each worker's tool waits for the other's
    MET.clear()
    MODELS["refund"] = FakeModel([step("meet"), step(final="refund issued")])
    MODELS["technical"] = FakeModel([step("meet"), step(final="firmware fixed")])
    async with Engine(open_store(url), workflows=[delegated_ticket]) as engine:
        record = await engine.run_record(delegated_ticket, "blender broken")
        keys = {s.step_key for s in await engine.store.get_steps(record.run_id)}
    assert record.output == {"output": "refund=refund issued | technical=firmware fixed", "attempts": [1, 1]}
    assert MET == ["met", "met"]  # both tools met at the barrier: the workers ran at the same time
    assert {"agent:refund@0.1:tool:1:0", "agent:technical@1.1:tool:1:0", "agent:technical@1.1:turn:2"} <= keys


async def test_after_three_failed_retries_a_person_decides_and_the_run_goes_on(url: str) -> None:
    BARRIER["now"] = asyncio.Barrier(1)
    garbage = "I cannot answer in JSON"  # with max_steps=2, two of these fail a worker run
    MODELS["refund"] = FakeModel([step(final="refund issued")])
    MODELS["technical"] = FakeModel([garbage] * 8)
    async with Engine(open_store(url), workflows=[delegated_ticket]) as engine:
        parked = await Client(engine=engine).run(delegated_ticket, "blender broken")
        assert parked.status is RunStatus.WAITING
        (item,) = await Client(engine=engine).list_reviews(run_id=parked.run_id)
        assert item.payload["worker"] == "technical" and len(item.payload["errors"]) == 4
        assert "step limit of 2" in item.payload["errors"][0]
        await Client(engine=engine).edit(
            item.review_id, {**item.payload, "output": "replaced the unit"}, by="lee", role="support_lead"
        )
    assert len(MODELS["technical"].calls) == 8 and len(MODELS["refund"].calls) == 1
    MODELS["refund"] = MODELS["technical"] = FakeModel([])  # nothing may be asked again
    async with Engine(open_store(url), workflows=[delegated_ticket]) as engine:
        done = await Client(engine=engine).resume(parked.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.output == {"output": "refund=refund issued | technical=replaced the unit", "attempts": [1, 4]}


async def test_without_a_run_the_retries_end_in_a_clear_error() -> None:
    MODELS["refund"] = FakeModel([step(final="ok")])
    MODELS["technical"] = FakeModel(["no json"] * 4)
    with pytest.raises(AgentError, match=r"sub-task 1 \(technical\) failed 2 times; last error: AgentError"):
        await supervisor().delegate(None, "t", decompose=split, synthesise=join, retries=1)


async def test_decomposing_to_an_unknown_worker_is_refused() -> None:
    with pytest.raises(AgentError, match=r"decompose sent sub-tasks to \['billing'\]"):
        await supervisor().delegate(None, "t", decompose=lambda t: [("billing", t)], synthesise=join)


def graph_supervisor() -> Supervisor:
    return Supervisor(
        {
            "refund": Agent("refund", role="r", model=MODELS["refund"], max_steps=1),
            "technical": Agent("technical", role="t", model=MODELS["technical"], max_steps=1),
        },
        route=lambda t: "technical",
    )


def graph(name: str) -> Any:
    return graph_supervisor().workflow(
        name,
        decompose=split,
        synthesise=join,
        retries=Retry(max_attempts=4, initial_delay=0.0, jitter=0.0),
        escalate_roles=["support_lead"],
        version="1",
    )


async def test_the_graph_style_retries_then_parks_for_a_person_only_when_a_part_failed(url: str) -> None:
    MODELS["refund"] = FakeModel([step(final="refund issued")])
    MODELS["technical"] = FakeModel(["not json"] * 4)  # every attempt fails
    flow = graph("delegated_graph")
    async with Engine(open_store(url), workflows=[flow]) as engine:
        parked = await Client(engine=engine).run(flow, "blender broken")
        assert parked.status is RunStatus.WAITING
        (item,) = await Client(engine=engine).list_reviews(run_id=parked.run_id)
        failed = [p for p in item.payload if p["escalated"]]
        assert [(p["worker"], p["attempts"]) for p in failed] == [("technical", 4)]
        edited = [{**p, "output": "replaced the unit"} if p["escalated"] else p for p in item.payload]
        await Client(engine=engine).edit(item.review_id, edited, by="lee", role="support_lead")
        done = await Client(engine=engine).resume(parked.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.output == "refund=refund issued | technical=replaced the unit"
    assert len(MODELS["technical"].calls) == 4 and len(MODELS["refund"].calls) == 1


async def test_the_graph_style_goes_straight_to_the_synthesis_when_every_part_succeeds(url: str) -> None:
    MODELS["refund"] = FakeModel([step(final="refund issued")])
    MODELS["technical"] = FakeModel(["not json", step(final="fixed")])  # the retry succeeds
    flow = graph("delegated_graph_ok")
    async with Engine(open_store(url), workflows=[flow]) as engine:
        done = await engine.run_record(flow, "blender broken")
    assert done.status is RunStatus.SUCCEEDED and done.output == "refund=refund issued | technical=fixed"


async def test_the_graph_style_runs_the_parts_in_parallel(url: str) -> None:
    BARRIER["now"] = asyncio.Barrier(2)  # each worker's tool waits for the other's
    MET.clear()
    MODELS["refund"] = FakeModel([step("meet"), step(final="refund issued")])
    MODELS["technical"] = FakeModel([step("meet"), step(final="firmware fixed")])
    flow = supervisor().workflow(
        "delegated_graph_parallel", decompose=split, synthesise=join, escalate_roles=["lead"], version="1"
    )
    async with Engine(open_store(url), workflows=[flow]) as engine:
        done = await engine.run_record(flow, "blender broken")
    assert done.output == "refund=refund issued | technical=firmware fixed" and MET == ["met", "met"]
