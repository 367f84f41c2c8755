"""The seed systems fail the way the articles say they must: each failure mode injected, each outcome checked.

Every system runs on a real SQLite file; reviews are decided through ``Client`` (approve,
edit, reject), and long SLAs pass on a ``FakeClock``. The order-status demo, which loads
the embedded MiniLM models, is in ``test_seed_systems_support.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orchestrate import ApprovalRequired, Client, ConflictError, Engine, RunStatus, StepStatus, Workflow
from orchestrate.errors import AgentError
from orchestrate.review import APPROVERS, ReviewPermissionError, ReviewStatus
from orchestrate.store import open_store
from orchestrate.testing import FakeClock, FakeModel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

Load = Callable[[str], ModuleType]


@pytest.fixture
def load() -> Iterator[Load]:
    """Import an example by path (fresh module state each time), forgotten afterwards."""
    names: list[str] = []
    approvers = dict(APPROVERS)  # examples may register @approval checks process-wide

    def _load(relative: str) -> ModuleType:
        path = EXAMPLES / relative
        name = f"_seed_system_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # the engine revives a step's dataclasses from its module
        names.append(name)
        spec.loader.exec_module(module)
        return module

    yield _load
    for name in names:
        sys.modules.pop(name, None)
    APPROVERS.clear()
    APPROVERS.update(approvers)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def clocked(url: str, clock: FakeClock, *workflows: Any) -> Client:
    """A client whose engine reads time from ``clock``."""
    return Client(engine=Engine(open_store(url), clock=clock), workflows=workflows)


async def steps_of(client: Client, run_id: str) -> dict[str, Any]:
    return {s.step_key: s for s in (await client.detail(run_id)).steps}


# 2. HIPAA compliance (seed 000) ------------------------------------------------------------------


async def test_hipaa_steps_written_without_annotations_revive_the_document_from_the_store(load: Load, url: str):
    example = load("seeds/seed000_compliance.py")
    orchestrator = example.build_orchestrator(url)
    for node in orchestrator.nodes:  # as the article writes them
        assert inspect.signature(node.fn).return_annotation is inspect.Signature.empty, node.name

    routine = await orchestrator.run(example.ROUTINE)
    assert type(routine).__name__ == "ComplianceDoc" and routine.confidence == 0.93

    # Another process replays the review check alone: it reads generate_doc's output back
    # from SQLite, and need_human_review still finds doc.confidence on it.
    queries = example.rag_agent.queries
    async with Client(url, workflows=[example.build_orchestrator(url)]) as client:
        (first,) = await client.list()
        again = await client.replay(first.run_id, from_step="review_check")
        steps = await steps_of(client, again.run_id)
    assert again.status is RunStatus.SUCCEEDED, again.error
    assert again.output["confidence"] == 0.93
    assert steps["review_check"].output["confidence"] == 0.93
    assert example.rag_agent.queries == queries  # the policy check was not run again


async def test_hipaa_first_policy_query_fails_and_is_retried(load: Load, url: str):
    example = load("seeds/seed000_compliance.py")
    example.rag_agent.queries = 0
    orchestrator = example.build_orchestrator(url)
    await orchestrator.run(example.ROUTINE)
    async with Client(url, workflows=[orchestrator]) as client:
        (run,) = await client.list()
        check = (await steps_of(client, run.run_id))["policy_check"]
    assert check.attempts == 2
    assert check.meta["attempt_log"][0]["error"] == "ConnectionError"


async def test_hipaa_a_document_below_085_waits_for_a_compliance_officer_and_never_holds_the_name(load: Load, url: str):
    example = load("seeds/seed000_compliance.py")
    orchestrator = example.build_orchestrator(url)
    with pytest.raises(ApprovalRequired) as parked:
        await orchestrator.run(example.EXPERIMENTAL)
    run_id = parked.value.run.run_id

    async with Client(url, workflows=[example.build_orchestrator(url)]) as officer:
        (item,) = await officer.list_reviews()
        assert (item.run_id, item.queue, item.payload["confidence"]) == (run_id, "human_review_queue", 0.72)
        waiting = await officer.get(run_id)
        assert waiting.status is RunStatus.WAITING
        await officer.approve(item.review_id, by="officer_chen")
        done = await officer.resume(run_id)
        steps = await steps_of(officer, run_id)
    assert done.status is RunStatus.SUCCEEDED
    assert "Policy 7.2" in done.output["text"]
    # De-identified first: nothing after that step, nor the reviewer, sees the patient's name.
    downstream = [steps[k].output for k in ("deidentify", "policy_check", "generate_doc", "review_check")]
    assert "Alan Turing" not in repr(downstream) and "Alan Turing" not in repr(item.payload)


@pytest.mark.parametrize(("confidence", "parks"), [(0.85, False), (0.849, True)])
async def test_hipaa_the_review_threshold_is_085(load: Load, url: str, confidence: float, parks: bool):
    example = load("seeds/seed000_compliance.py")

    class FixedLLM:
        def complete(self, *, model, prompt, temperature, context):
            return example.ComplianceDoc(context["case"]["patient_ref"], "doc", confidence)

    example.llm_client = FixedLLM()
    orchestrator = example.build_orchestrator(url)
    if parks:
        with pytest.raises(ApprovalRequired):
            await orchestrator.run(example.ROUTINE)
    else:
        assert (await orchestrator.run(example.ROUTINE)).confidence == 0.85


async def test_hipaa_a_rejected_document_fails_the_run(load: Load, url: str):
    example = load("seeds/seed000_compliance.py")
    orchestrator = example.build_orchestrator(url)
    async with Client(url, workflows=[orchestrator]) as client:
        parked = await client.run(orchestrator, example.EXPERIMENTAL)
        (item,) = await client.list_reviews(run_id=parked.run_id)
        await client.reject(item.review_id, by="officer_chen", reason="no consent form on file")
        ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED
    assert ended.error["name"] == "RejectedError" and "no consent form" in ended.error["message"]


# 3. patient intake (seed 001) -----------------------------------------------------------------------


async def test_intake_writes_the_ehr_only_after_both_roles_approved(load: Load, url: str):
    example = load("patient_intake_review.py")
    async with clocked(url, FakeClock(), example.intake) as client:
        parked = await client.run(example.intake, "FORM-2026-07-001")
        (item,) = await client.list_reviews(run_id=parked.run_id)
        assert item.required_roles == ["medical_reviewer", "quality_assurance"]

        after_one = await client.approve(item.review_id, by="dr_okafor", role="medical_reviewer")
        assert after_one.status is ReviewStatus.PENDING
        still = await client.resume(parked.run_id)  # a worker waking it early changes nothing
        assert still.status is RunStatus.WAITING
        assert example.EHR == []

        with pytest.raises(ConflictError):  # the same role cannot count twice
            await client.approve(item.review_id, by="dr_ng", role="medical_reviewer")
        assert example.EHR == []

        await client.approve(item.review_id, by="qa_lee", role="quality_assurance")
        done = await client.resume(parked.run_id)
        await client.resume(parked.run_id)  # resuming a finished run writes nothing more
    assert done.status is RunStatus.SUCCEEDED
    assert [entry["summary"] for entry in example.EHR] == [done.output["summary"]]


async def test_intake_a_rejection_by_either_role_writes_nothing(load: Load, url: str):
    example = load("patient_intake_review.py")
    async with clocked(url, FakeClock(), example.intake) as client:
        parked = await client.run(example.intake, "FORM-2026-07-001")
        (item,) = await client.list_reviews(run_id=parked.run_id)
        await client.approve(item.review_id, by="dr_okafor", role="medical_reviewer")
        await client.reject(item.review_id, by="qa_lee", role="quality_assurance", reason="wrong wrist")
        ended = await client.resume(parked.run_id)
        steps = await steps_of(client, parked.run_id)
    assert ended.status is RunStatus.FAILED and ended.error["name"] == "RejectedError"
    assert "update_record" not in steps
    assert example.EHR == []


async def test_intake_nobody_deciding_escalates_then_fails_closed(load: Load, url: str):
    example = load("patient_intake_review.py")
    clock = FakeClock()
    async with clocked(url, clock, example.intake) as client:
        parked = await client.run(example.intake, "FORM-2026-07-001")
        clock.advance(15 * 60 + 1)  # the 15-minute SLA passes: the attending physician gets it
        await client.resume(parked.run_id)
        (escalated,) = await client.list_reviews(role="attending_physician")
        assert escalated.sla_seconds == 600 and escalated.level == 1
        assert example.EHR == []
        clock.advance(10 * 60 + 1)  # nobody answers the escalation either
        ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED and ended.error["name"] == "RejectedError"
    assert example.EHR == []


async def test_seed001_intake_rejected_summary_never_reaches_the_ehr(load: Load, url: str):
    example = load("seeds/seed001_patient_intake.py")
    pipeline = example.build_pipeline(url)
    async with Client(url, workflows=[pipeline]) as client:
        parked = await client.run(pipeline, {"form_id": "FORM-2026-07-002"})
        (item,) = await client.list_reviews(run_id=parked.run_id)
        assert example.ehr.updates == []
        await client.reject(item.review_id, by="dr_okafor", reason="hallucinated diagnosis")
        ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED and ended.error["name"] == "RejectedError"
    assert example.ehr.updates == []


# 4. document processing (seed 002) ------------------------------------------------------------------


async def test_documents_pages_are_mapped_four_at_a_time_and_reduced_in_order(load: Load, url: str):
    example = load("seeds/seed002_document_processing.py")
    pages = [f"Page {n}: Acme Corp pays Globex Ltd {n},000.00 USD." for n in range(1, 11)]
    document = {"doc_id": "INV-2000", "title": "Invoice 2000", "pages": pages}
    async with clocked(url, FakeClock(auto_advance=True), example.document_processing) as client:
        record = await client.run(example.document_processing, document)
        steps = await steps_of(client, record.run_id)
    assert record.status is RunStatus.SUCCEEDED
    assert example.SCANNER.max_in_flight == 4  # Map(max_workers=4)
    assert [k for k in steps if k.startswith("read_page[")] == [f"read_page[{i}]" for i in range(10)]
    data = record.output["data"]
    assert data["amounts"] == [f"{n},000.00 USD" for n in range(1, 11)]  # the reduce kept page order
    assert {"extract_entities", "extract_relationships", "consolidate", "publish"} <= set(steps)
    assert "legal_review" not in steps  # an invoice goes out without legal
    assert [entry["doc_id"] for entry in example.PUBLISHED] == ["INV-2000"]


async def test_documents_a_hung_page_is_read_again_and_an_unreadable_one_is_listed_as_missing(load: Load, url: str):
    example = load("seeds/seed002_document_processing.py")
    example.SCANNER.hang_once.add(("MSA-7", 3))
    example.SCANNER.unreadable.add(("MSA-7", 5))
    async with clocked(url, FakeClock(auto_advance=True), example.document_processing) as client:
        parked = await client.run(example.document_processing, example.as_input("MSA-7"))
        steps = await steps_of(client, parked.run_id)
        (item,) = await client.list_reviews(role="legal")
    hung, unreadable = steps["read_page[2]"], steps["read_page[4]"]
    assert (hung.attempts, hung.status, hung.meta["attempt_log"][0]["error"]) == (
        2,
        StepStatus.SUCCEEDED,
        "StepTimeoutError",
    )
    assert (unreadable.attempts, unreadable.fallback) == (3, "skip")
    assert item.payload["pages_missing"] == [5]
    assert "Delaware" not in str(item.payload)  # page 5 was the governing law: legal sees it is missing


async def test_documents_a_contract_is_published_only_after_legal_approves(load: Load, url: str):
    example = load("seeds/seed002_document_processing.py")
    async with clocked(url, FakeClock(auto_advance=True), example.document_processing) as client:
        parked = await client.run(example.document_processing, example.as_input("MSA-7"))
        assert parked.status is RunStatus.WAITING and parked.wait_reason == "signal:review:legal_review"
        (item,) = await client.list_reviews(run_id=parked.run_id)
        assert (item.roles, item.priority, item.sla_seconds) == (["legal"], "high", 24 * 3600.0)
        parties = {(r["subject"], r["object"]) for r in item.payload["relationships"]}
        assert parties == {("Acme Corp", "Globex Ltd"), ("Globex Ltd", "Acme Corp")}
        assert example.PUBLISHED == []

        with pytest.raises(ReviewPermissionError):
            await client.approve(item.review_id, by="intern_sam", role="sales")
        await client.approve(item.review_id, by="counsel_diaz", role="legal")
        done = await client.resume(parked.run_id)
    assert done.status is RunStatus.SUCCEEDED and done.output["status"] == "completed"
    assert [entry["doc_id"] for entry in example.PUBLISHED] == ["MSA-7"]


async def test_documents_legal_review_expiring_after_24_hours_fails_closed(load: Load, url: str):
    example = load("seeds/seed002_document_processing.py")
    clock = FakeClock(auto_advance=True)
    async with clocked(url, clock, example.document_processing) as client:
        parked = await client.run(example.document_processing, example.as_input("NDA-3"))
        (item,) = await client.list_reviews(run_id=parked.run_id)

        clock.advance(24 * 3600 - 60)  # a minute before the SLA: still waiting for legal
        assert (await client.resume(parked.run_id)).status is RunStatus.WAITING

        clock.advance(120)
        ended = await client.resume(parked.run_id)
        expired = await client.get_review(item.review_id)
        with pytest.raises(ConflictError):  # too late: the expiry stands
            await client.approve(item.review_id, by="counsel_diaz", role="legal")
        steps = await steps_of(client, parked.run_id)
    assert ended.status is RunStatus.FAILED
    assert ended.error["name"] == "ReviewExpiredError"
    assert expired.status is ReviewStatus.EXPIRED
    assert "publish" not in steps
    assert example.PUBLISHED == []


async def test_documents_a_rejected_contract_is_not_published(load: Load, url: str):
    example = load("seeds/seed002_document_processing.py")
    async with clocked(url, FakeClock(auto_advance=True), example.document_processing) as client:
        parked = await client.run(example.document_processing, example.as_input("NDA-3"))
        (item,) = await client.list_reviews(run_id=parked.run_id)
        await client.reject(item.review_id, by="counsel_diaz", role="legal", reason="unsigned copy")
        ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED and ended.error["name"] == "RejectedError"
    assert example.PUBLISHED == []


async def test_document_processing_example_story(load: Load, capsys: pytest.CaptureFixture[str]):
    example = load("seeds/seed002_document_processing.py")
    result = await example.main()
    statuses = {doc_id: record.status for doc_id, record in result["results"].items()}
    assert statuses == {"INV-1042": RunStatus.SUCCEEDED, "MSA-7": RunStatus.SUCCEEDED, "NDA-3": RunStatus.FAILED}
    assert result["results"]["MSA-7"].output["data"]["governing_law"] == "Delaware"  # legal's edit went out
    assert result["published"] == ["INV-1042", "MSA-7"]
    assert result["reviews"]["NDA-3"].status is ReviewStatus.EXPIRED
    assert "NDA-3: 24 hours without a decision; run failed: ReviewExpiredError" in capsys.readouterr().out


# 5. agents sharing a context, behind a validation gate (seed 002) ---------------------------------


GOOD = {"action": "refund", "order_id": "A-17", "amount": 42.5, "confidence": 0.92, "reason": "duplicate charge"}
TICKET = "I was charged twice for order A-17, please refund one charge."


def decisions(example: ModuleType, url: str, script: list[Any]) -> Client:
    """A client for the decision workflow, whose decision model plays ``script``."""
    example.MODELS.decision = FakeModel(script, model_id="gpt-5")
    return Client(url, workflows=[example.orchestrate_decision])


async def test_shared_context_an_invalid_answer_is_sent_back_with_the_error_and_repaired(load: Load, url: str):
    example = load("seeds/seed002_shared_context.py")
    async with decisions(example, url, ["<decision>refund</decision>", GOOD]) as client:
        record = await client.run(example.orchestrate_decision, TICKET)
        steps = await steps_of(client, record.run_id)
    assert record.status is RunStatus.SUCCEEDED
    assert (record.output["done"], record.output["decided_by"]) == ("refund", "decision_agent")
    retry = example.MODELS.decision.calls[1].messages
    assert retry[-2].content == "<decision>refund</decision>"
    assert "rejected: the answer is XML or HTML" in retry[-1].content
    # The shared context carries what the context agent found; the decision agent read it.
    context = steps["gather_context"].output
    assert context["records"]["billing_history"]["order_id"] == "A-17"
    assert context["agent_responses"][0] in example.MODELS.decision.calls[0].messages[-1].content
    assert [(r["order_id"], r["amount"]) for r in example.REFUNDS] == [("A-17", 42.5)]


async def test_shared_context_a_hallucinated_decision_never_reaches_payment_and_goes_to_a_person(load: Load, url: str):
    example = load("seeds/seed002_shared_context.py")
    script = [{**GOOD, "amount": 425.0}, {**GOOD, "order_id": "A-71"}, {**GOOD, "confidence": 0.4}]
    async with decisions(example, url, script) as client:
        parked = await client.run(example.orchestrate_decision, TICKET)
        assert parked.status is RunStatus.WAITING and example.REFUNDS == []
        context_calls = len(example.context_agent.model.calls)
        (item,) = await client.list_reviews(role="refund_specialist")
        assert item.payload["rejected"] == [
            "the amount 425.00 is more than the 85.00 charged",
            "the decision is about order A-71, the context about A-17",
            "confidence 0.40 is below the threshold 0.70",
        ]
        assert "charged 2 times" in item.payload["context"]
        decision = {**GOOD, "amount": 40.0, "confidence": 1.0}
        await client.edit(item.review_id, {**item.payload, "decision": decision}, by="sam", role="refund_specialist")
        done = await client.resume(parked.run_id)
    assert done.status is RunStatus.SUCCEEDED and done.output["decided_by"] == "sam"
    assert [(r["order_id"], r["amount"]) for r in example.REFUNDS] == [("A-17", 40.0)]
    assert len(example.context_agent.model.calls) == context_calls  # the context was not gathered again
    assert len(example.MODELS.decision.calls) == 3


async def test_shared_context_a_persons_decision_passes_the_same_gate(load: Load, url: str):
    example = load("seeds/seed002_shared_context.py")
    async with decisions(example, url, [{**GOOD, "confidence": 0.1}]) as client:
        parked = await client.run(example.orchestrate_decision, TICKET)
        (item,) = await client.list_reviews(run_id=parked.run_id)
        too_much = {**GOOD, "amount": 900.0, "confidence": 1.0}
        await client.edit(item.review_id, {**item.payload, "decision": too_much}, by="sam", role="refund_specialist")
        ended = await client.resume(parked.run_id)
    assert ended.status is RunStatus.FAILED
    assert "more than the 85.00 charged" in ended.error["message"]
    assert example.REFUNDS == []


async def test_shared_context_a_person_can_decline_to_decide(load: Load, url: str):
    example = load("seeds/seed002_shared_context.py")
    async with decisions(example, url, [{**GOOD, "confidence": 0.1}]) as client:
        parked = await client.run(example.orchestrate_decision, TICKET)
        (item,) = await client.list_reviews(run_id=parked.run_id)
        await client.reject(item.review_id, by="sam", role="refund_specialist", reason="ask the customer first")
        done = await client.resume(parked.run_id)
    assert done.status is RunStatus.SUCCEEDED
    assert done.output == {"decision": None, "declined_by": "sam", "reason": "ask the customer first"}
    assert example.REFUNDS == []


async def test_shared_context_a_failed_context_stops_before_the_decision_agent(load: Load, url: str):
    example = load("seeds/seed002_shared_context.py")
    example.BILLING.up = False
    async with decisions(example, url, [GOOD]) as client:
        record = await client.run(example.orchestrate_decision, TICKET)
    assert record.status is RunStatus.SUCCEEDED
    assert record.output["error"] == "Context gathering failed" and record.output["fallback"] is True
    assert example.MODELS.decision.calls == []
    assert example.REFUNDS == []


async def test_shared_context_example_story(load: Load):
    example = load("seeds/seed002_shared_context.py")
    result = await example.main()
    assert result["double charge"]["decision_calls"] == 2
    assert result["hallucination"]["record"].status is RunStatus.WAITING
    assert result["hallucination"]["finished"].output["decided_by"] == "sam_ortiz"
    assert result["billing down"]["decision_calls"] == 0
    assert [(r["order_id"], r["amount"]) for r in result["refunds"]] == [("A-17", 42.5), ("A-17", 42.5)]


# 6. supervisor and workers (seed 002) ------------------------------------------------------------------

REQUEST = {"plan": "account_review", "customer": "C-1107"}


async def test_supervisor_decomposes_and_routes_without_calling_a_model(load: Load):
    example = load("seeds/seed002_supervisor.py")
    subtasks = example.decompose(REQUEST)
    routes = [await example.route(subtask) for subtask in subtasks]
    assert routes == ["support", "billing", "sales"]
    assert example.model_calls() == {"support": 0, "billing": 0, "sales": 0}
    with pytest.raises(AgentError, match="no worker for route 'none'"):
        await example.route("Plan the office party")


async def test_supervisor_a_worker_that_recovers_within_three_retries_is_not_escalated(load: Load, url: str):
    example = load("seeds/seed002_supervisor.py")
    example.FAULTS.outages["billing"] = 3  # the first attempt and two retries fail
    async with Client(url, workflows=[example.supervise]) as client:
        record = await client.run(example.supervise, REQUEST)
        steps = await steps_of(client, record.run_id)
        items = await client.list_reviews(status=None)
    assert record.status is RunStatus.SUCCEEDED
    assert steps["worker[1]"].attempts == 4
    assert record.output["escalated"] == [] and items == []
    assert list(record.output["by"].values()) == ["support", "billing", "sales"]


@pytest.mark.parametrize("fault", ["outage", "loop"])
async def test_supervisor_a_worker_failing_after_three_retries_goes_to_a_person(load: Load, url: str, fault: str):
    example = load("seeds/seed002_supervisor.py")
    if fault == "outage":
        example.FAULTS.outages["sales"] = 4
    else:
        example.FAULTS.looping.add("sales")
    async with Client(url, workflows=[example.supervise]) as client:
        parked = await client.run(example.supervise, REQUEST)
        steps = await steps_of(client, parked.run_id)
        assert parked.status is RunStatus.WAITING and parked.wait_reason == "signal:review:escalation[2]"
        assert steps["worker[2]"].attempts == 4 and steps["worker[2]"].status is StepStatus.FAILED
        # The other workers finished while the run waited for the person.
        assert steps["worker[0]"].status is StepStatus.SUCCEEDED and steps["worker[1]"].status is StepStatus.SUCCEEDED
        calls = example.model_calls()

        (item,) = await client.list_reviews(role="account_manager")
        expected = "ServerError" if fault == "outage" else "AgentError"
        assert item.payload["worker"] == "sales" and expected in item.payload["error"]
        by_hand = {**item.payload, "result": "renew at 15% off"}
        await client.edit(item.review_id, by_hand, by="am_rivera", role="account_manager")
        done = await client.resume(parked.run_id)
    assert done.status is RunStatus.SUCCEEDED
    report = done.output
    renewal = "Draft a renewal offer for C-1107"
    assert report["report"][renewal] == "renew at 15% off" and report["by"][renewal] == "am_rivera"
    assert report["escalated"] == [renewal]
    assert example.model_calls() == calls  # no worker ran again after the person decided


async def test_supervisor_a_rejected_escalation_drops_the_subtask(load: Load, url: str):
    example = load("seeds/seed002_supervisor.py")
    example.FAULTS.looping.add("billing")
    async with Client(url, workflows=[example.supervise]) as client:
        parked = await client.run(example.supervise, REQUEST)
        (item,) = await client.list_reviews(run_id=parked.run_id)
        await client.reject(item.review_id, by="am_rivera", role="account_manager", reason="invoices are fine")
        done = await client.resume(parked.run_id)
    assert done.status is RunStatus.SUCCEEDED
    assert done.output["dropped"] == ["Reconcile the invoices of C-1107"]
    assert len(done.output["report"]) == 2


async def test_supervisor_example_story(load: Load):
    example = load("seeds/seed002_supervisor.py")
    result = await example.main()
    assert result["parked"].status is RunStatus.WAITING
    assert result["steps"]["worker[1]"].attempts == 3 and result["steps"]["worker[2]"].attempts == 4
    assert result["finished"].output["by"]["Draft a renewal offer for C-1107"] == "am_rivera"
    before, after = result["calls"]
    assert before == after


# 7. content moderation (seed 003) ---------------------------------------------------------------------

HYPERBOLE = "This movie was so bad I wanted to scream at the screen"


async def test_moderation_a_hung_keyword_filter_blocks(load: Load, url: str):
    example = load("seeds/seed003_moderation.py")

    async def hung_filter(text: str) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {"text": text, "keyword_hit": False}

    first, *rest = example.moderation_reviewed.nodes
    wf = Workflow(
        "moderation_hung_filter",
        [example.Step("keyword_filter", hung_filter, timeout=first.policy.timeout, fallback=first.fallback), *rest],
        components=example.COMPONENTS,
    )
    async with Client(url, workflows=[wf]) as client:
        record = await client.run(wf, "an innocent post")
        steps = await steps_of(client, record.run_id)
    assert record.status is RunStatus.SUCCEEDED and record.output["action"] == "blocked"
    assert steps["keyword_filter"].meta["error_class"] == "StepTimeoutError"
    assert steps["keyword_filter"].fallback == "value"


@pytest.mark.parametrize(
    ("text", "path", "action"),
    [
        ("Buy cheap pills at spam-pharmacy.example", ["auto_block"], "blocked"),
        ("I know where you live and I will hurt you", ["auto_block"], "blocked"),
        ("You people are animals", ["second_opinion", "auto_block"], "blocked"),
        ("What a lovely sunset over the bay tonight", ["second_opinion", "allow"], "allowed"),
    ],
    ids=["keyword", "high-score", "second-opinion-block", "second-opinion-allow"],
)
async def test_moderation_decides_on_its_own_at_the_extremes(load: Load, url: str, text, path, action):
    example = load("seeds/seed003_moderation.py")
    async with Client(url, workflows=[example.moderation_reviewed]) as client:
        record = await client.run(example.moderation_reviewed, text)
        steps = list(await steps_of(client, record.run_id))
        items = await client.list_reviews(status=None)
    assert record.status is RunStatus.SUCCEEDED and record.output["action"] == action
    assert steps == ["keyword_filter", "ai_moderator", *path]
    assert items == []


@pytest.mark.parametrize("text", [HYPERBOLE, "That referee should be shot for that call"])
async def test_moderation_unclear_posts_are_held_in_the_moderators_queue(load: Load, url: str, text: str):
    example = load("seeds/seed003_moderation.py")
    async with Client(url, workflows=[example.moderation_reviewed]) as client:
        parked = await client.run(example.moderation_reviewed, text)
        (item,) = await client.list_reviews(role="moderator")
        with pytest.raises(ReviewPermissionError):
            await client.approve(item.review_id, by="bot", role="support_agent")
        await client.edit(item.review_id, {**item.payload, "action": "allowed"}, by="mod_kai", role="moderator")
        done = await client.resume(parked.run_id)
    assert parked.status is RunStatus.WAITING
    assert (item.queue, item.roles, item.sla_seconds) == ("moderation", ["moderator"], 4 * 3600.0)
    assert item.payload["action"] == "blocked"  # held while it waits
    assert done.output["action"] == "allowed"


@pytest.mark.parametrize("decision", ["approve", "reject", "nobody"])
async def test_moderation_a_held_post_stays_blocked_unless_a_moderator_allows_it(load: Load, url: str, decision: str):
    example = load("seeds/seed003_moderation.py")
    clock = FakeClock()
    async with clocked(url, clock, example.moderation_reviewed) as client:
        parked = await client.run(example.moderation_reviewed, HYPERBOLE)
        (item,) = await client.list_reviews(run_id=parked.run_id)
        if decision == "approve":
            await client.approve(item.review_id, by="mod_kai", role="moderator")
        elif decision == "reject":
            await client.reject(item.review_id, by="mod_kai", role="moderator", reason="report abuse")
        else:
            clock.advance(4 * 3600 + 1)
        ended = await client.resume(parked.run_id)
    if decision == "approve":
        assert ended.status is RunStatus.SUCCEEDED and ended.output["action"] == "blocked"
    else:
        assert ended.status is RunStatus.FAILED  # nothing published: fail closed
        assert ended.error["name"] == ("RejectedError" if decision == "reject" else "ReviewExpiredError")


async def test_moderation_as_written_sends_benign_posts_to_review(load: Load, url: str):
    example = load("seeds/seed003_moderation.py")
    async with Client(url, workflows=[example.moderation]) as client:
        record = await client.run(example.moderation, example.BENIGN)
    assert record.output["action"] == "queued_for_review"  # the article's graph, why the allow route exists


@pytest.mark.parametrize(
    ("image", "down", "held"),
    [
        ({"name": "sunset.jpg", "caption": "Golden hour"}, None, False),
        ({"name": "party.jpg", "caption": "Free crypto giveaway"}, None, True),
        ({"name": "home.jpg", "caption": "At home", "gps": True}, None, True),
        ({"name": "sunset.jpg", "caption": "Golden hour"}, "aws_rekognition", True),
    ],
    ids=["clean", "banned-caption", "gps", "detector-down"],
)
async def test_moderation_image_checks_run_together_and_a_failed_check_is_no_pass(
    load: Load, url: str, image: dict[str, Any], down: str | None, held: bool
):
    example = load("seeds/seed003_moderation.py")
    if down is not None:
        example.IMAGE_SERVICES_DOWN.add(down)
    wf = example.image_moderation
    async with Client(url, workflows=[wf]) as client:
        record = await client.run(wf, image)
        steps = await steps_of(client, record.run_id)
        items = await client.list_reviews(role="moderator")
    assert {"nsfw_detector", "text_extraction", "metadata_check"} <= set(steps)
    if held:
        assert record.status is RunStatus.WAITING and len(items) == 1
        assert items[0].payload["action"] == "blocked"
    else:
        assert record.output["action"] == "allowed" and items == []
    if down is not None:
        assert steps["nsfw_detector"].fallback == "skip"


# 8. support confidence tiers with SLAs (seed 003) --------------------------------------------------------


async def test_tiers_each_confidence_gets_its_queue_priority_and_sla(load: Load, url: str):
    example = load("confidence_tiers.py")
    expected = {
        "T-1": None,
        "T-2": (["support_agent"], "normal", 120 * 60.0),
        "T-3": (["senior_agent"], "urgent", 30 * 60.0),
        "T-4": (["support_agent"], "low", 360 * 60.0),
    }
    async with clocked(url, FakeClock(), example.support) as client:
        for ticket, wanted in expected.items():
            record = await client.run(example.support, ticket)
            items = await client.list_reviews(run_id=record.run_id)
            if wanted is None:
                assert record.status is RunStatus.SUCCEEDED and items == []
            else:
                (item,) = items
                assert record.status is RunStatus.WAITING
                assert (item.roles, item.priority, item.sla_seconds) == wanted


async def test_tiers_an_unanswered_normal_ticket_is_never_sent(load: Load, url: str):
    example = load("confidence_tiers.py")
    clock = FakeClock()
    async with clocked(url, clock, example.support) as client:
        parked = await client.run(example.support, "T-2")
        clock.advance(120 * 60 + 1)
        ended = await client.resume(parked.run_id)
        steps = await steps_of(client, parked.run_id)
    assert ended.status is RunStatus.FAILED and ended.error["name"] == "ReviewExpiredError"
    assert "send" not in steps


async def test_tiers_a_sensitive_ticket_warns_escalates_and_is_rejected_if_the_manager_is_silent(load: Load, url: str):
    example = load("confidence_tiers.py")
    clock = FakeClock()
    async with clocked(url, clock, example.support) as client:
        parked = await client.run(example.support, "T-3")
        clock.advance(24 * 60)
        await client.resume(parked.run_id)
        clock.advance(6 * 60)
        await client.resume(parked.run_id)
        (manager,) = await client.list_reviews(role="support_manager")
        assert manager.sla_seconds == 15 * 60
        clock.advance(15 * 60 + 1)
        ended = await client.resume(parked.run_id)
        detail = await client.detail(parked.run_id)
    kinds = [e.kind for e in detail.events if e.kind.startswith("review")]
    assert ended.status is RunStatus.FAILED and ended.error["name"] == "RejectedError"
    assert "send" not in {s.step_key for s in detail.steps}
    assert kinds.index("review_sla_warning") < kinds.index("review_escalated") < kinds.index("review_expired")


async def test_seed003_support_a_dead_run_is_replayed_once_retrieval_is_back(load: Load, url: str):
    example = load("seeds/seed003_support.py")
    example.services.reset()
    example.services.rag_up = False
    async with Client(url, workflows=[example.workflow]) as client:
        dead = await client.run(example.workflow, example.TICKETS["refund"])
        assert dead.status is RunStatus.DEAD
        assert [r["step"] for r in example.services.error_log] == ["knowledge_retrieval"]
        example.services.rag_up = True
        classified = example.services.calls["claude-3-opus"]
        replayed = await client.replay(dead.run_id)
    assert replayed.status is RunStatus.SUCCEEDED
    assert replayed.output == {"model": "gpt-4", "reply": "I've issued your refund. (refund issued)"}
    assert example.services.calls["claude-3-opus"] == classified  # the classification was reused
