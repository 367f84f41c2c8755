"""Seed 001: the three patterns of the article, nearly as written.

1. Parallel map-reduce: ``@parallel(max_workers=4)`` + ``await extract_document.map(files)``
   + ``@reduce(strategy="concat")``; the same code runs as plain calls or, inside a
   durable workflow, as recorded steps (``extract_document[0]``, ...).
2. Conditional branching with fallback: ``@branch(on="complexity_score")`` decides, the
   handlers are registered with ``route_query.route(...)``, and
   ``@fallback(strategy="model_switch", ...)`` switches to the local model when the
   primary ("GPT-4o-mini", scripted to be down) keeps failing.
3. Human-in-the-loop gate: ``@gate(timeout=300, escalate_on_timeout=True,
   required_approvals=[...])`` used as a step of a workflow, which parks until
   ``@approval(role="medical_reviewer")``'s decision is delivered with ``Client.decide``.

Every model is scripted. Runs use the in-memory store.
"""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrate import (
    Client,
    RunContext,
    RunStatus,
    Workflow,
    approval,
    branch,
    fallback,
    gate,
    parallel,
    reduce,
    workflow,
)

# --- scripted components ------------------------------------------------------------------


def pdf_processor(file_path: str) -> dict[str, Any]:
    return {file_path: {"kind": "pdf", "pages": 3, "text": "Discharge summary ..."}}


def vision_model(file_path: str) -> dict[str, Any]:
    return {file_path: {"kind": "image", "labels": ["x-ray", "left wrist"]}}


def text_parser(file_path: str) -> dict[str, Any]:
    return {file_path: {"kind": "text", "words": 212}}


def complexity_estimator(query: str) -> float:
    clinical = ("interaction", "dosage", "contraindication", "diagnosis")
    return min(1.0, 0.3 + 0.5 * sum(word in query.lower() for word in clinical))


class ModelDownError(ConnectionError):
    """The hosted model's API answers 503."""


class ScriptedHostedModel:
    """GPT-4o-mini, scripted to be down for this demo."""

    def __init__(self) -> None:
        self.up = False
        self.calls = 0

    def generate(self, query: str) -> str:
        self.calls += 1
        if not self.up:
            raise ModelDownError("gpt-4o-mini: 503 Service Unavailable")
        return f"[gpt-4o-mini] {query}"


class ScriptedLocalModel:
    """A local model served by Ollama."""

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, query: str) -> str:
        self.calls += 1
        return f"[ollama/llama3] answer to: {query}"


gpt_4o_mini = ScriptedHostedModel()
ollama = ScriptedLocalModel()


# --- pattern 1: parallel map-reduce --------------------------------------------------------------


@parallel(max_workers=4)
def extract_document(file_path: str) -> dict:
    # Each file processed by different model based on type
    if file_path.endswith(".pdf"):
        return pdf_processor(file_path)
    elif file_path.endswith(".jpg"):
        return vision_model(file_path)
    return text_parser(file_path)


@reduce(strategy="concat")
def merge_extractions(results: list[dict]) -> dict:
    merged = {}
    for result in results:
        merged.update(result)
    return merged


async def batch_process(files: list[str]) -> dict:
    extracted = await extract_document.map(files)
    consolidated = await merge_extractions(extracted)
    return consolidated


@workflow(name="batch_extraction", version="1")
async def durable_batch(ctx: RunContext, files: list[str]) -> dict:
    """The same code as a durable run: every extraction and the merge are recorded steps."""
    return await batch_process(files)


# --- pattern 2: conditional branching with fallback -------------------------------------------------


@branch(on="complexity_score")
def route_query(query: str) -> str:
    score = complexity_estimator(query)
    if score > 0.7:
        return "complex"
    return "simple"


def ollama_generate(query: str) -> str:
    return ollama.generate(query)


def canned_answer(query: str) -> str:
    return "Sorry, I can't answer that right now; a pharmacist will follow up."


