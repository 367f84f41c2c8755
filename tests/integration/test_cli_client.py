"""``Client`` as the CLI and Python users call it: status filters and documented returns."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest

from orchestrate import Client, RunStatus, Step, Workflow
from orchestrate.errors import InvalidInputError

ok = Workflow("ok", [Step("one", lambda x: x)], version="1")
broken = Workflow("broken", [Step("one", lambda x: 1 / 0)], version="1")


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'client.db'}"


def test_list_takes_one_status_or_several(store: str) -> None:
    async def go() -> None:
        async with Client(store, workflows=[ok, broken]) as client:
            done = await client.run(ok, 1, run_id="done")
            dead = await client.run(broken, 1, run_id="dead")
            await client.start(ok, 2, run_id="later")
            assert (done.status, dead.status) == (RunStatus.SUCCEEDED, RunStatus.DEAD)

            async def ids(status: object) -> list[str]:
                return [r.run_id for r in await client.list(status=status)]  # type: ignore[arg-type]

            assert await ids("succeeded") == ["done"]
            assert await ids(RunStatus.DEAD) == ["dead"]
            assert await ids(["dead", RunStatus.SUCCEEDED]) == ["dead", "done"]
            assert await ids({"pending"}) == ["later"]
            assert await ids(s for s in ("pending", "dead")) == ["later", "dead"]
            assert await ids(None) == ["later", "dead", "done"]
            assert await ids([]) == ["later", "dead", "done"]
            with pytest.raises(InvalidInputError) as refused:
                await client.list(status="sleeping")
            valid = "pending, running, waiting, succeeded, failed, cancelled, dead"
            assert str(refused.value) == f"unknown run status 'sleeping'; use one of {valid}"
            with pytest.raises(InvalidInputError, match="unknown run status 'Dead'"):
                await client.list(status=["succeeded", "Dead"])

    asyncio.run(go())


def _public_methods() -> list[str]:
    return [name for name, _ in inspect.getmembers(Client, inspect.isfunction) if not name.startswith("_")]


@pytest.mark.parametrize("name", _public_methods())
def test_every_public_client_method_documents_what_it_returns(name: str) -> None:
    doc = inspect.getdoc(getattr(Client, name)) or ""
    assert "Returns:" in doc, f"Client.{name} does not say what it returns"
    returns = doc.split("Returns:", 1)[1].strip()
    assert returns, f"Client.{name} has an empty Returns section"
    if inspect.signature(getattr(Client, name)).return_annotation == "None":
        assert returns.startswith("Nothing"), f"Client.{name} returns None but documents {returns!r}"


def test_start_returns_the_run_id_and_run_the_final_record() -> None:
    start = inspect.getdoc(Client.start) or ""
    run = inspect.getdoc(Client.run) or ""
    assert inspect.signature(Client.start).return_annotation == "str"
    assert "The run's id" in start.split("Returns:", 1)[1]
    assert inspect.signature(Client.run).return_annotation == "RunRecord"
    assert "The run's record" in run.split("Returns:", 1)[1]
