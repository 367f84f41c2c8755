"""Seed 003: content moderation, parallel image checks and confidence tiers.

The article's moderation workflow::

    workflow = Workflow([
        Step("keyword_filter", model="regex_patterns", timeout=0.5, on_fail="block"),
        Step("ai_moderator", model="openai_moderation_api", timeout=3.0, threshold=0.7),
        Branch("ai_moderator.score",
            lambda s: s > 0.95: Step("auto_block"),
            lambda s: s > 0.7: Step("queue_for_review"),
            lambda s: s <= 0.7: Step("second_opinion", model="anthropic_safety", timeout=5.0)),
        Branch("second_opinion.score",
            lambda s: s > 0.9: Step("auto_block"),
            lambda s: s <= 0.9: Step("queue_for_review")),
    ])
    image_pipeline = Parallel([Step("nsfw_detector", model="aws_rekognition"), ...])

Differences, each for a reason:

* a workflow needs a name (runs are stored and listed by it);
* predicates are written as ``(predicate, route)`` pairs;
* the second-opinion branch sits on the low-score route, right after the second
  opinion: at top level it would run after an auto-block too, with no second opinion
  to decide on;
* ``on_fail="block"`` is spelled as a fallback: if the filter fails or times out, the
  content is blocked (fail closed). A keyword hit is scored 1.0 by the moderator's
  wrapper without calling its API, so it is auto-blocked;
* ``moderation`` is the graph as written (``examples/yaml/moderation.yaml`` is its twin),
  where ``queue_for_review`` only labels the post. ``moderation_reviewed``, the one this
  example runs, corrects two things. ``queue_for_review`` is a real queue of people: a
  review item for the ``moderator`` role (queue ``moderation``, 4-hour SLA); the post is
  held as ``blocked`` while it waits, and a moderator approves that or edits the action
  to ``allowed``; a rejection, or nobody deciding in time, fails the run and the post
  stays blocked (fail closed). And the second opinion has a third route,
  ``s <= 0.3: Step("allow")``: as written, every post below 0.7 whose second score is at
  most 0.9 goes to people, benign posts included, which contradicts the article's "95% of
  content automatically";
* the image checks each fall back to "skipped" when their service fails, and the verdict
  treats a skipped check as not passed: the image goes to the same queue instead of out.

Free-form options such as ``threshold=0.7`` reach the component as ``ctx.options``.

The reply gate of the article's third layer (≥0.8 auto-send, ≥0.5 normal review,
below that a senior agent with a 30-minute SLA when the topic is sensitive, else a
low-priority review) is ``Branch.tiers``. Every model is scripted; the store is a
throw-away SQLite file. Run it: ``python examples/seeds/seed003_moderation.py``.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from datetime import timedelta
from typing import Any

from orchestrate import (
    MISSING,
    Branch,
    Client,
    Fallback,
    HumanReviewGate,
    Parallel,
    RunStatus,
    Step,
    StepContext,
    Workflow,
)
from orchestrate.observe import configure_logging

# --- scripted components ------------------------------------------------------------------

BANNED = re.compile(r"cheap pills|crypto giveaway", re.IGNORECASE)

# What the two moderation models say about each sample (scripted, deterministic).
MODERATION_SCORES = {
    "Buy cheap pills at spam-pharmacy.example": 0.99,
    "I know where you live and I will hurt you": 0.97,
    "This movie was so bad I wanted to scream at the screen": 0.78,
    "You people are animals": 0.62,
    "That referee should be shot for that call": 0.55,
}
BENIGN = "What a lovely sunset over the bay tonight"  # scored 0.05, then 0.1
SECOND_OPINION_SCORES = {"You people are animals": 0.94, "That referee should be shot for that call": 0.35}


def regex_patterns(text: str) -> dict[str, Any]:
    """Fast, cheap: known spam and scam phrases."""
    return {"text": text, "keyword_hit": bool(BANNED.search(text))}


async def openai_moderation_api(filtered: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    await asyncio.sleep(0.003)
    score = 1.0 if filtered["keyword_hit"] else MODERATION_SCORES.get(filtered["text"], 0.05)
    return {"text": filtered["text"], "score": score, "flagged": score > ctx.options["threshold"]}


async def anthropic_safety(moderated: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.004)
    return {"text": moderated["text"], "score": SECOND_OPINION_SCORES.get(moderated["text"], 0.1)}


def auto_block(item: dict[str, Any]) -> dict[str, Any]:
    return {"text": item["text"], "action": "blocked"}


def queue_for_review(item: dict[str, Any]) -> dict[str, Any]:
    return {"text": item["text"], "action": "queued_for_review"}


def hold_for_moderator(item: dict[str, Any]) -> dict[str, Any]:
    """What a moderator sees; the post is held (blocked) until they decide."""
    return {"text": item["text"], "score": item["score"], "action": "blocked"}


def allow(item: dict[str, Any]) -> dict[str, Any]:
    return {"text": item["text"], "action": "allowed"}


IMAGE_SERVICES_DOWN: set[str] = set()  # image services that answer 503 (the fail-closed path)


async def aws_rekognition(image: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.005)
    if "aws_rekognition" in IMAGE_SERVICES_DOWN:
        raise ConnectionError("rekognition: 503 Service Unavailable")
    return {"check": "nsfw", "image": image["name"], "score": 0.02 if image["name"] != "beach_party.jpg" else 0.41}


async def ocr_service(image: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.005)
    if "ocr_service" in IMAGE_SERVICES_DOWN:
        raise ConnectionError("ocr: 503 Service Unavailable")
    return {"check": "text", "image": image["name"], "text": image.get("caption", "")}


async def custom_rules(image: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.002)
    if "custom_rules" in IMAGE_SERVICES_DOWN:
        raise ConnectionError("rules: 503 Service Unavailable")
    return {"check": "metadata", "image": image["name"], "gps_stripped": not image.get("gps", False)}


def image_verdict(results: list[Any]) -> dict[str, Any]:
    """Allowed only when every check ran and passed; a skipped check is not a pass."""
    nsfw, text, meta = results
    ok = (
        nsfw is not MISSING
        and text is not MISSING
        and meta is not MISSING
        and nsfw["score"] < 0.3
        and not BANNED.search(text["text"])
        and meta["gps_stripped"]
    )
    checks = [None if r is MISSING else r for r in results]
    image = next((c["image"] for c in checks if c is not None), None)
    return {"image": image, "action": "allowed" if ok else "queued_for_review", "checks": checks}


def hold_image(verdict: dict[str, Any]) -> dict[str, Any]:
    return {**verdict, "action": "blocked"}


COMPONENTS = {
    "regex_patterns": regex_patterns,
    "openai_moderation_api": openai_moderation_api,
    "anthropic_safety": anthropic_safety,
    "auto_block": auto_block,
    "queue_for_review": queue_for_review,
    "allow": allow,
    "aws_rekognition": aws_rekognition,
    "ocr_service": ocr_service,
    "custom_rules": custom_rules,
}

BLOCK = {"text": None, "keyword_hit": True}  # fail closed: treated as a keyword hit

# The queue of people: a moderator approves the hold, or edits the action to "allowed".
MODERATION_QUEUE = HumanReviewGate(roles=["moderator"], queue="moderation", timeout=timedelta(hours=4))


# --- the moderation workflow ------------------------------------------------------------------


def moderation_workflow(name: str, *, people: HumanReviewGate | None = None) -> Workflow:
    """The article's workflow; with ``people``, a real review queue and an allow route."""

    def review() -> Step:
        return Step("queue_for_review") if people is None else Step("queue_for_review", hold_for_moderator, gate=people)

    if people is None:  # as written: every second opinion up to 0.9 goes to review
        second: list[Any] = [(lambda s: s > 0.9, Step("auto_block")), (lambda s: s <= 0.9, review())]
    else:
        second = [
            (lambda s: s > 0.9, Step("auto_block")),
            (lambda s: s > 0.3, review()),
            (lambda s: s <= 0.3, Step("allow")),
        ]
    return Workflow(
        name,
        [
            # Step 1: Initial filtering (fast, cheap); the article's on_fail="block" is the fallback
            Step("keyword_filter", model="regex_patterns", timeout=0.5, fallback=Fallback.value(BLOCK)),
            # Step 2: AI moderation (if keyword filter passes)
            Step("ai_moderator", model="openai_moderation_api", timeout=3.0, threshold=0.7),
            # Step 3: Confidence-based routing
            Branch(
                "ai_moderator.score",
                [
                    # High confidence: auto-action
                    (lambda s: s > 0.95, Step("auto_block")),
                    # Medium confidence: human review
                    (lambda s: s > 0.7, review()),
                    # Low confidence: second model, then Step 4 on its score
                    (
                        lambda s: s <= 0.7,
                        [
                            Step("second_opinion", model="anthropic_safety", timeout=5.0),
                            Branch("second_opinion.score", second),
                        ],
                    ),
                ],
            ),
        ],
        components=COMPONENTS,
        version="1",
    )


