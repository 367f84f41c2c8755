"""Seed 002: agents that share a context and make a joint decision, behind a validation gate.

The article's sketch (pydantic-ai agents)::

    @dataclass
    class SharedContext:
        conversation_history: List[str]
        current_task: str
        agent_responses: List[str]

    context_agent = Agent("deepseek-v4", result_type=str,
                          system_prompt="Extract all relevant context from conversation.")
    decision_agent = Agent("gpt-5", result_type=dict,
                           system_prompt="Make decision based on context provided.")

    async def orchestrate_decision(user_input: str):
        context = SharedContext(conversation_history=[user_input], current_task="decision",
                                agent_responses=[])
        raw_context = await context_agent.run(user_input, result_type=str)     # Step 1
        context.agent_responses.append(raw_context.data)
        if "error" in raw_context.data.lower():                               # Step 2
            return {"error": "Context gathering failed", "fallback": True}
        decision = await decision_agent.run(f"Context: {raw_context.data} ...")  # Step 3
        return {"decision": decision.data, "context_used": raw_context.data}

and its rule: "validate every agent's output before passing it downstream. Check format
constraints, plausibility ranges, and semantic consistency." Here it is a durable
function over the same ``SharedContext``:

1. the context agent (an ``orchestrate.agents.Agent`` with a billing tool) reads the
   conversation, looks the order up, and writes what it found into the shared context;
2. the article's safety check, unchanged;
3. the decision agent's answer passes a validation gate: a pydantic schema (format), the
   amount against what was charged (plausibility), the order against the one in the
   context (consistency) and a confidence floor. An invalid answer is sent back to the
   model with what is wrong (``ValidatedModel``, two repairs); when the repairs run out, or
   the model is unsure, a person decides (``ctx.review``, role ``refund_specialist``);
4. only a validated decision, or a person's, is carried out.

Differences, each for a reason:

* ``SharedContext`` has a fourth field, ``records``: the tool results the agents saw, so
  that the gate checks the decision against facts, not against another model's prose;
* each agent call is a step: the context is recorded once, so a crash before the decision
  does not ask the context agent again, and a person's decision resumes where it stopped;
* a decision that fails validation goes to a person instead of downstream: the article
  returns the unvalidated ``decision.data``.

The models are scripted (``FunctionModel`` for the context agent, a ``FakeModel`` script
per ticket for the decision agent); the store is a throw-away SQLite file.
Run it: ``python examples/seeds/seed002_shared_context.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import pydantic

from orchestrate import Client, Retry, RunContext, RunStatus, StepContext, workflow
from orchestrate.agents import Agent, tool
from orchestrate.errors import InvalidOutputError
from orchestrate.models import Message, ModelRequest, ValidatedModel, Validator
from orchestrate.observe import configure_logging
from orchestrate.testing import FakeModel, FunctionModel

# --- the shared context -----------------------------------------------------------------------


@dataclass
class SharedContext:
    """What the agents share: the conversation, what each agent said, and the facts they saw."""

    conversation_history: list[str]
    current_task: str
    agent_responses: list[str] = field(default_factory=list)
    records: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        """The context as the next agent reads it."""
        lines = [f"Task: {self.current_task}", "Conversation:", *(f"- {m}" for m in self.conversation_history)]
        lines += ["What the other agents found:", *(f"- {r}" for r in self.agent_responses)]
        return "\n".join(lines)


# --- scripted components ------------------------------------------------------------------------


class Billing:
    """The billing system the context agent's tool reads."""

    def __init__(self) -> None:
        self.up = True
        self.orders = {
            "A-17": {"item": "blender", "charges": [{"amount": 42.5, "on": "2026-07-02"}] * 2},
            "B-20": {"item": "kettle", "charges": [{"amount": 19.9, "on": "2026-07-03"}]},
        }


BILLING = Billing()
REFUNDS: list[dict[str, Any]] = []  # what the payment system was told to do


@tool
def billing_history(order_id: str) -> dict[str, Any]:
    """Charges made for an order."""
    if not BILLING.up:
        raise ConnectionError("billing: 503 Service Unavailable")
    return {"order_id": order_id, **BILLING.orders[order_id]}


