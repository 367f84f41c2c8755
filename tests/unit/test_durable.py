"""Durable functions: ``await ctx.step(...)`` replayed from the store."""

from __future__ import annotations

import pytest

from orchestrate import (
    Client,
    ConflictError,
    Engine,
    NonDeterminismError,
    RunContext,
    RunStatus,
    Step,
    Workflow,
    WorkflowVersionNotFoundError,
    workflow,
)
from orchestrate.store import InMemoryStore


@pytest.fixture
async def engine():
    async with Engine(InMemoryStore(), park_after_seconds=0.0) as eng:
        yield eng


async def test_steps_run_once_and_replay_after_a_park(engine):
    calls: list[str] = []

    def classify(msg: str) -> str:
        calls.append("classify")
        return "order_status"

    def lookup(order: str, *, carrier: str = "ups") -> dict:
        calls.append("lookup")
        return {"order": order, "carrier": carrier}

    @workflow(version="1")
    async def support(ctx: RunContext, msg: str) -> dict:
        intent = await ctx.step(classify, msg)
        order = await ctx.step(lookup, "4829", carrier="fedex", retry=2)
        approved = await ctx.wait("approval")
        return {"intent": intent, "order": order, "approved": approved}

    client = Client(engine=engine)
    parked = await client.run(support, "where is my order")
    assert parked.status is RunStatus.WAITING
    assert calls == ["classify", "lookup"]
    await client.signal(parked.run_id, "approval", "yes", by="agent_7")
    done = await client.resume(parked.run_id)
    assert done.output == {"intent": "order_status", "order": {"order": "4829", "carrier": "fedex"}, "approved": "yes"}
    assert calls == ["classify", "lookup"]  # replayed, not re-executed
    kinds = [e.kind for e in await engine.store.list_events(parked.run_id)]
    assert "run_resumed" in kinds and "signal_received" in kinds


async def test_second_signal_is_a_conflict(engine):
    @workflow(version="1")
    async def gate(ctx: RunContext, _: object) -> str:
        return str(await ctx.wait("decision"))

    client = Client(engine=engine)
    parked = await client.run(gate, None)
    await client.signal(parked.run_id, "decision", "approve")
    with pytest.raises(ConflictError, match="already received signal 'decision'"):
        await client.signal(parked.run_id, "decision", "reject")
    assert (await client.resume(parked.run_id)).output == "approve"


async def test_repeated_step_names_get_numbered_keys(engine):
    def inc(x: int) -> int:
        return x + 1

    @workflow(version="1")
    async def three(ctx: RunContext, x: int) -> int:
        for _ in range(3):
            x = await ctx.step(inc, x)
        return x

    record = await engine.run_record(three, 0)
    assert record.output == 3
    assert [s.step_key for s in await engine.store.get_steps(record.run_id)] == ["inc", "inc#2", "inc#3"]


async def test_gather_runs_steps_concurrently(engine):
    async def fetch(source: str) -> str:
        return source.upper()

    @workflow(version="1")
    async def fan(ctx: RunContext, sources: list[str]) -> list[str]:
        return await ctx.gather(*(ctx.step(fetch, s, key=f"fetch:{s}") for s in sources))

    assert await engine.run(fan, ["a", "b", "c"]) == ["A", "B", "C"]


async def test_divergent_replay_raises_before_any_side_effect():
    store = InMemoryStore()
    effects: list[str] = []

    def first(x: int) -> int:
        effects.append("first")
        return x

    def second(x: int) -> int:
        effects.append("second")
        return x

    def other(x: int) -> int:
        effects.append("other")
        return x

    @workflow(name="flow", version="1")
    async def v1(ctx: RunContext, x: int) -> int:
        await ctx.step(first, x)
        await ctx.step(second, x)
        return int(await ctx.wait("go"))

    async with Engine(store) as eng:
        client = Client(engine=eng)
        parked = await client.run(v1, 1)
        await client.signal(parked.run_id, "go", 5)

    # The same name and version, but the code now calls another step: a bad deploy.
    @workflow(name="flow", version="1")
    async def changed(ctx: RunContext, x: int) -> int:
        await ctx.step(first, x)
        await ctx.step(other, x)
        return int(await ctx.wait("go"))

    effects.clear()
    async with Engine(store, workflows=[changed]) as eng:
        record = await Client(engine=eng).resume(parked.run_id)
    assert record.status is RunStatus.FAILED
    assert record.error and record.error["name"] == "NonDeterminismError"
    assert effects == []  # 'other' never ran


