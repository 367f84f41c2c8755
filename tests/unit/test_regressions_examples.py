"""Regressions found by writing the seed examples (examples/seeds, examples/support_demo.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrate import (
    Branch,
    Client,
    DefinitionError,
    Engine,
    HumanReviewGate,
    RunStatus,
    Step,
    StepContext,
    Workflow,
    workflow,
)
from orchestrate.store import InMemoryStore


class JumpingClock:
    """A clock whose every sleep jumps time forward at once: sleeping through a deadline shows."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)


@pytest.fixture
async def engine():
    async with Engine(InMemoryStore()) as eng:
        yield eng


# ``ctx`` as the first parameter --------------------------------------------------------------


async def test_graph_step_with_ctx_first_gets_the_value_and_the_context(engine):
    def stamp(ctx: StepContext, value: str) -> dict:
        return {"value": value, "step": ctx.step_key}

    wf = Workflow("ctx_first", [Step("stamp", stamp)])
    assert await engine.run(wf, "hello") == {"value": "hello", "step": "stamp"}


async def test_durable_step_with_ctx_first_gets_its_arguments_after_ctx(engine):
    def log_metrics(ctx: StepContext, outcome: dict, extra: int) -> dict:
        return {"run": ctx.run_id, **outcome, "extra": extra}

    @workflow(name="ctx_first_durable", version="1")
    async def flow(rc: Any, value: dict) -> dict:
        return await rc.step(log_metrics, value, 7)

    record = await engine.run_record(flow, {"ok": True})
    assert record.status is RunStatus.SUCCEEDED
    assert record.output == {"run": record.run_id, "ok": True, "extra": 7}


# a dict flowing into a lone parameter ---------------------------------------------------------


async def test_lone_dict_parameter_gets_the_whole_dict_even_with_a_field_of_its_name(engine):
    def draft(case: dict) -> dict:
        return {"patient": case["patient"], "diagnosis": "fracture", "confidence": 0.8}

    def approve(diagnosis: dict) -> dict:  # seed 001: approve_diagnosis(diagnosis: dict)
        return diagnosis

    wf = Workflow("whole_dict", [draft, approve])
    assert await engine.run(wf, {"patient": "P-1"}) == {"patient": "P-1", "diagnosis": "fracture", "confidence": 0.8}


async def test_keyword_input_still_spreads_into_matching_parameters(engine):
    def extract(form_id: str) -> str:
        return form_id.lower()

    def pair(a: int, b: int) -> int:
        return a + b

    assert await engine.run(Workflow("spread1", [extract]), {"form_id": "F-1", "priority": 2}) == "f-1"
    assert await engine.run(Workflow("spread2", [pair]), {"a": 1, "b": 2}) == 3


# exclusive branch routes --------------------------------------------------------------------


def _score(value: float) -> dict:
    return {"score": value}


def _label(name: str):
    def label(item: dict) -> str:
        return name

    return label


def _moderation() -> Workflow:
    return Workflow(
        "moderation",
        [
            Step("ai_moderator", _score),
            Branch(
                "ai_moderator.score",
                [
                    (lambda s: s > 0.95, Step("auto_block", _label("blocked"))),
                    (
                        lambda s: s <= 0.95,
                        [
                            Step("second_opinion", lambda item: {"score": item["score"] * 2}),
                            Branch(
                                "second_opinion.score",
                                [
                                    (lambda s: s > 0.9, Step("auto_block", _label("blocked"))),
                                    (lambda s: s <= 0.9, Step("queue_for_review", _label("review"))),
                                ],
                            ),
                        ],
                    ),
                ],
            ),
        ],
    )


async def test_same_step_on_exclusive_routes_and_nested_branch_on_an_earlier_route_step(engine):
    wf = _moderation()
    assert await engine.run(wf, 0.99) == "blocked"
    assert await engine.run(wf, 0.6) == "blocked"  # via the second opinion (1.2)
    assert await engine.run(wf, 0.3) == "review"


def test_duplicate_names_are_still_rejected_within_a_route_and_after_the_branch():
    with pytest.raises(DefinitionError, match="duplicate name 'x'"):
        Workflow("w", [Step("a", _score), Branch(None, {1: [Step("x", _score), Step("x", _score)]})])
    with pytest.raises(DefinitionError, match="duplicate name 'x'"):
        Workflow(
            "w", [Step("a", _score), Branch(None, {1: Step("x", _score), 2: Step("y", _score)}), Step("x", _score)]
        )


# waiting for a person with a deadline ---------------------------------------------------------


def _gated(timeout: float) -> Workflow:
    return Workflow(
        "sla_gate",
        [Step("draft", lambda text: text.upper(), gate=HumanReviewGate(timeout=timeout)), Step("send", lambda t: t)],
    )


async def test_run_returns_waiting_at_a_gate_with_an_sla_instead_of_sleeping_through_it():
    clock = JumpingClock()  # a sleep through the SLA would be instant and visible
    wf = _gated(3600)
    async with Client(engine=Engine(InMemoryStore(), clock=clock), workflows=[wf]) as client:
        parked = await client.run(wf, "hi")
        assert parked.status is RunStatus.WAITING
        assert parked.wait_reason == "signal:review:draft"
        assert clock.now() < parked.wake_at
        await client.decide(parked.run_id, "draft", approved=True, by="reviewer")
        done = await client.resume(parked.run_id)
        assert done.status is RunStatus.SUCCEEDED
        assert done.output == "HI"


async def test_a_gate_whose_sla_passed_is_driven_to_its_timeout():
    clock = JumpingClock()
    wf = _gated(60)
    async with Client(engine=Engine(InMemoryStore(), clock=clock), workflows=[wf]) as client:
        parked = await client.run(wf, "hi")
        assert parked.status is RunStatus.WAITING
        clock.advance(61)
        ended = await client.resume(parked.run_id)
        assert ended.status in (RunStatus.FAILED, RunStatus.DEAD)
        assert ended.error["name"] == "ReviewExpiredError"