def _context_turn(request: ModelRequest) -> dict[str, Any]:
    """The context agent's model (scripted): look the order up, then say what it found."""
    said = [m.content for m in request.messages]
    result = next((s for s in said if s.startswith("Tool billing_history ")), None)
    if result is None:
        order = re.search(r"\b([A-Z]-\d+)\b", said[1])
        return {"tool": "billing_history", "args": {"order_id": order.group(1) if order else "unknown"}}
    if result.startswith("Tool billing_history failed:"):
        return {"final": f"Context error: the billing lookup failed ({result.split(': ', 1)[1]})"}
    found = json.loads(result.split(": ", 1)[1])
    charges = [f"{c['amount']:.2f} on {c['on']}" for c in found["charges"]]
    summary = f"Order {found['order_id']} ({found['item']}) was charged {len(charges)} times: {', '.join(charges)}."
    return {"final": summary}


context_agent = Agent(
    "context_gatherer",
    role="Extract all relevant context from conversation.",
    model=FunctionModel(_context_turn, model_id="deepseek-v4"),
    tools=[billing_history],
    max_steps=4,
)


class Decision(pydantic.BaseModel):
    """What the decision agent must answer."""

    action: Literal["refund", "deny"]
    order_id: str
    amount: float = pydantic.Field(ge=0)
    confidence: float = pydantic.Field(ge=0, le=1)
    reason: str


class DecisionModels:
    """The decision agent's model: one scripted model per ticket (set by ``main`` or a test)."""

    def __init__(self) -> None:
        self.decision: FakeModel = FakeModel(model_id="gpt-5")


MODELS = DecisionModels()
DECISION_ROLE = "Make decision based on context provided. Answer with one JSON object."


def decision_gate(context: SharedContext) -> Validator:
    """Format, plausibility and consistency checks of a decision, against the shared context."""
    billed = context.records.get("billing_history", {})
    charged = round(sum(c["amount"] for c in billed.get("charges", [])), 2)

    def same_order(d: Decision) -> str | None:
        wanted = billed.get("order_id")
        return None if d.order_id == wanted else f"the decision is about order {d.order_id}, the context about {wanted}"

    def within_charges(d: Decision) -> str | None:
        return None if d.amount <= charged else f"the amount {d.amount:.2f} is more than the {charged:.2f} charged"

    return Validator(Decision, rules=[same_order, within_charges], min_confidence=0.7)


# --- the steps -------------------------------------------------------------------------------------


async def gather_context(context: SharedContext) -> SharedContext:
    """Step 1: the context agent reads the conversation and writes into the shared context."""
    result = await context_agent.run(context.conversation_history[-1])
    records = dict(context.records)
    for step in result.steps:
        if step.kind == "tool" and step.error is None and step.tool is not None:
            records[step.tool] = step.result
    return SharedContext(
        context.conversation_history, context.current_task, [*context.agent_responses, str(result.output)], records
    )


async def make_decision(context: SharedContext) -> dict[str, Any]:
    """Step 3: the decision agent, behind its validation gate (errors are fed back twice)."""
    model = ValidatedModel(MODELS.decision, decision_gate(context), max_repairs=2)
    try:
        result = await model.chat([Message.system(DECISION_ROLE), Message.user(context.render())])
    except InvalidOutputError as exc:
        return {"decision": None, "errors": list(exc.errors), "last_answer": exc.output}
    errors = result.meta.get("validation_errors", [])
    return {"decision": result.data.model_dump(), "errors": errors, "attempts": result.meta["validation_attempts"]}


