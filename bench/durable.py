"""Durable cost per step on SQLite, one run at a time and 100 runs at once.

The floor is what one durable step cannot avoid: one bare ``INSERT`` of a row of about
the size of a step record, committed on its own (autocommit, through one reused
cursor) by :mod:`sqlite3` on a separate file with the same pragmas (WAL;
``synchronous`` FULL, or NORMAL for the second variant).
With ``synchronous=FULL`` every commit waits for an fsync, so the floor is the disk's
flush latency and "one commit per step" is the best a run executed step after step can
do. Many runs at once share commits (the store's writer thread commits whatever is
queued in one transaction), which is how the aggregate cost per step drops below the
per-commit floor.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import uuid
from typing import Any

from bench.chain import ASYNC_STEPS, async_workflow
from bench.harness import STEPS, Case, Plan, Row, paired_async, rounds, summarise
from orchestrate import Engine, Map, RunContext, Step, Workflow, workflow
from orchestrate.store.sqlite import SQLiteStore

ROW_PAYLOAD = "x" * 120
"""Payload of a floor row: a step record's columns are about this long once serialised."""


class CommitFloor:
    """One bare ``INSERT`` + ``COMMIT`` per step, on its own SQLite file."""

    def __init__(self, path: str, synchronous: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS floor (run_id TEXT NOT NULL, step_key TEXT NOT NULL, payload TEXT,"
            " PRIMARY KEY (run_id, step_key))"
        )
        self.cursor = self.conn.cursor()

    def chain(self) -> None:
        """Ten steps' worth: ten inserts, each its own committed transaction.

        The cheapest way :mod:`sqlite3` has: one cursor, reused, and SQLite's autocommit
        (no ``BEGIN``/``COMMIT`` statements), as the store writes a plain step.
        """
        run_id = uuid.uuid4().hex
        execute = self.cursor.execute
        for i in range(STEPS):
            execute("INSERT INTO floor VALUES (?, ?, ?)", (run_id, f"s{i}", ROW_PAYLOAD))

    def close(self) -> None:
        self.conn.close()


_VARIANTS = (("full", "FULL", "synchronous=FULL (default)"), ("normal", "NORMAL", "synchronous=NORMAL"))


@workflow(name="bench_chain_fn_sqlite", version="1")
async def chain_function(ctx: RunContext, x: int) -> int:
    """The chain as a durable function (``await ctx.step(...)`` ten times)."""
    for step in ASYNC_STEPS:
        x = await ctx.step(step, x)
    return x


async def _sequential(plan: Plan, tmp: str) -> list[Row]:
    """One run at a time: ours and the floor in short shuffled rounds, per-round ratios.

    With ``synchronous=FULL`` a commit waits for a flush whose time drifts from second to
    second: short batches, many rounds, so that a slow patch hits a few rounds of both.
    """
    rows: list[Row] = []
    graph = async_workflow()
    cases = [("full", graph, "async steps (graph)"), ("normal", graph, "async steps (graph)")]
    cases.append(("full.durable_fn", chain_function, "async steps (durable function)"))
    for name, wf, what in cases:
        pragma = "NORMAL" if name.startswith("normal") else "FULL"
        label = "synchronous=NORMAL" if pragma == "NORMAL" else "synchronous=FULL (default)"
        if plan.quick:
            runs, count = (plan.durable_runs if pragma == "FULL" else plan.normal_runs), plan.rounds
        else:
            runs, count = (4, 30) if pragma == "FULL" else (30, 20)
        query = "" if pragma == "FULL" else "?synchronous=normal"
        store = SQLiteStore(f"sqlite:///{os.path.join(tmp, f'ours-{name}.db')}{query}")
        floor = CommitFloor(os.path.join(tmp, f"floor-{name}.db"), pragma)
        async with Engine(store, workflows=[wf]) as engine:
            assert await engine.run(wf, 0) == STEPS

            async def subject(engine: Engine = engine, wf: Any = wf) -> None:
                await engine.run(wf, 0)

            before = store.commits
            warmup = min(plan.warmup_runs, 5)
            times = await rounds(
                [Case("ours", subject, runs), Case("floor", floor.chain, runs)], rounds=count, warmup=warmup
            )
            commits = store.commits - before
        floor.close()
        row = Row(
            key=f"ours.sqlite.{name}",
            group="sqlite",
            system="orchestrate",
            label=f"{what}, SQLiteStore WAL {label}, one run at a time",
            floor=f"bare INSERT, autocommit, per step (WAL, {label})",
            runs=runs,
        )
        summarise(row, times["ours"], times["floor"], per=STEPS)
        row.extra["commits_per_run"] = round(commits / (runs * count + warmup), 2)
        rows.append(row)
    return rows


async def _concurrent(plan: Plan, tmp: str) -> list[Row]:
    rows: list[Row] = []
    wf = async_workflow()
    width = plan.concurrent_runs
    for name, pragma, label in _VARIANTS:
        query = "" if name == "full" else "?synchronous=normal"
        store = SQLiteStore(f"sqlite:///{os.path.join(tmp, f'ours-concurrent-{name}.db')}{query}")
        floor = CommitFloor(os.path.join(tmp, f"floor-concurrent-{name}.db"), pragma)
        async with Engine(store, workflows=[wf]) as engine:

            async def batch(engine: Engine = engine) -> None:
                outputs: list[Any] = await asyncio.gather(*(engine.run(wf, 0) for _ in range(width)))
                assert outputs == [STEPS] * width

            async def floor_chain(floor: CommitFloor = floor) -> None:
                floor.chain()

            await batch()
            before = store.commits
            subject_s, floor_s = await paired_async(
                batch,
                floor_chain,
                runs=1,
                floor_runs=max(1, plan.floor_commits // STEPS),
                repeats=plan.repeats,
                warmup=0,
            )
            commits = (store.commits - before) / plan.repeats
        floor.close()
        row = Row(
            key=f"ours.sqlite.{name}.concurrent",
            group="throughput",
            system="orchestrate",
            label=f"{width} concurrent runs, SQLiteStore WAL {label}, aggregate per step",
            floor=f"bare INSERT, autocommit, per step (WAL, {label})",
            runs=width,
        )
        # A batch is ``width`` runs of STEPS steps: the aggregate time per step divides by both.
        summarise(row, [s / width for s in subject_s], floor_s, per=STEPS)
        row.extra.update(
            commits_per_batch=round(commits, 1),
            steps_per_batch=width * STEPS,
            steps_per_commit=round(width * STEPS / commits, 2) if commits else None,
            steps_per_second=round(1e6 / row.per_step_us) if row.per_step_us else None,
        )
        rows.append(row)
    return rows


async def bump(x: int) -> int:
    """The per-item step of the durable map."""
    return x + 1


class BatchFloor:
    """The batched floor of a durable map: its items' rows inserted in one transaction."""

    def __init__(self, path: str, items: int) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS floor (run_id TEXT NOT NULL, step_key TEXT NOT NULL, payload TEXT,"
            " PRIMARY KEY (run_id, step_key))"
        )
        self.items = items

    def batch(self) -> None:
        """One transaction holding one row per item."""
        run_id = uuid.uuid4().hex
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO floor VALUES (?, ?, ?)", ((run_id, f"map[{i}]", ROW_PAYLOAD) for i in range(self.items))
        )
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


async def _durable_map(plan: Plan, tmp: str) -> list[Row]:
    """A ``Map`` of 100 items on SQLite (FULL): cost per item and commits per wave.

    The floor inserts the same number of rows in one committed transaction per map (what
    a map could cost if all its children's records went out together). A wave is the
    children started together (no ``max_workers``: all of them); its commits are the
    map run's commits less those of the same workflow over an empty list (the run's own).
    """
    items = list(range(100))
    wf = Workflow("bench_sqlite_map", [Map(Step("bump", bump), name="map")], version="1")
    store = SQLiteStore(f"sqlite:///{os.path.join(tmp, 'ours-map.db')}")
    floor = BatchFloor(os.path.join(tmp, "floor-map.db"), len(items))
    runs, count = (1, plan.rounds) if plan.quick else (2, 15)
    async with Engine(store, workflows=[wf]) as engine:
        assert await engine.run(wf, items) == [x + 1 for x in items]
        before = store.commits
        await engine.run(wf, [])
        empty = store.commits - before

        async def subject() -> None:
            await engine.run(wf, items)

        async def floor_batch() -> None:
            floor.batch()

        before = store.commits
        times = await rounds([Case("ours", subject, runs), Case("floor", floor_batch, runs)], rounds=count, warmup=1)
        per_run = (store.commits - before) / (runs * count + 1)
    floor.close()
    row = Row(
        key="ours.sqlite.map",
        group="sqlite",
        system="orchestrate",
        label=f"Map over {len(items)} items, trivial async step, SQLiteStore WAL synchronous=FULL, per item",
        floor=f"the {len(items)} rows inserted in one transaction (WAL, FULL), per item",
        runs=runs,
    )
    summarise(row, times["ours"], times["floor"], per=len(items))
    row.extra.update(commits_per_run=round(per_run, 2), commits_per_wave=round(per_run - empty, 2), waves=1)
    return [row]


def run_sequential(plan: Plan) -> list[Row]:
    """Durable cost per step, one run at a time, FULL and NORMAL."""
    with tempfile.TemporaryDirectory(prefix="orchestrate-bench-") as tmp:
        return asyncio.run(_sequential(plan, tmp)) + asyncio.run(_durable_map(plan, tmp))


def run_concurrent(plan: Plan) -> list[Row]:
    """Aggregate durable cost per step with ``plan.concurrent_runs`` runs at once."""
    with tempfile.TemporaryDirectory(prefix="orchestrate-bench-") as tmp:
        return asyncio.run(_concurrent(plan, tmp))
