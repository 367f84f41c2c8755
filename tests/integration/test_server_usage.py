"""``GET /api/v1/usage``: model tokens and cost summed by the database, equal to reading every step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrate import Client, Step, Workflow
from orchestrate.server import ServerSettings, create_app
from orchestrate.server.app import _usage_scanned
from orchestrate.testing import FakeModel
from tests.postgres import in_schema

MODEL = FakeModel(["a short answer"] * 50)


async def ask(question: Any) -> Any:
    return await MODEL.chat(f"answer briefly: {question}")  # a model result: the step records its usage


async def ask_again(answer: Any) -> Any:
    return await MODEL.chat(f"check this answer: {answer.text}")


def plain(value: Any) -> Any:
    return value


ASK = Workflow("ask", [Step("ask", ask), Step("again", ask_again)])
PLAIN = Workflow("plain", [Step("plain", plain)])


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'usage.db'}"
    else:
        yield from in_schema()


async def test_usage_sums_every_model_call_of_the_newest_runs(store_url: str) -> None:
    client = Client(store_url, workflows=[ASK, PLAIN])
    await client.engine.open()
    try:
        for i in range(3):
            assert (await client.run(ASK, f"q{i}")).status.value == "succeeded"
        await client.run(PLAIN, 1)
        app = create_app(client, settings=ServerSettings(auth=False))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
            got = await http.get("/api/v1/usage")
            assert got.status_code == 200, got.text
            usage = got.json()
            only = (await http.get("/api/v1/usage", params={"workflow": "ask", "limit": 2})).json()
        runs, rows = await _usage_scanned(client, workflow=None, since=None, limit=1000)
        assert usage["runs"] == 4 == sum(runs.values())
        assert usage["by_workflow"]["plain"] == {"runs": 1, "tokens_in": 0, "tokens_out": 0, "cost": 0.0}
        assert usage["by_workflow"]["ask"]["runs"] == 3
        assert usage["tokens_in"] == sum(int(r[2]) for r in rows) > 0
        assert usage["tokens_out"] == sum(int(r[3]) for r in rows) > 0
        assert list(usage["by_model"]) == sorted({r[1] for r in rows})
        # The newest two runs of one workflow: two thirds of its calls.
        assert only["runs"] == 2
        assert only["tokens_in"] * 3 == usage["tokens_in"] * 2
    finally:
        await client.engine.close()
