"""Seed 002: document processing: map-reduce over pages, parallel extraction, a 24-hour legal review.

The article's Temporal workflow::

    @workflow.defn
    class DocumentProcessingWorkflow:
        @workflow.run
        async def run(self, document_id: str):
            # Step 1: Classification (use small model)
            doc_type = await workflow.execute_activity(classify_document, document_id,
                                                       start_to_close_timeout=timedelta(seconds=10))
            # Step 2: Parallel extraction
            extracted = await asyncio.gather(
                workflow.execute_activity(extract_entities, document_id),
                workflow.execute_activity(extract_relationships, document_id))
            # Step 3: Validation with human-in-loop
            if doc_type == "legal_contract":
                await workflow.execute_activity(notify_human_review, extracted,
                                                start_to_close_timeout=timedelta(hours=24))
            return {"status": "completed", "data": extracted}

with seed 001's map-reduce (``@parallel(max_workers=4)`` per item, ``@reduce`` to merge)
applied to the pages of a document. Here it is one graph::

    classify_document -> Map(read_page, max_workers=4, reduce=assemble_pages)
      -> Parallel([extract_entities, extract_relationships]) -> consolidate
      -> Branch(doc_type): legal_contract -> legal_review (legal, 24 h) -> publish

Differences, each for a reason:

* the legal review is a gate, not a notification: in the article the activity only tells
  someone, and the workflow returns "completed" whatever they think. Here the run parks
  (no worker held) until a person with the ``legal`` role approves or corrects the
  extraction, and only then publishes it. If nobody decides within 24 hours the run fails
  with ``ReviewExpiredError`` and nothing is published: the gate fails closed;
* the input is the document (id and page scans), not only its id: there is no document
  store to fetch it from;
* pages are read by a ``Map`` (seed 001's pattern 1): a page whose scan hangs is retried
  after its timeout; a page that cannot be read after its retries is skipped, and the
  reduce lists it so that the reviewer sees what is missing, instead of failing the whole
  document;
* the extractions share the step graph's input, so each carries the document's header
  (id, type, missing pages) for the step that consolidates them.

The classifier, the OCR service and the two extraction models are scripted (the
extractors are ``FunctionModel`` s behind a pydantic validation gate). Time is a
``FakeClock``, so the 24-hour SLA passes at once; the store is a throw-away SQLite file.
Run it: ``python examples/seeds/seed002_document_processing.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from datetime import timedelta
from typing import Any

import pydantic

from orchestrate import (
    MISSING,
    Branch,
    Client,
    Engine,
    Fallback,
    HumanReviewGate,
    Map,
    Parallel,
    Retry,
    RunStatus,
    Step,
    StepContext,
    Workflow,
)
from orchestrate.models import ModelRequest, ValidatedModel, Validator
from orchestrate.observe import configure_logging
from orchestrate.store import open_store
from orchestrate.testing import FakeClock, FunctionModel

# --- scripted components ------------------------------------------------------------------

DOCUMENTS: dict[str, dict[str, Any]] = {
    "INV-1042": {
        "title": "Invoice 1042",
        "pages": [
            "Invoice 1042 from Acme Corp to Globex Ltd, dated 2026-07-01.",
            "Total due: 12,400.00 USD by 2026-07-31.",
        ],
    },
    "MSA-7": {
        "title": "Master Services Agreement",
        "pages": [
            "This Master Services Agreement is made on 2026-07-01 between Acme Corp and Globex Ltd.",
            "Acme Corp provides cloud hosting services to Globex Ltd.",
            "Globex Ltd pays Acme Corp 4,000.00 USD per month.",
            "Either party may terminate with 90 days notice.",
            "Governing law: the State of Delaware.",
        ],
    },
    "NDA-3": {
        "title": "Mutual Non-Disclosure Agreement",
        "pages": [
            "This Mutual Non-Disclosure Agreement is made on 2026-06-12 between Initech Inc and Globex Ltd.",
            "Initech Inc shares confidential roadmaps with Globex Ltd.",
            "The obligations survive for 3 years.",
        ],
    },
}


class Scanner:
    """The OCR service's faults: scans that hang once, scans that never read."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.hang_once: set[tuple[str, int]] = set()  # (document, page): hangs on its first read
        self.unreadable: set[tuple[str, int]] = set()  # (document, page): every read fails
        self.reads: dict[tuple[str, int], int] = {}
        self.in_flight = 0
        self.max_in_flight = 0  # the most pages read at once


SCANNER = Scanner()
PUBLISHED: list[dict[str, Any]] = []  # the document index that approved extractions go to


def classify_document(document: dict[str, Any]) -> dict[str, Any]:
    """Step 1, the small classifier (scripted: keywords of the title)."""
    title = document["title"].lower()
    doc_type = "legal_contract" if ("agreement" in title or "contract" in title) else "invoice"
    return {"doc_id": document["doc_id"], "doc_type": doc_type, "pages": document["pages"]}


