"""The engine survives store faults: lost acknowledgements and failed writes are retried."""

from __future__ import annotations

import pytest

from orchestrate import Engine, RunStatus, Step, Workflow
from orchestrate.errors import StoreError
from orchestrate.store import InMemoryStore, open_store
from orchestrate.testing import FaultyStore

WF = Workflow("faulty", [Step(f"s{i}", lambda x: x + 1) for i in range(1, 6)], version="1")


@pytest.mark.parametrize("mode", ["lost_ack", "before"])
@pytest.mark.parametrize("method", ["record_step", "update_run", "create_run"])
async def test_write_faults_are_retried_without_double_recording(tmp_path, mode, method):
    inner = open_store(f"sqlite:///{tmp_path}/faults.db")
    faulty = FaultyStore(inner, fail_on={method: [1, 3]}, mode=mode)
    async with Engine(faulty, store_retry_seconds=5) as engine:
        record = await engine.run_record(WF, 0)
        steps = await inner.get_steps(record.run_id)
        stored = await inner.get_run(record.run_id)
    assert faulty.injected, "the fault was injected"
    assert stored is not None and stored.status is RunStatus.SUCCEEDED and stored.output == 5
    assert [s.step_key for s in steps] == ["s1", "s2", "s3", "s4", "s5"]


async def test_a_lasting_outage_fails_loudly_and_leaves_the_run_to_resume():
    inner = InMemoryStore()
    faulty = FaultyStore(inner, fail_on={"record_step": list(range(1, 500))})
    async with Engine(faulty, store_retry_seconds=0.3) as engine:
        with pytest.raises(StoreError):
            await engine.run_record(WF, 0, run_id="outage")
    stuck = await inner.get_run("outage")
    assert stuck is not None and stuck.status is RunStatus.RUNNING  # not marked failed
    async with Engine(inner, workflows=[WF]) as engine:
        record = await engine.execute("outage", force=True)
    assert record is not None and record.status is RunStatus.SUCCEEDED and record.output == 5
