"""Streaming inside durable runs, on SQLite and PostgreSQL, against a real HTTP server streaming
OpenAI-style server-sent events: text reaches the caller piece by piece, the run's history
gets coalesced ``model_stream`` events (far fewer than tokens), the complete answer is
recorded once, and a resumed run neither calls the model nor the handler again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrate import Client, Engine, RunContext, RunStatus, workflow
from orchestrate.agents import Agent, Secret, tool
from orchestrate.agents.streaming import STREAM_EVENT, StreamEvents, stream_step
from orchestrate.models.openai_compat import OpenAICompatModel
from orchestrate.store import open_store
from orchestrate.store.base import EventKind
from tests.postgres import in_schema

from .models.wire_servers import OpenAIWire, Said

WORDS = [f"word{i}" for i in range(120)]
TEXT = " ".join(WORDS)
SEEN: list[str] = []


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/runs.db"
    else:
        yield from in_schema()


@pytest.fixture
def server() -> Iterator[OpenAIWire]:
    wire = OpenAIWire(lambda body: Said(text=TEXT, input_tokens=40, output_tokens=120)).start()
    yield wire
    wire.stop()


@workflow(name="streamed_draft", version="1")
async def streamed_draft(ctx: RunContext, base_url: str) -> dict[str, Any]:
    model = OpenAICompatModel("wire", base_url=base_url, timeout=10)
    try:
        result = await stream_step(
            ctx, model, "Write it", key="draft", on_text=SEEN.append, events=StreamEvents(min_chars=200)
        )
    finally:
        await model.aclose()
    await ctx.wait("go")  # parks: a new engine resumes the run from its records
    return {"text": result.text, "usage": [result.usage.input_tokens, result.usage.output_tokens]}


async def test_a_streamed_step_records_once_and_is_not_streamed_again_on_resume(url, server) -> None:
    SEEN.clear()
    async with Engine(open_store(url), workflows=[streamed_draft]) as engine:
        parked = await Client(engine=engine).run(streamed_draft, server.url)
        assert parked.status is RunStatus.WAITING
        events = [e for e in await engine.store.list_events(parked.run_id) if e.kind == STREAM_EVENT]
        steps = await engine.store.get_steps(parked.run_id)
    assert "".join(SEEN) == TEXT and len(SEEN) == len(WORDS)  # the caller saw every piece as it came
    # Coalesced: one event per 200 characters or so, not one per token; together, the whole text.
    assert 2 <= len(events) <= len(TEXT) // 200 + 2 < len(WORDS)
    assert "".join(e.data["text"] for e in events) == TEXT
    assert [e.data["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1].data["done"] is True and events[-1].data["usage"] == [40, 120]
    assert {e.step_key for e in events} == {"draft"}
    (draft,) = [s for s in steps if s.step_key == "draft"]
    assert draft.output["text"] == TEXT

    SEEN.clear()
    async with Engine(open_store(url), workflows=[streamed_draft]) as engine:
        await Client(engine=engine).signal(parked.run_id, "go")
        done = await Client(engine=engine).resume(parked.run_id)
        again = [e for e in await engine.store.list_events(parked.run_id) if e.kind == STREAM_EVENT]
    assert done.status is RunStatus.SUCCEEDED and done.output == {"text": TEXT, "usage": [40, 120]}
    assert len(server.requests) == 1 and SEEN == [] and len(again) == len(events)


def test_the_stream_event_is_a_kind_orchestrate_writes() -> None:
    assert EventKind(STREAM_EVENT) is EventKind.MODEL_STREAM


API_KEY = Secret("sk-live-7f3a9c2e11", name="crm_api_key")


@tool(credentials=["crm_api_key"])
def lookup(order_id: str, *, crm_api_key: Secret) -> str:
    """Look up an order."""
    return f"{order_id}: packed"


@workflow(name="streamed_agent", version="1")
async def streamed_agent(ctx: RunContext, base_url: str) -> str:
    model = OpenAICompatModel("wire", base_url=base_url, timeout=10)
    agent = Agent("clerk", role="You answer.", model=model, tools=[lookup], credentials={"crm_api_key": API_KEY})
    try:
        result = await agent.run("Where is A-17?", ctx=ctx, on_text=SEEN.append)
    finally:
        await model.aclose()
    return str(result.output)


async def test_an_agent_streams_its_turns_and_a_secret_split_between_chunks_never_shows(url) -> None:
    SEEN.clear()
    # The model repeats the key, and the stream splits it between two chunks: the caller
    # and the run's events see the mask, never the key.
    key = API_KEY.reveal()
    pieces = ["A-17 is ", "packed; the key is ", key[:5], key[5:], " and again ", key, " done."]

    def think(body: dict[str, Any]) -> Said:
        if not any(m["role"] == "tool" for m in body["messages"]):
            return Said(calls=[("lookup", {"order_id": "A-17"})])
        return Said(text="".join(pieces), pieces=pieces)

    wire = OpenAIWire(think).start()
    try:
        async with Engine(open_store(url), workflows=[streamed_agent]) as engine:
            record = await engine.run_record(streamed_agent, wire.url)
            events = [e for e in await engine.store.list_events(record.run_id) if e.kind == STREAM_EVENT]
    finally:
        wire.stop()
    shown = "".join(SEEN)
    assert API_KEY.reveal() not in shown and "[REDACTED:crm_api_key]" in shown
    assert shown.startswith("A-17 is packed;") and len(SEEN) > 3
    history = json.dumps([e.data for e in events])
    assert API_KEY.reveal() not in history and "[REDACTED:crm_api_key]" in history
    assert {e.step_key for e in events if e.data["text"]} == {"agent:clerk:turn:2"}  # turn 1 only called a tool
    assert record.output == shown
