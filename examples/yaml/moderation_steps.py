"""Scripted components of ``moderation.yaml`` and ``image_moderation.yaml`` (seed 003).

Deterministic stand-ins for the article's services: a regex filter, two moderation
models and three image checks. The YAML files name them by import path
(``moderation_steps:regex_patterns``); this module sits next to them.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from orchestrate import StepContext

BANNED = re.compile(r"cheap pills|crypto giveaway", re.IGNORECASE)

# What the two moderation models say about each sample.
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
    """The first moderation model; ``threshold`` comes from the step's options."""
    await asyncio.sleep(0.001)
    score = 1.0 if filtered["keyword_hit"] else MODERATION_SCORES.get(filtered["text"], 0.05)
    return {"text": filtered["text"], "score": score, "flagged": score > ctx.options["threshold"]}


async def anthropic_safety(moderated: dict[str, Any]) -> dict[str, Any]:
    """The second opinion on unclear cases."""
    await asyncio.sleep(0.001)
    return {"text": moderated["text"], "score": SECOND_OPINION_SCORES.get(moderated["text"], 0.1)}


def auto_block(item: dict[str, Any]) -> dict[str, Any]:
    return {"text": item["text"], "action": "blocked"}


def queue_for_review(item: dict[str, Any]) -> dict[str, Any]:
    return {"text": item["text"], "action": "queued_for_review"}


def allow(item: dict[str, Any]) -> dict[str, Any]:
    return {"text": item["text"], "action": "allowed"}


async def aws_rekognition(image: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.001)
    return {"check": "nsfw", "score": 0.02 if image["name"] != "beach_party.jpg" else 0.41}


async def ocr_service(image: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.001)
    return {"check": "text", "text": image.get("caption", "")}


async def custom_rules(image: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.001)
    return {"check": "metadata", "gps_stripped": not image.get("gps", False)}


def image_verdict(results: dict[str, Any]) -> dict[str, Any]:
    """Allow an image only when every check passes."""
    ok = (
        results["nsfw_detector"]["score"] < 0.3
        and not BANNED.search(results["text_extraction"]["text"])
        and results["metadata_check"]["gps_stripped"]
    )
    return {"action": "allowed" if ok else "queued_for_review", "checks": sorted(results)}
