"""The engine survives store faults: lost acknowledgements and failed writes are retried."""

from __future__ import annotations

import pytest

from orchestrate import Engine, Parallel, RunStatus, Step, Workflow
from orchestrate.errors import StoreError
from orchestrate.store import InMemoryStore, open_store
from orchestrate.testing import FaultyStore

WF = Workflow("faulty", [Step(f"s{i}", lambda x: x + 1) for i in range(1, 6)], version="1")
# Ends in a parallel node: the run's end is its own write (update_run), not folded into
# the last step's record as it is for WF.
WF_TAIL = Workflow(
    "faulty_tail",
    [*(Step(f"s{i}", lambda x: x + 1) for i in range(1, 5)), Parallel([Step("s5", lambda x: x + 1)], name="tail")],
    version="1",
)


@pytest.mark.parametrize("mode", ["lost_ack", "before"])
@pytest.mark.parametrize(
    ("method", "calls"),
    [("record_step", [1, 3]), ("record_step", [5]), ("update_run", [1]), ("create_run", [1])],
    ids=["record_step", "final_record_step", "update_run", "create_run"],
)
async def test_write_faults_are_retried_without_double_recording(tmp_path, mode, method, calls):
    inner = open_store(f"sqlite:///{tmp_path}/faults.db")
    faulty = FaultyStore(inner, fail_on={method: calls}, mode=mode)
    wf = WF_TAIL if method == "update_run" else WF
    async with Engine(faulty, store_retry_seconds=5) as engine:
        record = await engine.run_record(wf, 0)
        steps = await inner.get_steps(record.run_id)
        stored = await inner.get_run(record.run_id)
        events = [e.kind for e in await inner.list_events(record.run_id)]
    assert faulty.injected, "the fault was injected"
    assert record.status is RunStatus.SUCCEEDED
    assert stored is not None and stored.status is RunStatus.SUCCEEDED
    assert stored.output == ([5] if wf is WF_TAIL else 5)
    assert [s.step_key for s in steps] == ["s1", "s2", "s3", "s4", "s5"]
    assert events.count("run_succeeded") == 1


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
