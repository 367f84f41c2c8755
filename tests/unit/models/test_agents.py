"""Agents: tools, step limit, approvals, scoped credentials, redaction; supervisor routing."""

from __future__ import annotations

import io
import json

import pytest

from orchestrate import Engine, Step, Workflow
from orchestrate.agents import Agent, Secret, Supervisor, tool
from orchestrate.errors import AgentError, DefinitionError
from orchestrate.models.local import IntentClassifier
from orchestrate.observe.logging import configure_logging
from orchestrate.store import InMemoryStore
from orchestrate.testing.models import FakeEmbedder, FakeModel

KEY = "sk-live-9f8e7d6c5b4a"


@tool(credentials=["crm_key"])
def lookup_order(order_id: str, *, crm_key: Secret) -> dict:
    """Look up an order by id.

    Extra detail the model does not need.
    """
    if order_id == "boom":
        raise ConnectionError(f"CRM refused Authorization: Bearer {crm_key.reveal()}")
    return {"order_id": order_id, "status": "shipped", "debug_auth": crm_key.reveal()}


@tool(requires_approval=True)
def issue_refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    return f"refunded {amount:.2f} on {order_id}"


def call(name: str, **args) -> str:
    return json.dumps({"tool": name, "args": args})


def final(answer) -> str:
    return json.dumps({"final": answer})


def agent(model, **options) -> Agent:
    return Agent(
        "orders",
        role="You answer questions about orders.",
        model=model,
        tools=[lookup_order, issue_refund],
        credentials={"crm_key": KEY},
        **options,
    )


def test_tools_describe_themselves_without_credentials() -> None:
    assert lookup_order.parameters == {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
        "additionalProperties": False,
    }
    assert lookup_order.description == "Look up an order by id." and lookup_order.credentials == ("crm_key",)
    prompt = agent(FakeModel()).system_prompt()
    assert "lookup_order(order_id: string)" in prompt and "crm_key" not in prompt
    assert "issue_refund(order_id: string, amount: number): Refund an order. [a person must approve" in prompt


async def test_the_agent_calls_tools_and_finishes() -> None:
    model = FakeModel([call("lookup_order", order_id="A-17"), final("A-17 has shipped.")])
    result = await agent(model).run("Where is A-17?")
    assert result.output == "A-17 has shipped."
    assert [s.kind for s in result.steps] == ["tool", "final"]
    assert result.steps[0].result["status"] == "shipped"
    assert "Tool lookup_order returned" in model.calls[1].messages[-1].content


async def test_mistakes_are_fed_back_and_count_as_steps() -> None:
    model = FakeModel(
        [
            "I think it shipped",  # not JSON
            call("teleport", to="mars"),  # unknown tool
            call("lookup_order", id="A-17"),  # wrong argument name
            call("issue_refund", order_id="A-17", amount="lots"),  # wrong type
            final("done"),
        ]
    )
    result = await agent(model, max_steps=5).run("x")
    assert [s.kind for s in result.steps] == ["invalid"] * 4 + ["final"]
    feedback = [c.messages[-1].content for c in model.calls[1:]]
    assert "not valid JSON" in feedback[0]
    assert "no tool named 'teleport'" in feedback[1]
    assert "has no argument(s) ['id']" in feedback[2]
    assert "issue_refund.amount: Input should be a valid number" in feedback[3] and "'lots'" in feedback[3]


async def test_the_step_limit_stops_a_looping_agent() -> None:
    model = FakeModel([call("lookup_order", order_id="A-17")], repeat_last=True)
    with pytest.raises(AgentError, match="step limit of 3"):
        await agent(model, max_steps=3).run("loop forever")
    assert len(model.calls) == 3


async def test_tools_needing_approval_are_refused_without_a_yes() -> None:
    script = [call("issue_refund", order_id="A-17", amount=20), final("could not refund")]
    refused = await agent(FakeModel(script)).run("refund A-17")
    assert refused.steps[0].kind == "refused" and "not approved" in refused.steps[0].error

    asked = []

    async def approve(call_):
        asked.append(call_)
        return {"approved": True}

    allowed = await agent(FakeModel([*script[:1], final("refunded")]), approve=approve).run("refund A-17")
    assert allowed.steps[0].result == "refunded 20.00 on A-17"
    assert asked[0].tool == "issue_refund" and asked[0].args == {"order_id": "A-17", "amount": 20}


