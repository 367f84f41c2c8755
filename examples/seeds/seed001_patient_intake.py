"""Seed 001: the patient-intake pipeline, nearly as the article writes it.

    patient_pipeline = AgentWorkflow(name="intake_orchestrator", max_concurrency=5,
                                     state_store="postgresql")

    @patient_pipeline.step(retry=3, timeout=30)
    def extract_document(form_id: str) -> dict: ...

    @patient_pipeline.step(retry=2, timeout=15)
    def validate_ontology(data: dict) -> dict: ...

    @patient_pipeline.step(gate=HumanReviewGate())
    def generate_summary(data: dict) -> str: ...

    pipeline_result = await patient_pipeline.run(form_id="FORM-2026-07-001")

The OCR model returns a low-confidence read on its first attempt (``LowConfidenceError``,
retried); the summary parks the run behind a human review gate until a physician approves
it with ``Client.decide``; only then is the EHR updated. The state store is a throw-away
SQLite file here (``"postgresql"`` in the article: the same code, another URL).
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any, ClassVar

from orchestrate import AgentWorkflow, ApprovalRequired, Client, HumanReviewGate, RunStatus, StepContext

# --- scripted components ------------------------------------------------------------------


class LowConfidenceError(Exception):
    """The OCR read is too uncertain to use; worth another attempt."""

    def __init__(self, confidence: float) -> None:
        super().__init__(f"OCR confidence {confidence:.2f} < 0.85")
        self.confidence = confidence


class OcrResponse:
    def __init__(self, data: dict[str, Any], confidence: float) -> None:
        self.data, self.confidence = data, confidence


class ScriptedOcr:
    """First read of a form is blurry (0.62), the second is clean (0.97)."""

    def __init__(self) -> None:
        self.reads: dict[str, int] = {}

    def process(self, form_id: str) -> OcrResponse:
        self.reads[form_id] = self.reads.get(form_id, 0) + 1
        fields = {
            "form_id": form_id,
            "patient": "J. Doe",
            "dob": "1961-03-02",
            "medications": ["warfarin", "ibuprofen"],
            "allergies": ["penicillin"],
        }
        return OcrResponse(fields, 0.62 if self.reads[form_id] == 1 else 0.97)


class Validation(dict[str, Any]):
    """The ontologizer's result: coded fields plus ``errors``."""

    @property
    def errors(self) -> list[str]:
        return list(self.get("errors", []))


class ScriptedOntologizer:
    INTERACTIONS: ClassVar[dict[Any, str]] = {
        frozenset({"warfarin", "ibuprofen"}): "warfarin + ibuprofen: bleeding risk"
    }

    def run(self, data: dict[str, Any]) -> Validation:
        meds = set(data["extracted"]["medications"])
        errors = [msg for pair, msg in self.INTERACTIONS.items() if pair <= meds]
        codes = {m: f"RxNorm:{1000 + i}" for i, m in enumerate(sorted(meds))}
        return Validation(codes=codes, errors=errors, record=data["extracted"])


class ScriptedLLM:
    def generate(self, data: dict[str, Any]) -> str:
        record = data["validated"]["record"]
        flags = "; ".join(data["flags"]) or "none"
        return f"{record['patient']} (DOB {record['dob']}): on {', '.join(record['medications'])}. Flags: {flags}."


class ScriptedEhr:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def update(self, summary: str, *, idempotency_key: str) -> str:
        if not any(u["key"] == idempotency_key for u in self.updates):  # a retried call writes once
            self.updates.append({"key": idempotency_key, "summary": summary})
        return f"EHR-UPD-{len(self.updates):04d}"


ocr_model = ScriptedOcr()
medical_ontologizer = ScriptedOntologizer()
llm = ScriptedLLM()
ehr = ScriptedEhr()


# --- the pipeline, as in the seed ---------------------------------------------------------------


def build_pipeline(state_store: str) -> AgentWorkflow:
    """The seed's decorators; ``state_store`` is a store URL (``"postgresql"`` in the article)."""
    patient_pipeline = AgentWorkflow(name="intake_orchestrator", max_concurrency=5, state_store=state_store)

    @patient_pipeline.step(retry=3, timeout=30)
    def extract_document(form_id: str) -> dict:
        response = ocr_model.process(form_id)
        if response.confidence < 0.85:
            raise LowConfidenceError(response.confidence)
        return {"extracted": response.data}

    @patient_pipeline.step(retry=2, timeout=15)
    def validate_ontology(data: dict) -> dict:
        validation = medical_ontologizer.run(data)
        # A step's output is stored as JSON: the dict subclass is passed on as the plain
        # dict it would be after a restart (the engine refuses it otherwise).
        return {"validated": dict(validation), "flags": validation.errors}

    @patient_pipeline.step(gate=HumanReviewGate())
    def generate_summary(data: dict) -> str:
        summary = llm.generate(data)
        return summary

    # Step 5 of the article: only an approved summary reaches the EHR.
    @patient_pipeline.step(retry=2, timeout=10)
    def update_record(summary: str, ctx: StepContext) -> dict:
        return {"ehr_update": ehr.update(summary, idempotency_key=ctx.idempotency_key), "summary": summary}

    return patient_pipeline


async def main() -> dict[str, Any]:
    """Run one form to the gate, approve it as the physician, and finish the run."""
    ocr_model.reads.clear()
    ehr.updates.clear()
    with tempfile.TemporaryDirectory(prefix="orchestrate-seed001-") as tmp:
        store = f"sqlite:///{tmp}/intake.db"
        patient_pipeline = build_pipeline(store)

        try:
            pipeline_result = await patient_pipeline.run(form_id="FORM-2026-07-001")
            raise AssertionError(f"the summary should wait for a doctor, got {pipeline_result!r}")
        except ApprovalRequired as exc:
            parked = exc.run
            run_id = parked.run_id
            print(f"run {run_id} is {parked.status.value}: {parked.wait_reason}")
        before_approval = len(ehr.updates)
        print(f"  EHR updates so far: {before_approval} (nothing is written before approval)")

        async with Client(store, workflows=[patient_pipeline]) as client:
            detail = await client.detail(run_id)
            for step in detail.steps:
                print(f"  step {step.step_key:<18} {step.status.value:<9} attempts={step.attempts}")
            summary = next(s.output for s in detail.steps if s.step_key == "generate_summary")
            print(f"  summary awaiting review: {summary}")

            await client.decide(run_id, "generate_summary", approved=True, by="dr_okafor")
            record = await client.resume(run_id)
            print(f"approved by dr_okafor; run {record.status.value}: {record.output}")
            steps = {s.step_key: s for s in (await client.detail(run_id)).steps}
        assert record.status is RunStatus.SUCCEEDED
        return {
            "parked": parked,
            "record": record,
            "steps": steps,
            "ehr_updates_before_approval": before_approval,
            "ehr_updates": list(ehr.updates),
        }


if __name__ == "__main__":
    asyncio.run(main())
