"""A durable agent run in a subprocess by the agent crash test.

usage: python agent_app.py STORE_URL WORKDIR MODEL_URL start RUN_ID
       python agent_app.py STORE_URL WORKDIR MODEL_URL resume

The agent talks to an OpenAI-compatible server (the test's) with native tool calls.
Its tool appends ``city idempotency_key pid`` to WORKDIR/ledger (fsynced) per call.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from orchestrate import Engine, RunContext, workflow
from orchestrate.agents import Agent, AgentBudget, tool
from orchestrate.models.openai_compat import OpenAICompatModel
from orchestrate.store import open_store

WORKDIR = Path(sys.argv[2])


@tool
def forecast(city: str, idempotency_key: str) -> dict:
    """Tomorrow's forecast for a city."""
    with open(WORKDIR / "ledger", "a") as fh:
        fh.write(f"{city} {idempotency_key} {os.getpid()}\n")
        fh.flush()
        os.fsync(fh.fileno())
    return {"city": city, "high_c": 10 + len(city)}


AGENT = Agent(
    "planner",
    role="You plan trips by checking the weather of each city.",
    model=OpenAICompatModel("scripted", base_url=sys.argv[3], timeout=120),
    tools=[forecast],
    max_steps=10,
    budget=AgentBudget(max_tokens=10_000),
)


@workflow(name="trip", version="1")
async def trip(ctx: RunContext, task: str) -> dict:
    result = await AGENT.run(task, ctx=ctx)
    return {"output": result.output, "turns": result.turns, "tokens": result.usage.total_tokens}


async def main() -> None:
    url, mode = sys.argv[1], sys.argv[4]
    async with Engine(open_store(url), workflows=[trip], lease_seconds=2.0, park_after_seconds=1.0) as engine:
        if mode == "start":
            record = await engine.run_record(trip, "Plan a trip through five cities.", run_id=sys.argv[5])
            print(record.status.value, record.output, flush=True)
        else:
            await engine.work(until_idle=True, poll_seconds=0.1)
            print("idle", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
