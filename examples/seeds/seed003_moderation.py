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
  content is blocked (fail closed).

Free-form options such as ``threshold=0.7`` reach the component as ``ctx.options``.

The reply gate of the article's third layer (≥0.8 auto-send, ≥0.5 normal review,
below that a senior agent with a 30-minute SLA when the topic is sensitive, else a
low-priority review) is ``Branch.tiers``. Every model is scripted.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

from orchestrate import (
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


async def aws_rekognition(image: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.005)
    return {"check": "nsfw", "score": 0.02 if image["name"] != "beach_party.jpg" else 0.41}


async def ocr_service(image: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.005)
    return {"check": "text", "text": image.get("caption", "")}


async def custom_rules(image: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.002)
    return {"check": "metadata", "gps_stripped": not image.get("gps", False)}


def image_verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    nsfw, text, meta = results
    ok = nsfw["score"] < 0.3 and not BANNED.search(text["text"]) and meta["gps_stripped"]
    return {"action": "allowed" if ok else "queued_for_review", "checks": results}


COMPONENTS = {
    "regex_patterns": regex_patterns,
    "openai_moderation_api": openai_moderation_api,
    "anthropic_safety": anthropic_safety,
    "auto_block": auto_block,
    "queue_for_review": queue_for_review,
    "aws_rekognition": aws_rekognition,
    "ocr_service": ocr_service,
    "custom_rules": custom_rules,
}

BLOCK = {"text": None, "keyword_hit": True}  # fail closed: treated as a keyword hit


# --- the moderation workflow ------------------------------------------------------------------

moderation = Workflow(
    "content_moderation",
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
                (lambda s: s > 0.7, Step("queue_for_review")),
                # Low confidence: second model, then Step 4 on its score
                (
                    lambda s: s <= 0.7,
                    [
                        Step("second_opinion", model="anthropic_safety", timeout=5.0),
                        Branch(
                            "second_opinion.score",
                            [
                                (lambda s: s > 0.9, Step("auto_block")),
                                (lambda s: s <= 0.9, Step("queue_for_review")),
                            ],
                        ),
                    ],
                ),
            ],
        ),
    ],
    components=COMPONENTS,
    version="1",
)

# Parallel image analysis
image_pipeline = Parallel(
    [
        Step("nsfw_detector", model="aws_rekognition"),
        Step("text_extraction", model="ocr_service"),
        Step("metadata_check", model="custom_rules"),
    ]
)
image_moderation = Workflow(
    "image_moderation", [image_pipeline, Step("image_verdict", image_verdict)], components=COMPONENTS, version="1"
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
]


async def main() -> dict[str, Any]:
    """Moderate the samples, check two images, and route four drafts through the tiers."""
    results: dict[str, Any] = {"moderation": {}, "images": {}, "tiers": {}}
    async with Client("memory://", workflows=[moderation, image_moderation, reply_gate]) as client:
        for text in MODERATION_SCORES:
            record = await client.run(moderation, text)
            path = [s.step_key for s in (await client.detail(record.run_id)).steps]
            results["moderation"][text] = {"record": record, "path": path}
            print(f"{record.output['action']:<18} {text!r}\n{'':<18} via {' -> '.join(path)}")

        for image in IMAGES:
            record = await client.run(image_moderation, image)
            steps = [s.step_key for s in (await client.detail(record.run_id)).steps]
            results["images"][image["name"]] = {"record": record, "steps": steps}
            print(f"image {image['name']:<16} {record.output['action']} (checks in parallel: {steps[:3]})")

        for ticket in TICKETS:
            record = await client.run(reply_gate, ticket)
            detail = await client.detail(record.run_id)
            waits = [e for e in detail.events if e.kind == "wait_started"]
            sla = f", SLA {waits[0].data['timeout'] / 60:g} min" if waits else ""
            where = record.wait_reason or ("sent" if record.status is RunStatus.SUCCEEDED else record.status.value)
            results["tiers"][ticket["id"]] = {"record": record, "steps": [s.step_key for s in detail.steps]}
            print(f"draft {ticket['id']} confidence {ticket['confidence']:.2f} -> {record.status.value}: {where}{sla}")

        urgent = results["tiers"]["T-3"]["record"]
        await client.decide(urgent.run_id, "emergency_escalation", approved=True, by="senior_agent")
        finished = await client.resume(urgent.run_id)
        results["tiers"]["T-3"]["finished"] = finished
        print(f"senior agent approved T-3; run {finished.status.value}, sent={finished.output['sent']}")
    return results


if __name__ == "__main__":
    asyncio.run(main())
