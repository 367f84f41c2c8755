"""Seed 002: a supervisor that never calls a model, its workers, and a person after three retries.

The article's LangGraph sketch::

    class OrchestrationState(TypedDict):
        task: str
        subtasks: List[dict]
        results: List[str]
        errors: List[str]
        retry_count: int

    def supervisor_router(state: OrchestrationState):
        if state["retry_count"] > 3:
            return "escalate_to_human"
        if len(state["subtasks"]) == 0:
            return "decompose_task"
        return "dispatch_workers"

and its rule: "Separate routing logic from execution logic. Your supervisor should never
call an LLM directly." Here the supervisor is a durable function whose every decision is
code: the task is decomposed from a table of plans, each subtask is routed to a worker by
keywords (``orchestrate.agents.Supervisor`` with a rule as its ``route``), the workers
(``Agent`` s with tools) run at once, and the report is assembled by code. A worker that
fails its first attempt and three retries is escalated to a person (the account manager),
who can do the subtask by hand (an edit of the review item) or drop it (a rejection).

Differences, each for a reason:

* no state dict and router node: the durable function's control flow *is* the router, and
  the engine keeps the state (every route, worker result and escalation is a recorded step
  or review), so a crash resumes without redoing a finished worker;
* ``retry_count`` is per worker, not per task: the step's ``Retry(max_attempts=4)``, so one
  flaky worker does not escalate the others;
* escalation is a review item with a role and an SLA, not a graph node: the run parks
  without holding a worker until the account manager decides.

Every model is scripted (``FunctionModel``): the billing worker's model answers 503 twice,
the sales worker's model is stuck in a loop (it calls its tool until its step limit). The
store is a throw-away SQLite file. Run it: ``python examples/seeds/seed002_supervisor.py``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from orchestrate import Client, Retry, RunContext, RunStatus, StepFailedError, workflow
from orchestrate.agents import Agent, Supervisor, tool
from orchestrate.errors import ServerError
from orchestrate.models import ModelRequest
from orchestrate.observe import configure_logging
from orchestrate.testing import FunctionModel

# --- scripted components ------------------------------------------------------------------


class Faults:
    """What goes wrong with the workers' models."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.outages: dict[str, int] = {}  # worker -> how many of its next model calls answer 503
        self.looping: set[str] = set()  # workers whose model never gives a final answer


FAULTS = Faults()

CRM = {
    "C-1107": {
        "tickets": [{"id": "T-311", "subject": "late delivery", "open": True}, {"id": "T-298", "open": False}],
        "invoices": [{"id": "INV-88", "amount": 1200.0, "overdue": True}, {"id": "INV-91", "amount": 1200.0}],
        "contract": {"plan": "Pro", "renews": "2026-09-01", "seats": 25},
    }
}


@tool
def open_tickets(customer_id: str) -> list[dict[str, Any]]:
    """The customer's open support tickets."""
    return [t for t in CRM[customer_id]["tickets"] if t.get("open")]


@tool
def invoices(customer_id: str) -> list[dict[str, Any]]:
    """The customer's invoices."""
    return list(CRM[customer_id]["invoices"])


@tool
def contract(customer_id: str) -> dict[str, Any]:
    """The customer's contract."""
    return dict(CRM[customer_id]["contract"])


def scripted_worker(name: str, tool_name: str, conclude: Callable[[Any], str]) -> FunctionModel:
    """A worker's model: call its tool once, then conclude from the result (with the faults)."""

    def turn(request: ModelRequest) -> dict[str, Any]:
        if FAULTS.outages.get(name, 0) > 0:
            FAULTS.outages[name] -= 1
            raise ServerError(f"{name}-model: HTTP 503: server error", model=f"{name}-model", status_code=503)
        customer = request.messages[1].content.rsplit(" ", 1)[-1]
        results = [m.content for m in request.messages if m.content.startswith(f"Tool {tool_name} returned:")]
        if not results or name in FAULTS.looping:
            return {"tool": tool_name, "args": {"customer_id": customer}}
        return {"final": conclude(json.loads(results[-1].split(": ", 1)[1]))}

    return FunctionModel(turn, model_id=f"{name}-model")


def _tickets(found: list[dict[str, Any]]) -> str:
    return f"{len(found)} open: " + ", ".join(f"{t['id']} ({t['subject']})" for t in found)


def _invoices(found: list[dict[str, Any]]) -> str:
    overdue = [f"{i['id']} ({i['amount']:.2f})" for i in found if i.get("overdue")]
    return f"{len(found)} invoices, overdue: {', '.join(overdue) or 'none'}"


def _offer(found: dict[str, Any]) -> str:
    return f"renew {found['plan']} ({found['seats']} seats) at 10% off before {found['renews']}"


MODELS = {
    "support": scripted_worker("support", "open_tickets", _tickets),
    "billing": scripted_worker("billing", "invoices", _invoices),
    "sales": scripted_worker("sales", "contract", _offer),
}
WORKERS = {
    "support": Agent("support", role="Summarise support tickets.", model=MODELS["support"], tools=[open_tickets]),
    "billing": Agent("billing", role="Reconcile invoices.", model=MODELS["billing"], tools=[invoices]),
    "sales": Agent("sales", role="Draft renewal offers.", model=MODELS["sales"], tools=[contract], max_steps=4),
}

