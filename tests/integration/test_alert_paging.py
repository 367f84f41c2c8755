"""The evaluator pages through more new records than one batch holds, on every store.

Each pass reads again ``lag_seconds`` back for records committed late; when more than a
batch of records lies in that span, the pass must page past the records it has seen, not
stop at them (a busy worker writes thousands of records in 30 seconds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrate import Client, Engine, Step, Workflow
from orchestrate.observe.alerts import AlertEvaluator, OutcomeMonitor
from orchestrate.observe.monitors import Monitor, Threshold
from orchestrate.store import open_store
from tests.postgres import in_schema


def check(n: int) -> dict[str, float]:
    return {"confidence": 0.2}


wf = Workflow("paged", [Step("check", check)])


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'paged.db'}"
    else:
        yield from in_schema()


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    async with Engine(open_store(store_url), workflows=[wf]) as opened:
        yield opened


async def test_a_pass_reads_every_new_record_batch_after_batch(engine: Engine) -> None:
    monitor = Monitor("check", "field_mean", Threshold(below=0.5), window=45, field="confidence")
    evaluator = AlertEvaluator(engine.store, [monitor], sinks=[], batch=10, prime=0, lag_seconds=600)
    assert await evaluator.evaluate() == []
    for n in range(45):
        await engine.run(wf, n)
    (alert,) = await evaluator.evaluate()  # the window of 45 needs five pages of 10
    assert alert.state == "firing" and evaluator.records_read == 45
    assert await evaluator.evaluate() == [] and evaluator.records_read == 45  # seen ones are not fed again


async def test_a_pass_reads_every_new_feedback_entry_batch_after_batch(engine: Engine) -> None:
    client = Client(engine=engine)
    await engine.run(wf, 0, run_id="run-0")
    for n in range(25):
        await client.feedback("run-0", score=0.0, by="ops", feedback_id=f"f{n:02d}")
    monitor = OutcomeMonitor("paged", "score_mean", Threshold(below=0.5), window=25)
    evaluator = AlertEvaluator(engine.store, [monitor], sinks=[], batch=10, lag_seconds=600)
    (alert,) = await evaluator.evaluate()  # 25 entries, three pages of 10
    assert alert.state == "firing" and alert.monitor == "paged.score_mean"
