"""Durable agents on SQLite and PostgreSQL: a run parked mid-agent resumes in a new engine,
with recorded turns replayed (never re-sent), gated calls approved once for their exact
arguments, and the token budget counted from what the store recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from orchestrate import Client, Engine, RunContext, RunStatus, workflow
from orchestrate.agents import Agent, AgentBudget, args_hash, review_approver, tool
from orchestrate.errors import BudgetExceededError
from orchestrate.models.base import Usage
from orchestrate.store import open_store
from orchestrate.testing.models import FakeModel, Reply
from tests.postgres import in_schema

PAID: list[tuple[str, float, str]] = []


@tool(requires_approval=True)
def pay(invoice: str, amount: float, idempotency_key: str) -> str:
    """Pay an invoice (a person approves first)."""
    PAID.append((invoice, amount, idempotency_key))
    return f"paid {invoice}"


@tool
def balance() -> float:
    """The account's balance."""
    return 120.0


def call(name: str, **args) -> Reply:
    return Reply(json.dumps({"tool": name, "args": args}), usage=Usage(100, 10))


def final(text: str) -> Reply:
    return Reply(json.dumps({"final": text}), usage=Usage(100, 10))


MODELS: dict[str, FakeModel] = {}


def make_agent(max_tokens: int) -> Agent:
    return Agent(
        "payer",
        role="You pay invoices.",
        model=MODELS["current"],
        tools=[pay, balance],
        approve=review_approver(roles=["finance"]),
        budget=AgentBudget(max_tokens=max_tokens),
        max_steps=10,
    )


@workflow(name="pay_invoices", version="1")
async def pay_invoices(ctx: RunContext, max_tokens: int) -> dict:
    result = await make_agent(max_tokens).run("Pay invoice INV-9 if the balance allows", ctx=ctx)
    return {"output": result.output, "tokens": result.usage.total_tokens, "turns": result.turns}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/runs.db"
    else:
        yield from in_schema()


async def park_on_the_payment(url: str, max_tokens: int) -> str:
    """Turns 1-2 run; the payment waits for a person (the run parks, the engine closes)."""
    MODELS["current"] = FakeModel([call("balance"), call("pay", invoice="INV-9", amount=80.0)])
    async with Engine(open_store(url), workflows=[pay_invoices]) as engine:
        parked = await Client(engine=engine).run(pay_invoices, max_tokens)
        assert parked.status is RunStatus.WAITING
        (item,) = await Client(engine=engine).list_reviews(run_id=parked.run_id)
        assert item.payload == {"agent": "payer", "tool": "pay", "args": {"invoice": "INV-9", "amount": 80.0}}
        await Client(engine=engine).approve(item.review_id, by="ana", role="finance")
    assert len(MODELS["current"].calls) == 2 and PAID == []
    return parked.run_id


async def test_a_parked_agent_resumes_in_a_new_engine_without_resending_turns(url: str) -> None:
    PAID.clear()
    run_id = await park_on_the_payment(url, 10_000)
    resumed_model = MODELS["current"] = FakeModel([final("INV-9 paid")])
    async with Engine(open_store(url), workflows=[pay_invoices]) as engine:
        done = await Client(engine=engine).resume(run_id)
        steps = [s.step_key for s in await engine.store.get_steps(run_id)]
    assert done.status is RunStatus.SUCCEEDED
    assert done.output == {"output": "INV-9 paid", "tokens": 330, "turns": 3}
    assert len(resumed_model.calls) == 1  # turn 3 only: turns 1 and 2 came from the store
    sent = [m.content for m in resumed_model.calls[0].messages]
    assert "Tool balance returned: 120.0" in sent and "Tool pay returned: paid INV-9" in sent
    assert [("INV-9", 80.0, f"{run_id}:agent:payer:tool:2:0")] == PAID
    assert steps == [
        "agent:payer:turn:1",
        "agent:payer:tool:1:0",
        "agent:payer:turn:2",
        f"wait:review:agent:payer:tool:2:0:{args_hash('pay', {'invoice': 'INV-9', 'amount': 80.0})[:16]}",
        "agent:payer:approval:2:0",
        "agent:payer:tool:2:0",
        "agent:payer:turn:3",
    ]


async def test_the_budget_counts_recorded_turns_and_stops_before_the_call(url: str) -> None:
    PAID.clear()
    # Two turns spent 220 tokens; the third request's input would cross a budget of 330,
    # so it is never sent, although 110 tokens are left. Its size is the provider's count
    # of the conversation so far (turn 2's 100 + 10 tokens, as recorded) plus an estimate
    # of the tool result added since (12).
    run_id = await park_on_the_payment(url, 330)
    resumed_model = MODELS["current"] = FakeModel([final("INV-9 paid")])
    async with Engine(open_store(url), workflows=[pay_invoices]) as engine:
        done = await Client(engine=engine).resume(run_id)
    assert done.status is RunStatus.FAILED
    assert resumed_model.calls == []
    assert PAID and PAID[0][0] == "INV-9"  # the approved call still ran once, before the budget stopped the agent
    assert "BudgetExceededError" in json.dumps(
        done.error
    ) and "220 tokens spent and the next request needs about 122" in json.dumps(done.error)


async def test_without_a_store_the_budget_still_stops_before_the_call() -> None:
    model = FakeModel([call("balance"), call("balance"), final("done")])
    agent = Agent("payer", role="x", model=model, tools=[balance], budget=AgentBudget(max_tokens=250))
    with pytest.raises(BudgetExceededError, match="220 tokens spent"):
        await agent.run("how much?")
    assert len(model.calls) == 2
