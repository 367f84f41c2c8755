"""Scripted components of ``support_router.yaml``: a classifier, two agents, a writer model.

Seed 000: "Start with a simple router. YAML config. Three branches. Two agents." The
agents are real :class:`~orchestrate.agents.Agent`\\ s with tools; their models are
deterministic stand-ins that follow the agents' JSON protocol (call the tool first,
then answer from its result), so the example runs offline. The writer is a model
component: the YAML file puts a rate limit and a circuit breaker around it, with a
backup model for when it is down.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrate.agents import Agent, tool
from orchestrate.errors import ServerError
from orchestrate.models import ModelRequest, ModelResult
from orchestrate.testing import FunctionModel


def classify(message: str) -> dict[str, Any]:
    """Intent with a confidence, from keywords (in production: the embedded MiniLM classifier)."""
    text = message.lower()
    if any(word in text for word in ("refund", "charged", "money back")):
        return {"intent": "refund", "confidence": 0.92, "message": message}
    if any(word in text for word in ("error", "crash", "install", "login")):
        return {"intent": "technical", "confidence": 0.81 if "error" in text else 0.55, "message": message}
    return {"intent": "other", "confidence": 0.3, "message": message}


# --- two agents -------------------------------------------------------------------------------


@tool
def lookup_charge(order_id: str) -> dict[str, Any]:
    """The charges of an order in the billing system."""
    return {"order_id": order_id, "charges": [49.99, 49.99], "duplicate": True}


@tool
def known_issue(code: str) -> str:
    """The knowledge base's fix for an error code."""
    fixes = {"0x80070005": "run the installer as administrator"}
    return fixes.get(code, "no known fix; collect the logs")


def _scripted(tool_name: str, args: Any, answer: str) -> FunctionModel:
    """A model that calls ``tool_name`` once, then answers with ``answer`` and the tool's result."""

    def turn(request: ModelRequest) -> dict[str, Any]:
        last = request.messages[-1].content
        if last.startswith(f"Tool {tool_name} returned: "):
            return {"final": f"{answer} ({last.removeprefix(f'Tool {tool_name} returned: ')})"}
        task = request.messages[1].content
        return {"tool": tool_name, "args": args(task)}

    return FunctionModel(turn, model_id=f"{tool_name}-brain")


def _order_id(task: str) -> dict[str, str]:
    words = [w.strip("#.,") for w in task.split()]
    return {"order_id": next((w for w in words if w.isdigit()), "unknown")}


def _error_code(task: str) -> dict[str, str]:
    words = [w.strip(".,") for w in task.split()]
    return {"code": next((w for w in words if w.startswith("0x")), "unknown")}


billing_agent = Agent(
    "billing",
    role="Resolve refunds and duplicate charges.",
    model=_scripted("lookup_charge", _order_id, "I found a duplicate charge and refunded it"),
    tools=[lookup_charge],
    max_steps=4,
)
tech_agent = Agent(
    "technical",
    role="Troubleshoot installation and login problems.",
    model=_scripted("known_issue", _error_code, "Here is the fix"),
    tools=[known_issue],
    max_steps=4,
)


async def billing(ticket: dict[str, Any]) -> dict[str, Any]:
    """The billing agent handles the ticket."""
    result = await billing_agent.run(ticket["message"])
    return {**ticket, "handled_by": "billing agent", "answer": result.output}


async def technical(ticket: dict[str, Any]) -> dict[str, Any]:
    """The technical agent handles the ticket."""
    result = await tech_agent.run(ticket["message"])
    return {**ticket, "handled_by": "technical agent", "answer": result.output}


def hand_over(ticket: dict[str, Any]) -> dict[str, Any]:
    """No agent fits: a person writes the answer (the step's review gate edits it in)."""
    return {**ticket, "handled_by": "a person", "answer": "A colleague will get back to you today."}


# --- the writer model ---------------------------------------------------------------------------

writer_state = {"up": True}  # flip to script an outage


def _write(request: ModelRequest) -> str:
    if not writer_state["up"]:
        raise ServerError("writer: 503 Service Unavailable", status_code=503)
    return f"Hello! {request.messages[-1].content} Best regards, Support"


writer_model = FunctionModel(_write, model_id="writer-large")
backup_writer = FunctionModel(lambda request: f"{request.messages[-1].content}", model_id="writer-small")


def compose(ticket: dict[str, Any]) -> dict[str, Any]:
    """The prompt for the writer: the answer to phrase."""
    return {"prompt": ticket["answer"], "ticket": json.dumps({"intent": ticket["intent"]})}


def send(reply: ModelResult) -> dict[str, Any]:
    """What goes back to the customer, and which model wrote it."""
    return {"reply": reply.text, "written_by": reply.model}
