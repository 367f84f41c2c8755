"""The engine files a step's confidence and drift score in its record's meta, on every store."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Client, Engine, Step, Workflow
from orchestrate.observe.drift import Drift
from orchestrate.observe.monitors import DriftMonitor, MonitorObserver
from orchestrate.store import open_store
from tests.postgres import in_schema


@dataclass
class Verdict:
    decision: str
    confidence: float


def score(amount: float) -> dict[str, Any]:
    return {"amount": amount, "confidence": 0.5 if amount > 5 else 0.9}


def verdict(checked: dict[str, Any]) -> Verdict:
    return Verdict("approve", 0.75)


def plain(v: Verdict) -> str:
    return v.decision


def loans() -> Workflow:
    return Workflow("loans", [Step("score", score), Step("verdict", verdict), Step("plain", plain)])


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        yield from in_schema()


async def test_confidence_and_drift_score_are_filed_with_the_record(store_url: str) -> None:
    observer = MonitorObserver(
        [DriftMonitor("score", Drift("psi", 0.2, reference=20, window=10, every=5), field="amount")]
    )
    async with Engine(open_store(store_url), workflows=[loans()], observers=[observer]) as engine:
        observer.attach(engine)
        rng = random.Random(7)
        scores: list[float | None] = []
        for n in range(50):
            amount = rng.gauss(0, 1) if n < 35 else rng.gauss(8, 1)  # the inputs shift after 35 runs
            scores.append(observer.score("loans", "score"))  # what the next record carries
            assert await engine.run("loans", amount) == "approve"
        client = Client(engine=engine)
        results = await client.step_results("score", last=50)
        verdicts = await client.step_results("verdict", last=1)
        plains = await client.step_results("plain", last=1)
    oldest_first = list(reversed(results))
    assert [r.drift_score for r in oldest_first] == [None if s is None else round(s, 6) for s in scores]
    assert scores[:30] == [None] * 30 and scores[30] is not None  # scored once both windows are full (20 + 10)
    assert max(s for s in scores if s is not None) >= 0.2  # the shift is scored as drift
    assert [r.confidence for r in oldest_first[33:37]] == [0.9, 0.9, 0.5, 0.5]
    assert verdicts[0].confidence == 0.75 and verdicts[0].drift_score is None  # an attribute of the output
    assert plains[0].confidence is None


async def test_nothing_is_filed_without_a_confidence_or_a_drift_monitor() -> None:
    async with Engine(open_store("memory://"), workflows=[loans()]) as engine:
        assert await engine.run("loans", 1.0, run_id="plain-1") == "approve"
        detail = await Client(engine=engine).detail("plain-1")
    meta = {s.name: s.meta for s in detail.steps}
    assert meta["score"]["confidence"] == 0.9 and meta["verdict"]["confidence"] == 0.75
    assert "confidence" not in meta["plain"]
    assert not any("drift_score" in m for m in meta.values())