# --- the supervisor: rules only ---------------------------------------------------------------

PLANS = {  # decomposition is a table, not a model
    "account_review": [
        "Summarise the open support tickets of {customer}",
        "Reconcile the invoices of {customer}",
        "Draft a renewal offer for {customer}",
    ]
}
KEYWORDS = {"ticket": "support", "invoice": "billing", "renewal": "sales"}


def route_by_keywords(task: str) -> str:
    """Which worker takes a subtask: the first keyword it contains."""
    lowered = task.lower()
    return next((worker for word, worker in KEYWORDS.items() if word in lowered), "none")


SUPERVISOR = Supervisor(WORKERS, route=route_by_keywords)
WORKER_RETRY = Retry(max_attempts=4, initial_delay=0.01, jitter=0.0)  # the first attempt and three retries


def decompose(request: dict[str, Any]) -> list[str]:
    """The subtasks of a request, from its plan."""
    return [template.format(customer=request["customer"]) for template in PLANS[request["plan"]]]


async def route(subtask: str) -> str:
    """The worker for a subtask (the supervisor's routing function; no model)."""
    worker, _how = await SUPERVISOR.choose(subtask)
    return worker


async def run_worker(worker: str, subtask: str) -> str:
    """One worker agent on one subtask."""
    result = await SUPERVISOR.workers[worker].run(subtask)
    return str(result.output)


def synthesize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The report: what each worker (or person) produced, and what was dropped."""
    return {
        "report": {r["subtask"]: r["result"] for r in results if r["result"] is not None},
        "by": {r["subtask"]: r["by"] for r in results},
        "escalated": [r["subtask"] for r in results if r["escalated"]],
        "dropped": [r["subtask"] for r in results if r["result"] is None],
    }


@workflow(name="supervisor_worker", version="1")
async def supervise(ctx: RunContext, request: dict[str, Any]) -> dict[str, Any]:
    """Decompose, route, dispatch at once, escalate failed workers to a person, synthesise."""
    subtasks = await ctx.step(decompose, request)

    async def delegate(i: int, subtask: str) -> dict[str, Any]:
        worker = await ctx.step(route, subtask, key=f"route[{i}]")
        try:
            output = await ctx.step(run_worker, worker, subtask, key=f"worker[{i}]", timeout=30, retry=WORKER_RETRY)
        except StepFailedError as exc:
            # retry_count > 3: escalate_to_human
            outcome = await ctx.review(
                {"subtask": subtask, "worker": worker, "error": str(exc), "result": None},
                key=f"escalation[{i}]",
                roles=["account_manager"],
                timeout=timedelta(hours=8),
            )
            result = outcome.payload.get("result") if outcome.approved else None
            return {"subtask": subtask, "result": result, "by": outcome.by, "escalated": True}
        return {"subtask": subtask, "result": output, "by": worker, "escalated": False}

    results = await ctx.gather(*(delegate(i, subtask) for i, subtask in enumerate(subtasks)))
    return await ctx.step(synthesize, results)


def model_calls() -> dict[str, int]:
    """Calls of each worker's model so far."""
    return {name: len(model.calls) for name, model in MODELS.items()}


async def main() -> dict[str, Any]:
    """One account review: a flaky worker recovers, a stuck one goes to the account manager."""
    FAULTS.reset()
    FAULTS.outages["billing"] = 2  # two 503s, then it answers: retried, no escalation
    FAULTS.looping.add("sales")  # never finishes: four attempts, then a person
    with tempfile.TemporaryDirectory(prefix="orchestrate-seed002-supervisor-") as tmp:
        store = f"sqlite:///{tmp}/supervisor.db"
        async with Client(store, workflows=[supervise]) as client:
            parked = await client.run(supervise, {"plan": "account_review", "customer": "C-1107"})
            steps = {s.step_key: s for s in (await client.detail(parked.run_id)).steps}
            print(f"run {parked.run_id}: {parked.status.value} ({parked.wait_reason})")
            for i in range(3):
                step = steps[f"worker[{i}]"]
                errors = [a["error"] for a in step.meta.get("attempt_log", [])]
                print(f"  {steps[f'route[{i}]'].output:<8} {step.status.value:<9} attempts={step.attempts} {errors}")
            calls_before = model_calls()

            (item,) = await client.list_reviews(role="account_manager")
            print(f"account_manager queue: {item.payload['subtask']!r}")
            print(f"  {item.payload['error']}")
            done_by_hand = {**item.payload, "result": "renew Pro (25 seats) at 15% off; call them before 2026-08-15"}
            await client.edit(item.review_id, done_by_hand, by="am_rivera", role="account_manager")
            finished = await client.resume(parked.run_id)
            print(f"am_rivera wrote the offer; run {finished.status.value}")
            for subtask, result in finished.output["report"].items():
                print(f"  [{finished.output['by'][subtask]}] {subtask}: {result}")
            calls_after = model_calls()
            print(f"worker model calls {calls_before}; after the resume {calls_after} (nothing redone)")
        assert finished.status is RunStatus.SUCCEEDED
        return {"parked": parked, "steps": steps, "finished": finished, "calls": (calls_before, calls_after)}


if __name__ == "__main__":
    configure_logging("error")  # the story above says what happened; remove to see the engine's JSON logs
    asyncio.run(main())