async def test_nondeterminism_error_is_public():
    assert issubclass(NonDeterminismError, Exception)


async def test_run_pinned_to_version_and_missing_version_is_clear():
    store = InMemoryStore()
    v1 = Workflow("pipeline", [Step("a", lambda x: f"v1:{x}"), Step("wait", lambda x: x, gate=None)], version="1")

    @workflow(name="review", version="1")
    async def old(ctx: RunContext, x: str) -> str:
        decision = await ctx.wait("ok")
        return f"old:{x}:{decision}"

    @workflow(name="review", version="2")
    async def new(ctx: RunContext, x: str) -> str:
        decision = await ctx.wait("ok")
        return f"new:{x}:{decision}"

    async with Engine(store, workflows=[old]) as eng:
        parked = await Client(engine=eng).run(old, "a")
        assert parked.version == "1"

    async with Engine(store, workflows=[new]) as eng:
        client = Client(engine=eng)
        await client.signal(parked.run_id, "ok", "yes")
        with pytest.raises(WorkflowVersionNotFoundError, match="'review' version '1' is not available.*has 2"):
            await eng.execute(parked.run_id)
        # A worker without the version does not claim the run.
        assert await eng.work(until_idle=True) == 0
        assert (await client.get(parked.run_id)).status is RunStatus.WAITING

    async with Engine(store, workflows=[old, new]) as eng:
        client = Client(engine=eng)
        assert (await client.resume(parked.run_id)).output == "old:a:yes"
        fresh = await client.run("review", "b")
        assert fresh.version == "2"
        await client.signal(fresh.run_id, "ok", "sure")
        assert (await client.resume(fresh.run_id)).output == "new:b:sure"
    assert v1.version == "1"


async def test_dead_letter_replay_from_a_step_with_patched_input():
    store = InMemoryStore()
    executed: list[str] = []

    def extract(doc: dict) -> dict:
        executed.append("extract")
        return {"amount": doc["amount"]}

    def validate(data: dict) -> dict:
        executed.append("validate")
        if data["amount"] < 0:
            raise ValueError(f"negative amount {data['amount']}")
        return data

    def store_it(data: dict) -> str:
        executed.append("store")
        return f"stored {data['amount']}"

    wf = Workflow(
        "invoice", [Step("extract", extract), Step("validate", validate), Step("store", store_it)], version="1"
    )
    async with Engine(store, workflows=[wf]) as eng:
        client = Client(engine=eng)
        dead = await client.run(wf, {"amount": -5})
        assert dead.status is RunStatus.DEAD
        assert [r.run_id for r in await client.dead_letters()] == [dead.run_id]
        executed.clear()
        replayed = await client.replay(dead.run_id, from_step="validate", input={"amount": 5})
        assert replayed.status is RunStatus.SUCCEEDED and replayed.output == "stored 5"
        assert executed == ["validate", "store"]  # extract came from the dead run's record
        assert replayed.parent_run_id == dead.run_id
        # The replayed dead run leaves the queue; its history leads to the replay.
        assert [r.run_id for r in await client.dead_letters()] == []
        links = [e for e in await store.list_events(dead.run_id) if e.kind == "replayed"]
        assert [(e.step_key, e.data) for e in links] == [("validate", {"replay": replayed.run_id})]
        with pytest.raises(Exception, match="has no recorded step 'nope'"):
            await client.replay(dead.run_id, from_step="nope")
