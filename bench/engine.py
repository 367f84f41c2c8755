"""Engine overhead per step: the 10-step chain on ``InMemoryStore`` against a plain call chain.

Overhead per step = (time per run - time of the plain chain of the same ten functions) / 10.
A run here is everything ``Engine.run`` does: create the run record, drive the ten
steps (hash the input, record each step, replay bookkeeping), mark the run succeeded.

Each case is timed beside its floor in short rounds, their order shuffled each round
(:func:`bench.harness.rounds`); the ratio reported is the median of the per-round ratios.
Cases: async steps (graph and durable function), plain ``def`` steps as the README writes
them (default isolation, without and with a timeout, graph and durable function), sync
steps with ``isolation="inline"`` and ``"thread"``, a 0.5 KB and a 10 KB dict flowing
through the steps, and a declared dataclass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bench.chain import (
    ASYNC_STEPS,
    PAYLOAD,
    PAYLOAD_10K,
    SYNC_STEPS,
    Ticket,
    async_workflow,
    def_workflow,
    payload_def_workflow,
    payload_workflow,
    plain_async_chain,
    plain_payload_chain,
    plain_payload_def_chain,
    plain_sync_chain,
    plain_typed_chain,
    sync_workflow,
    typed_workflow,
)
from bench.harness import STEPS, Case, FreshEngine, Plan, Row, rounds, summarise
from orchestrate import RunContext, workflow


@workflow(name="bench_chain_fn", version="1")
async def chain_function(ctx: RunContext, x: int) -> int:
    """The chain as a durable function (``await ctx.step(...)`` ten times)."""
    for step in ASYNC_STEPS:
        x = await ctx.step(step, x)
    return x


@workflow(name="bench_chain_fn_def", version="1")
async def chain_function_def(ctx: RunContext, x: int) -> int:
    """The chain of plain ``def`` steps as a durable function."""
    for step in SYNC_STEPS:
        x = await ctx.step(step, x)
    return x


@workflow(name="bench_chain_fn_def_timeout", version="1")
async def chain_function_def_timeout(ctx: RunContext, x: int) -> int:
    """The chain of plain ``def`` steps, each with a timeout, as a durable function."""
    for step in SYNC_STEPS:
        x = await ctx.step(step, x, timeout=30)
    return x


def _count(out: Any) -> int:
    if isinstance(out, int):
        return out
    if isinstance(out, dict):
        return int(out["n"])
    return int(out.n)


async def _plain_payload_10k() -> dict[str, object]:
    return await plain_payload_chain(PAYLOAD_10K)


def _plain_payload_def_10k() -> dict[str, object]:
    return plain_payload_def_chain(PAYLOAD_10K)


def cases(plan: Plan) -> list[tuple[str, str, Any, Any, Callable[[], Any], int]]:
    """Our in-memory cases: key, label, workflow, input, floor, runs per round."""
    runs = max(1, plan.memory_runs // 10)
    thread_runs = max(1, plan.thread_runs // 10)
    typed_input = Ticket("T-4829", 0.93, ("delayed", "priority"), 0)
    return [
        ("ours.memory.async", "async steps (graph workflow)", async_workflow(), 0, plain_async_chain, runs),
        (
            "ours.memory.durable_fn",
            "async steps (durable function, ctx.step)",
            chain_function,
            0,
            plain_async_chain,
            runs,
        ),
        ("ours.memory.def", "def steps, no timeout (graph workflow)", def_workflow(), 0, plain_sync_chain, thread_runs),
        (
            "ours.memory.def_timeout",
            "def steps with timeout=30 (graph workflow, as the README writes them)",
            def_workflow(timeout=30),
            0,
            plain_sync_chain,
            thread_runs,
        ),
        (
            "ours.memory.def_fn",
            "def steps, no timeout (durable function, ctx.step)",
            chain_function_def,
            0,
            plain_sync_chain,
            thread_runs,
        ),
        (
            "ours.memory.def_fn_timeout",
            "def steps with timeout=30 (durable function, ctx.step)",
            chain_function_def_timeout,
            0,
            plain_sync_chain,
            thread_runs,
        ),
        (
            "ours.memory.sync_inline",
            "sync steps, isolation='inline'",
            sync_workflow("inline"),
            0,
            plain_sync_chain,
            runs,
        ),
        (
            "ours.memory.sync_thread",
            "sync steps, isolation='thread' (explicit)",
            sync_workflow("thread"),
            0,
            plain_sync_chain,
            thread_runs,
        ),
        (
            "ours.memory.payload",
            "async steps passing a 0.5 KB dict",
            payload_workflow(),
            PAYLOAD,
            plain_payload_chain,
            runs,
        ),
        (
            "ours.memory.payload10k",
            "async steps passing a 10 KB dict",
            payload_workflow(),
            PAYLOAD_10K,
            _plain_payload_10k,
            max(1, runs // 4),
        ),
        (
            "ours.memory.payload_def",
            "def steps passing a 0.5 KB dict",
            payload_def_workflow(),
            PAYLOAD,
            plain_payload_def_chain,
            thread_runs,
        ),
        (
            "ours.memory.payload10k_def",
            "def steps passing a 10 KB dict",
            payload_def_workflow(),
            PAYLOAD_10K,
            _plain_payload_def_10k,
            max(1, thread_runs // 4),
        ),
        (
            "ours.memory.typed",
            "async steps returning a declared dataclass",
            typed_workflow(),
            typed_input,
            plain_typed_chain,
            runs,
        ),
    ]


async def _measure(plan: Plan) -> list[Row]:
    rows: list[Row] = []
    for key, label, wf, value, floor, runs in cases(plan):
        ours = FreshEngine([wf], wf, value)
        await ours.fresh()
        assert ours.engine is not None
        assert _count(await ours.engine.run(wf, value)) == STEPS, f"{key}: the chain did not compute {STEPS}"
        times = await rounds(
            [Case("ours", ours.call, runs, fresh=ours.fresh), Case("floor", floor, max(runs * 10, 200))],
            rounds=plan.rounds,
            warmup=max(1, plan.warmup_runs // 10),
        )
        await ours.close()
        row = Row(
            key=key,
            group="overhead",
            system="orchestrate",
            label=f"{label}, InMemoryStore",
            floor="plain Python call chain",
            runs=runs,
        )
        rows.append(summarise(row, times["ours"], times["floor"], per=STEPS))
    return rows


def run(plan: Plan) -> list[Row]:
    """Measure orchestrate's per-step overhead in memory (async, durable function, def, payloads)."""
    return asyncio.run(_measure(plan))
