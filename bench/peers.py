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
import tempfile
import uuid
from collections.abc import Callable
from typing import Any, TypedDict

from bench.chain import (
    PAYLOAD,
    PAYLOAD_10K,
    PAYLOAD_DEF_STEPS,
    plain_async_chain,
    plain_payload_def_chain,
    plain_sync_chain,
)
from bench.durable import CommitFloor
from bench.harness import (
    STEPS,
    Case,
    FreshEngine,
    Plan,
    Row,
    paired,
    paired_async,
    rounds,
    skipped,
    summarise,
    times_over,
)

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


# Our cases timed beside each in-memory peer configuration: the same chain, the same
# input, in the same rounds (see :func:`_beside`). Keys are those of :mod:`bench.engine`.
_OURS_INT = ("ours.memory.async", "ours.memory.def", "ours.memory.def_timeout", "ours.memory.def_fn_timeout")
_OURS_PAYLOAD = ("ours.memory.payload_def", "ours.memory.payload")


def _ours_engines(keys: tuple[str, ...], value: Any) -> dict[str, FreshEngine]:
    from bench.engine import cases

    found = {key: (wf, default) for key, _, wf, default, _, _ in cases(Plan.smoke())}
    engines: dict[str, FreshEngine] = {}
    for key in keys:
        wf, default = found[key]
        engines[key] = FreshEngine([wf], wf, default if value is None else value)
    return engines