def test_an_agent_only_gets_the_credentials_it_is_given() -> None:
    with pytest.raises(DefinitionError, match="needs credential"):
        Agent("thief", role="x", model=FakeModel(), tools=[lookup_order], credentials={"other": "sk-other-1234"})
    holder = agent(FakeModel())
    assert holder.credential_names == ["crm_key"] and KEY not in repr(holder)
    assert KEY not in repr(Secret(KEY)) and str(Secret(KEY)) == "***"


async def test_secret_values_never_reach_the_model_the_result_the_logs_or_errors() -> None:
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    try:
        model = FakeModel(
            [
                call("lookup_order", order_id="A-17"),  # returns the key in its payload
                call("lookup_order", order_id="boom"),  # fails with the key in its message
                f"my key is {KEY}",  # the model somehow echoes it
            ],
            repeat_last=True,
        )
        with pytest.raises(AgentError) as stopped:
            await agent(model, max_steps=4).run(f"use {KEY} if needed")
    finally:
        configure_logging("warning")
    seen_by_model = json.dumps([[m.to_dict() for m in c.messages] for c in model.calls])
    assert KEY not in seen_by_model and "[REDACTED:crm_key]" in seen_by_model
    assert KEY not in str(stopped.value) and KEY not in repr(stopped.value.args)
    assert stopped.value.__cause__ is None and stopped.value.__context__ is None
    assert KEY not in stream.getvalue() and "agent_tool_failed" in stream.getvalue()


async def test_step_records_of_an_agent_step_hold_no_secret() -> None:
    async def answer(question: str) -> dict:
        model = FakeModel([call("lookup_order", order_id="A-17"), call("lookup_order", order_id="boom"), final(KEY)])
        result = await agent(model).run(question)
        return {"output": result.output, "steps": [s.__dict__ for s in result.steps]}

    wf = Workflow("agentic", [Step("answer", answer)])
    async with Engine(InMemoryStore()) as engine:
        record = await engine.run_record(wf, f"Where is A-17? my key: {KEY}")
        stored = json.dumps([s.__dict__ for s in await engine.store.get_steps(record.run_id)], default=str)
        events = json.dumps([e.__dict__ for e in await engine.store.list_events(record.run_id)], default=str)
    assert record.output["output"] == "[REDACTED:crm_key]"
    assert "ConnectionError: CRM refused Authorization: Bearer [REDACTED:crm_key]" in stored
    # The run's input holds what the caller passed; everything the agent produced is clean.
    assert KEY not in stored and KEY not in events.replace(f"my key: {KEY}", "")


async def test_the_supervisor_routes_with_code_and_never_calls_a_model_to_decide() -> None:
    examples = {
        "refund": ["I want my money back", "refund my order please", "the refund has not arrived"],
        "technical": ["the app crashes", "the website shows an error", "the device will not connect to wifi"],
    }
    classifier = IntentClassifier(FakeEmbedderEncoder(), examples)
    refund_model = FakeModel([final("refund started")])
    tech_model = FakeModel([final("try restarting")])
    workers = {
        "refund": Agent("refunds", role="Refunds.", model=refund_model),
        "technical": Agent("tech", role="Tech support.", model=tech_model),
    }
    supervisor = Supervisor(workers, route=lambda task: classifier.classify(task).label, default="technical")
    outcome = await supervisor.run("my money back please, refund")
    assert outcome.worker == "refund" and outcome.routed_by == "route"
    assert outcome.result.output == "refund started" and tech_model.calls == []
    assert len(refund_model.calls) == 1  # the only model call is the worker's own

    fallback = await Supervisor(workers, route=lambda task: "billing", default="technical").run("app crashes")
    assert fallback.worker == "technical" and fallback.routed_by == "default"
    with pytest.raises(AgentError, match="no worker for route 'billing'"):
        await Supervisor(workers, route=lambda task: "billing").run("x")


class FakeEmbedderEncoder:
    """The synchronous encoder interface over the deterministic fake embeddings."""

    def __init__(self) -> None:
        self._fake = FakeEmbedder(dim=256)

    def encode(self, texts):
        import numpy as np

        return np.asarray([self._fake.vector(t) for t in texts], dtype=np.float32)
