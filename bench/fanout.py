"""Fan-out: a ``Map`` over 1,000 items against ``asyncio.gather`` of the same 1,000 coroutines.

The map runs one trivial async step per item on ``InMemoryStore``; each item is a step
of its own (recorded as ``map[i]``). The floor gathers the same step function over the
same items with no engine. Both divide by the number of items: time per child.
"""

from __future__ import annotations

import asyncio

from bench.harness import Plan, Row, paired_fresh_engines, summarise
from orchestrate import Engine, Map, Step, Workflow
from orchestrate.store import InMemoryStore


async def bump(x: int) -> int:
    """The per-item step."""
    return x + 1


async def _measure(plan: Plan) -> list[Row]:
    items = list(range(plan.map_items))
    expected = [x + 1 for x in items]
    wf = Workflow("bench_map", [Map(Step("bump", bump), name="map")], version="1")

    async def floor() -> None:
        await asyncio.gather(*(bump(x) for x in items))

    async with Engine(InMemoryStore(), workflows=[wf]) as engine:
        assert await engine.run(wf, items) == expected

    async def subject(engine: Engine) -> None:
        await engine.run(wf, items)

    subject_s, floor_s = await paired_fresh_engines(
        [wf],
        subject,
        floor,
        runs=plan.map_runs,
        floor_runs=plan.map_runs,
        repeats=plan.repeats * 2,
        warmup=plan.repeats * 2,
    )
    row = Row(
        key="ours.memory.map",
        group="map",
        system="orchestrate",
        label=f"Map over {len(items)} items, trivial async step, InMemoryStore, per child",
        floor=f"asyncio.gather of the same {len(items)} coroutines",
        runs=plan.map_runs,
    )
    return [summarise(row, subject_s, floor_s, per=len(items))]


def run(plan: Plan) -> list[Row]:
    """Measure the per-child cost of a 1,000-way map."""
    return asyncio.run(_measure(plan))
