"""Seed 001's patient intake with a two-role review gate: a doctor and QA must both sign off.

    extract -> validate -> summarise -> [gate: medical_reviewer + quality_assurance] -> update record

The summary parks the run (``waiting``, no worker held) on a review item. The medical
reviewer corrects the summary (approve with edits: the change is recorded), QA approves,
and only then does the EHR update run, with the corrected text. An intern trying to
approve is refused; a late second decision gets a conflict. If nobody decides within the
SLA (15 minutes here) the item escalates to the attending physician with a 10-minute SLA
of its own, after a warning at 12 minutes; webhooks (``notify=``) hear of new items.

Everything is scripted and offline: a throw-away SQLite store, no model, no network.
Run it: ``python examples/patient_intake_review.py``.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from typing import Any

from orchestrate import Client, ConflictError, Retry, RunStatus, Step, StepContext, Workflow
from orchestrate.review import Escalate, HumanReviewGate, ReviewPermissionError

# --- scripted components ----------------------------------------------------------------------

FORMS = {
    "FORM-2026-07-001": {
        "patient": "J. Doe",
        "dob": "1961-03-02",
        "complaint": "fall on outstretched hand, left wrist pain",
        "medications": ["warfarin", "ibuprofen"],
    }
}
EHR: list[dict[str, Any]] = []


def extract(form_id: str) -> dict[str, Any]:
    """The OCR step (scripted): the form's fields."""
    return {"form_id": form_id, **FORMS[form_id]}


def validate(data: dict[str, Any]) -> dict[str, Any]:
    """Ontology checks: flag interacting medications."""
    flags = ["warfarin + ibuprofen: bleeding risk"] if {"warfarin", "ibuprofen"} <= set(data["medications"]) else []
    return {**data, "flags": flags}


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    """The LLM summary (scripted, with the mistake a reviewer must catch: the wrong side)."""
    return {
        "form_id": data["form_id"],
        "patient": data["patient"],
        "summary": "Suspected distal radius fracture, right wrist. Continue current medications.",
        "flags": data["flags"],
    }


def update_record(summary: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Write the approved summary to the EHR (idempotent by the step's key)."""
    EHR.append({"key": ctx.idempotency_key, **summary})
    return {"ehr_update": f"EHR-UPD-{len(EHR):04d}", "summary": summary["summary"]}


INTAKE_GATE = HumanReviewGate(
    required_approvals=["medical_reviewer", "quality_assurance"],
    priority="high",
    timeout=timedelta(minutes=15),
    warn_before=timedelta(minutes=3),
    on_timeout=Escalate("attending_physician", timeout=timedelta(minutes=10), on_timeout="reject"),
)

intake = Workflow(
    "patient_intake",
    [
        Step("extract", extract, retry=Retry(max_attempts=3, initial_delay=0.1)),
        Step("validate", validate),
        Step("summarise", summarise, gate=INTAKE_GATE),
        Step("update_record", update_record, retry=2),
    ],
    version="1",
)


async def main() -> dict[str, Any]:
    """Run one form to the gate, decide it as two roles, and finish the run."""
    EHR.clear()
    with tempfile.TemporaryDirectory(prefix="orchestrate-intake-") as tmp:
        store = f"sqlite:///{tmp}/intake.db"
        async with Client(store, workflows=[intake]) as client:
            parked = await client.run(intake, "FORM-2026-07-001")
            print(f"run {parked.run_id} is {parked.status.value} ({parked.wait_reason}); EHR writes: {len(EHR)}")

        # Reviewers work from their own processes: a fresh client on the same store.
        async with Client(store) as reviewers:
            (item,) = await reviewers.list_reviews(role="medical_reviewer")
            print(f"queue for medical_reviewer: {item.review_id} [{item.priority}] needs {item.required_roles}")
            print(f"  payload: {item.payload['summary']}")
            try:
                await reviewers.approve(item.review_id, by="intern_sam", role="intern")
            except ReviewPermissionError as exc:
                print(f"  refused: {exc}")
            corrected = {**item.payload, "summary": item.payload["summary"].replace("right", "left")}
            corrected["summary"] += " Hold ibuprofen (on warfarin)."
            edited = await reviewers.edit(item.review_id, corrected, by="dr_okafor", role="medical_reviewer")
            print(f"  dr_okafor edited: {edited.approvals[0]['changes']['summary']['after']}")
            still = await reviewers.get(parked.run_id)
            print(f"  after one role the run is still {still.status.value}")
            final = await reviewers.approve(item.review_id, by="qa_lee", role="quality_assurance")
            print(f"  qa_lee approved: the item is {final.status.value}")
            try:
                await reviewers.reject(item.review_id, by="qa_kim", role="quality_assurance", reason="late")
            except ConflictError as exc:
                print(f"  a late decision: {exc}")

        async with Client(store, workflows=[intake]) as worker:
            finished = await worker.resume(parked.run_id)
            print(f"run {finished.status.value}: {finished.output}")
            history = [e.kind for e in (await worker.detail(parked.run_id)).events if e.kind.startswith("review")]
            print(f"  review history: {history}")
            stats = await worker.review_stats()
            print(f"  time to decision (s): {stats.time_to_decision}")
            decided = await worker.get_review(item.review_id)
        assert finished.status is RunStatus.SUCCEEDED
        return {
            "parked": parked,
            "item": item,
            "decided": decided,
            "finished": finished,
            "ehr": list(EHR),
            "history": history,
        }


if __name__ == "__main__":
    asyncio.run(main())
