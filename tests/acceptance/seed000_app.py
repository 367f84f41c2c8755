"""Seed 000's compliance pipeline exactly as the article writes it: no annotations.

usage: python seed000_app.py STORE_URL WORKDIR start RUN_ID
       python seed000_app.py STORE_URL WORKDIR resume RUN_ID

``generate_doc`` returns a ``ComplianceDoc`` (a dataclass of this module) and
``need_human_review`` reads ``doc.confidence``. On its first execution
``need_human_review`` writes WORKDIR/in_review_check and hangs, so the test can kill the
process between the two steps; the resumed process prints what the step received.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrate import Engine, Fallback, Orchestrator, Step
from orchestrate.store import open_store

WORKDIR = Path(sys.argv[2])


@dataclass
class ComplianceDoc:
    patient_ref: str
    text: str
    confidence: float


class DeidModel:
    def run(self, data):
        return {"patient_ref": "P-" + data["mrn"][-4:], "procedure": data["procedure"]}


class RagAgent:
    def query(self, db, query):
        return {"case": query, "matches": []}


class LLM:
    def complete(self, model, prompt, temperature):
        return ComplianceDoc("P-0183", f"[{model}] {prompt[:40]}", 0.93)


deid_model, rag_agent, llm_client = DeidModel(), RagAgent(), LLM()


def deidentify(data):
    return deid_model.run(data)


def policy_check(data):
    return rag_agent.query(db="policy_vectors_v3", query=f"Does this case match exclusion criteria? {data}")


def generate_doc(context):
    return llm_client.complete(
        model="gpt-4-turbo", prompt=f"Generate compliance doc based on: {context}", temperature=0.1
    )


def need_human_review(doc):
    marker = WORKDIR / "in_review_check"
    if not marker.exists():
        marker.write_text("here")
        time.sleep(600)  # killed here, after generate_doc was recorded
    print(f"review_check got {type(doc).__name__} confidence={doc.confidence}", flush=True)
    if doc.confidence < 0.85:
        return Fallback("human_review_queue", doc)
    return doc


orchestrator = Orchestrator(name="hipaa_approval_v2", version="1")
orchestrator.add_step(Step("deidentify", deidentify, timeout=5.0))
orchestrator.add_step(Step("policy_check", policy_check, timeout=10.0, retries=2))
orchestrator.add_step(Step("generate_doc", generate_doc, timeout=30.0))
orchestrator.add_step(Step("review_check", need_human_review))


async def main() -> None:
    url, mode, run_id = sys.argv[1], sys.argv[3], sys.argv[4]
    patient = {"name": "Ada Lovelace", "mrn": "MRN-000183", "procedure": "knee arthroscopy"}
    async with Engine(open_store(url), workflows=[orchestrator], lease_seconds=2.0) as engine:
        if mode == "start":
            record = await engine.run_record(orchestrator, patient, run_id=run_id)
        else:
            record = await engine.execute(run_id, force=True)
        assert record is not None
        print(record.status.value, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