# As written (examples/yaml/moderation.yaml is its twin): queue_for_review only labels the post.
moderation = moderation_workflow("content_moderation")
# As run here: queue_for_review holds the post for a moderator, and benign posts go out.
moderation_reviewed = moderation_workflow("content_moderation_reviewed", people=MODERATION_QUEUE)

# Parallel image analysis; a check whose service fails is skipped, and a skip is no pass
image_pipeline = Parallel(
    [
        Step("nsfw_detector", model="aws_rekognition", timeout=5.0, fallback=Fallback.skip()),
        Step("text_extraction", model="ocr_service", timeout=5.0, fallback=Fallback.skip()),
        Step("metadata_check", model="custom_rules", timeout=5.0, fallback=Fallback.skip()),
    ]
)
image_moderation = Workflow(
    "image_moderation",
    [
        image_pipeline,
        Step("image_verdict", image_verdict),
        Branch(
            "image_verdict.action",
            {"queued_for_review": Step("image_review", hold_image, gate=MODERATION_QUEUE)},
            default=[],
        ),
    ],
    components=COMPONENTS,
    version="1",
)


# --- the reply gate: confidence tiers ---------------------------------------------------------------


def draft_reply(ticket: dict[str, Any]) -> dict[str, Any]:
    """The support model's draft with its confidence (scripted: given by the ticket)."""
    return {
        "ticket": ticket["id"],
        "reply": f"Re: {ticket['subject']}",
        "confidence": ticket["confidence"],
        "sensitive": ticket["sensitive"],
    }


