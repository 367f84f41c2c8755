"""Engine overhead per step: the 10-step chain on ``InMemoryStore`` against a plain call chain.

Overhead per step = (time per run - time of the plain chain of the same ten functions) / 10.
A run here is everything ``Engine.run`` does: create the run record, drive the ten
steps (hash the input, record each step, replay bookkeeping), mark the run succeeded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.chain import (
    ASYNC_STEPS,
    async_workflow,
    plain_async_chain,
    plain_sync_chain_async,
    sync_workflow,
)
from bench.harness import STEPS, Plan, Row, paired_fresh_engines, summarise
from orchestrate import Engine, RunContext, workflow
from orchestrate.store import InMemoryStore


@workflow(name="bench_chain_fn", version="1")
async def chain_function(ctx: RunContext, x: int) -> int:
    """The chain as a durable function (``await ctx.step(...)`` ten times)."""
    for step in ASYNC_STEPS:
        x = await ctx.step(step, x)
    return x


async def _measure(plan: Plan) -> list[Row]:
    graph = async_workflow()
    thread = sync_workflow("thread")
    inline = sync_workflow("inline")
    cases: list[tuple[str, str, Any, Any, int]] = [
        ("ours.memory.async", "async steps (graph workflow)", graph, plain_async_chain, plan.memory_runs),
        (
            "ours.memory.durable_fn",
            "async steps (durable function, ctx.step)",
            chain_function,
            plain_async_chain,
            plan.memory_runs,
        ),
        ("ours.memory.sync_inline", "sync steps, isolation='inline'", inline, plain_sync_chain_async, plan.memory_runs),
        (
            "ours.memory.sync_thread",
            "sync steps in threads (default isolation)",
            thread,
            plain_sync_chain_async,
            plan.thread_runs,
        ),
    ]
    rows: list[Row] = []
    workflows: list[Any] = [graph, thread, inline, chain_function]
    async with Engine(InMemoryStore(), workflows=workflows) as engine:
        for key, _, wf, _, _ in cases:
            assert await engine.run(wf, 0) == STEPS, f"{key}: the chain did not compute {STEPS}"
    for key, label, wf, floor, runs in cases:

        async def subject(engine: Engine, wf: Any = wf) -> None:
            await engine.run(wf, 0)

        subject_s, floor_s = await paired_fresh_engines(
            workflows,
            subject,
            floor,
            runs=runs,
            floor_runs=plan.floor_calls,
            repeats=plan.repeats,
            warmup=plan.warmup_runs,
        )
        row = Row(
            key=key,
            group="overhead",
            system="orchestrate",
            label=f"{label}, InMemoryStore",
            floor="plain Python call chain",
            runs=runs,
        )
        rows.append(summarise(row, subject_s, floor_s, per=STEPS))
    return rows


def run(plan: Plan) -> list[Row]:
    """Measure orchestrate's per-step overhead in memory (async, durable function, sync)."""
    return asyncio.run(_measure(plan))
