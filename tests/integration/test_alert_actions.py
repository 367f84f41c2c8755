"""Actions of alerts on a real engine and store: a firing alert diverts its step until acknowledged.

"Route the loans to a person the moment the fraud model degrades": the fraud step's
monitor fires, and the next runs take the step's fallback (``action="fallback"``) or wait
for a person to review the step's output (``action="review"``); the diversion is in each
run's history and step records; acknowledging the alert lifts it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Client, Engine, Fallback, Step, Workflow
from orchestrate.errors import ApprovalRequired
from orchestrate.observe.alerts import AlertEvaluator
from orchestrate.observe.monitors import Monitor, Threshold
from orchestrate.store import open_store
from orchestrate.types import RunStatus
from tests.postgres import in_schema

DOWN = {"now": False}


def identity(application: int) -> int:
    return application


def fraud_check(application: int) -> dict[str, Any]:
    if DOWN["now"]:
        raise TimeoutError("the fraud model did not answer")
    return {"application": application, "decision": "approve", "confidence": 0.93}


def decide(check: dict[str, Any]) -> str:
    return str(check["decision"])


def loans() -> Workflow:
    return Workflow(
        "loans",
        [
            Step("identity", identity),
            Step("fraud_check", fraud_check, fallback=Fallback.value({"decision": "manual", "confidence": 0.0})),
            Step("decide", decide),
        ],
    )


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'actions.db'}"
    else:
        yield from in_schema()


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    DOWN["now"] = False
    async with Engine(open_store(store_url), workflows=[loans()]) as opened:
        yield opened


async def _fire(engine: Engine, action: str) -> AlertEvaluator:
    monitor = Monitor("fraud_check", "fallback_rate", Threshold(above=0.5), window=5, action=action)  # type: ignore[arg-type]
    evaluator = AlertEvaluator(engine.store, [monitor], sinks=[], lag_seconds=600)
    DOWN["now"] = True
    for application in range(5):
        assert await engine.run("loans", application) == "manual"
    DOWN["now"] = False
    (alert,) = await evaluator.evaluate()
    assert alert.state == "firing" and alert.action == action
    evaluator.attach(engine, ttl_seconds=0)
    return evaluator


async def test_fallback_action_diverts_until_acknowledged(engine: Engine) -> None:
    await _fire(engine, "fallback")
    client = Client(engine=engine)
    run = await engine.run_record("loans", 100)
    assert run.status is RunStatus.SUCCEEDED and run.output == "manual"  # the model is fine, but not trusted yet
    detail = await client.detail(run.run_id)
    fraud = next(s for s in detail.steps if s.step_key == "fraud_check")
    assert fraud.meta["fallback_reason"] == "alert" and fraud.meta["error_class"] == "AlertDivertedError"
    (diverted,) = [e for e in detail.events if e.kind == "step_diverted"]
    assert diverted.data["action"] == "fallback" and diverted.data["alert_id"] == "loans:fraud_check.fallback_rate#1"
    (result,) = await client.step_results("fraud_check", last=1)
    assert result.diverted == "fallback" and result.fallback == "value"

    (alert,) = await client.alerts(state="firing")
    await client.acknowledge_alert(alert.alert_id, by="ana")
    assert await engine.run("loans", 101) == "approve"
    (acked,) = await client.alerts()
    assert (acked.state, acked.acked_by) == ("acknowledged", "ana")


async def test_review_action_sends_the_output_to_a_person(engine: Engine) -> None:
    await _fire(engine, "review")
    client = Client(engine=engine)
    with pytest.raises(ApprovalRequired):
        await engine.run("loans", 200, run_id="loan-200")
    run = await client.get("loan-200")
    assert run.status is RunStatus.WAITING
    (item,) = await client.list_reviews(run_id="loan-200")
    assert item.step_key == "fraud_check" and item.payload["decision"] == "approve"
    await client.edit(item.review_id, {**item.payload, "decision": "decline"}, by="ana")
    done = await engine.settle("loan-200")
    assert done.status is RunStatus.SUCCEEDED and done.output == "decline"  # what the person decided went on
    kinds = [e.kind for e in await client.store.list_events("loan-200")]
    assert "step_diverted" in kinds and "review_decided" in kinds
