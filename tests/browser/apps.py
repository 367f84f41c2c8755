"""The workflows the browser tests serve: a support reply a lead must review (and an urgent one
that escalates), a payout whose card is declined until someone replays it with another card,
a quote whose pricing times out into a flagged fallback, and a shipment waiting for a signal."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from orchestrate import Fallback, RunContext, Step, Workflow, workflow
from orchestrate.policies import Retry
from orchestrate.review import Escalate, HumanReviewGate
from orchestrate.testing import FakeModel

REVIEWER_ROLE = "support_lead"

triage_model = FakeModel(["refund"], model_id="small-triage", repeat_last=True)


async def classify(ticket: dict[str, Any]) -> Any:
    """Ask the (scripted) model what the ticket is about; the step records its tokens and cost."""
    result = await triage_model.generate(f"classify this ticket: {ticket['text']}")
    return result.replace(cost=0.00042)


def draft(intent: Any) -> dict[str, Any]:
    """The reply a person checks before it goes out."""
    label = intent["text"] if isinstance(intent, dict) else intent.text
    return {"intent": label, "reply": "We refunded your order #4829.", "amount": 42.5, "confidence": 0.62}


def send(reply: dict[str, Any]) -> str:
    return f"sent: {reply['reply']} ({reply['amount']})"


support = Workflow(
    "support_reply",
    [
        Step("classify", classify),
        Step(
            "draft",
            draft,
            gate=HumanReviewGate(roles=[REVIEWER_ROLE], priority="high", timeout=timedelta(minutes=30)),
        ),
        Step("send", send),
    ],
)


def check(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "checked": True}


def charge(order: dict[str, Any]) -> dict[str, Any]:
    if order.get("card") == "declined":
        raise ValueError(f"card declined for order {order['order']}")
    return {**order, "charged": True}


def receipt(order: dict[str, Any]) -> str:
    return f"receipt for {order['order']}"


payout = Workflow(
    "payout",
    [
        Step("check", check),
        Step("charge", charge, retry=Retry(max_attempts=2, initial_delay=0.01, jitter=0.0)),
        Step("receipt", receipt),
    ],
)


async def price(order: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(30)  # the pricing service hangs: the step's timeout ends the attempt
    return {**order, "price": 10.0}


quote = Workflow(
    "quote",
    [
        Step("check", check),
        Step(
            "price",
            price,
            timeout=0.2,
            retry=Retry(max_attempts=2, initial_delay=0.01, jitter=0.0),
            fallback=Fallback.value({"price": 12.5, "estimated": True}, flag="pricing_review"),
        ),
    ],
)


@workflow(version="1")
async def shipment(ctx: RunContext, order: dict[str, Any]) -> str:
    """A durable function: it waits, holding no worker, until the carrier's pickup is signalled."""
    checked = await ctx.step(check, order)
    pickup = await ctx.wait("carrier_pickup")
    return f"order {checked['order']} picked up at {pickup['at']}"


@workflow(version="1")
async def batch(ctx: RunContext, orders: list[str]) -> int:
    """Many steps in one run: one check per order."""
    for order in orders:
        await ctx.step(check, {"order": order})
    return len(orders)


SUPERVISOR_ROLE = "supervisor"

urgent = Workflow(
    "urgent_refund",
    [
        Step("classify", classify),
        Step(
            "draft",
            draft,
            gate=HumanReviewGate(
                roles=[REVIEWER_ROLE],
                priority="urgent",
                timeout=timedelta(seconds=1),  # nobody answers in time: a supervisor gets it
                on_timeout=Escalate(SUPERVISOR_ROLE, timeout=timedelta(minutes=30)),
            ),
        ),
        Step("send", send),
    ],
)

WORKFLOWS = [support, payout, urgent, shipment, quote, batch]
