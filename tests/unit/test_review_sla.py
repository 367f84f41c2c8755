"""SLAs: warnings, escalation and defaults fire exactly once from the durable timer; tiers; hooks."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from orchestrate import Client, Engine, RunContext, RunStatus, Step, Workflow, workflow
from orchestrate.errors import DefinitionError
from orchestrate.review import (
    Escalate,
    HumanReviewGate,
    ReviewStatus,
    RouteTo,
    Tier,
    TieredGate,
)
from orchestrate.store import InMemoryStore
from orchestrate.testing import FakeClock


def _gated(gate: HumanReviewGate, *extra: Step) -> Workflow:
    return Workflow(
        "sla",
        [
            Step("draft", lambda q: {"reply": f"re: {q}"}, gate=gate),
            Step("send", lambda d: f"sent {d['reply']}"),
            *extra,
        ],
    )


def _kinds(events: list[Any], kind: str) -> list[Any]:
    return [e for e in events if e.kind == kind]


async def test_escalation_fires_exactly_once_with_a_fake_clock() -> None:
    clock = FakeClock(auto_advance=True)
    told: list[tuple[str, str, int]] = []

    def hook(*, event: str, review: Any, **_: Any) -> None:
        told.append((event, review.allowed_roles[0], review.level))

    gate = HumanReviewGate(
        roles=["agent"],
        timeout=300,
        on_timeout=Escalate("supervisor", timeout=600, on_timeout="approve"),
        notify=hook,
    )
    wf = _gated(gate)
    engine = Engine(InMemoryStore(), clock=clock)
    async with Client(engine=engine, workflows=[wf]) as client:
        run_id = await client.start(wf, "where is #4829?")
        started = clock.now()
        # Two workers on one store, sleeping through every timer until nothing is left to do.
        other = Engine(engine.store, workflows=[wf], clock=clock)
        await asyncio.gather(
            engine.work(until_idle=True, poll_seconds=30), other.work(until_idle=True, poll_seconds=30)
        )
        done = await client.get(run_id)
        assert done.status is RunStatus.SUCCEEDED and done.output == "sent re: where is #4829?"
        root, child = sorted(await client.list_reviews(run_id=run_id, status=None), key=lambda r: r.level)
        assert root.status is ReviewStatus.ESCALATED and root.escalated_to == child.review_id
        assert root.decided_at >= started + 300
        assert (child.roles, child.priority, child.sla_seconds, child.parent_id) == (
            ["supervisor"],
            "urgent",
            600,
            root.review_id,
        )
        assert child.status is ReviewStatus.EXPIRED and child.decision["action"] == "approve"
        events = (await client.detail(run_id)).events
        (escalated,) = _kinds(events, "review_escalated")
        assert escalated.data["to_review_id"] == child.review_id and escalated.data["role"] == "supervisor"
        assert len(_kinds(events, "review_expired")) == 1
        assert len(_kinds(events, "review_created")) == 2
        assert [e.data["review_id"] for e in _kinds(events, "review_sla_warning")] == [root.review_id, child.review_id]
        assert told == [
            ("review_created", "agent", 0),
            ("review_sla_warning", "agent", 0),
            ("review_escalated", "supervisor", 1),
            ("review_sla_warning", "supervisor", 1),
        ]
        # Driving it again changes nothing: every timer has fired.
        await engine.work(until_idle=True, poll_seconds=30)
        assert len(_kinds((await client.detail(run_id)).events, "review_escalated")) == 1


async def test_the_warning_comes_before_the_deadline_once_and_the_run_parks_again() -> None:
    clock = FakeClock()
    wf = _gated(HumanReviewGate(timeout=timedelta(minutes=10), warn_before=timedelta(minutes=2)))
    async with Client(engine=Engine(InMemoryStore(), clock=clock), workflows=[wf]) as client:
        parked = await client.run(wf, "q")
        (item,) = await client.list_reviews(run_id=parked.run_id)
        assert parked.wake_at == item.warn_at == item.due_at - 120
        clock.advance(480)
        again = await client.resume(parked.run_id)
        assert again.status is RunStatus.WAITING and again.wake_at == item.due_at
        clock.advance(30)
        await client.resume(parked.run_id)
        events = (await client.detail(parked.run_id)).events
        (warning,) = _kinds(events, "review_sla_warning")
        assert warning.data["seconds_left"] == 120
        assert (await client.get_review(item.review_id)).warned_at == item.created_at + 480


async def test_an_approval_that_beats_the_timer_wins_and_the_timer_does_nothing() -> None:
    clock = FakeClock()
    wf = _gated(HumanReviewGate(timeout=60, escalate_on_timeout=True))
    async with Client(engine=Engine(InMemoryStore(), clock=clock), workflows=[wf]) as client:
        parked = await client.run(wf, "q")
        (item,) = await client.list_reviews(run_id=parked.run_id)
        clock.advance(61)  # past the deadline, but no worker has fired it yet
        await client.approve(item.review_id, by="late_but_first")
        done = await client.resume(parked.run_id)
        assert done.status is RunStatus.SUCCEEDED
        assert _kinds((await client.detail(parked.run_id)).events, "review_escalated") == []
        assert len(await client.list_reviews(run_id=parked.run_id, status=None)) == 1


@pytest.mark.parametrize(
    ("action", "status", "error"),
    [
        ("approve", RunStatus.SUCCEEDED, None),
        ("reject", RunStatus.FAILED, "RejectedError"),
        ("fail", RunStatus.FAILED, "ReviewExpiredError"),
    ],
    ids=["approve", "reject", "fail"],
)
async def test_timeout_defaults(action: Any, status: RunStatus, error: str | None) -> None:
    clock = FakeClock()
    wf = _gated(HumanReviewGate(timeout=120, on_timeout=action, warn_before=0))
    async with Client(engine=Engine(InMemoryStore(), clock=clock), workflows=[wf]) as client:
        parked = await client.run(wf, "q")
        assert parked.wake_at == clock.now() + 120  # no warning timer
        clock.advance(119)
        assert (await client.resume(parked.run_id)).status is RunStatus.WAITING
        clock.advance(1)
        ended = await client.resume(parked.run_id)
        assert ended.status is status
        if error is None:
            assert ended.output == "sent re: q"
        else:
            assert ended.error["name"] == error and "SLA of 120s" in ended.error["message"]
        (item,) = await client.list_reviews(run_id=parked.run_id, status=None)
        assert item.status is ReviewStatus.EXPIRED and item.decision["by"] == "sla"
        assert len(_kinds((await client.detail(parked.run_id)).events, "review_expired")) == 1


async def test_a_timeout_routes_to_a_step() -> None:
    clock = FakeClock()
    wf = _gated(
        HumanReviewGate(timeout=120, on_timeout=RouteTo("fallback_reply")),
        Step("fallback_reply", lambda d: f"canned reply for {d['reply']}"),
    )
    async with Client(engine=Engine(InMemoryStore(), clock=clock), workflows=[wf]) as client:
        parked = await client.run(wf, "q")
        clock.advance(120)
        ended = await client.resume(parked.run_id)
        assert ended.status is RunStatus.SUCCEEDED and ended.output == "canned reply for re: q"
        assert "send" not in [s.step_key for s in (await client.detail(parked.run_id)).steps]


async def test_a_timeout_reject_follows_the_reject_route() -> None:
    clock = FakeClock()
    wf = _gated(
        HumanReviewGate(timeout=60, on_timeout="reject", on_reject="manual"),
        Step("manual", lambda d: f"manual: {d['reply']}"),
    )
    async with Client(engine=Engine(InMemoryStore(), clock=clock), workflows=[wf]) as client:
        parked = await client.run(wf, "q")
        clock.advance(61)
        assert (await client.resume(parked.run_id)).output == "manual: re: q"


async def test_ctx_review_reports_a_timeout() -> None:
    clock = FakeClock()

    @workflow(version="1")
    async def flow(ctx: RunContext, _: Any) -> Any:
        outcome = await ctx.review({"a": 1}, timeout=30, on_timeout=RouteTo("backup"))
        return [outcome.approved, outcome.timed_out, outcome.route, outcome.outcome]

    async with Client(engine=Engine(InMemoryStore(), clock=clock), workflows=[flow]) as client:
        parked = await client.run(flow, None)
        clock.advance(31)
        assert (await client.resume(parked.run_id)).output == [False, True, "backup", "expired"]


# confidence tiers ------------------------------------------------------------------------------


def sensitive(reply: dict[str, Any]) -> bool:
    return bool(reply.get("sensitive"))


# Seed 003's tiers in one declaration.
REPLY_GATE = TieredGate(
    "confidence",
    [
        Tier(0.8),  # auto-send
        Tier(0.5, HumanReviewGate(priority="normal", timeout=timedelta(minutes=120))),
        Tier(
            0.0,
            HumanReviewGate(roles=["senior_agent"], priority="urgent", timeout=timedelta(minutes=30)),
            when=sensitive,
        ),
    ],
    otherwise=HumanReviewGate(priority="low", timeout=timedelta(minutes=360)),
)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"confidence": 0.93}, None),
        ({"confidence": 0.6}, ("normal", [], 7200.0, "normal>=0.5")),
        ({"confidence": 0.3, "sensitive": True}, ("urgent", ["senior_agent"], 1800.0, "urgent>=0+sensitive")),
        ({"confidence": 0.3}, ("low", [], 21600.0, "otherwise")),
        ({"confidence": "high"}, ("low", [], 21600.0, "otherwise")),  # no number: fail closed
    ],
    ids=["auto", "normal", "sensitive", "low", "garbage"],
)
async def test_confidence_tiers(reply: dict[str, Any], expected: tuple[Any, ...] | None) -> None:
    wf = Workflow(
        "tiers", [Step("draft", lambda r: {"text": "hi", **r}, gate=REPLY_GATE), Step("send", lambda r: "sent")]
    )
    async with Client(engine=Engine(InMemoryStore(), clock=FakeClock()), workflows=[wf]) as client:
        record = await client.run(wf, reply)
        items = await client.list_reviews(run_id=record.run_id, status=None)
        events = (await client.detail(record.run_id)).events
        if expected is None:
            assert record.status is RunStatus.SUCCEEDED and items == []
            (auto,) = _kinds(events, "review_auto_approved")
            assert auto.data["tier"] == "auto>=0.8"
            again = await client.resume(record.run_id)  # replaying records nothing twice
            assert again.status is RunStatus.SUCCEEDED
            return
        assert record.status is RunStatus.WAITING
        (item,) = items
        assert (item.priority, item.roles, item.sla_seconds, item.meta["tier"]) == expected


def test_gate_definitions_are_validated() -> None:
    with pytest.raises(DefinitionError, match="priority must be one of"):
        HumanReviewGate(priority="asap")
    with pytest.raises(DefinitionError, match="needs a timeout"):
        HumanReviewGate(escalate_on_timeout=True)
    with pytest.raises(DefinitionError, match="needs a timeout"):
        HumanReviewGate(on_timeout="approve")
    with pytest.raises(DefinitionError, match="contradicts"):
        HumanReviewGate(timeout=10, escalate_on_timeout=True, on_timeout="approve")
    with pytest.raises(DefinitionError, match="warn_before"):
        HumanReviewGate(timeout=10, warn_before=10)
    with pytest.raises(DefinitionError, match="list of role names"):
        HumanReviewGate(roles="doctor")
    with pytest.raises(DefinitionError, match="at least 1"):
        HumanReviewGate(required_approvals=0)
    with pytest.raises(DefinitionError, match="URLs or callables"):
        HumanReviewGate(notify="ftp://x")
    with pytest.raises(DefinitionError, match="on_timeout must be"):
        HumanReviewGate(timeout=10, on_timeout="ignore")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="needs a timeout"):
        Escalate("supervisor", on_timeout="approve")
    with pytest.raises(DefinitionError, match="list of Tier"):
        TieredGate("confidence", [])
    with pytest.raises(DefinitionError, match="HumanReviewGate or None"):
        Tier(0.5, "review")  # type: ignore[arg-type]
    seed = HumanReviewGate(timeout=300, escalate_on_timeout=True, required_approvals=["a", "b"])
    assert seed.on_timeout == Escalate("supervisor") and seed.warn_before == 60
    assert seed.level(1).roles == ("supervisor",) and seed.level(1).timeout is None
    with pytest.raises(DefinitionError, match="no escalation level 2"):
        seed.level(2)
