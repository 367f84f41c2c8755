"""What an alert's action does to a step is not evidence about the step: the evaluator skips it.

A diverted step leaves a ``wait:diverted:<key>`` record and (``action="fallback"``) a
fallback taken because of the alert. Counted as executions, they would pass for the
step's health: the bookkeeping records look like successes and resolve a fallback-rate
alert that nobody's model fixed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Engine, Fallback, Step, Workflow
from orchestrate.observe.alerts import AlertEvaluator
from orchestrate.observe.monitors import Monitor, Threshold
from orchestrate.store import open_store
from orchestrate.store._quality_sql import quality_for
from tests.postgres import in_schema

DOWN = {"now": True}


def fraud_check(application: int) -> dict[str, Any]:
    if DOWN["now"]:
        raise TimeoutError("the fraud model did not answer")
    return {"decision": "approve"}


wf = Workflow("loans", [Step("fraud_check", fraud_check, fallback=Fallback.value({"decision": "manual"}))])


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'diverted.db'}"
    else:
        yield from in_schema()


async def test_diverted_executions_neither_feed_nor_resolve_the_monitor(store_url: str) -> None:
    monitor = Monitor("fraud_check", "fallback_rate", Threshold(above=0.5), window=5, action="fallback")
    async with Engine(open_store(store_url), workflows=[wf]) as engine:
        evaluator = AlertEvaluator(engine.store, [monitor], sinks=[], lag_seconds=600)
        DOWN["now"] = True
        for n in range(5):
            await engine.run(wf, n)
        (fired,) = await evaluator.evaluate()
        evaluator.attach(engine, ttl_seconds=0)
        DOWN["now"] = False  # the model is back, but the alert holds: the step is diverted
        for n in range(5, 15):
            assert await engine.run(wf, n) == {"decision": "manual"}
        assert await evaluator.evaluate() == []  # nothing resolved by the action's own records
        assert evaluator.records_read == 5 + 10 * 2  # read (and passed over): a wait record and a fallback a run
        (alert,) = await quality_for(engine.store).list_alerts()
    assert fired.state == "firing" and alert.alert_id == fired.alert_id and alert.state == "firing"
