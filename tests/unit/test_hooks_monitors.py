"""Monitors over windows of a step's executions: thresholds and deviations from a learned baseline."""

from __future__ import annotations

import asyncio
import random

import pytest

from orchestrate import Engine, Fallback, Step, Workflow
from orchestrate.errors import InvalidInputError
from orchestrate.observe.monitors import Alert, Deviation, Monitor, MonitorObserver, Threshold
from orchestrate.store import InMemoryStore


def _feed(observer: MonitorObserver, latencies: list[float], *, step: str = "fraud_check") -> None:
    for i, latency in enumerate(latencies):
        observer.step_succeeded(workflow="loans", name=step, attempts=1, latency_s=latency, at=float(i))


def test_a_deviation_fires_once_on_a_shift_and_resolves_once_when_it_ends() -> None:
    told: list[Alert] = []
    rng = random.Random(7)
    monitor = Monitor("fraud_check", "latency_mean", Deviation(sigmas=3), window=50)
    observer = MonitorObserver([monitor], on_alert=told.append)
    normal = [rng.gauss(0.120, 0.02) for _ in range(50 * 40)]
    _feed(observer, normal)
    assert told == []  # 40 windows of noise: no false alert at 3 sigma
    _feed(observer, [rng.gauss(0.300, 0.02) for _ in range(50 * 3)])  # the model got slow
    assert [a.state for a in told] == ["firing"]
    assert told[0].monitor == "fraud_check.latency_mean" and told[0].value > 0.25
    assert "standard deviations" in told[0].reason
    assert observer.firing() == ["loans:fraud_check.latency_mean"]
    _feed(observer, [rng.gauss(0.120, 0.02) for _ in range(50)])
    assert [a.state for a in told] == ["firing", "resolved"] and observer.firing() == []


def test_a_deviation_needs_a_baseline_first() -> None:
    observer = MonitorObserver([Monitor("s", "latency_mean", Deviation(min_windows=5), window=10)])
    _feed(observer, [1.0] * 10 + [5.0] * 10, step="s")
    assert list(observer.alerts) == []  # two windows: no baseline yet


def test_a_threshold_on_the_fallback_rate_through_the_engine() -> None:
    failing = {"now": False}

    def score(x: int) -> int:
        if failing["now"]:
            raise TimeoutError("the fraud model did not answer")
        return x

    told: list[Alert] = []
    observer = MonitorObserver(
        [Monitor("score", "fallback_rate", Threshold(above=0.2), window=10, workflow="loans")], on_alert=told.append
    )
    wf = Workflow("loans", [Step("score", score, fallback=Fallback.value(0))])

    async def run(n: int) -> None:
        async with Engine(InMemoryStore(), observers=[observer]) as engine:
            for i in range(n):
                await engine.run(wf, i)

    asyncio.run(run(20))
    failing["now"] = True
    asyncio.run(run(20))
    failing["now"] = False
    asyncio.run(run(10))
    assert [(a.state, a.value) for a in told] == [("firing", 1.0), ("resolved", 0.0)]
    assert "above 0.2" in told[0].reason


def test_other_metrics() -> None:
    observer = MonitorObserver(
        [
            Monitor("s", "latency_p95", Threshold(above=0.5), window=20),
            Monitor("s", "retry_rate", Threshold(above=0.5), window=20),
            Monitor("s", "error_rate", Threshold(above=0.1), window=20),
        ]
    )
    for i in range(20):
        observer.step_succeeded(workflow="w", name="s", attempts=2, latency_s=1.0 if i >= 18 else 0.1, at=0.0)
    assert sorted(a.monitor for a in observer.alerts) == ["s.latency_p95", "s.retry_rate"]
    for _ in range(20):
        observer.step_failed(workflow="w", name="s", attempts=1, latency_s=0.1, at=0.0)
    assert "s.error_rate" in [a.monitor for a in observer.alerts]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Threshold(),
        lambda: Deviation(sigmas=0),
        lambda: Deviation(min_windows=1),
        lambda: Monitor("s", "confidence", Threshold(above=1)),  # type: ignore[arg-type]
        lambda: Monitor("s", "latency_mean", Threshold(above=1), window=0),
        lambda: MonitorObserver([Monitor("s", "error_rate", Threshold(above=1))] * 2),
    ],
)
def test_invalid_monitors_are_refused(build) -> None:
    with pytest.raises(InvalidInputError):
        build()