def pages_of(classified: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of the map: one per page, with the document's header."""
    header = {"doc_id": classified["doc_id"], "doc_type": classified["doc_type"]}
    return [{**header, "page": n, "scan": scan} for n, scan in enumerate(classified["pages"], start=1)]


async def read_page(page: dict[str, Any]) -> dict[str, Any]:
    """OCR of one page (scripted: the scan's text, after the faults)."""
    where = (page["doc_id"], page["page"])
    SCANNER.reads[where] = SCANNER.reads.get(where, 0) + 1
    SCANNER.in_flight += 1
    SCANNER.max_in_flight = max(SCANNER.max_in_flight, SCANNER.in_flight)
    try:
        if where in SCANNER.hang_once and SCANNER.reads[where] == 1:
            await asyncio.sleep(30)  # the OCR service hangs; the step's timeout cuts it off
        if where in SCANNER.unreadable:
            raise ValueError(f"{page['doc_id']} page {page['page']}: scan unreadable")
        await asyncio.sleep(0.005)
    finally:
        SCANNER.in_flight -= 1
    return {"doc_id": page["doc_id"], "doc_type": page["doc_type"], "page": page["page"], "text": page["scan"]}


def assemble_pages(pages: list[Any]) -> dict[str, Any]:
    """The reduce: the pages read, in order, and the numbers of those skipped."""
    read = [p for p in pages if p is not MISSING]
    if not read:
        raise ValueError("no page of the document could be read")
    return {
        "doc_id": read[0]["doc_id"],
        "doc_type": read[0]["doc_type"],
        "text": "\n".join(p["text"] for p in read),
        "pages_read": len(read),
        "pages_missing": [n for n, p in enumerate(pages, start=1) if p is MISSING],
    }


class Entities(pydantic.BaseModel):
    """What the entity extractor must answer."""

    parties: list[str] = pydantic.Field(min_length=1)
    dates: list[str]
    amounts: list[str]


class Relationship(pydantic.BaseModel):
    subject: str
    relation: str
    object: str


class Relationships(pydantic.BaseModel):
    """What the relationship extractor must answer."""

    relationships: list[Relationship]


PARTY = re.compile(r"\b([A-Z][a-z]+ (?:Corp|Ltd|Inc))\b")


def _document_text(request: ModelRequest) -> str:
    return request.messages[-1].content.split("Document:\n", 1)[-1]


def _entities_answer(request: ModelRequest) -> str:
    text = _document_text(request)
    return json.dumps(
        {
            "parties": sorted(set(PARTY.findall(text))),
            "dates": re.findall(r"\d{4}-\d{2}-\d{2}", text),
            "amounts": re.findall(r"[\d,]+\.\d{2} USD", text),
        }
    )


def _relationships_answer(request: ModelRequest) -> str:
    found = []
    for sentence in _document_text(request).splitlines():
        parties = PARTY.findall(sentence)
        if len(parties) == 2 and sentence.startswith(parties[0]):
            relation = sentence[len(parties[0]) : sentence.index(parties[1])].strip()
            found.append({"subject": parties[0], "relation": relation, "object": parties[1]})
    return json.dumps({"relationships": found})


entity_model = ValidatedModel(FunctionModel(_entities_answer, model_id="entity-extractor"), Validator(Entities))
relationship_model = ValidatedModel(
    FunctionModel(_relationships_answer, model_id="relation-extractor"), Validator(Relationships)
)


async def extract_entities(document: dict[str, Any]) -> dict[str, Any]:
    """Parties, dates and amounts; carries the document's header for the consolidation."""
    result = await entity_model.chat(f"List the parties, dates and amounts.\nDocument:\n{document['text']}")
    header = {key: document[key] for key in ("doc_id", "doc_type", "pages_missing")}
    return {**header, **result.data.model_dump()}


async def extract_relationships(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Who does what for whom."""
    result = await relationship_model.chat(f"List who does what to whom.\nDocument:\n{document['text']}")
    return [r.model_dump() for r in result.data.relationships]


def consolidate(extracted: dict[str, Any]) -> dict[str, Any]:
    """Fan-in of the parallel extractions (``merge="dict"``: by step name)."""
    return {**extracted["extract_entities"], "relationships": extracted["extract_relationships"]}


def legal_review(extraction: dict[str, Any]) -> dict[str, Any]:
    """What legal sees: the extraction, and what could not be read."""
    return {**extraction, "checklist": ["parties", "term and termination", "governing law"]}


def publish(extraction: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Index the extraction (idempotent by the step's key: a retried call writes once)."""
    if not any(entry["key"] == ctx.idempotency_key for entry in PUBLISHED):
        PUBLISHED.append({"key": ctx.idempotency_key, "doc_id": extraction["doc_id"]})
    return {"status": "completed", "data": extraction}


# --- the workflow ------------------------------------------------------------------------------

LEGAL_REVIEW = HumanReviewGate(roles=["legal"], priority="high", timeout=timedelta(hours=24))

document_processing = Workflow(
    "document_processing",
    [
        Step("classify_document", classify_document, timeout=10.0),
        Map(
            Step(
                "read_page",
                read_page,
                timeout=0.2,
                retry=Retry(max_attempts=3, initial_delay=0.01, jitter=0.0),
                fallback=Fallback.skip(),
            ),
            over=pages_of,
            max_workers=4,
            reduce=assemble_pages,
        ),
        Parallel(
            [
                Step("extract_entities", extract_entities, timeout=10.0, retry=2),
                Step("extract_relationships", extract_relationships, timeout=10.0, retry=2),
            ],
            merge="dict",
        ),
        Step("consolidate", consolidate),
        Branch(
            "classify_document.doc_type",
            {"legal_contract": Step("legal_review", legal_review, gate=LEGAL_REVIEW)},
            default="publish",
        ),
        Step("publish", publish, retry=2),
    ],
    version="1",
)


def as_input(doc_id: str) -> dict[str, Any]:
    """The run's input: the document's id, title and page scans."""
    return {"doc_id": doc_id, **DOCUMENTS[doc_id]}


async def main() -> dict[str, Any]:
    """Process an invoice and two contracts; legal approves one and lets the other expire."""
    SCANNER.reset()
    PUBLISHED.clear()
    SCANNER.hang_once.add(("MSA-7", 3))  # the OCR service hangs on one page, once
    SCANNER.unreadable.add(("NDA-3", 2))  # a page of the NDA never reads
    # Fake time: retry backoffs pass at once (auto_advance), and the test moves a day on.
    clock = FakeClock(auto_advance=True)
    with tempfile.TemporaryDirectory(prefix="orchestrate-seed002-docs-") as tmp:
        engine = Engine(open_store(f"sqlite:///{tmp}/documents.db"), clock=clock)
        async with Client(engine=engine, workflows=[document_processing]) as client:
            runs = {doc_id: await client.run(document_processing, as_input(doc_id)) for doc_id in DOCUMENTS}
            for doc_id, run in runs.items():
                steps = {s.step_key: s for s in (await client.detail(run.run_id)).steps}
                pages = {int(k[len("read_page[") : -1]) + 1: s for k, s in steps.items() if k.startswith("read_page[")}
                retried = [n for n, s in sorted(pages.items()) if s.attempts > 1 and s.fallback is None]
                skipped = [n for n, s in sorted(pages.items()) if s.fallback == "skip"]
                print(
                    f"{doc_id}: {run.status.value} ({run.wait_reason or 'no review'}); pages read "
                    f"{len(pages) - len(skipped)}/{len(pages)}, read again after a timeout {retried}, skipped {skipped}"
                )

            queue = await client.list_reviews(role="legal")
            print(f"legal queue: {[(i.payload['doc_id'], i.priority, i.sla_seconds) for i in queue]}")
            msa = next(i for i in queue if i.payload["doc_id"] == "MSA-7")
            # Legal adds what the extractors do not look for, and approves: an edit.
            corrected = {**msa.payload, "termination": "90 days notice", "governing_law": "Delaware"}
            await client.edit(msa.review_id, corrected, by="counsel_diaz", role="legal")
            approved = await client.resume(runs["MSA-7"].run_id)
            print(f"MSA-7: counsel_diaz added the term and the governing law; run {approved.status.value}")

            # Nobody takes the NDA; a day passes. The worker that wakes the run finds the
            # SLA gone: the run fails and the extraction is never published.
            clock.advance(24 * 3600 + 60)
            expired = await client.resume(runs["NDA-3"].run_id)
            print(f"NDA-3: 24 hours without a decision; run {expired.status.value}: {expired.error['name']}")
            nda = next(i for i in queue if i.payload["doc_id"] == "NDA-3")
            print(f"  NDA-3 pages legal was told are missing: {nda.payload['pages_missing']}")

            results = {doc_id: await client.get(run.run_id) for doc_id, run in runs.items()}
            items = {i.payload["doc_id"]: i for i in await client.list_reviews(role="legal", status=None)}
        published = [entry["doc_id"] for entry in PUBLISHED]
        print(f"published: {published}")
        assert results["INV-1042"].status is RunStatus.SUCCEEDED
        assert results["NDA-3"].status is RunStatus.FAILED
        return {"runs": runs, "results": results, "reviews": items, "published": published}


if __name__ == "__main__":
    configure_logging("error")  # the story above says what happened; remove to see the engine's JSON logs
    asyncio.run(main())
