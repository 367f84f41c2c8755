"""Gates fail closed in every definition style, and sit explicitly before or after a step.

An expired review stops the run unless its gate names another outcome (``"continue"``,
``Default(value)``, ``"approve"``, a route, an escalation). A gate ``at="before"`` a step
reviews its input: the step's side effect happens only after approval, with the approved
or edited input. Runs live in a SQLite file, as in production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrate import Client, Engine, Fallback, RunContext, RunStatus, Step, Workflow, gate, workflow
from orchestrate.review import Default, HumanReviewGate, ReviewStatus, review_queue
from orchestrate.store import open_store
from orchestrate.testing import FakeClock


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gates.db'}"


def _client(url: str, clock: FakeClock, wf: Any) -> Client:
    return Client(engine=Engine(open_store(url), clock=clock), workflows=[wf])


# expiry, every style -----------------------------------------------------------------------------


async def test_an_expired_ctx_review_fails_the_run_and_files_nothing(url: str) -> None:
    filed: list[str] = []
    clock = FakeClock()

    def file_contract(contract: dict[str, Any]) -> str:
        filed.append(contract["id"])
        return "filed"

    @workflow(version="1")
    async def contracts(ctx: RunContext, contract: dict[str, Any]) -> str:
        await ctx.review(contract, roles=["legal"], timeout=3600)
        return await ctx.step(file_contract, contract)

    async with _client(url, clock, contracts) as client:
        parked = await client.run(contracts, {"id": "C-7"})
        assert parked.status is RunStatus.WAITING
        clock.advance(3601)
        ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED
    assert ended.error["name"] == "ReviewExpiredError"
    assert "review 'review' got no decision" in ended.error["message"] and "SLA of 3600s" in ended.error["message"]
    assert filed == []


@pytest.mark.parametrize(
    ("on_timeout", "expected"),
    [
        ("continue", [False, True, "expired", {"id": "C-7"}]),
        (Default({"id": "C-7", "note": "auto"}), [True, True, "expired", {"id": "C-7", "note": "auto"}]),
        ("approve", [True, True, "expired", {"id": "C-7"}]),
    ],
    ids=["continue", "default", "approve"],
)
async def test_ctx_review_goes_on_when_the_gate_says_so(url: str, on_timeout: Any, expected: list[Any]) -> None:
    clock = FakeClock()

    @workflow(version="1")
    async def flow(ctx: RunContext, contract: dict[str, Any]) -> list[Any]:
        outcome = await ctx.review(contract, timeout=60, on_timeout=on_timeout)
        return [outcome.approved, outcome.timed_out, outcome.outcome, outcome.payload]

    async with _client(url, clock, flow) as client:
        parked = await client.run(flow, {"id": "C-7"})
        clock.advance(61)
        done = await client.resume(parked.run_id)
    assert done.status is RunStatus.SUCCEEDED and done.output == expected


async def test_an_expired_seed_gate_decorator_fails_the_run(url: str) -> None:
    clock = FakeClock()

    @gate(timeout=300, roles=["medical_reviewer"])
    def approve_diagnosis(diagnosis: dict[str, Any]) -> dict[str, Any]:
        return diagnosis

    @workflow(version="1")
    async def diagnose(ctx: RunContext, case: dict[str, Any]) -> Any:
        return await approve_diagnosis(case)

    async with _client(url, clock, diagnose) as client:
        parked = await client.run(diagnose, {"diagnosis": "flu"})
        clock.advance(301)
        ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED and ended.error["name"] == "ReviewExpiredError"


async def test_an_expired_human_queue_item_fails_the_run(url: str) -> None:
    clock = FakeClock()
    review_queue("fail_closed_queue", HumanReviewGate(roles=["compliance_officer"], timeout=600))

    def review_check(doc: dict[str, Any]) -> Any:
        return Fallback("fail_closed_queue", doc)

    wf = Workflow("queued", [Step("review_check", review_check), Step("file", lambda d: "filed")], version="1")
    async with _client(url, clock, wf) as client:
        parked = await client.run(wf, {"confidence": 0.4})
        clock.advance(601)
        ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED and ended.error["name"] == "ReviewExpiredError"
    assert "fail_closed_queue: item from step 'review_check' got no decision" in ended.error["message"]


async def test_an_expired_graph_gate_can_continue_with_a_default(url: str) -> None:
    clock = FakeClock()
    gated = HumanReviewGate(timeout=60, on_timeout=Default({"reply": "We will get back to you."}))
    wf = Workflow(
        "default_reply",
        [Step("draft", lambda q: {"reply": f"re: {q}"}, gate=gated), Step("send", lambda d: d["reply"])],
        version="1",
    )
    async with _client(url, clock, wf) as client:
        parked = await client.run(wf, "q")
        clock.advance(61)
        done = await client.resume(parked.run_id)
    assert done.output == "We will get back to you."


# before a step -----------------------------------------------------------------------------------


def _payments(paid: list[Any], gate_at: str) -> Workflow:
    def pay(order: dict[str, Any]) -> str:
        paid.append(order["amount"])
        return f"paid {order['amount']}"

    return Workflow(
        "payments",
        [
            Step("prepare", lambda order: {**order, "prepared": True}),
            Step("pay", pay, gate=HumanReviewGate(roles=["finance"], at=gate_at)),
            Step("receipt", lambda text: f"receipt: {text}"),
        ],
        version="1",
    )


async def test_a_gate_before_a_step_holds_its_side_effect_until_approved(url: str) -> None:
    paid: list[Any] = []
    clock = FakeClock()
    wf = _payments(paid, "before")
    async with _client(url, clock, wf) as client:
        parked = await client.run(wf, {"amount": 120})
        assert parked.status is RunStatus.WAITING and paid == []
        (item,) = await client.list_reviews(run_id=parked.run_id)
        assert item.payload == {"amount": 120, "prepared": True} and item.meta["reviews"] == "input"
    # Another process decides, another resumes: the step runs once, with the edited input.
    async with _client(url, clock, wf) as client:
        await client.edit(item.review_id, {"amount": 100, "prepared": True}, by="cfo", role="finance")
        done = await client.resume(parked.run_id)
        assert done.status is RunStatus.SUCCEEDED and done.output == "receipt: paid 100"
        events = [e.kind for e in (await client.detail(parked.run_id)).events]
    assert paid == [100]
    assert events.index("review_created") < events.index("review_decided")


async def test_a_rejected_input_never_reaches_the_step(url: str) -> None:
    paid: list[Any] = []
    clock = FakeClock()
    wf = _payments(paid, "before")
    async with _client(url, clock, wf) as client:
        parked = await client.run(wf, {"amount": 9_999})
        (item,) = await client.list_reviews(run_id=parked.run_id)
        await client.reject(item.review_id, by="cfo", role="finance", reason="too much")
        ended = await client.resume(parked.run_id)
        assert (await client.list_reviews(run_id=parked.run_id, status=None))[0].status is ReviewStatus.REJECTED
    assert ended.status is RunStatus.FAILED and ended.error["name"] == "RejectedError"
    assert "the input of step 'pay' was rejected by a reviewer: too much" in ended.error["message"]
    assert paid == []


async def test_a_gate_after_a_step_reviews_its_output_before_downstream_sees_it(url: str) -> None:
    paid: list[Any] = []
    clock = FakeClock()
    wf = _payments(paid, "after")
    async with _client(url, clock, wf) as client:
        parked = await client.run(wf, {"amount": 120})
        assert paid == [120]  # after: the step ran, its output waits for people
        (item,) = await client.list_reviews(run_id=parked.run_id)
        assert item.payload == "paid 120" and item.meta["reviews"] == "output"
        await client.approve(item.review_id, by="cfo", role="finance")
        assert (await client.resume(parked.run_id)).output == "receipt: paid 120"


async def test_the_seed_gate_decorator_can_sit_before_its_function(url: str) -> None:
    sent: list[str] = []
    clock = FakeClock()

    @gate(roles=["editor"], at="before")
    def send_newsletter(text: str) -> str:
        sent.append(text)
        return f"sent {text}"

    @workflow(version="1")
    async def newsletter(ctx: RunContext, text: str) -> str:
        return await send_newsletter(text)

    async with _client(url, clock, newsletter) as client:
        parked = await client.run(newsletter, "draft")
        assert sent == []
        (item,) = await client.list_reviews(run_id=parked.run_id)
        await client.edit(item.review_id, "final", by="ed", role="editor")
        done = await client.resume(parked.run_id)
    assert done.output == "sent final" and sent == ["final"]


def test_a_gate_says_where_it_sits_or_is_refused() -> None:
    from orchestrate.errors import DefinitionError

    with pytest.raises(DefinitionError, match="at= must be 'before'"):
        HumanReviewGate(at="during")  # type: ignore[arg-type]


async def test_the_timeline_draws_where_a_gate_sits(url: str) -> None:
    from rich.console import Console

    from orchestrate.cli.timeline import render_timeline

    clock = FakeClock()
    wf = _payments([], "before")
    async with _client(url, clock, wf) as client:
        parked = await client.run(wf, {"amount": 120})
        console = Console(record=True, width=200)
        render_timeline(await client.detail(parked.run_id), console)
        waiting = console.export_text()
        (item,) = await client.list_reviews(run_id=parked.run_id)
        await client.approve(item.review_id, by="cfo", role="finance")
        await client.resume(parked.run_id)
        console = Console(record=True, width=200)
        render_timeline(await client.detail(parked.run_id), console)
        done = console.export_text()
    assert "wait:review:pay" in waiting and "gate before step 'pay': its input approved before it runs" in waiting
    assert "gate before step 'pay'" in done and done.index("wait:review:pay") < done.index(" pay ")
