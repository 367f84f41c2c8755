"""Seed 003's confidence-tiered human-in-the-loop gate, as one declaration.

The article's gate::

    def hitl_gate(response, confidence, context):
        if confidence >= 0.8:
            return auto_send(response)
        elif confidence >= 0.5:
            return queue_for_review(response, priority="normal", sla=120)
        else:
            if context.sensitive:
                return emergency_escalation(response, assigned="senior_agent", sla=30)
            else:
                return queue_for_review(response, priority="low", sla=360)

here is ``REPLY_GATE`` below: four tiers in a few lines, on the drafting step. Four
tickets go through it: one is sent automatically, three park on review items of their
tier's priority, role and SLA (minutes in the article). Agents decide two of them; the
sensitive one is left alone past its 30-minute SLA and escalates to the support manager,
who approves it. Time is a ``FakeClock`` so that the half hour passes at once; the store
is a throw-away SQLite file. Run it: ``python examples/confidence_tiers.py``.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from typing import Any

from orchestrate import Client, Engine, RunStatus, Step, Workflow
from orchestrate.review import Escalate, HumanReviewGate, Tier, TieredGate
from orchestrate.store import open_store
from orchestrate.testing import FakeClock


def sensitive(reply: dict[str, Any]) -> bool:
    """Billing disputes, legal threats, health: never send these unreviewed."""
    return bool(reply["sensitive"])


REPLY_GATE = TieredGate(
    "confidence",
    [
        Tier(0.8, name="auto-send"),
        Tier(0.5, HumanReviewGate(roles=["support_agent"], priority="normal", timeout=timedelta(minutes=120))),
        Tier(
            0.0,
            HumanReviewGate(
                roles=["senior_agent"],
                priority="urgent",
                timeout=timedelta(minutes=30),
                on_timeout=Escalate("support_manager", timeout=timedelta(minutes=15), on_timeout="reject"),
            ),
            when=sensitive,
            name="emergency",
        ),
    ],
    otherwise=HumanReviewGate(roles=["support_agent"], priority="low", timeout=timedelta(minutes=360)),
)

# Scripted drafts: (reply, model confidence, sensitive?)
DRAFTS = {
    "T-1": ("Your order #4829 left Memphis today; ETA Friday.", 0.93, False),
    "T-2": ("You can change the address until the parcel ships.", 0.62, False),
    "T-3": ("We will refund the double charge within 3 days.", 0.31, True),
    "T-4": ("Our shop opens at 9 on Sundays.", 0.22, False),
}


def draft_reply(ticket: str) -> dict[str, Any]:
    text, confidence, is_sensitive = DRAFTS[ticket]
    return {"ticket": ticket, "text": text, "confidence": confidence, "sensitive": is_sensitive}


def send(reply: dict[str, Any]) -> str:
    return f"sent to {reply['ticket']}: {reply['text']}"


support = Workflow(
    "support_reply", [Step("draft_reply", draft_reply, gate=REPLY_GATE), Step("send", send)], version="1"
)


async def main() -> dict[str, Any]:
    """Send four tickets through the tiers; decide, and let one SLA pass."""
    clock = FakeClock()
    with tempfile.TemporaryDirectory(prefix="orchestrate-tiers-") as tmp:
        engine = Engine(open_store(f"sqlite:///{tmp}/support.db"), clock=clock)
        async with Client(engine=engine, workflows=[support]) as client:
            runs = {ticket: await client.run(support, ticket) for ticket in DRAFTS}
            for ticket, run in runs.items():
                items = await client.list_reviews(run_id=run.run_id)
                where = (
                    f"{items[0].meta['tier']}: {items[0].priority} for {items[0].roles}, SLA {items[0].sla_seconds:g}s"
                    if items
                    else "auto-sent"
                )
                print(f"{ticket} conf={DRAFTS[ticket][1]:.2f} -> {run.status.value} ({where})")

            queue = await client.list_reviews(role="support_agent")
            print(f"support_agent queue, most urgent first: {[(i.payload['ticket'], i.priority) for i in queue]}")
            normal, low = queue
            await client.approve(normal.review_id, by="agent_7", role="support_agent")
            await client.edit(
                low.review_id,
                {**low.payload, "text": "Our shop opens at 10 on Sundays."},
                by="agent_7",
                role="support_agent",
            )

            for run in (runs["T-2"], runs["T-4"]):
                await client.resume(run.run_id)  # what a worker does once the run is due

            # Nobody takes the urgent, sensitive one: its timers wake it at 24 minutes (a
            # warning) and at 30 (the escalation to the manager).
            t3 = runs["T-3"].run_id
            clock.advance(24 * 60)
            await client.resume(t3)
            clock.advance(6 * 60)
            await client.resume(t3)
            (manager_item,) = await client.list_reviews(role="support_manager")
            print(f"T-3 escalated to support_manager: {manager_item.priority}, SLA {manager_item.sla_seconds:g}s")
            await client.approve(manager_item.review_id, by="mgr_ana", role="support_manager")
            await client.resume(t3)

            results = {ticket: await client.get(run.run_id) for ticket, run in runs.items()}
            for ticket, record in results.items():
                print(f"{ticket}: {record.status.value}: {record.output}")
            stats = await client.review_stats()
            rate = f"{stats.escalation_rate:.0%} of {stats.gates} reviewed tickets"
            print(f"escalation rate {rate}; by status {stats.by_status}")
            history = (await client.detail(runs["T-3"].run_id)).events
            t3_events = [e.kind for e in history if e.kind.startswith("review")]
        assert all(r.status is RunStatus.SUCCEEDED for r in results.values())
        return {"runs": runs, "results": results, "stats": stats, "t3_events": t3_events}


if __name__ == "__main__":
    asyncio.run(main())
