"""Drift and change-detection monitors fed by the steps a real engine runs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from orchestrate import Engine, Fallback, Step, Workflow
from orchestrate.errors import InvalidInputError
from orchestrate.observe.change import Cusum
from orchestrate.observe.drift import Drift
from orchestrate.observe.monitors import Alert, DriftMonitor, Monitor, MonitorObserver, field_of
from orchestrate.store import InMemoryStore
from orchestrate.store.sqlite import SQLiteStore

SHIFT_AT = 600


def fraud_check(application: dict) -> dict:
    """A scripted fraud model: applicants' incomes shift in 2023, and its confidence sags."""
    rng = random.Random(application["id"])
    shifted = application["id"] >= SHIFT_AT
    income = rng.gauss(85_000 if shifted else 60_000, 12_000)
    confidence = min(1.0, max(0.0, rng.gauss(0.80 if shifted else 0.93, 0.03)))
    return {"income": income, "confidence": confidence, "decision": "approve"}


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path: Path):
    if request.param == "memory":
        return InMemoryStore()
    return SQLiteStore(f"sqlite:///{tmp_path / 'loans.db'}")


async def test_drift_and_a_confidence_shift_alert_once_each_after_the_shift(store) -> None:
    told: list[tuple[int, Alert]] = []
    run = {"number": 0}
    observer = MonitorObserver(
        [
            DriftMonitor("fraud_check", Drift("psi", 0.25, reference=300, window=200, every=50), field="income"),
            Monitor("fraud_check", "field_mean", Cusum(warmup=10), window=20, field="confidence"),
        ],
        on_alert=lambda alert: told.append((run["number"], alert)),
    )
    wf = Workflow("loans", [Step("fraud_check", fraud_check)])
    async with Engine(store, observers=[observer]) as engine:
        for i in range(1000):
            run["number"] = i
            await engine.run(wf, {"id": i})
    firing = {alert.monitor: number for number, alert in told if alert.state == "firing"}
    assert sorted(firing) == ["fraud_check.confidence", "fraud_check.income.drift"]
    # each fires once, within 200 runs of the shift, and not before it
    assert all(SHIFT_AT <= number <= SHIFT_AT + 200 for number in firing.values()), firing
    reading = observer.drift_scores()["loans:fraud_check.income.drift"]
    assert reading.drifted and reading.score > 0.25 and reading.reference_version == 1


async def test_rebaselining_resolves_a_drift_alert() -> None:
    told: list[Alert] = []
    monitor = DriftMonitor("fraud_check", Drift("ks", 0.2, reference=200, window=100, every=100), field="income")
    observer = MonitorObserver([monitor], on_alert=told.append)
    wf = Workflow("loans", [Step("fraud_check", fraud_check)])
    async with Engine(InMemoryStore(), observers=[observer]) as engine:
        for i in range(SHIFT_AT - 200, SHIFT_AT + 200):
            await engine.run(wf, {"id": i})
        assert [a.state for a in told] == ["firing"]
        observer.detector("fraud_check.income.drift", workflow="loans").rebaseline()
        for i in range(SHIFT_AT + 200, SHIFT_AT + 400):
            await engine.run(wf, {"id": i})
    assert [a.state for a in told] == ["firing", "resolved"]
    assert observer.drift_scores()["loans:fraud_check.income.drift"].reference_version == 2


async def test_fallback_answers_do_not_feed_drift() -> None:
    def broken(application: dict) -> dict:
        raise TimeoutError("the fraud model did not answer")

    observer = MonitorObserver([DriftMonitor("fraud_check", Drift("psi", 0.2, reference=10, window=10, every=10))])
    wf = Workflow("loans", [Step("fraud_check", broken, fallback=Fallback.value(0.0))])
    async with Engine(InMemoryStore(), observers=[observer]) as engine:
        for i in range(30):
            await engine.run(wf, {"id": i})
    assert observer.drift_scores() == {}
    with pytest.raises(InvalidInputError, match="no drift detector loans:fraud_check.drift"):
        observer.detector("fraud_check.drift", workflow="loans")


def test_field_of_reads_nested_keys_and_attributes() -> None:
    class Scores:
        fraud = 0.2

    assert field_of({"scores": {"fraud": 0.1}}, "scores.fraud") == 0.1
    assert field_of({"scores": Scores()}, "scores.fraud") == 0.2
    assert field_of({"scores": {}}, "scores.fraud") is None


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Monitor("s", "field_mean", Cusum()), "field= goes with metric='field_mean'"),
        (lambda: Monitor("s", "latency_mean", Cusum(), field="x"), "field= goes with metric='field_mean'"),
        (lambda: Monitor("s", "latency_mean", Drift("psi", 0.1)), "rule must be Threshold, Deviation"),  # type: ignore[arg-type]
        (lambda: DriftMonitor("s", Drift("mmd", 0.1)), "pass encode="),
        (lambda: MonitorObserver([object()]), "takes Monitor and DriftMonitor"),  # type: ignore[list-item]
    ],
)
def test_bad_monitors_are_refused(build, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build()
