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
    PAYLOAD,
    Ticket,
    async_workflow,
    payload_workflow,
    plain_async_chain,
    plain_payload_chain,
    plain_sync_chain_async,
    plain_typed_chain,
    sync_workflow,
    typed_workflow,
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
    payload, typed = payload_workflow(), typed_workflow()
    inputs: dict[str, Any] = {
        "ours.memory.payload": PAYLOAD,
        "ours.memory.typed": Ticket("T-4829", 0.93, ("delayed", "priority"), 0),
    }
    cases += [
        ("ours.memory.payload", "async steps passing a 0.5 KB dict", payload, plain_payload_chain, plan.memory_runs),
        ("ours.memory.typed", "async steps returning a declared dataclass", typed, plain_typed_chain, plan.memory_runs),
    ]
    rows: list[Row] = []
    workflows: list[Any] = [graph, thread, inline, chain_function, payload, typed]
    async with Engine(InMemoryStore(), workflows=workflows) as engine:
        for key, _, wf, _, _ in cases:
            out = await engine.run(wf, inputs.get(key, 0))
            got = out if isinstance(out, int) else out["n"] if isinstance(out, dict) else out.n
            assert got == STEPS, f"{key}: the chain did not compute {STEPS}"
    for key, label, wf, floor, runs in cases:
        value = inputs.get(key, 0)

        async def subject(engine: Engine, wf: Any = wf, value: Any = value) -> None:
            await engine.run(wf, value)

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
