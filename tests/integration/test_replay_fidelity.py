"""A step receives equal values of equal types on the first drive and after a crash.

Property-based: hypothesis draws workflows (graph and durable function) whose steps
return values of many shapes (JSON data, dataclasses and pydantic models with and without
a return annotation, int-keyed dicts, tuples, datetimes, decimals, UUIDs, enums, model
results), crashes the run at a drawn step (an exception no ``except Exception`` catches,
leaving the run ``running`` in the store, as a killed process would) or parks it after
that step (on a review gate, or ``ctx.wait``), resumes it with a fresh engine on the same
store, and compares what every step received, and every route
taken, with an uninterrupted run of the same workflow. On SQLite files and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import itertools
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from orchestrate import Branch, Client, Engine, HumanReviewGate, RunStatus, Step, Workflow, workflow
from orchestrate.models import ModelResult, Usage
from orchestrate.store import open_store
from tests.postgres import in_schema


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: int
    y: float
    label: str


@dataclasses.dataclass
class Box:
    corner: Point
    tags: tuple[str, ...]
    when: dt.datetime
    seen: dict[int, str]


class Invoice(BaseModel):
    id: uuid.UUID
    total: Decimal
    lines: list[Point]
    color: Color


# values and what declares them -------------------------------------------------------------------

texts = st.text(max_size=8)
ints = st.integers(min_value=-(2**40), max_value=2**40)
floats = st.floats(allow_nan=False, allow_infinity=False, width=32)
times = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC))
json_data = st.recursive(
    st.none() | st.booleans() | ints | floats | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
points = st.builds(Point, ints, floats, texts)
boxes = st.builds(Box, points, st.lists(texts, max_size=3).map(tuple), times, st.dictionaries(ints, texts, max_size=3))
invoices = st.builds(
    Invoice,
    id=st.uuids(),
    total=st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-(10**6), max_value=10**6),
    lines=st.lists(points, max_size=2),
    color=st.sampled_from(Color),
)
model_results = st.builds(
    ModelResult,
    text=texts,
    model=st.sampled_from(["gemma", "gpt"]),
    usage=st.builds(Usage, st.integers(0, 999), st.integers(0, 999)),
    latency_s=st.floats(0, 10),
    meta=st.dictionaries(texts, ints, max_size=2),
)

# (return annotation or None, value)
shaped = st.one_of(
    st.tuples(st.none(), json_data),
    st.tuples(st.none(), points),
    st.tuples(st.none(), boxes),
    st.tuples(st.just(Box), boxes),
    st.tuples(st.none(), invoices),
    st.tuples(st.just(Invoice), invoices),
    st.tuples(st.just(dict[int, str]), st.dictionaries(ints, texts, max_size=3)),
    st.tuples(st.just(tuple[int, str, dt.datetime]), st.tuples(ints, texts, times)),
    st.tuples(st.just(list[Point]), st.lists(points, max_size=3)),
    st.tuples(st.just(dict[str, Invoice]), st.dictionaries(texts, invoices, max_size=2)),
    st.tuples(st.just(Decimal), st.decimals(allow_nan=False, allow_infinity=False, places=3)),
    st.tuples(st.just(uuid.UUID), st.uuids()),
    st.tuples(st.just(dt.datetime), times),
    st.tuples(st.just(Color), st.sampled_from(Color)),
    st.tuples(st.none(), model_results),
    st.tuples(st.just(ModelResult), model_results),
)


def shape(value: Any) -> Any:
    """The value's types, deeply: equal shapes and equal values mean the same value."""
    if isinstance(value, dict):
        return ("dict", tuple((shape(k), shape(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(shape(v) for v in value))
    if dataclasses.is_dataclass(value):
        return (type(value).__name__, tuple(shape(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, BaseModel):
        return (type(value).__name__, tuple(shape(getattr(value, k)) for k in type(value).model_fields))
    return type(value).__name__


class Crash(BaseException):
    """What a killed process looks like to the run: nothing after this point happens."""


@dataclasses.dataclass
class Trace:
    """What the steps of one run saw."""

    received: dict[int, list[tuple[Any, Any]]] = dataclasses.field(default_factory=dict)
    routes: list[str] = dataclasses.field(default_factory=list)
    crash_at: int | None = None


def make_step(i: int, annotation: Any, value: Any, trace: Callable[[], Trace]) -> Callable[..., Any]:
    async def step(previous: Any) -> Any:
        current = trace()
        current.received.setdefault(i, []).append((shape(previous), previous))
        if current.crash_at == i:
            current.crash_at = None  # crash once, on the first drive
            raise Crash
        return value

    step.__name__ = f"s{i}"
    step.__qualname__ = f"s{i}"
    step.__annotations__ = {"previous": "Any", "return": annotation} if annotation is not None else {}
    return step


_names = itertools.count()


def build(kind: str, values: list[tuple[Any, Any]], trace: Callable[[], Trace], park_at: int | None = None) -> Any:
    """The workflow; with ``park_at`` it parks after that step (a review gate on the step in a
    graph, ``ctx.wait`` in a durable function) until a person or a signal lets it go on."""
    steps = [make_step(i, annotation, value, trace) for i, (annotation, value) in enumerate(values)]
    name = f"fidelity_{kind}_{next(_names)}"

    def route_on(value: Any) -> str:
        decided = f"{shape(value)}={value!r}"
        trace().routes.append(decided)
        return decided

    if kind == "graph":
        nodes: list[Any] = []
        for i, fn in enumerate(steps):
            nodes.append(Step(f"s{i}", fn, gate=HumanReviewGate() if i == park_at else None))
            nodes.append(Branch(route_on, {"never": []}, default=[], name=f"b{i}"))
        return Workflow(name, nodes, version="1")

    async def flow(ctx: Any, value: Any) -> Any:
        for i, fn in enumerate(steps):
            value = await ctx.step(fn, value)
            if i == park_at:
                await ctx.wait("go")
            route_on(value)
        return "done"

    return workflow(flow, name=name, version="1")


async def drive(url: str, values: list[tuple[Any, Any]], kind: str, crash_at: int | None) -> Trace:
    """Run once uninterrupted (``crash_at`` None) or crash at a step and resume."""
    trace = Trace(crash_at=crash_at)
    wf = build(kind, values, lambda: trace)
    store = open_store(url)
    first = Engine(store, workflows=[wf])
    run_id = uuid.uuid4().hex
    try:
        record = await first.run_record(wf, {"start": 1}, run_id=run_id)
        assert crash_at is None, "the run should have crashed"
        assert record.status is RunStatus.SUCCEEDED, record.error
        return trace
    except Crash:
        pass
    finally:
        await first.close()
    second = Engine(open_store(url), workflows=[wf])
    try:
        resumed = await second.execute(run_id, force=True)
        assert resumed is not None and resumed.status is RunStatus.SUCCEEDED, resumed and resumed.error
    finally:
        await second.close()
    return trace


async def park_and_resume(url: str, values: list[tuple[Any, Any]], kind: str, park_at: int) -> Trace:
    """Run until the run parks after step ``park_at``; let it go on from another engine."""
    trace = Trace()
    wf = build(kind, values, lambda: trace, park_at)
    async with Client(url, workflows=[wf]) as first:
        parked = await first.run(wf, {"start": 1})
        assert parked.status is RunStatus.WAITING, parked.error
    async with Client(url, workflows=[wf]) as second:
        if kind == "graph":
            (item,) = await second.list_reviews(run_id=parked.run_id)
            await second.approve(item.review_id, by="reviewer")
        else:
            await second.signal(parked.run_id, "go", True)
        done = await second.resume(parked.run_id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    return trace


def check_same(url: str, kind: str, values: list[tuple[Any, Any]], crash_at: int, *, park: bool = False) -> None:
    reference = asyncio.run(drive(url, values, kind, None))
    if park:
        crashed = asyncio.run(park_and_resume(url, values, kind, crash_at))
    else:
        crashed = asyncio.run(drive(url, values, kind, crash_at))
    for i, seen in crashed.received.items():
        expected_shape, expected = reference.received[i][0]
        for got_shape, got in seen:
            assert got_shape == expected_shape, f"step s{i} got {got_shape}, uninterrupted {expected_shape}"
            assert got == expected, f"step s{i} got {got!r}, uninterrupted {expected!r}"
    # Every route decided (before the crash, replayed, and after) is the uninterrupted one.
    assert set(crashed.routes) <= set(reference.routes)
    assert crashed.routes[-len(reference.routes) :] == reference.routes


workflows = st.lists(shaped, min_size=1, max_size=4).flatmap(
    lambda values: st.tuples(
        st.just(values),
        st.integers(0, len(values) - 1),
        st.sampled_from(["graph", "durable"]),
        st.sampled_from(["crash", "park"]),
    )
)

FIDELITY = settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fidelity.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from in_schema()


@given(workflows)
@FIDELITY
def test_sqlite_steps_see_the_same_values_after_a_crash_or_a_park(sqlite_url: str, drawn: Any) -> None:
    values, at, kind, interruption = drawn
    check_same(sqlite_url, kind, values, at, park=interruption == "park")


@given(workflows)
@FIDELITY
def test_postgres_steps_see_the_same_values_after_a_crash_or_a_park(postgres_url: str, drawn: Any) -> None:
    values, at, kind, interruption = drawn
    check_same(postgres_url, kind, values, at, park=interruption == "park")


@given(workflows)
@settings(max_examples=25, deadline=None)
def test_memory_hands_steps_what_a_durable_store_would(drawn: Any) -> None:
    values, _, kind, _ = drawn
    in_memory = asyncio.run(drive("memory://", values, kind, None))
    # What the durable store hands a resumed run is the reference for every store.
    for i, seen in in_memory.received.items():
        if i == 0:
            continue
        annotation, value = values[i - 1]
        assert seen[0][0] == shape(_revived(annotation, value)), f"step s{i}"


def _revived(annotation: Any, value: Any) -> Any:
    from pydantic import TypeAdapter

    if annotation is None and (dataclasses.is_dataclass(value) or isinstance(value, BaseModel)):
        annotation = type(value)
    if annotation is None:
        return value
    adapter = TypeAdapter(annotation)
    return adapter.validate_python(adapter.dump_python(value, mode="json"))
