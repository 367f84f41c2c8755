"""Seed 000: the HIPAA compliance pipeline, nearly as the article writes it.

    orchestrator = Orchestrator(name="hipaa_approval_v2")
    orchestrator.add_step(Step("deidentify", deidentify, timeout=5.0))
    orchestrator.add_step(Step("policy_check", policy_check, timeout=10.0, retries=2))
    orchestrator.add_step(Step("generate_doc", generate_doc, timeout=30.0))
    orchestrator.add_step(Step("review_check", need_human_review))
    result = await orchestrator.run(patient_data)

``need_human_review`` returns ``Fallback("human_review_queue", doc)`` when the document's
confidence is below 0.85. No step is named ``human_review_queue``, so the run parks on
that queue of people (status ``waiting``; ``orchestrator.run`` raises
``ApprovalRequired``): a review item that a compliance officer approves, corrects or
rejects with ``Client``; then the run resumes with the reviewed document.

The step functions carry no annotations, as in the article. ``generate_doc`` returns a
``ComplianceDoc``, a dataclass of this module: the engine stores it as JSON and, reading it
back after a restart (or in a reviewer's process), rebuilds the dataclass from the step's
own module, so ``need_human_review`` still reads ``doc.confidence``.

Differences: the store URL is a parameter (``state_store=``), and the scripted LLM also
gets the policy matches (``context=``) to compute its confidence from. The
de-identification model, the policy retrieval agent (its first query fails while its index
warms up: ``retries=2`` covers it) and the LLM are scripted. The runs live in a throw-away
SQLite store, as a reviewer in another process would see them.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from dataclasses import dataclass
from typing import Any, ClassVar

from orchestrate import ApprovalRequired, Client, Fallback, Orchestrator, RunStatus, Step

# --- scripted components ------------------------------------------------------------------


@dataclass
class ComplianceDoc:
    """The submission document the LLM writes."""

    patient_ref: str
    text: str
    confidence: float


class ScriptedDeidModel:
    """Replaces names and record numbers with tokens."""

    def run(self, data: dict[str, Any]) -> dict[str, Any]:
        ref = f"P-{data['mrn'][-4:]}"
        notes = re.sub(re.escape(data["name"]), "[PATIENT]", data["notes"])
        return {"patient_ref": ref, "procedure": data["procedure"], "notes": notes}


class ScriptedRagAgent:
    """Policy retrieval over a vector index; its first query fails while the index warms up."""

    EXCLUSIONS: ClassVar[dict[Any, str]] = {
        "experimental": "Policy 7.2: experimental procedures need a second reviewer."
    }

    def __init__(self) -> None:
        self.queries = 0

    def query(self, *, db: str, query: str) -> dict[str, Any]:
        self.queries += 1
        if self.queries == 1:
            raise ConnectionError(f"{db}: index warming up")
        hits = [text for word, text in self.EXCLUSIONS.items() if word in query.lower()]
        return {"case": query, "matches": hits}


class ScriptedLLM:
    """Writes the document; less confident when a policy exclusion matched."""

    def complete(self, *, model: str, prompt: str, temperature: float, context: dict[str, Any]) -> ComplianceDoc:
        matched = context["matches"]
        text = f"[{model} t={temperature}] Submission for {context['case']['patient_ref']}: " + (
            "exclusion criteria may apply - " + matched[0] if matched else "no exclusion criteria apply."
        )
        return ComplianceDoc(context["case"]["patient_ref"], text, 0.72 if matched else 0.93)


deid_model = ScriptedDeidModel()
rag_agent = ScriptedRagAgent()
llm_client = ScriptedLLM()


# --- the pipeline, as in the seed ---------------------------------------------------------------


def build_orchestrator(state_store: str) -> Orchestrator:
    """The seed's wiring; ``state_store`` says where runs are kept."""
    orchestrator = Orchestrator(name="hipaa_approval_v2", state_store=state_store)

    # Step 1: De-identify patient data
    def deidentify(data):
        return deid_model.run(data)

    # Step 2: Check against policy database
    def policy_check(data):
        result = rag_agent.query(
            db="policy_vectors_v3",
            query=f"Does this case match exclusion criteria? {data['procedure']}",
        )
        return {"case": data, "matches": result["matches"]}

    # Step 3: Generate submission document
    def generate_doc(context):
        return llm_client.complete(
            model="gpt-4-turbo",
            prompt=f"Generate compliance doc based on: {context}",
            temperature=0.1,
            context=context,
        )

    # Step 4: Human review flag if confidence < 0.85
    def need_human_review(doc):
        if doc.confidence < 0.85:
            return Fallback("human_review_queue", doc)
        return doc

    # Wire it up
    orchestrator.add_step(Step("deidentify", deidentify, timeout=5.0))
    orchestrator.add_step(Step("policy_check", policy_check, timeout=10.0, retries=2))
    orchestrator.add_step(Step("generate_doc", generate_doc, timeout=30.0))
    orchestrator.add_step(Step("review_check", need_human_review))
    return orchestrator


async def compliance_pipeline(orchestrator: Orchestrator, patient_data: dict[str, Any]) -> Any:
    result = await orchestrator.run(patient_data)
    return result


ROUTINE = {
    "name": "Ada Lovelace",
    "mrn": "MRN-000183",
    "procedure": "knee arthroscopy",
    "notes": "Ada Lovelace, routine follow-up.",
}
EXPERIMENTAL = {
    "name": "Alan Turing",
    "mrn": "MRN-004711",
    "procedure": "experimental gene therapy",
    "notes": "Alan Turing consented to the trial.",
}

REVIEW_SIGNAL = "queue:human_review_queue:review_check"


async def main() -> dict[str, Any]:
    """Run both patients; a reviewer approves the low-confidence document."""
    rag_agent.queries = 0
    with tempfile.TemporaryDirectory(prefix="orchestrate-seed000-") as tmp:
        store = f"sqlite:///{tmp}/compliance.db"
        orchestrator = build_orchestrator(store)

        routine = await compliance_pipeline(orchestrator, ROUTINE)
        print(f"routine case: passed straight through, confidence {routine.confidence}")
        print(f"  {routine.text}")

        try:
            await compliance_pipeline(orchestrator, EXPERIMENTAL)
            raise AssertionError("the low-confidence document should have parked")
        except ApprovalRequired as exc:
            parked = exc.run
            run_id = parked.run_id
            print(f"experimental case: run {run_id} is {parked.status.value} ({parked.wait_reason})")

        # A compliance officer, possibly in another process, looks at the queue and decides.
        async with Client(store, workflows=[orchestrator]) as reviewer:
            (item,) = await reviewer.list_reviews(run_id=run_id)
            print(f"  in the {item.queue} queue: {item.payload['text']}  (confidence {item.payload['confidence']})")
            await reviewer.approve(item.review_id, by="officer_chen", comment="second reviewer assigned")
            resumed = await reviewer.resume(run_id)
            print(f"  reviewer approved; run {resumed.status.value}: {resumed.output['text']}")
            steps = [
                (s.step_key, s.status.value, s.attempts, s.fallback) for s in (await reviewer.detail(run_id)).steps
            ]
        for key, status, attempts, fallback in steps:
            print(f"  step {key:<40} {status:<9} attempts={attempts} {fallback or ''}")
        assert resumed.status is RunStatus.SUCCEEDED
        return {"routine": routine, "parked": parked, "resumed": resumed, "steps": steps}


if __name__ == "__main__":
    asyncio.run(main())