@fallback(strategy="model_switch", to=ollama_generate, max_retries=2)
def handle_complex(query: str) -> str:
    return gpt_4o_mini.generate(query)


@fallback(strategy="local_model", to=canned_answer)
def handle_simple(query: str) -> str:
    return ollama.generate(query)


route_query.route("complex")(handle_complex)
route_query.route("simple")(handle_simple)


# --- pattern 3: the human-in-the-loop gate ---------------------------------------------------------


@gate(
    timeout=300,  # Wait 5 minutes for human
    escalate_on_timeout=True,  # Send to supervisor
    required_approvals=["medical_reviewer", "quality_assurance"],
)
def approve_diagnosis(diagnosis: dict) -> dict:
    return diagnosis


@approval(role="medical_reviewer")
def reviewer_approve(diagnosis: dict) -> bool:
    # Human clicks approve/reject in dashboard (scripted: approve unless the model hedged)
    return diagnosis["confidence"] >= 0.5


def draft_diagnosis(case: dict) -> dict:
    return {"patient": case["patient"], "diagnosis": "distal radius fracture", "confidence": 0.81}


def notify_care_team(diagnosis: dict) -> dict:
    return {"notified": ["orthopedics"], **diagnosis}


diagnosis_review = Workflow("diagnosis_review", [draft_diagnosis, approve_diagnosis, notify_care_team], version="1")


async def main() -> dict[str, Any]:
    """Run the three patterns and print what happened."""
    gpt_4o_mini.up, gpt_4o_mini.calls, ollama.calls = False, 0, 0
    files = ["intake.pdf", "wrist.jpg", "notes.txt", "referral.pdf"]

    # 1. map-reduce, plain and durable
    consolidated = await batch_process(files)
    print(f"map-reduce: merged {len(consolidated)} extractions: {sorted(consolidated)}")
    async with Client("memory://", workflows=[durable_batch]) as client:
        record = await client.run(durable_batch, files)
        batch_steps = [s.step_key for s in (await client.detail(record.run_id)).steps]
    print(f"  as a durable run ({record.status.value}): steps {batch_steps}")

    # 2. branch + fallback: the complex query goes to GPT-4o-mini, which is down
    query = "What are the drug interactions for this patient?"
    result = await route_query.run(query, state_store="memory")
    print(f"branch: {query!r} -> complex; gpt-4o-mini tried {gpt_4o_mini.calls} times, then: {result}")
    simple = await route_query.run("What are your opening hours?", state_store="memory")
    print(f"  a simple query -> {simple}")

    # 3. the gate parks the workflow until the reviewer decides
    async with Client("memory://", workflows=[diagnosis_review]) as client:
        parked = await client.run(diagnosis_review, {"patient": "P-0042"})
        print(f"gate: run {parked.run_id} is {parked.status.value} ({parked.wait_reason})")
        (item,) = await client.list_reviews(run_id=parked.run_id)
        approved = reviewer_approve(item.payload)
        if approved:
            # both required roles must approve before the run goes on
            await client.approve(item.review_id, by="dr_okafor", role="medical_reviewer")
            await client.approve(item.review_id, by="qa_lead", role="quality_assurance")
        else:
            await client.reject(item.review_id, by="dr_okafor", role="medical_reviewer", reason="needs rework")
        finished = await client.resume(parked.run_id)
        approvals = [(a["by"], a["role"]) for a in (await client.get_review(item.review_id)).approvals]
        print(f"  approvals {approvals}; run {finished.status.value}: {finished.output}")
    assert finished.status is RunStatus.SUCCEEDED
    return {
        "consolidated": consolidated,
        "durable_batch": record,
        "durable_batch_steps": batch_steps,
        "complex_answer": result,
        "primary_calls": gpt_4o_mini.calls,
        "simple_answer": simple,
        "gate_parked": parked,
        "gate_finished": finished,
    }


if __name__ == "__main__":
    asyncio.run(main())
