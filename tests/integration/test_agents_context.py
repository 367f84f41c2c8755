"""The shared context buffer and the summariser as durable steps, on SQLite and PostgreSQL: a resumed
run sees what the original read (even when it has expired since), later reads see the expiry,
and a recorded summary is never paid for twice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orchestrate import Client, Engine, RunContext, RunStatus, workflow
from orchestrate.agents.context import SUMMARY_PREFIX, ContextWindow, SharedContext
from orchestrate.models.base import Message
from orchestrate.store import open_store
from orchestrate.testing import FakeClock
from orchestrate.testing.models import FakeModel
from tests.postgres import in_schema

MODELS: dict[str, FakeModel] = {}
LONG = [Message.system("rules"), *[Message.user(f"page {i}: " + "words " * 700) for i in range(6)]]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/runs.db"
    else:
        yield from in_schema()


@workflow(name="shared_context", version="1")
async def shared_context(ctx: RunContext, _: Any = None) -> dict[str, Any]:
    buffer = SharedContext.of(ctx, "case-7", ttl_seconds=60)
    await buffer.put("customer", {"name": "Ada"}, ctx=ctx)  # the extraction agent leaves a fact
    seen_first = await buffer.get("customer", ctx=ctx)  # the summariser agent reads it
    fitted = await ContextWindow(max_tokens=2_000, keep_last=2).fit(
        LONG, summariser=MODELS["summariser"], ctx=ctx, key="summary"
    )
    await ctx.wait("decide")  # parks; resumed later, after the entry expired
    seen_later = await buffer.get("customer", ctx=ctx)
    return {
        "first": seen_first,
        "later": seen_later,
        "summary": fitted.messages[1].content,
        "tokens": [fitted.tokens_before, fitted.tokens_after],
    }


async def test_buffer_and_summary_are_steps_that_a_resumed_run_replays(url: str) -> None:
    clock = FakeClock()
    MODELS["summariser"] = FakeModel(["pages 0-3: words"])
    async with Engine(open_store(url), workflows=[shared_context], clock=clock) as engine:
        parked = await Client(engine=engine).run(shared_context)
        assert parked.status is RunStatus.WAITING
    clock.advance(120)  # past the entry's 60 seconds
    MODELS["summariser"] = FakeModel([])  # a second summary call would fail the run
    async with Engine(open_store(url), workflows=[shared_context], clock=clock) as engine:
        await Client(engine=engine).signal(parked.run_id, "decide")
        done = await Client(engine=engine).resume(parked.run_id)
        keys = [s.step_key for s in await engine.store.get_steps(parked.run_id)]
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.output["first"] == {"name": "Ada"}  # replayed as read, though expired by now
    assert done.output["later"] is None  # read after the expiry
    assert done.output["summary"] == SUMMARY_PREFIX + "pages 0-3: words"
    before, after = done.output["tokens"]
    assert after <= 2_000 < before
    assert "summary" in keys and "context:case-7:put:customer" in keys
    assert keys.count("context:case-7:get:customer") == 1 and "context:case-7:get:customer#2" in keys
