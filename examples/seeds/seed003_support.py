"""Seed 003: the ``customer_support_v2`` workflow, nearly as the article writes it.

    workflow = Orchestrator(
        name="customer_support_v2",
        steps=[
            Step("intent_classification", model="claude-3-opus", timeout=5.0,
                 retry_policy=ExponentialBackoff(max_attempts=3)),
            Step("knowledge_retrieval", pipeline="rag_pipeline", timeout=10.0,
                 retry_policy=FixedRetry(attempts=2)),
            Branch("intent_classification.result",
                   {"refund": Step("refund_handler"),
                    "technical": Step("tech_support"),
                    "unknown": Step("human_escalation")}),
            Step("response_generation", model="gpt-4", timeout=8.0,
                 failover_model="claude-3-haiku"),
        ],
        error_handler=Step("error_logging"),
        timeout=60.0,
    )

Steps declared without a function get one from ``components=``: by step name, else by
``model=`` or ``pipeline=``. ``failover_model`` names the component called when the step
fails. Both spellings of the article work: ``Orchestrator(name=..., steps=[...])`` and
``Workflow("customer_support_v2", steps=[...])`` (``Orchestrator`` *is* ``Workflow``).

Every component is scripted. Four tickets: a refund; a technical question while GPT-4
is down (Claude 3 Haiku answers); a question nobody routes (a person does); and one
during a retrieval outage (the run fails and the error handler logs it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrate import (
    Branch,
    Client,
    ExponentialBackoff,
    FixedRetry,
    Orchestrator,
    RunStatus,
    Step,
    Workflow,
)

# --- scripted components ------------------------------------------------------------------


class Services:
    """Switches for the scripted outside world, and what it saw."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.gpt4_up = True
        self.rag_up = True
        self.error_log: list[dict[str, Any]] = []
        self.calls: dict[str, int] = {}

    def called(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1


services = Services()


def claude_3_opus(message: str) -> dict[str, Any]:
    """Intent classifier; carries the message along for the next steps."""
    services.called("claude-3-opus")
    text = message.lower()
    if "refund" in text or "money back" in text:
        intent = "refund"
    elif any(w in text for w in ("error", "crash", "login", "install")):
        intent = "technical"
    else:
        intent = "unknown"
    return {"result": intent, "message": message}


def rag_pipeline(classified: dict[str, Any]) -> dict[str, Any]:
    """Knowledge retrieval (vector search, scripted)."""
    services.called("rag_pipeline")
    if not services.rag_up:
        raise ConnectionError("vector-db: connection refused")
    articles = {
        "refund": ["Refunds are issued to the original payment method within 5 business days."],
        "technical": ["Error 0x80070005 during install: run the installer as administrator."],
    }
    return {**classified, "articles": articles.get(classified["result"], [])}


def refund_handler(ticket: dict[str, Any]) -> dict[str, Any]:
    return {**ticket, "action": "refund issued", "draft": "I've issued your refund."}


def tech_support(ticket: dict[str, Any]) -> dict[str, Any]:
    return {**ticket, "action": "troubleshooting", "draft": ticket["articles"][0]}


def human_escalation(ticket: dict[str, Any]) -> dict[str, Any]:
    return {**ticket, "action": "escalated to a human agent", "draft": "A colleague will get back to you."}


def gpt_4(ticket: dict[str, Any]) -> dict[str, Any]:
    services.called("gpt-4")
    if not services.gpt4_up:
        raise ConnectionError("gpt-4: 503 Service Unavailable")
    return {"model": "gpt-4", "reply": f"{ticket['draft']} ({ticket['action']})"}


def claude_3_haiku(ticket: dict[str, Any]) -> dict[str, Any]:
    services.called("claude-3-haiku")
    return {"model": "claude-3-haiku", "reply": f"{ticket['draft']} ({ticket['action']})"}


def error_logging(report: dict[str, Any]) -> dict[str, Any]:
    services.error_log.append(report)
    return {"logged": report["error"]["name"], "step": report["step"]}


COMPONENTS = {
    "claude-3-opus": claude_3_opus,
    "rag_pipeline": rag_pipeline,
    "refund_handler": refund_handler,
    "tech_support": tech_support,
    "human_escalation": human_escalation,
    "gpt-4": gpt_4,
    "claude-3-haiku": claude_3_haiku,
    "error_logging": error_logging,
}


# --- the workflow, as in the seed ---------------------------------------------------------------


def steps() -> list[Any]:
    return [
        Step(
            "intent_classification", model="claude-3-opus", timeout=5.0, retry_policy=ExponentialBackoff(max_attempts=3)
        ),
        Step("knowledge_retrieval", pipeline="rag_pipeline", timeout=10.0, retry_policy=FixedRetry(attempts=2)),
        Branch(
            "intent_classification.result",
            {"refund": Step("refund_handler"), "technical": Step("tech_support"), "unknown": Step("human_escalation")},
        ),
        Step("response_generation", model="gpt-4", timeout=8.0, failover_model="claude-3-haiku"),
    ]


# The article's spelling ...
workflow = Orchestrator(
    name="customer_support_v2",
    steps=steps(),
    error_handler=Step("error_logging"),
    timeout=60.0,
    components=COMPONENTS,
)

# ... and the same definition spelled with Workflow: one class, one version.
same_workflow = Workflow(
    "customer_support_v2",
    steps=steps(),
    error_handler=Step("error_logging"),
    timeout=60.0,
    components=COMPONENTS,
)

TICKETS = {
    "refund": "I want my money back for order 1182, the blender arrived broken.",
    "technical": "I get error 0x80070005 when I install the desktop app.",
    "unknown": "Do you sponsor the local chess club?",
}


async def main() -> dict[str, Any]:
    """Run four tickets and print how each was handled."""
    services.reset()
    assert Orchestrator is Workflow and workflow.version == same_workflow.version
    results: dict[str, Any] = {}
    async with Client("memory://", workflows=[workflow]) as client:
        for label, message in TICKETS.items():
            services.gpt4_up = label != "technical"  # GPT-4 is down for the technical ticket
            record = await client.run(workflow, message)
            detail = await client.detail(record.run_id)
            generation = next(s for s in detail.steps if s.step_key == "response_generation")
            results[label] = {"record": record, "steps": {s.step_key: s for s in detail.steps}}
            print(
                f"{label:<9} -> {record.status.value}: {record.output['reply']!r}"
                f" [{record.output['model']}{', fallback ' + generation.fallback if generation.fallback else ''}]"
            )

        services.gpt4_up, services.rag_up = True, False  # the vector database goes away
        outage = await client.run(same_workflow, TICKETS["refund"])
        detail = await client.detail(outage.run_id)
        results["outage"] = {"record": outage, "steps": {s.step_key: s for s in detail.steps}}
        print(f"outage    -> {outage.status.value} at {outage.error['step']!r}: {outage.error['message']}")
        print(f"            error handler logged: {[(r['step'], r['error']['name']) for r in services.error_log]}")
    results["error_log"] = list(services.error_log)
    assert results["refund"]["record"].status is RunStatus.SUCCEEDED
    return results


if __name__ == "__main__":
    asyncio.run(main())