def carry_out(decision: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Tell the payment system (idempotent by the step's key)."""
    if decision["action"] == "refund" and not any(r["key"] == ctx.idempotency_key for r in REFUNDS):
        REFUNDS.append({"key": ctx.idempotency_key, "order_id": decision["order_id"], "amount": decision["amount"]})
    return {"done": decision["action"], "order_id": decision["order_id"], "amount": decision["amount"]}


# --- the workflow --------------------------------------------------------------------------------------


@workflow(name="shared_context_decision", version="1")
async def orchestrate_decision(ctx: RunContext, user_input: str) -> dict[str, Any]:
    """Gather context, check it, decide behind a validation gate, and act."""
    context = SharedContext(conversation_history=[user_input], current_task="decision", agent_responses=[])

    # Step 1: Gather context
    context = await ctx.step(gather_context, context, timeout=30, retry=Retry(max_attempts=2, initial_delay=0.05))

    # Step 2: Validate context (safety check)
    if "error" in context.agent_responses[-1].lower():
        return {"error": "Context gathering failed", "fallback": True, "context": context.agent_responses[-1]}

    # Step 3: Make decision; invalid or unsure answers go to a person, never downstream
    attempt = await ctx.step(make_decision, context, timeout=60, retry=Retry(max_attempts=2, initial_delay=0.05))
    decided_by = "decision_agent"
    decision = attempt["decision"]
    if decision is None:
        outcome = await ctx.review(
            {"context": context.render(), "rejected": attempt["errors"], "last_answer": attempt["last_answer"]},
            key="decision",
            roles=["refund_specialist"],
            priority="high",
            timeout=timedelta(hours=4),
        )
        if not outcome.approved:
            return {"decision": None, "declined_by": outcome.by, "reason": outcome.reason}
        # A person's decision passes the same schema and rules (raising here fails the run).
        decision = decision_gate(context).check(outcome.payload["decision"]).model_dump()
        decided_by = str(outcome.by)

    # Step 4: Act on the validated decision
    receipt = await ctx.step(carry_out, decision)
    return {"decision": decision, "decided_by": decided_by, "context_used": context.agent_responses[-1], **receipt}


TICKETS = {
    "double charge": "I was charged twice for order A-17, the blender. Please refund the duplicate.",
    "hallucination": "Order A-17 was charged twice; I want my money back.",
    "billing down": "Refund the second charge on order A-17 please.",
}
GOOD = {"action": "refund", "order_id": "A-17", "amount": 42.5, "confidence": 0.92, "reason": "duplicate charge"}
SCRIPTS: dict[str, list[Any]] = {
    # prose first; told what was wrong, valid JSON
    "double charge": ["Sure! The customer should get 42.50 back.", GOOD],
    # ten times the charge, then another order, then unsure: the gate lets none through
    "hallucination": [
        {**GOOD, "amount": 425.0},
        {**GOOD, "order_id": "A-71"},
        {**GOOD, "confidence": 0.41},
    ],
    "billing down": [],  # never asked: the context check stops the run first
}


async def main() -> dict[str, Any]:
    """Three tickets: a repaired answer, a hallucinated refund a person corrects, a context failure."""
    REFUNDS.clear()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="orchestrate-seed002-context-") as tmp:
        store = f"sqlite:///{tmp}/decisions.db"
        async with Client(store, workflows=[orchestrate_decision]) as client:
            for name, message in TICKETS.items():
                BILLING.up = name != "billing down"
                MODELS.decision = FakeModel(SCRIPTS[name], model_id="gpt-5")
                record = await client.run(orchestrate_decision, message)
                steps = {s.step_key: s.output for s in (await client.detail(record.run_id)).steps}
                results[name] = {"record": record, "steps": steps, "decision_calls": len(MODELS.decision.calls)}
                attempt = steps.get("make_decision") or {}
                print(f"{name}: run {record.status.value}; the decision model answered {len(MODELS.decision.calls)}x")
                for error in attempt.get("errors", []):
                    print(f"  rejected by the gate: {error}")
                if record.status is RunStatus.WAITING:
                    print(f"  -> waiting for a person ({record.wait_reason})")
                elif record.output.get("decision"):
                    print(f"  -> {record.output['done']} {record.output['amount']}, by {record.output['decided_by']}")
                else:
                    print(f"  -> {record.output}")
            BILLING.up = True

            parked = results["hallucination"]["record"]
            (item,) = await client.list_reviews(role="refund_specialist")
            rejected = item.payload["rejected"]
            print(f"refund_specialist queue: {item.review_id} ({item.priority}), {len(rejected)} answers rejected")
            await client.edit(
                item.review_id,
                {**item.payload, "decision": {**GOOD, "confidence": 1.0, "reason": "duplicate charge, checked"}},
                by="sam_ortiz",
                role="refund_specialist",
            )
            finished = await client.resume(parked.run_id)
            results["hallucination"]["finished"] = finished
            done = finished.output
            print(f"decided by {done['decided_by']}; run {finished.status.value}: {done['done']} {done['amount']}")
        print(f"refunds issued: {[(r['order_id'], r['amount']) for r in REFUNDS]}")
    results["refunds"] = list(REFUNDS)
    assert finished.status is RunStatus.SUCCEEDED
    return results


if __name__ == "__main__":
    configure_logging("error")  # the story above says what happened; remove to see the engine's JSON logs
    asyncio.run(main())
