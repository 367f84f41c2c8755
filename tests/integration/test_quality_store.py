"""Quality records, feedback and durable alerts on every store (memory, a SQLite file, PostgreSQL).

Step records are written as the engine writes them (one per step, insert-if-absent);
two :class:`AlertEvaluator` s on one store stand for two workers: an incident makes one
alert, whichever evaluates first, and one notification.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate.observe.alerts import AlertEvaluator, Diversions, OutcomeMonitor, acknowledge
from orchestrate.observe.monitors import Monitor, Threshold
from orchestrate.observe.quality import StepResult, window_stats
from orchestrate.store import open_store
from orchestrate.store._quality import AlertRecord, AlertState, FeedbackRecord
from orchestrate.store._quality_sql import quality_for
from orchestrate.store.base import RunRecord, StepRecord
from orchestrate.types import StepStatus
from tests.postgres import in_schema


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'quality.db'}"
    else:
        yield from in_schema()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Any]:
    opened = open_store(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def _run(store: Any, run_id: str, workflow: str, at: float) -> None:
    await store.create_run(RunRecord(run_id=run_id, workflow=workflow, version="1", created_at=at, updated_at=at))


async def _step(
    store: Any, run_id: str, at: float, *, name: str = "fraud_check", confidence: float = 0.9, fails: bool = False
) -> None:
    meta: dict[str, Any] = {"latency_ms": 12.5}
    if fails:
        meta["error_class"] = "TimeoutError"
    await store.record_step(
        StepRecord(
            run_id=run_id,
            step_key=name,
            name=name,
            status=StepStatus.FAILED if fails else StepStatus.SUCCEEDED,
            output=None if fails else {"decision": "approve", "confidence": confidence},
            started_at=at - 0.0125,
            finished_at=at,
            input_hash=f"h{run_id}",
            meta=meta,
        ),
        fence=None,
        now=at,
    )


async def test_step_results_newest_first_by_step_and_workflow(store: Any) -> None:
    for i in range(6):
        workflow = "loans" if i % 2 == 0 else "cards"
        await _run(store, f"r{i}", workflow, 100.0 + i)
        await _step(store, f"r{i}", 100.0 + i, confidence=0.5 + i / 10)
        await _step(store, f"r{i}", 100.5 + i, name="risk")
    quality = quality_for(store)
    newest = [StepResult.from_record(wf, r) for wf, r in await quality.step_results("fraud_check", last=3)]
    assert [(r.run_id, r.workflow) for r in newest] == [("r5", "cards"), ("r4", "loans"), ("r3", "cards")]
    assert newest[0].confidence == pytest.approx(1.0)
    assert newest[0].latency_ms == 12.5 and newest[0].input_hash == "hr5"
    loans = await quality.step_results("fraud_check", last=10, workflow="loans")
    assert [r.run_id for _, r in loans] == ["r4", "r2", "r0"]
    since = await quality.steps_since(["fraud_check"], after=103.0, limit=10)
    assert [r.run_id for _, r in since] == ["r3", "r4", "r5"]


async def test_feedback_round_trips_once_per_id(store: Any) -> None:
    await _run(store, "r1", "loans", 1.0)
    quality = quality_for(store)
    entry = FeedbackRecord(
        feedback_id="f1", run_id="r1", workflow="loans", at=5.0, by="collections", outcome="defaulted", score=0.0
    )
    assert await quality.add_feedback(entry) == entry
    again = FeedbackRecord(feedback_id="f1", run_id="r1", workflow="loans", at=6.0, by="someone else")
    assert await quality.add_feedback(again) == entry  # a retried write records once: the first wins
    await quality.add_feedback(
        FeedbackRecord(
            feedback_id="f2", run_id="r1", workflow="loans", at=7.0, by="ana", label="corrected", step="fraud_check"
        )
    )
    found = await quality.list_feedback(run_id="r1")
    assert [(f.feedback_id, f.outcome, f.label, f.by) for f in found] == [
        ("f1", "defaulted", None, "collections"),
        ("f2", None, "corrected", "ana"),
    ]
    assert await quality.list_feedback(workflow="cards") == []


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, alert: AlertRecord, *, transition: str) -> None:
        self.sent.append((alert.alert_id, transition))


async def test_two_evaluators_make_one_alert_per_incident(store: Any) -> None:
    monitor = Monitor("fraud_check", "error_rate", Threshold(above=0.2), window=10, action="review")
    clock = {"now": 1000.0}
    sinks = [Recorder(), Recorder()]
    workers = [
        AlertEvaluator(store, [monitor], sinks=[sink], cooldown_seconds=15, lag_seconds=5, clock=lambda: clock["now"])
        for sink in sinks
    ]
    at = 0.0

    async def steps(n: int, *, failing: bool) -> None:
        nonlocal at
        for _ in range(n):
            at += 1.0
            await _run(store, f"r{at:g}", "loans", at)
            await _step(store, f"r{at:g}", at, fails=failing)

    await steps(20, failing=False)
    for worker in workers:
        assert await worker.evaluate() == []
    await steps(10, failing=True)  # one abnormal window
    written = [await w.evaluate() for w in workers]
    assert [len(w) for w in written] == [1, 0]  # the second found the incident's alert in the store
    quality = quality_for(store)
    (alert,) = await quality.list_alerts()
    assert (alert.alert_id, alert.state, alert.action, alert.step) == (
        "loans:fraud_check.error_rate#1",
        AlertState.FIRING,
        "review",
        "fraud_check",
    )
    assert [s.sent for s in sinks] == [[("loans:fraud_check.error_rate#1", "fired")], []]
    diversions = Diversions(store, ttl_seconds=0)
    assert (await diversions.action_for("loans", "fraud_check")) is not None
    assert await diversions.action_for("cards", "fraud_check") is None

    await steps(10, failing=False)
    for worker in workers:
        await worker.evaluate()
    (alert,) = await quality.list_alerts()
    assert alert.state is AlertState.RESOLVED and alert.version == 2
    assert await diversions.action_for("loans", "fraud_check") is not None  # until someone acknowledges it
    acked = await acknowledge(store, alert.alert_id, by="ana", now=2000.0)
    assert (acked.acked_by, acked.state) == ("ana", AlertState.RESOLVED)
    assert await acknowledge(store, alert.alert_id, by="bob") == acked  # idempotent
    assert await diversions.action_for("loans", "fraud_check") is None

    await steps(10, failing=True)  # a new incident, inside the cooldown: quiet
    for worker in workers:
        assert await worker.evaluate() == []
    await steps(10, failing=False)
    for worker in workers:
        assert await worker.evaluate() == []  # the quiet incident's end: nothing to resolve
    await steps(10, failing=True)  # after the cooldown: the second incident, one alert again
    written = [await w.evaluate() for w in workers]
    assert sorted(len(w) for w in written) == [0, 1]
    assert [a.alert_id for a in await quality.list_alerts()] == [
        "loans:fraud_check.error_rate#2",
        "loans:fraud_check.error_rate#1",
    ]


async def test_outcome_monitor_watches_feedback(store: Any) -> None:
    quality = quality_for(store)
    monitor = OutcomeMonitor("loans", "label_rate", Threshold(above=0.3), match="corrected", window=20)
    evaluator = AlertEvaluator(store, [monitor], sinks=[], lag_seconds=5)
    rng = random.Random(7)
    for i in range(40):
        label = "corrected" if i >= 20 and rng.random() < 0.6 else None
        entry = FeedbackRecord(
            feedback_id=f"f{i}", run_id=f"r{i}", workflow="loans", at=float(i), by="desk", label=label
        )
        await quality.add_feedback(entry)
    (alert,) = await evaluator.evaluate()
    assert alert.monitor == "loans.corrected_rate" and alert.state is AlertState.FIRING
    assert alert.value > 0.3


async def test_a_pass_reads_in_batches_not_per_step(store: Any) -> None:
    for i in range(250):
        await _run(store, f"r{i}", "loans", float(i))
        await _step(store, f"r{i}", float(i))
    evaluator = AlertEvaluator(
        store, [Monitor("fraud_check", "latency_p95", Threshold(above=1.0), window=50)], batch=100, prime=0
    )
    evaluator._after = 0.0  # start from the beginning of this store's history
    await evaluator.evaluate()
    assert evaluator.records_read == 250
    assert evaluator.queries <= 4  # three batches of 100 (the last short), not 250 round trips
    stats = window_stats(
        [StepResult.from_record("loans", r) for _, r in await quality_for(store).step_results("fraud_check", last=250)],
        window=100,
    )
    assert [w.executions for w in stats] == [50, 100, 100]
    assert stats[-1].latency_p95_ms == 12.5 and stats[-1].confidence_mean == pytest.approx(0.9)
