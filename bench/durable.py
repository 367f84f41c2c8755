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

from bench.chain import async_workflow
from bench.harness import STEPS, Plan, Row, paired_async, summarise
from orchestrate import Engine
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


async def _sequential(plan: Plan, tmp: str) -> list[Row]:
    rows: list[Row] = []
    wf = async_workflow()
    for name, pragma, label in _VARIANTS:
        if name == "full" and not plan.quick:
            # A flush per commit: short batches, many of them, in alternation. The disk's
            # flush time drifts from second to second; a slow patch then hits a few
            # samples of both rather than all of one (as for PostgreSQL).
            runs, floor_runs, repeats = 4, 4, 30
        else:
            runs = plan.durable_runs if name == "full" else plan.normal_runs
            floor_runs, repeats = max(1, plan.floor_commits // STEPS), plan.repeats
        query = "" if name == "full" else "?synchronous=normal"
        store = SQLiteStore(f"sqlite:///{os.path.join(tmp, f'ours-{name}.db')}{query}")
        floor = CommitFloor(os.path.join(tmp, f"floor-{name}.db"), pragma)
        async with Engine(store, workflows=[wf]) as engine:
            assert await engine.run(wf, 0) == STEPS

            async def subject(engine: Engine = engine) -> None:
                await engine.run(wf, 0)

            async def floor_chain(floor: CommitFloor = floor) -> None:
                floor.chain()

            before = store.commits
            subject_s, floor_s = await paired_async(
                subject,
                floor_chain,
                runs=runs,
                floor_runs=floor_runs,
                repeats=repeats,
                warmup=min(plan.warmup_runs, 5),
            )
            timed_runs = runs * repeats + min(plan.warmup_runs, 5)
            commits = store.commits - before
        floor.close()
        row = Row(
            key=f"ours.sqlite.{name}",
            group="sqlite",
            system="orchestrate",
            label=f"async steps, SQLiteStore WAL {label}, one run at a time",
            floor=f"bare INSERT, autocommit, per step (WAL, {label})",
            runs=runs,
        )
        row.extra = {"commits_per_run": round(commits / timed_runs, 2)}
        rows.append(summarise(row, subject_s, floor_s, per=STEPS))
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
        row.extra = {
            "commits_per_batch": round(commits, 1),
            "steps_per_batch": width * STEPS,
            "steps_per_commit": round(width * STEPS / commits, 2) if commits else None,
            "steps_per_second": round(1e6 / row.per_step_us) if row.per_step_us else None,
        }
        rows.append(row)
    return rows


def run_sequential(plan: Plan) -> list[Row]:
    """Durable cost per step, one run at a time, FULL and NORMAL."""
    with tempfile.TemporaryDirectory(prefix="orchestrate-bench-") as tmp:
        return asyncio.run(_sequential(plan, tmp))


def run_concurrent(plan: Plan) -> list[Row]:
    """Aggregate durable cost per step with ``plan.concurrent_runs`` runs at once."""
    with tempfile.TemporaryDirectory(prefix="orchestrate-bench-") as tmp:
        return asyncio.run(_concurrent(plan, tmp))
