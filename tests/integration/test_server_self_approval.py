"""Self-approval per gate: ``HumanReviewGate(allow_self_approval=...)`` over the server's setting.

Through the HTTP API (the starter is the token's principal) and through
``Client.approve`` (the embedded path, where ``by`` names the reviewer), on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrate import Client, Step, Workflow
from orchestrate.errors import DefinitionError, ReviewPermissionError
from orchestrate.review import HumanReviewGate
from orchestrate.server import ServerSettings, create_app, create_token
from tests.postgres import in_schema


def draft(text: Any) -> dict[str, Any]:
    return {"text": str(text)}


def flow(name: str, allow: bool | None) -> Workflow:
    return Workflow(name, [Step("draft", draft, gate=HumanReviewGate(roles=["editor"], allow_self_approval=allow))])


STRICT, OPEN, DEFAULT = flow("strict", False), flow("open", True), flow("default", None)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'self.db'}"
    else:
        yield from in_schema()


async def _own_review(http: httpx.AsyncClient, client: Client, workflow: str, headers: dict[str, str]) -> str:
    started = await http.post("/api/v1/runs", json={"workflow": workflow, "input": "mine"}, headers=headers)
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    await client.resume(run_id)
    return (await client.list_reviews(run_id=run_id))[0].review_id


@pytest.mark.parametrize("server_allows", [False, True])
async def test_the_gate_decides_over_the_server_setting(store_url: str, server_allows: bool) -> None:
    client = Client(store_url, workflows=[STRICT, OPEN, DEFAULT])
    await client.engine.open()
    try:
        app = create_app(client, settings=ServerSettings(self_approval=server_allows))
        token, _ = await create_token(client.store, name="sam", roles=["operator", "editor"])
        sam = {"Authorization": f"Bearer {token}"}
        outcome = {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
            for workflow in ("strict", "open", "default"):
                review_id = await _own_review(http, client, workflow, sam)
                answer = await http.post(f"/api/v1/reviews/{review_id}/approve", headers=sam)
                outcome[workflow] = answer.status_code
                if answer.status_code == 403:
                    assert "may not approve" in answer.json()["detail"]
        assert outcome == {"strict": 403, "open": 200, "default": 200 if server_allows else 403}
    finally:
        await client.engine.close()


async def test_client_approve_refuses_the_starter_when_the_gate_forbids_it(store_url: str) -> None:
    client = Client(store_url, workflows=[STRICT, OPEN])
    await client.engine.open()
    try:
        strict = await client.run(STRICT, "x", options={"started_by": "sam"})
        item = (await client.list_reviews(run_id=strict.run_id))[0]
        with pytest.raises(ReviewPermissionError, match="sam started the run and may not approve"):
            await client.approve(item.review_id, by="sam", role="editor")
        with pytest.raises(ReviewPermissionError):
            await client.edit(item.review_id, {"text": "mine"}, by="sam", role="editor")
        assert (await client.approve(item.review_id, by="kim", role="editor")).status.value == "approved"
        # A gate that allows it, or a run that records no starter, lets the same person approve.
        allowed = await client.run(OPEN, "x", options={"started_by": "sam"})
        item = (await client.list_reviews(run_id=allowed.run_id))[0]
        assert (await client.approve(item.review_id, by="sam", role="editor")).status.value == "approved"
        anonymous = await client.run(STRICT, "y")
        item = (await client.list_reviews(run_id=anonymous.run_id))[0]
        assert (await client.approve(item.review_id, by="sam", role="editor")).status.value == "approved"
    finally:
        await client.engine.close()


def test_the_option_is_a_bool_or_none() -> None:
    with pytest.raises(DefinitionError, match="allow_self_approval must be a bool or None"):
        HumanReviewGate(allow_self_approval="no")  # type: ignore[arg-type]