def send(draft: dict[str, Any]) -> dict[str, Any]:
    return {**draft, "sent": True}


def hold(draft: dict[str, Any]) -> dict[str, Any]:
    return {**draft, "sent": False}


reply_gate = Workflow(
    "reply_gate",
    [
        Step("draft_reply", draft_reply),
        Branch.tiers(
            "draft_reply.confidence",
            [
                (0.8, Step("auto_send", send)),
                (
                    0.5,
                    Step(
                        "review_normal", hold, gate=HumanReviewGate(priority="normal", timeout=timedelta(minutes=120))
                    ),
                ),
            ],
            otherwise=Branch(
                "draft_reply.sensitive",
                {
                    True: Step(
                        "emergency_escalation",
                        hold,
                        gate=HumanReviewGate(roles=["senior_agent"], priority="urgent", timeout=timedelta(minutes=30)),
                    ),
                    False: Step(
                        "review_low", hold, gate=HumanReviewGate(priority="low", timeout=timedelta(minutes=360))
                    ),
                },
            ),
        ),
        Step("deliver", send),
    ],
    version="1",
)

TICKETS = [
    {"id": "T-1", "subject": "Where is my invoice?", "confidence": 0.91, "sensitive": False},
    {"id": "T-2", "subject": "Change my delivery address", "confidence": 0.63, "sensitive": False},
    {"id": "T-3", "subject": "I was charged twice and I'm a minor", "confidence": 0.31, "sensitive": True},
    {"id": "T-4", "subject": "Do you ship to Mars?", "confidence": 0.22, "sensitive": False},
]