async def _beside(
    plan: Plan,
    *,
    key: str,
    system: str,
    label: str,
    peer: Callable[[], Any],
    floor: Callable[[], Any],
    ours: dict[str, FreshEngine],
    runs: int,
) -> Row:
    """Time a peer's configuration, the plain chain and our matching cases in shuffled rounds.

    The row is the peer's overhead per step against the plain chain; ``extra["vs"]`` maps
    each of our cases to the median (and interquartile range) over rounds of the peer's
    overhead divided by ours in the same round.
    """
    cases = [Case("peer", peer, runs), Case("floor", floor, max(200, runs * 10))]
    cases += [Case(name, engine.call, runs, fresh=engine.fresh) for name, engine in ours.items()]
    times = await rounds(cases, rounds=plan.rounds, warmup=max(2, plan.warmup_runs // 20))
    for engine in ours.values():
        await engine.close()
    row = Row(key=key, group="peers", system=system, label=label, floor="plain Python call chain", runs=runs)
    summarise(row, times["peer"], times["floor"], per=STEPS)
    floor_us = [f / STEPS * 1e6 for f in times["floor"]]
    vs: dict[str, Any] = {}
    for name in ours:
        mine = [s / STEPS * 1e6 - f for s, f in zip(times[name], floor_us, strict=True)]
        vs[name] = times_over(row, mine)
    row.extra["vs"] = vs
    return row


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


class _PayloadState(TypedDict):
    d: dict[str, Any]


def _langgraph_payload_app() -> Any:
    """The payload chain as a ``StateGraph`` of ten sync nodes; the dict is the state's one key."""
    from langgraph.graph import END, START, StateGraph

    def node(i: int) -> Callable[..., Any]:
        fn = PAYLOAD_DEF_STEPS[i]

        def step(state: _PayloadState) -> dict[str, Any]:
            return {"d": fn(state["d"])}

        step.__name__ = f"p{i}"
        return step

    graph = StateGraph(_PayloadState)
    previous = START
    for i in range(STEPS):
        graph.add_node(f"p{i}", node(i))
        graph.add_edge(previous, f"p{i}")
        previous = f"p{i}"
    graph.add_edge(previous, END)
    return graph.compile()


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
        "langgraph.memory.payload",
        "langgraph.memory.payload10k",
    ]
    if not _installed("langgraph"):
        return [skipped(k, "peers", "LangGraph", k, _INSTALL) for k in keys]
    from langgraph.checkpoint.memory import InMemorySaver

    runs = max(1, plan.peer_runs // 10)
    rows: list[Row] = []
    plain = _langgraph_app(use_async=False)
    assert plain.invoke({"x": 0})["x"] == STEPS
    async_app = _langgraph_app(use_async=True)
    saved = _langgraph_app(use_async=False, checkpointer=InMemorySaver())
    payload_app = _langgraph_payload_app()
    assert payload_app.invoke({"d": PAYLOAD})["d"]["n"] == STEPS

    async def run_async() -> None:
        await async_app.ainvoke({"x": 0})

    measured = [
        (keys[0], "StateGraph, sync nodes, invoke, no checkpointer", lambda: plain.invoke({"x": 0}), plain_sync_chain),
        (keys[1], "StateGraph, async nodes, ainvoke, no checkpointer", run_async, plain_async_chain),
        (
            keys[2],
            "StateGraph, sync nodes, InMemorySaver checkpointer",
            lambda: saved.invoke({"x": 0}, _thread()),
            plain_sync_chain,
        ),
    ]
    for key, label, call, floor in measured:
        rows.append(
            asyncio.run(
                _beside(
                    plan,
                    key=key,
                    system="LangGraph",
                    label=label,
                    peer=call,
                    floor=floor,
                    ours=_ours_engines(_OURS_INT, None),
                    runs=runs,
                )
            )
        )
    for key, value, size in ((keys[5], PAYLOAD, "0.5 KB"), (keys[6], PAYLOAD_10K, "10 KB")):

        def run_payload(value: dict[str, Any] = value) -> None:
            payload_app.invoke({"d": value})

        def floor_payload(value: dict[str, Any] = value) -> None:
            plain_payload_def_chain(value)

        rows.append(
            asyncio.run(
                _beside(
                    plan,
                    key=key,
                    system="LangGraph",
                    label=f"StateGraph, sync nodes passing a {size} dict, invoke, no checkpointer",
                    peer=run_payload,
                    floor=floor_payload,
                    ours=_ours_engines(_OURS_PAYLOAD, value),
                    runs=runs if value is PAYLOAD else max(1, runs // 4),
                )
            )
        )

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


def _burr_payload_actions() -> dict[str, Any]:
    from burr.core import State, action

    def make(i: int) -> Any:
        fn = PAYLOAD_DEF_STEPS[i]

        @action(reads=["d"], writes=["d"])
        def step(state: State[Any]) -> State[Any]:
            return state.update(d=fn(state["d"]))

        return step

    return {f"p{i}": make(i) for i in range(STEPS)}


def _burr_app(actions: dict[str, Any], persister: Any = None, *, state: dict[str, Any] | None = None) -> Any:
    from burr.core import ApplicationBuilder

    names = list(actions)
    builder: Any = (
        ApplicationBuilder()  # type: ignore[no-untyped-call]
        .with_actions(**actions)
        .with_transitions(*[(names[i], names[i + 1]) for i in range(STEPS - 1)])
        .with_state(**(state or {"x": 0}))
        .with_entrypoint(names[0])
    )
    if persister is not None:
        builder = builder.with_state_persister(persister).with_identifiers(app_id=uuid.uuid4().hex)
    return builder.build()


_LAST = [f"s{STEPS - 1}"]
_LAST_P = [f"p{STEPS - 1}"]


def burr(plan: Plan) -> list[Row]:
    """Burr ``Application``: built per run (sync, async), reused, and with ``SQLitePersister``."""
    keys = [
        "burr.memory.sync",
        "burr.memory.sync_reused",
        "burr.memory.async",
        "burr.sqlite.sync",
        "burr.memory.payload",
        "burr.memory.payload10k",
    ]
    if not _installed("burr"):
        return [skipped(k, "peers", "Burr", k, _INSTALL) for k in keys]
    from burr.core.persistence import SQLitePersister

    runs = max(1, plan.peer_runs // 10)
    rows: list[Row] = []
    sync_actions = _burr_actions(use_async=False)
    assert _burr_app(sync_actions).run(halt_after=_LAST)[2]["x"] == STEPS
    reused = _burr_app(sync_actions)

    def rerun() -> None:
        reused.reset_to_entrypoint()
        reused.update_state(reused.state.update(x=0))
        reused.run(halt_after=_LAST)

    rerun()
    assert reused.state["x"] == STEPS
    async_actions = _burr_actions(use_async=True)

    async def run_async() -> None:
        await _burr_app(async_actions).arun(halt_after=_LAST)

    measured = [
        (
            keys[0],
            "Application of 10 sync actions, built per run, in memory",
            lambda: _burr_app(sync_actions).run(halt_after=_LAST),
            plain_sync_chain,
        ),
        (
            keys[1],
            "one Application of 10 sync actions reused (reset to entrypoint), in memory",
            rerun,
            plain_sync_chain,
        ),
        (keys[2], "Application of 10 async actions, built per run, arun, in memory", run_async, plain_async_chain),
    ]
    for key, label, call, floor in measured:
        row = asyncio.run(
            _beside(
                plan,
                key=key,
                system="Burr",
                label=label,
                peer=call,
                floor=floor,
                ours=_ours_engines(_OURS_INT, None),
                runs=runs,
            )
        )
        if key == keys[1]:
            row.note = "leaves out building the application: the strictest comparison for us"
        rows.append(row)
    payload_actions = _burr_payload_actions()
    assert _burr_app(payload_actions, state={"d": PAYLOAD}).run(halt_after=_LAST_P)[2]["d"]["n"] == STEPS
    for key, value, size in ((keys[4], PAYLOAD, "0.5 KB"), (keys[5], PAYLOAD_10K, "10 KB")):

        def run_payload(value: dict[str, Any] = value) -> None:
            _burr_app(payload_actions, state={"d": value}).run(halt_after=_LAST_P)

        def floor_payload(value: dict[str, Any] = value) -> None:
            plain_payload_def_chain(value)

        rows.append(
            asyncio.run(
                _beside(
                    plan,
                    key=key,
                    system="Burr",
                    label=f"Application of 10 sync actions passing a {size} dict, built per run, in memory",
                    peer=run_payload,
                    floor=floor_payload,
                    ours=_ours_engines(_OURS_PAYLOAD, value),
                    runs=runs if value is PAYLOAD else max(1, runs // 4),
                )
            )
        )

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
