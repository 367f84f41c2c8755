"""The same 10-step chain on LangGraph, Burr and DBOS (installed by the ``bench`` extra).

Each peer's overhead per step is computed as ours is: (time per run - the plain call
chain of the same ten functions) / 10, the floor measured in the same process. Durable
peers also get the bare ``INSERT`` + ``COMMIT`` floor of :mod:`bench.durable`. A peer
that is not installed is skipped with a note (``pip install -e '.[bench]'``).

What a "run" is, per peer:

* LangGraph: ``invoke``/``ainvoke`` of a compiled ``StateGraph`` of ten nodes (compiled
  once); with a checkpointer, each run gets its own ``thread_id``.
* Burr: build an ``Application`` of ten actions and ``run`` it to the last action (an
  application is one run of a state machine); also one application reused, reset to its
  entrypoint before each run, which leaves out the building.
* DBOS: call a ``@DBOS.workflow`` that awaits ten ``@DBOS.step`` functions, with its
  SQLite system database.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sqlite3
import statistics
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

from bench.chain import async_workflow, plain_async_chain, plain_sync_chain
from bench.durable import CommitFloor
from bench.harness import STEPS, Plan, Row, paired, paired_async, skipped, summarise, time_async_calls
from orchestrate import Engine
from orchestrate.store import InMemoryStore

_INSTALL = "not installed: pip install -e '.[bench]'"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _commit_floor(plan: Plan, tmp: str) -> float:
    """Median microseconds per bare commit (WAL, FULL) in this process."""
    floor = CommitFloor(os.path.join(tmp, "floor.db"), "FULL")
    try:
        _, samples = paired(
            lambda: None,
            floor.chain,
            runs=1,
            floor_runs=max(1, plan.floor_commits // STEPS),
            repeats=plan.repeats,
            warmup=1,
        )
    finally:
        floor.close()
    samples.sort()
    return round(samples[len(samples) // 2] / STEPS * 1e6, 3)


def _peer_row(key: str, system: str, label: str, runs: int, subject_s: list[float], floor_s: list[float]) -> Row:
    """A peer's row: its chain's time per step against the plain Python call chain."""
    row = Row(key=key, group="peers", system=system, label=label, floor="plain Python call chain", runs=runs)
    return summarise(row, subject_s, floor_s, per=STEPS)


def _durable_extra(row: Row, commit_floor_us: float, note: str) -> Row:
    row.extra["commit_floor_us"] = commit_floor_us
    if row.per_step_us is not None:
        row.extra["ratio_to_commit_floor"] = round(row.per_step_us / commit_floor_us, 2)
    row.note = note
    return row


class _Ours:
    """Our chain (async steps, ``InMemoryStore``), timed beside a peer in the peer's process.

    Each repetition of a peer's in-memory measurement also times a batch of our runs,
    so that "ours vs the peer" compares numbers taken at the same moment on the same
    machine state; the engine is fresh for every batch.
    """

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.workflow = async_workflow()
        self.samples: list[float] = []

    async def batch(self) -> None:
        async with Engine(InMemoryStore(), workflows=[self.workflow]) as engine:

            async def once() -> None:
                await engine.run(self.workflow, 0)

            for _ in range(20):
                await once()
            floor = await time_async_calls(plain_async_chain, self.runs * 10)
            self.samples.append((await time_async_calls(once, self.runs) - floor) / STEPS * 1e6)

    def attach(self, row: Row) -> None:
        """Record our overhead per step measured beside ``row``'s repetitions.

        ``times_ours`` is the median over repetitions of the peer's overhead divided by
        ours in the batch right after it: a ratio of neighbours, robust to the machine
        getting slower or faster during the measurement.
        """
        ours = statistics.median(self.samples)
        row.extra["ours_overhead_per_step_us"] = round(ours, 3)
        ratios = [
            (subject - floor) / mine
            for subject, floor, mine in zip(row.samples_us, row.floor_samples_us, self.samples, strict=True)
            if mine > 0
        ]
        if ratios:
            row.extra["times_ours"] = round(statistics.median(ratios), 2)
        self.samples = []


def _beside_batches(plan: Plan) -> tuple[int, int]:
    """Runs per batch and batches for in-memory peers: many short batches, ours after each."""
    return max(1, plan.peer_runs // 3), plan.repeats * 3


def _beside(
    ours: _Ours,
    subject: Callable[[], Any],
    floor: Callable[[], Any],
    *,
    runs: int,
    floor_runs: int,
    repeats: int,
    warmup: int,
) -> tuple[list[float], list[float]]:
    """:func:`~bench.harness.paired`, with a batch of our runs after each repetition."""
    subject_s: list[float] = []
    floor_s: list[float] = []
    for i in range(repeats):
        s, f = paired(subject, floor, runs=runs, floor_runs=floor_runs, repeats=1, warmup=warmup if i == 0 else 0)
        subject_s += s
        floor_s += f
        asyncio.run(ours.batch())
    return subject_s, floor_s


async def _beside_async(
    ours: _Ours,
    subject: Callable[[], Awaitable[Any]],
    floor: Callable[[], Awaitable[Any]],
    *,
    runs: int,
    floor_runs: int,
    repeats: int,
    warmup: int,
) -> tuple[list[float], list[float]]:
    """:func:`~bench.harness.paired_async`, with a batch of our runs after each repetition."""
    subject_s: list[float] = []
    floor_s: list[float] = []
    for i in range(repeats):
        s, f = await paired_async(
            subject, floor, runs=runs, floor_runs=floor_runs, repeats=1, warmup=warmup if i == 0 else 0
        )
        subject_s += s
        floor_s += f
        await ours.batch()
    return subject_s, floor_s


# LangGraph -------------------------------------------------------------------------------


class _ChainState(TypedDict):
    x: int


def _langgraph_app(*, use_async: bool, checkpointer: Any = None) -> Any:
    from langgraph.graph import END, START, StateGraph

    def node(i: int) -> Callable[..., Any]:
        if use_async:

            async def step(state: _ChainState) -> dict[str, int]:
                return {"x": state["x"] + 1}

        else:

            def step(state: _ChainState) -> dict[str, int]:  # type: ignore[misc]
                return {"x": state["x"] + 1}

        step.__name__ = f"s{i}"
        return step

    graph = StateGraph(_ChainState)
    previous = START
    for i in range(STEPS):
        graph.add_node(f"s{i}", node(i))
        graph.add_edge(previous, f"s{i}")
        previous = f"s{i}"
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=checkpointer)


def _thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": uuid.uuid4().hex}}


def langgraph(plan: Plan) -> list[Row]:
    """LangGraph ``StateGraph``: no checkpointer (sync, async), ``InMemorySaver``, ``SqliteSaver``."""
    keys = [
        "langgraph.memory.sync",
        "langgraph.memory.async",
        "langgraph.inmemorysaver.sync",
        "langgraph.sqlite.sync",
        "langgraph.sqlite.sync_durability",
    ]
    if not _installed("langgraph"):
        return [skipped(k, "peers", "LangGraph", k, _INSTALL) for k in keys]
    from langgraph.checkpoint.memory import InMemorySaver

    beside_runs, beside_repeats = _beside_batches(plan)
    ours = _Ours(beside_runs)
    rows: list[Row] = []
    plain = _langgraph_app(use_async=False)
    assert plain.invoke({"x": 0})["x"] == STEPS
    subject_s, floor_s = _beside(
        ours,
        lambda: plain.invoke({"x": 0}),
        plain_sync_chain,
        runs=beside_runs,
        floor_runs=plan.floor_calls,
        repeats=beside_repeats,
        warmup=plan.warmup_runs // 4,
    )
    rows.append(
        _peer_row(
            keys[0], "LangGraph", "StateGraph, sync nodes, invoke, no checkpointer", beside_runs, subject_s, floor_s
        )
    )
    ours.attach(rows[-1])

    async_app = _langgraph_app(use_async=True)

    async def run_async() -> None:
        await async_app.ainvoke({"x": 0})

    subject_s, floor_s = asyncio.run(
        _beside_async(
            ours,
            run_async,
            plain_async_chain,
            runs=beside_runs,
            floor_runs=plan.floor_calls,
            repeats=beside_repeats,
            warmup=plan.warmup_runs // 4,
        )
    )
    rows.append(
        _peer_row(
            keys[1], "LangGraph", "StateGraph, async nodes, ainvoke, no checkpointer", beside_runs, subject_s, floor_s
        )
    )
    ours.attach(rows[-1])

    saved = _langgraph_app(use_async=False, checkpointer=InMemorySaver())
    subject_s, floor_s = _beside(
        ours,
        lambda: saved.invoke({"x": 0}, _thread()),
        plain_sync_chain,
        runs=beside_runs,
        floor_runs=plan.floor_calls,
        repeats=beside_repeats,
        warmup=plan.warmup_runs // 4,
    )
    rows.append(
        _peer_row(
            keys[2], "LangGraph", "StateGraph, sync nodes, InMemorySaver checkpointer", beside_runs, subject_s, floor_s
        )
    )
    ours.attach(rows[-1])

    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:
        rows.append(skipped(keys[3], "peers", "LangGraph", "SqliteSaver", "langgraph-checkpoint-sqlite " + _INSTALL))
        rows.append(skipped(keys[4], "peers", "LangGraph", "SqliteSaver", "langgraph-checkpoint-sqlite " + _INSTALL))
        return rows
    with tempfile.TemporaryDirectory(prefix="orchestrate-bench-") as tmp:
        commit_floor = _commit_floor(plan, tmp)
        conn = sqlite3.connect(os.path.join(tmp, "langgraph.db"), check_same_thread=False)
        app = _langgraph_app(use_async=False, checkpointer=SqliteSaver(conn))
        for key, durability, label in (
            (keys[3], None, "default durability ('async': checkpoints written in the background)"),
            (keys[4], "sync", "durability='sync' (each checkpoint written before the next step)"),
        ):
            kwargs: dict[str, Any] = {} if durability is None else {"durability": durability}

            def run_saved(kwargs: dict[str, Any] = kwargs) -> None:
                app.invoke({"x": 0}, _thread(), **kwargs)

            subject_s, floor_s = paired(
                run_saved,
                plain_sync_chain,
                runs=plan.peer_durable_runs,
                floor_runs=plan.floor_calls,
                repeats=plan.repeats,
                warmup=2,
            )
            row = _peer_row(
                key,
                "LangGraph",
                f"StateGraph, sync nodes, SqliteSaver (WAL, FULL), {label}",
                plan.peer_durable_runs,
                subject_s,
                floor_s,
            )
            rows.append(_durable_extra(row, commit_floor, "durable peer: compare with ours.sqlite.full"))
        conn.close()
    return rows


# Burr ------------------------------------------------------------------------------------


def _burr_actions(*, use_async: bool) -> dict[str, Any]:
    from burr.core import State, action

    def make(i: int) -> Any:
        if use_async:

            @action(reads=["x"], writes=["x"])
            async def step(state: State[Any]) -> State[Any]:
                return state.update(x=state["x"] + 1)

        else:

            @action(reads=["x"], writes=["x"])
            def step(state: State[Any]) -> State[Any]:
                return state.update(x=state["x"] + 1)

        return step

    return {f"s{i}": make(i) for i in range(STEPS)}


def _burr_app(actions: dict[str, Any], persister: Any = None) -> Any:
    from burr.core import ApplicationBuilder

    builder: Any = (
        ApplicationBuilder()  # type: ignore[no-untyped-call]
        .with_actions(**actions)
        .with_transitions(*[(f"s{i}", f"s{i + 1}") for i in range(STEPS - 1)])
        .with_state(x=0)
        .with_entrypoint("s0")
    )
    if persister is not None:
        builder = builder.with_state_persister(persister).with_identifiers(app_id=uuid.uuid4().hex)
    return builder.build()


_LAST = [f"s{STEPS - 1}"]


def burr(plan: Plan) -> list[Row]:
    """Burr ``Application``: built per run (sync, async), reused, and with ``SQLitePersister``."""
    keys = ["burr.memory.sync", "burr.memory.sync_reused", "burr.memory.async", "burr.sqlite.sync"]
    if not _installed("burr"):
        return [skipped(k, "peers", "Burr", k, _INSTALL) for k in keys]
    from burr.core.persistence import SQLitePersister

    beside_runs, beside_repeats = _beside_batches(plan)
    ours = _Ours(beside_runs)
    rows: list[Row] = []
    sync_actions = _burr_actions(use_async=False)
    assert _burr_app(sync_actions).run(halt_after=_LAST)[2]["x"] == STEPS
    subject_s, floor_s = _beside(
        ours,
        lambda: _burr_app(sync_actions).run(halt_after=_LAST),
        plain_sync_chain,
        runs=beside_runs,
        floor_runs=plan.floor_calls,
        repeats=beside_repeats,
        warmup=plan.warmup_runs // 4,
    )
    rows.append(
        _peer_row(
            keys[0], "Burr", "Application of 10 sync actions, built per run, in memory", beside_runs, subject_s, floor_s
        )
    )
    ours.attach(rows[-1])

    reused = _burr_app(sync_actions)

    def rerun() -> None:
        reused.reset_to_entrypoint()
        reused.update_state(reused.state.update(x=0))
        reused.run(halt_after=_LAST)

    rerun()
    assert reused.state["x"] == STEPS
    subject_s, floor_s = _beside(
        ours,
        rerun,
        plain_sync_chain,
        runs=beside_runs,
        floor_runs=plan.floor_calls,
        repeats=beside_repeats,
        warmup=plan.warmup_runs // 4,
    )
    row = _peer_row(
        keys[1],
        "Burr",
        "one Application of 10 sync actions reused (reset to entrypoint), in memory",
        beside_runs,
        subject_s,
        floor_s,
    )
    row.note = "leaves out building the application: the strictest comparison for us"
    rows.append(row)
    ours.attach(rows[-1])

    async_actions = _burr_actions(use_async=True)

    async def run_async() -> None:
        await _burr_app(async_actions).arun(halt_after=_LAST)

    subject_s, floor_s = asyncio.run(
        _beside_async(
            ours,
            run_async,
            plain_async_chain,
            runs=beside_runs,
            floor_runs=plan.floor_calls,
            repeats=beside_repeats,
            warmup=plan.warmup_runs // 4,
        )
    )
    rows.append(
        _peer_row(
            keys[2],
            "Burr",
            "Application of 10 async actions, built per run, arun, in memory",
            beside_runs,
            subject_s,
            floor_s,
        )
    )
    ours.attach(rows[-1])

    with tempfile.TemporaryDirectory(prefix="orchestrate-bench-") as tmp:
        commit_floor = _commit_floor(plan, tmp)
        persister = SQLitePersister.from_values(os.path.join(tmp, "burr.db"))
        persister.initialize()  # type: ignore[no-untyped-call]
        subject_s, floor_s = paired(
            lambda: _burr_app(sync_actions, persister).run(halt_after=_LAST),
            plain_sync_chain,
            runs=plan.peer_durable_runs,
            floor_runs=plan.floor_calls,
            repeats=plan.repeats,
            warmup=2,
        )
        row = _peer_row(
            keys[3],
            "Burr",
            "Application of 10 sync actions, SQLitePersister (rollback journal, FULL)",
            plan.peer_durable_runs,
            subject_s,
            floor_s,
        )
        rows.append(_durable_extra(row, commit_floor, "durable peer: compare with ours.sqlite.full"))
        persister.connection.close()  # type: ignore[has-type]
    return rows


# DBOS ------------------------------------------------------------------------------------


def dbos(plan: Plan) -> list[Row]:
    """DBOS: ten ``@DBOS.step`` in a ``@DBOS.workflow``, SQLite system database (async and sync)."""
    keys = ["dbos.sqlite.async", "dbos.sqlite.sync"]
    if not _installed("dbos"):
        return [skipped(k, "peers", "DBOS", k, _INSTALL) for k in keys]
    from dbos import DBOS

    logging.getLogger("dbos").setLevel(logging.ERROR)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="orchestrate-bench-") as tmp:
        commit_floor = _commit_floor(plan, tmp)
        DBOS(
            config={
                "name": "orchestrate-bench",
                "system_database_url": f"sqlite:///{os.path.join(tmp, 'dbos.sqlite')}",
                "log_level": "ERROR",
            }
        )

        def async_step(i: int) -> Any:
            @DBOS.step(name=f"s{i}")
            async def step(x: int) -> int:
                return x + 1

            return step

        def sync_step(i: int) -> Any:
            @DBOS.step(name=f"sync_s{i}")
            def step(x: int) -> int:
                return x + 1

            return step

        async_steps = [async_step(i) for i in range(STEPS)]
        sync_steps = [sync_step(i) for i in range(STEPS)]

        @DBOS.workflow(name="bench_chain")
        async def chain(x: int) -> int:
            for step in async_steps:
                x = await step(x)
            return x

        @DBOS.workflow(name="bench_chain_sync")
        def chain_sync(x: int) -> int:
            for step in sync_steps:
                x = step(x)
            return x

        DBOS.launch()
        try:

            async def run_async() -> None:
                assert await chain(0) == STEPS

            subject_s, floor_s = asyncio.run(
                paired_async(
                    run_async,
                    plain_async_chain,
                    runs=plan.peer_durable_runs,
                    floor_runs=plan.floor_calls,
                    repeats=plan.repeats,
                    warmup=2,
                )
            )
            row = _peer_row(
                keys[0],
                "DBOS",
                "@DBOS.workflow of 10 async @DBOS.step, SQLite system database",
                plan.peer_durable_runs,
                subject_s,
                floor_s,
            )
            rows.append(
                _durable_extra(
                    row,
                    commit_floor,
                    "DBOS's SQLite uses the default rollback journal (synchronous FULL); compare with ours.sqlite.full",
                )
            )
            subject_s, floor_s = paired(
                lambda: chain_sync(0),
                plain_sync_chain,
                runs=plan.peer_durable_runs,
                floor_runs=plan.floor_calls,
                repeats=plan.repeats,
                warmup=2,
            )
            row = _peer_row(
                keys[1],
                "DBOS",
                "@DBOS.workflow of 10 sync @DBOS.step, SQLite system database",
                plan.peer_durable_runs,
                subject_s,
                floor_s,
            )
            rows.append(_durable_extra(row, commit_floor, "as above, sync"))
        finally:
            DBOS.destroy()
    return rows
