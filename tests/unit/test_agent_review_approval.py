"""An agent's tool that needs approval parks the run on a review gate until a person decides."""

from __future__ import annotations

import json

import pytest

from orchestrate import Client, Engine, RunContext, RunStatus, workflow
from orchestrate.agents import Agent, review_approver, tool
from orchestrate.errors import DefinitionError
from orchestrate.store import InMemoryStore
from orchestrate.testing.models import FunctionModel

REFUNDS: list[str] = []


@tool(requires_approval=True)
def issue_refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    REFUNDS.append(order_id)
    return f"refunded {amount:.2f} on {order_id}"


def brain(request) -> str:
    last = request.messages[-1].content
    if "issue_refund returned" in last:
        return json.dumps({"final": "Refund issued."})
    if "not approved" in last:
        return json.dumps({"final": "A person declined the refund."})
    return json.dumps({"tool": "issue_refund", "args": {"order_id": "A-17", "amount": 20.0}})


def support_agent() -> Agent:
    return Agent(
        "refunds",
        role="You refund orders.",
        model=FunctionModel(brain),
        tools=[issue_refund],
        approve=review_approver(roles=["support_lead"]),
    )


@workflow(name="refund_with_approval", version="1")
async def refund_flow(ctx: RunContext, message: str) -> str:
    result = await support_agent().run(message)
    return str(result.output)


@pytest.mark.parametrize(
    ("approve", "answer", "refunds"), [(True, "Refund issued.", ["A-17"]), (False, "A person declined the refund.", [])]
)
async def test_tool_call_parks_on_a_review_until_decided(approve, answer, refunds):
    REFUNDS.clear()
    async with Engine(InMemoryStore(), workflows=[refund_flow]) as engine:
        client = Client(engine=engine)
        parked = await client.run(refund_flow, "Please refund A-17")
        assert parked.status is RunStatus.WAITING
        assert REFUNDS == []  # nothing happened before a person decided
        (item,) = await client.list_reviews(run_id=parked.run_id)
        assert item.payload == {
            "agent": "refunds",
            "tool": "issue_refund",
            "args": {"order_id": "A-17", "amount": 20.0},
        }
        assert item.roles == ("support_lead",) or list(item.roles) == ["support_lead"]
        if approve:
            await client.approve(item.review_id, by="lead_1", role="support_lead")
        else:
            await client.reject(item.review_id, by="lead_1", role="support_lead", reason="not eligible")
        done = await client.resume(parked.run_id)
    assert done.status is RunStatus.SUCCEEDED and done.output == answer
    assert refunds == REFUNDS


async def test_outside_a_run_the_approver_refuses_clearly():
    with pytest.raises(DefinitionError, match="run the agent inside a workflow"):
        await support_agent().run("Please refund A-17")
