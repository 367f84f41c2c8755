"""The seeds' decorators are steps of the enclosing run, or run on a throw-away engine.

``@branch``, ``@fallback``, ``@parallel`` and ``@reduce`` awaited inside a run (a durable
function or a graph step) record steps of *that* run under deterministic keys; awaited
outside any run they run on an in-memory engine that leaves nothing behind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate import Client, RunContext, RunStatus, Step, Workflow, branch, fallback, parallel, reduce, workflow
from orchestrate.errors import DefinitionError, RunFailedError

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with Client("memory://") as client:
        yield client


@branch(on="complexity_score")
def route_query(query: str) -> str:
    calls["route_query"] += 1
    return "complex" if "interaction" in query else "simple"


def local_model(query: str) -> str:
    calls["local_model"] += 1
    return f"[local] {query}"


@fallback(strategy="model_switch", to=local_model)
def handle_complex(query: str) -> str:
    calls["handle_complex"] += 1
    return f"[hosted] {query}"


def handle_simple(query: str) -> str:
    calls["handle_simple"] += 1
    return f"[simple] {query}"


route_query.route("complex")(handle_complex)
route_query.route("simple")(handle_simple)


@parallel(max_workers=2)
def extract(path: str) -> dict[str, str]:
    calls["extract"] += 1
    return {path: path.rsplit(".", 1)[-1]}


@reduce(strategy="merge")
def merge(merged: dict[str, str]) -> list[str]:
    calls["merge"] += 1
    return sorted(merged)


async def _steps(client: Client, run_id: str) -> list[str]:
    return [s.step_key for s in (await client.detail(run_id)).steps]


# inside a durable function --------------------------------------------------------------------------


async def test_awaiting_a_branch_records_its_steps_in_the_enclosing_run(client: Client) -> None:
    @workflow(version="1")
    async def answer(ctx: RunContext, query: str) -> list[str]:
        return [await route_query(query), await route_query.run("opening hours?")]

    record = await client.run(answer, "drug interactions?")

    assert record.status is RunStatus.SUCCEEDED
    assert record.output == ["[hosted] drug interactions?", "[simple] opening hours?"]
    assert await _steps(client, record.run_id) == [
        "complexity_score",
        "handle_complex",
        "complexity_score#2",
        "handle_simple",
    ]
    assert [r.workflow for r in await client.list()] == ["answer"]  # no second run


async def test_map_and_reduce_record_steps_and_a_second_map_is_not_a_replay_of_the_first(client: Client) -> None:
    @workflow(version="1")
    async def batch(ctx: RunContext, files: list[str]) -> list[Any]:
        first = await merge(await extract.map(files))
        second = await merge(await extract.map(["z.txt"]))
        one = await extract("single.md")
        return [first, second, one]

    record = await client.run(batch, ["a.pdf", "b.jpg"])

    assert record.output == [["a.pdf", "b.jpg"], ["z.txt"], {"single.md": "md"}]
    steps = await _steps(client, record.run_id)
    # A map's children are recorded as they finish, in any order.
    assert sorted(steps[:2]) == ["extract[0]", "extract[1]"]
    assert steps[2:] == ["merge", "extract#2[0]", "merge#2", "extract"]
    assert calls["extract"] == 4 and calls["merge"] == 2
    assert len(await client.list()) == 1


async def test_a_fallback_handler_switches_inside_the_run(client: Client) -> None:
    @fallback(strategy="model_switch", to=local_model)
    def hosted(query: str) -> str:
        calls["hosted"] += 1
        raise ConnectionError("503")

    @workflow(version="1")
    async def ask(ctx: RunContext, query: str) -> str:
        answer: str = await hosted(query)
        return answer

    record = await client.run(ask, "q")

    assert record.output == "[local] q"
    (step,) = (await client.detail(record.run_id)).steps
    assert step.step_key == "hosted" and step.fallback is not None
    assert calls == Counter(hosted=1, local_model=1)


async def test_branch_run_with_a_store_inside_a_run_is_refused(client: Client) -> None:
    @workflow(version="1")
    async def elsewhere(ctx: RunContext, query: str) -> Any:
        return await route_query.run(query, state_store="memory")

    record = await client.run(elsewhere, "q")

    assert record.status is RunStatus.FAILED
    assert record.error is not None and record.error["name"] == "DefinitionError"
    assert "state_store" in record.error["message"]
    assert len(await client.list()) == 1


# inside a graph step ----------------------------------------------------------------------------------


async def test_awaited_inside_a_graph_step_it_is_a_step_of_that_run(client: Client) -> None:
    async def triage(query: str) -> str:
        answer: str = await route_query(query)
        return answer.upper()

    wf = Workflow("triage", [Step("triage", triage)], version="1")
    record = await client.run(wf, "drug interactions?")

    assert record.output == "[HOSTED] DRUG INTERACTIONS?"
    assert await _steps(client, record.run_id) == ["complexity_score", "handle_complex", "triage"]
    assert len(await client.list()) == 1


# outside any run --------------------------------------------------------------------------------------


def _files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, with no store configured (the default would be a file here)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATE_STORE", raising=False)
    return tmp_path


async def test_branch_run_outside_a_run_writes_nothing(empty_cwd: Path) -> None:
    assert await route_query.run("opening hours?") == "[simple] opening hours?"

    assert _files(empty_cwd) == []
    assert calls == Counter(route_query=1, handle_simple=1)


async def test_outside_a_run_every_decorator_runs_and_writes_nothing(empty_cwd: Path) -> None:
    assert await route_query("drug interactions?") == "[hosted] drug interactions?"
    assert await handle_complex("q") == "[hosted] q"
    assert await extract("a.pdf") == {"a.pdf": "pdf"}
    assert await merge(await extract.map(["a.pdf", "b.jpg"])) == ["a.pdf", "b.jpg"]

    assert _files(empty_cwd) == []


async def test_outside_a_run_a_failing_call_raises_and_writes_nothing(empty_cwd: Path) -> None:
    @branch(on="kind")
    def unrouted(query: str) -> str:
        return "nowhere"

    with pytest.raises(RunFailedError, match="has no handler"):
        await unrouted("q")
    assert _files(empty_cwd) == []


async def test_map_needs_a_list() -> None:
    with pytest.raises(DefinitionError, match="needs a list"):
        await extract.map("a.pdf")  # type: ignore[arg-type]
