"""Review gates in every definition style: items, roles, multi-approval, edits, rejections."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from orchestrate import (
    AgentWorkflow,
    Client,
    ConflictError,
    Engine,
    Fallback,
    RunContext,
    RunStatus,
    Step,
    Workflow,
    approval,
    gate,
    workflow,
)
from orchestrate.errors import InvalidInputError, RunStateError
from orchestrate.review import (
    APPROVERS,
    HumanReviewGate,
    ReviewNotFoundError,
    ReviewPermissionError,
    ReviewStatus,
    review_queue,
)
from orchestrate.store import InMemoryStore
from orchestrate.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _no_approval_checks_from_elsewhere() -> Iterator[None]:
    # Approval checks are process-wide per role: an example imported by another test may
    # have registered one for a role used here.
    saved = dict(APPROVERS)
    APPROVERS.clear()
    yield
    APPROVERS.clear()
    APPROVERS.update(saved)


@pytest.fixture
async def client(clock: FakeClock):
    async with Client(engine=Engine(InMemoryStore(), clock=clock)) as c:
        yield c


TWO_ROLES = HumanReviewGate(required_approvals=["medical_reviewer", "quality_assurance"], priority="high", timeout=3600)


def _intake(gate_: HumanReviewGate = TWO_ROLES, **steps: Any) -> Workflow:
    return Workflow(
        "intake",
        [
            Step("summarise", lambda form: {"patient": form["patient"], "summary": "fracture, left wrist"}, gate=gate_),
            Step("update_record", lambda s: f"EHR <- {s['patient']}: {s['summary']}"),
            *steps.values(),
        ],
    )


async def _only_item(client: Client, run_id: str):
    (item,) = await client.list_reviews(run_id=run_id, status=None)
    return item


async def test_a_gate_parks_the_run_on_a_review_item(client: Client, clock: FakeClock) -> None:
    parked = await client.run(_intake(), {"patient": "P-7"})
    assert parked.status is RunStatus.WAITING and parked.owner is None  # holds no worker
    assert parked.wait_reason == "signal:review:summarise"
    item = await _only_item(client, parked.run_id)
    assert item.status is ReviewStatus.PENDING
    assert (item.run_id, item.workflow, item.step_key) == (parked.run_id, "intake", "summarise")
    assert item.payload == {"patient": "P-7", "summary": "fracture, left wrist"}
    assert item.required_roles == ["medical_reviewer", "quality_assurance"]
    assert item.priority == "high"
    assert item.sla_seconds == 3600 and item.due_at == clock.now() + 3600
    assert await client.get_review(item.review_id) == item
    kinds = [e.kind for e in (await client.detail(parked.run_id)).events]
    assert "review_created" in kinds and kinds[-1] == "run_waiting"


async def test_both_required_roles_must_approve_before_the_run_resumes(client: Client, clock: FakeClock) -> None:
    parked = await client.run(_intake(), {"patient": "P-7"})
    item = await _only_item(client, parked.run_id)

    clock.advance(60)
    first = await client.approve(item.review_id, by="dr_okafor", role="medical_reviewer")
    assert first.status is ReviewStatus.PENDING
    still = await client.resume(parked.run_id)
    assert still.status is RunStatus.WAITING  # one of two roles is not enough

    clock.advance(60)
    done = await client.approve(item.review_id, by="qa_lee", role="quality_assurance", comment="checked codes")
    assert done.status is ReviewStatus.APPROVED
    finished = await client.resume(parked.run_id)
    assert finished.status is RunStatus.SUCCEEDED
    assert finished.output == "EHR <- P-7: fracture, left wrist"

    stored = await client.get_review(item.review_id)
    assert [(a["by"], a["role"], a["at"]) for a in stored.approvals] == [
        ("dr_okafor", "medical_reviewer", item.created_at + 60),
        ("qa_lee", "quality_assurance", item.created_at + 120),
    ]
    assert stored.approvals[1]["comment"] == "checked codes"
    assert stored.decision["outcome"] == "approved" and stored.decided_at == item.created_at + 120
    events = {e.kind: e for e in (await client.detail(parked.run_id)).events}
    assert events["review_approval_recorded"].data["waiting_for"] == ["quality_assurance"]
    assert events["review_decided"].data["waited_seconds"] == 120


async def test_a_role_that_may_not_decide_is_refused(client: Client) -> None:
    parked = await client.run(_intake(), {"patient": "P-7"})
    item = await _only_item(client, parked.run_id)
    with pytest.raises(ReviewPermissionError, match="role 'intern' may not decide"):
        await client.approve(item.review_id, by="sam", role="intern")
    with pytest.raises(ReviewPermissionError, match="role None"):
        await client.reject(item.review_id, by="sam", reason="looks wrong")
    assert await client.get_review(item.review_id) == item  # nothing recorded
    assert (await client.resume(parked.run_id)).status is RunStatus.WAITING


async def test_a_second_decision_is_a_conflict(client: Client) -> None:
    wf = _intake(HumanReviewGate(roles=["medical_reviewer"]))
    parked = await client.run(wf, {"patient": "P-7"})
    item = await _only_item(client, parked.run_id)
    await client.reject(item.review_id, by="dr_a", role="medical_reviewer", reason="wrong side")
    with pytest.raises(ConflictError, match="already rejected by dr_a"):
        await client.approve(item.review_id, by="dr_b", role="medical_reviewer")
    ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED
    assert ended.error["name"] == "RejectedError" and "wrong side" in ended.error["message"]
    assert (await client.get_review(item.review_id)).decision["by"] == "dr_a"


async def test_the_same_reviewer_or_role_cannot_approve_twice(client: Client) -> None:
    parked = await client.run(_intake(HumanReviewGate(roles=["doctor"], required_approvals=2)), {"patient": "P-1"})
    item = await _only_item(client, parked.run_id)
    await client.approve(item.review_id, by="dr_a", role="doctor")
    with pytest.raises(ConflictError, match="dr_a already approved"):
        await client.approve(item.review_id, by="dr_a", role="doctor")
    assert (await client.resume(parked.run_id)).status is RunStatus.WAITING  # four eyes: two people
    await client.approve(item.review_id, by="dr_b", role="doctor")
    assert (await client.resume(parked.run_id)).status is RunStatus.SUCCEEDED

    parked = await client.run(_intake(), {"patient": "P-2"})
    item = await _only_item(client, parked.run_id)
    await client.approve(item.review_id, by="dr_a", role="medical_reviewer")
    with pytest.raises(ConflictError, match="role 'medical_reviewer' already approved"):
        await client.approve(item.review_id, by="dr_c", role="medical_reviewer")


async def test_edits_reach_the_next_step_and_record_what_changed(client: Client) -> None:
    seen: list[Any] = []

    def update_record(summary: dict[str, Any]) -> str:
        seen.append(summary)
        return summary["summary"]

    wf = Workflow(
        "edited",
        [
            Step("summarise", lambda f: {"summary": "fracture, left wrist", "dose": "5mg"}, gate=HumanReviewGate()),
            Step("update_record", update_record),
        ],
    )
    parked = await client.run(wf, {})
    item = await _only_item(client, parked.run_id)
    corrected = {"summary": "fracture, right wrist", "dose": "5mg"}
    decided = await client.edit(item.review_id, corrected, by="dr_a", role="physician")
    assert decided.status is ReviewStatus.APPROVED and decided.payload == corrected
    assert decided.approvals[0]["changes"] == {
        "summary": {"before": "fracture, left wrist", "after": "fracture, right wrist"}
    }
    assert decided.decision["outcome"] == "edited"
    assert (await client.resume(parked.run_id)).output == "fracture, right wrist"
    assert seen == [corrected]
    (decided_event,) = [e for e in (await client.detail(parked.run_id)).events if e.kind == "review_decided"]
    assert decided_event.data["changes"]["summary"]["after"] == "fracture, right wrist"


@dataclass
class Summary:
    patient: str
    text: str


async def test_an_edited_dataclass_output_is_rebuilt_for_the_next_step(client: Client) -> None:
    def summarise(form: dict[str, Any]) -> Summary:
        return Summary(form["patient"], "draft")

    wf = Workflow(
        "typed", [Step("summarise", summarise, gate=HumanReviewGate()), Step("send", lambda s: type(s).__name__)]
    )
    parked = await client.run(wf, {"patient": "P-3"})
    item = await _only_item(client, parked.run_id)
    assert item.payload == {"patient": "P-3", "text": "draft"}
    await client.edit(item.review_id, {"patient": "P-3", "text": "final"}, by="dr_a")
    assert (await client.resume(parked.run_id)).output == "Summary"


async def test_a_rejection_routes_to_the_configured_step(client: Client) -> None:
    wf = Workflow(
        "routed",
        [
            Step("draft", lambda q: {"reply": f"re: {q}"}, gate=HumanReviewGate(on_reject="escalate_to_human")),
            Step("send", lambda d: f"sent {d['reply']}"),
            Step("escalate_to_human", lambda d: f"handed over: {d['reply']}"),
        ],
    )
    parked = await client.run(wf, "refund?")
    item = await _only_item(client, parked.run_id)
    await client.reject(item.review_id, by="agent_7", role="support", reason="needs a person")
    done = await client.resume(parked.run_id)
    assert done.status is RunStatus.SUCCEEDED and done.output == "handed over: re: refund?"
    steps = [s.step_key for s in (await client.detail(parked.run_id)).steps]
    assert "send" not in steps and steps[-1] == "escalate_to_human"


async def test_decisions_need_who_and_a_rejection_needs_a_reason(client: Client) -> None:
    parked = await client.run(_intake(HumanReviewGate()), {"patient": "P-7"})
    item = await _only_item(client, parked.run_id)
    with pytest.raises(InvalidInputError, match="who decides"):
        await client.approve(item.review_id, by="  ")
    with pytest.raises(InvalidInputError, match="needs a reason"):
        await client.reject(item.review_id, by="dr_a", reason="")
    with pytest.raises(ReviewNotFoundError):
        await client.approve("rv-nope", by="dr_a")


async def test_a_cancelled_run_closes_its_items_and_takes_no_decisions(client: Client) -> None:
    parked = await client.run(_intake(), {"patient": "P-7"})
    item = await _only_item(client, parked.run_id)
    await client.cancel(parked.run_id, reason="patient left")
    closed = await client.get_review(item.review_id)
    assert closed.status is ReviewStatus.CANCELLED and closed.decision["reason"] == "patient left"
    assert await client.list_reviews() == []
    with pytest.raises(ConflictError, match="already cancelled"):
        await client.approve(item.review_id, by="dr_a", role="medical_reviewer")


async def test_a_decision_on_an_ended_run_is_refused(client: Client) -> None:
    parked = await client.run(_intake(HumanReviewGate()), {"patient": "P-7"})
    item = await _only_item(client, parked.run_id)
    await client.engine.store.cancel_run(parked.run_id, now=0.0, reason="by hand")  # items left open
    with pytest.raises(RunStateError, match="cancelled"):
        await client.approve(item.review_id, by="dr_a")


# durable functions ------------------------------------------------------------------------------


async def test_ctx_review_in_a_durable_function(client: Client) -> None:
    calls: list[str] = []

    def draft(q: str) -> dict[str, Any]:
        calls.append("draft")
        return {"reply": f"re: {q}", "confidence": 0.4}

    @workflow(version="1")
    async def support(ctx: RunContext, q: str) -> Any:
        reply = await ctx.step(draft, q)
        outcome = await ctx.review(reply, roles=["support_lead"], priority="urgent", timeout=600)
        if not outcome.approved:
            return {"escalated": outcome.reason}
        return {"sent": outcome.payload["reply"], "by": outcome.by, "how": outcome.outcome}

    parked = await client.run(support, "where is #4829?")
    assert parked.wait_reason == "signal:review:review"
    item = await _only_item(client, parked.run_id)
    assert (item.roles, item.priority, item.step_key) == (["support_lead"], "urgent", "draft")
    await client.edit(item.review_id, {"reply": "It arrives Friday."}, by="lead_1", role="support_lead")
    done = await client.resume(parked.run_id)
    assert done.output == {"sent": "It arrives Friday.", "by": "lead_1", "how": "edited"}
    assert calls == ["draft"]  # replayed, not re-executed

    parked = await client.run(support, "cancel it")
    item = await _only_item(client, parked.run_id)
    await client.reject(item.review_id, by="lead_1", role="support_lead", reason="policy 4.2")
    assert (await client.resume(parked.run_id)).output == {"escalated": "policy 4.2"}


async def test_two_reviews_in_one_durable_function_get_their_own_items(client: Client) -> None:
    @workflow(version="1")
    async def twice(ctx: RunContext, _: Any) -> list[Any]:
        first = await ctx.review("first", gate=HumanReviewGate(roles=["a"]))
        second = await ctx.review("second", gate=HumanReviewGate(roles=["b"]))
        return [first.payload, second.payload]

    parked = await client.run(twice, None)
    (one,) = await client.list_reviews(run_id=parked.run_id)
    await client.approve(one.review_id, by="x", role="a")
    parked = await client.resume(parked.run_id)
    assert parked.wait_reason == "signal:review:review#2"
    (two,) = await client.list_reviews(run_id=parked.run_id)
    assert two.roles == ["b"] and two.review_id != one.review_id
    await client.approve(two.review_id, by="y", role="b")
    assert (await client.resume(parked.run_id)).output == ["first", "second"]


# the seeds' decorators -----------------------------------------------------------------------------


async def test_seed_gate_and_approval_decorators(client: Client) -> None:
    @gate(timeout=300, escalate_on_timeout=True, required_approvals=["medical_reviewer", "quality_assurance"])
    def approve_diagnosis(diagnosis: dict[str, Any]) -> dict[str, Any]:
        return diagnosis

    @approval(role="medical_reviewer")
    def reviewer_approve(diagnosis: dict[str, Any]) -> bool:
        return diagnosis["confidence"] >= 0.5

    try:

        @workflow(version="1")
        async def diagnose(ctx: RunContext, case: dict[str, Any]) -> Any:
            diagnosis = await approve_diagnosis(case)
            return {"notified": diagnosis["diagnosis"]}

        parked = await client.run(diagnose, {"diagnosis": "distal radius fracture", "confidence": 0.3})
        item = await _only_item(client, parked.run_id)
        assert item.required_roles == ["medical_reviewer", "quality_assurance"] and item.sla_seconds == 300
        assert item.meta["on_timeout"] == "escalate:supervisor"
        with pytest.raises(ReviewPermissionError, match="approval check of role 'medical_reviewer'"):
            await client.approve(item.review_id, by="dr_a", role="medical_reviewer")
        fixed = {"diagnosis": "distal radius fracture", "confidence": 0.9}
        await client.edit(item.review_id, fixed, by="dr_a", role="medical_reviewer")  # the check sees the edit
        await client.approve(item.review_id, by="qa_b", role="quality_assurance")
        assert (await client.resume(parked.run_id)).output == {"notified": "distal radius fracture"}

        # the same gate as a node of a graph workflow
        wf = Workflow("diagnosis_graph", [approve_diagnosis, Step("notify", lambda d: d["diagnosis"])])
        parked = await client.run(wf, fixed)
        item = await _only_item(client, parked.run_id)
        await client.approve(item.review_id, by="dr_a", role="medical_reviewer")
        await client.approve(item.review_id, by="qa_b", role="quality_assurance")
        assert (await client.resume(parked.run_id)).output == "distal radius fracture"
    finally:
        APPROVERS.pop("medical_reviewer", None)


async def test_agent_workflow_step_gate(client: Client) -> None:
    pipeline = AgentWorkflow("intake_orchestrator", state_store="memory")

    @pipeline.step(retry=2)
    def validate(form: dict[str, Any]) -> dict[str, Any]:
        return {**form, "valid": True}

    @pipeline.step(gate=HumanReviewGate(roles=["physician"]))
    def generate_summary(data: dict[str, Any]) -> str:
        return f"summary of {data['form_id']}"

    @pipeline.step()
    def update_ehr(summary: str) -> str:
        return f"EHR: {summary}"

    parked = await client.run(pipeline, {"form_id": "FORM-2026-07-001"})
    item = await _only_item(client, parked.run_id)
    assert item.payload == "summary of FORM-2026-07-001" and item.roles == ["physician"]
    await client.approve(item.review_id, by="dr_okafor", role="physician")
    assert (await client.resume(parked.run_id)).output == "EHR: summary of FORM-2026-07-001"


# a step returning a fallback to a human queue -------------------------------------------------------


async def test_fallback_to_a_human_queue_creates_an_item_there(client: Client) -> None:
    review_queue("compliance_queue", HumanReviewGate(roles=["compliance_officer"], priority="high"))

    def review_check(doc: dict[str, Any]) -> Any:
        return Fallback("compliance_queue", doc) if doc["confidence"] < 0.85 else doc

    wf = Workflow("compliance", [Step("review_check", review_check), Step("submit", lambda d: f"submitted {d['id']}")])
    parked = await client.run(wf, {"id": 9, "confidence": 0.5})
    assert parked.wait_reason == "signal:queue:compliance_queue:review_check"
    (item,) = await client.list_reviews(role="compliance_officer")
    assert (item.queue, item.priority, item.step_key) == ("compliance_queue", "high", "review_check")
    assert await client.list_reviews(role="intern") == []
    await client.edit(item.review_id, {"id": 10, "confidence": 0.99}, by="officer_1", role="compliance_officer")
    assert (await client.resume(parked.run_id)).output == "submitted 10"

    fine = await client.run(wf, {"id": 11, "confidence": 0.9})
    assert fine.status is RunStatus.SUCCEEDED and await client.list_reviews(run_id=fine.run_id, status=None) == []


async def test_an_unconfigured_queue_is_open_to_anyone_and_a_rejection_fails_the_run(client: Client) -> None:
    wf = Workflow("q", [Step("check", lambda d: Fallback("human_review_queue", d)), Step("after", lambda d: d)])
    parked = await client.run(wf, {"id": 1})
    (item,) = await client.list_reviews(role="anyone_at_all")
    assert item.allowed_roles == []
    await client.reject(item.review_id, by="officer", reason="missing consent")
    ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED and ended.error["name"] == "RejectedError"
    assert "human_review_queue: item from step 'check' was rejected: missing consent" in ended.error["message"]


# overrides and raw signals ------------------------------------------------------------------------


async def test_decide_without_a_role_is_an_override_recorded_as_such(client: Client) -> None:
    parked = await client.run(_intake(), {"patient": "P-7"})
    await client.decide(parked.run_id, "summarise", approved=True, by="ops_on_call")
    assert (await client.resume(parked.run_id)).status is RunStatus.SUCCEEDED
    item = await _only_item(client, parked.run_id)
    assert item.status is ReviewStatus.APPROVED
    assert item.decision["override"] is True and item.decision["by"] == "ops_on_call"


async def test_decide_with_a_role_is_checked(client: Client) -> None:
    parked = await client.run(_intake(), {"patient": "P-7"})
    with pytest.raises(ReviewPermissionError):
        await client.decide(parked.run_id, "summarise", approved=True, by="sam", role="intern")
    await client.decide(parked.run_id, "summarise", approved=True, by="dr_a", role="medical_reviewer")
    assert (await client.resume(parked.run_id)).status is RunStatus.WAITING  # QA still has to approve


async def test_a_raw_signal_decides_the_gate_and_closes_its_item(client: Client) -> None:
    parked = await client.run(_intake(), {"patient": "P-7"})
    await client.signal(parked.run_id, "review:summarise", {"approved": False, "reason": "dup", "by": "script"})
    ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED and "dup" in ended.error["message"]
    item = await _only_item(client, parked.run_id)
    assert item.status is ReviewStatus.REJECTED and item.decision["via"] == "signal"
    with pytest.raises(ConflictError):
        await client.approve(item.review_id, by="dr_a", role="medical_reviewer")


# listing and stats ----------------------------------------------------------------------------------


async def test_list_reviews_by_role_and_status(client: Client) -> None:
    a = await client.run(_intake(HumanReviewGate(roles=["doctor"], priority="low")), {"patient": "A"})
    b = await client.run(_intake(HumanReviewGate(roles=["nurse"], priority="urgent")), {"patient": "B"})
    c = await client.run(_intake(HumanReviewGate(priority="normal")), {"patient": "C"})
    assert [r.run_id for r in await client.list_reviews()] == [b.run_id, c.run_id, a.run_id]
    assert [r.run_id for r in await client.list_reviews(role="doctor")] == [c.run_id, a.run_id]
    item, open_to_all = await client.list_reviews(role="nurse", status="pending")
    assert (item.run_id, open_to_all.run_id) == (b.run_id, c.run_id)
    await client.approve(item.review_id, by="n1", role="nurse")
    assert [r.run_id for r in await client.list_reviews(role="nurse")] == [c.run_id]
    assert [r.run_id for r in await client.list_reviews(status=["approved"])] == [b.run_id]
    with pytest.raises(InvalidInputError, match="unknown review status 'done'"):
        await client.list_reviews(status="done")


async def test_review_stats(client: Client, clock: FakeClock) -> None:
    for patient in ("A", "B", "C"):
        await client.run(_intake(HumanReviewGate()), {"patient": patient})
    first, second, _third = await client.list_reviews()
    clock.advance(30)
    await client.approve(first.review_id, by="dr_a")
    clock.advance(60)
    await client.reject(second.review_id, by="dr_b", reason="no")
    stats = await client.review_stats()
    assert (stats.items, stats.pending, stats.decisions, stats.gates) == (3, 1, 2, 3)
    assert stats.by_status == {"approved": 1, "pending": 1, "rejected": 1}
    assert stats.time_to_decision is not None
    assert (stats.time_to_decision["mean"], stats.time_to_decision["max"]) == (60.0, 90.0)
    assert stats.escalation_rate == 0.0


async def test_a_decision_whose_acknowledgement_was_lost_is_not_a_conflict(clock: FakeClock) -> None:
    from orchestrate.testing import FaultyStore

    store = FaultyStore(InMemoryStore(), fail_on={"update_review": [1]}, mode="lost_ack")
    async with Client(engine=Engine(store, clock=clock)) as client:
        parked = await client.run(_intake(HumanReviewGate(roles=["doctor"])), {"patient": "P-4"})
        (item,) = await client.list_reviews(run_id=parked.run_id)
        decided = await client.approve(item.review_id, by="dr_a", role="doctor")  # committed, then "failed"
        assert store.injected and decided.status is ReviewStatus.APPROVED
        assert decided.decision["by"] == "dr_a"
        assert (await client.resume(parked.run_id)).status is RunStatus.SUCCEEDED
        kinds = [e.kind for e in (await client.detail(parked.run_id)).events]
        assert kinds.count("review_decided") == 1


async def test_an_approval_check_that_breaks_refuses_the_approval(client: Client) -> None:
    @approval(role="doctor")
    def needs_confidence(payload: dict[str, Any]) -> bool:
        return payload["confidence"] > 0.5

    parked = await client.run(_intake(HumanReviewGate(roles=["doctor", "nurse"])), {"patient": "P-6"})
    item = await _only_item(client, parked.run_id)
    with pytest.raises(ReviewPermissionError, match="failed on review .*KeyError: 'confidence'"):
        await client.approve(item.review_id, by="dr_a", role="doctor")
    assert (await client.get_review(item.review_id)).approvals == []
    await client.approve(item.review_id, by="n_b", role="nurse")  # other roles have no check
    assert (await client.resume(parked.run_id)).status is RunStatus.SUCCEEDED