IMAGES = [
    {"name": "sunset.jpg", "caption": "Golden hour"},
    {"name": "beach_party.jpg", "caption": "Free crypto giveaway, DM me", "gps": True},
    {"name": "harbour.jpg", "caption": "Evening at the harbour", "detector_down": True},
]
ALLOWED_BY_MODERATORS = {"This movie was so bad I wanted to scream at the screen", "harbour.jpg"}


async def main() -> dict[str, Any]:
    """Moderate the samples, check two images, let moderators decide, route four drafts."""
    results: dict[str, Any] = {"moderation": {}, "images": {}, "tiers": {}}
    with tempfile.TemporaryDirectory(prefix="orchestrate-seed003-moderation-") as tmp:
        store = f"sqlite:///{tmp}/moderation.db"
        workflows = [moderation, moderation_reviewed, image_moderation, reply_gate]
        async with Client(store, workflows=workflows) as client:
            as_written = await client.run(moderation, BENIGN)
            results["as_written"] = as_written
            print(f"as written, the benign {BENIGN!r} is {as_written.output['action']}; as run here:")
            for text in [*MODERATION_SCORES, BENIGN]:
                record = await client.run(moderation_reviewed, text)
                path = [s.step_key for s in (await client.detail(record.run_id)).steps]
                results["moderation"][text] = {"record": record, "path": path}
                state = record.output["action"] if record.output else f"held for a moderator ({record.wait_reason})"
                print(f"{text!r}\n    {state}, via {' -> '.join(path)}")

            for image in IMAGES:
                if image.get("detector_down"):  # its check is skipped, so the image is held
                    IMAGE_SERVICES_DOWN.add("aws_rekognition")
                record = await client.run(image_moderation, image)
                IMAGE_SERVICES_DOWN.clear()
                steps = {s.step_key: s for s in (await client.detail(record.run_id)).steps}
                results["images"][image["name"]] = {"record": record, "steps": list(steps)}
                state = record.output["action"] if record.output else "held for a moderator"
                skipped = [k for k, s in steps.items() if s.fallback == "skip"]
                print(f"image {image['name']:<16} {state} (checked in parallel; skipped: {skipped or 'none'})")

            # The moderators' queue: they publish the hyperbole and the harbour, and keep the rest blocked.
            queue = await client.list_reviews(role="moderator")
            print(f"moderation queue: {[i.payload.get('text') or i.payload['image'] for i in queue]}")
            for item in queue:
                if (item.payload.get("text") or item.payload["image"]) in ALLOWED_BY_MODERATORS:
                    allowed = {**item.payload, "action": "allowed"}
                    await client.edit(item.review_id, allowed, by="mod_kai", role="moderator")
                else:
                    await client.approve(item.review_id, by="mod_kai", role="moderator")
            for group in ("moderation", "images"):
                for entry in results[group].values():
                    if entry["record"].status is RunStatus.WAITING:
                        entry["final"] = await client.resume(entry["record"].run_id)
                        what = entry["final"].output.get("text") or entry["final"].output["image"]
                        print(f"  mod_kai decided {what!r}: {entry['final'].output['action']}")

            for ticket in TICKETS:
                record = await client.run(reply_gate, ticket)
                detail = await client.detail(record.run_id)
                waits = [e for e in detail.events if e.kind == "wait_started"]
                sla = f", SLA {waits[0].data['timeout'] / 60:g} min" if waits else ""
                where = record.wait_reason or ("sent" if record.status is RunStatus.SUCCEEDED else record.status.value)
                results["tiers"][ticket["id"]] = {"record": record, "steps": [s.step_key for s in detail.steps]}
                print(
                    f"draft {ticket['id']} confidence {ticket['confidence']:.2f} -> {record.status.value}: {where}{sla}"
                )

            urgent = results["tiers"]["T-3"]["record"]
            (item,) = await client.list_reviews(run_id=urgent.run_id)
            await client.approve(item.review_id, by="agent_ana", role="senior_agent")
            finished = await client.resume(urgent.run_id)
            results["tiers"]["T-3"]["finished"] = finished
            print(f"senior agent approved T-3; run {finished.status.value}, sent={finished.output['sent']}")
    return results


if __name__ == "__main__":
    configure_logging("error")  # the story above says what happened; remove to see the engine's JSON logs
    asyncio.run(main())
