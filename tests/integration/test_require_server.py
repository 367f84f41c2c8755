"""A store that requires the server: the CLI and the client are refused review decisions, the API is not.

On SQLite and PostgreSQL, through the real command line (click's runner) and the real app
(``httpx.ASGITransport``) over the same store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from orchestrate import Client, Step, Workflow
from orchestrate.cli import cli
from orchestrate.errors import ReviewPermissionError, ServerRequiredError
from orchestrate.review import APPROVERS, HumanReviewGate
from orchestrate.server import ServerSettings, create_app, create_token
from orchestrate.server.tokens import require_server, server_requirement
from orchestrate.store._access_sql import access_for
from tests.postgres import in_schema

APP = """
from orchestrate import Step, Workflow
from orchestrate.review import HumanReviewGate

reply = Workflow(
    "reply",
    [
        Step("draft", lambda text: {"text": "draft for " + text}, gate=HumanReviewGate(roles=["editor"])),
        Step("send", lambda reply: {"sent": reply["text"]}),
    ],
)
"""

REPLY = Workflow(
    "reply",
    [
        Step("draft", lambda text: {"text": "draft for " + text}, gate=HumanReviewGate(roles=["editor"])),
        Step("send", lambda reply: {"sent": reply["text"]}),
    ],
)


@pytest.fixture(autouse=True)
def _no_approval_checks_from_elsewhere() -> Iterator[None]:
    saved = dict(APPROVERS)
    APPROVERS.clear()
    yield
    APPROVERS.clear()
    APPROVERS.update(saved)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gate.db'}"
    else:
        yield from in_schema()


@pytest.fixture
def app(tmp_path: Path) -> str:
    path = tmp_path / "reply_app.py"
    path.write_text(APP)
    return f"{path}:reply"


def invoke(store: str, *args: str) -> Result:
    env = {"ORCHESTRATE_STORE": store, "COLUMNS": "200", "ORCHESTRATE_USER": "ops_lead"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def park(store: str, app: str, text: str) -> tuple[str, str]:
    """A run of ``reply`` waiting at its gate: ``(run_id, review_id)``."""
    result = invoke(store, "run", app, "--input", json.dumps(text))
    assert result.exit_code == 3, result.output
    items = json.loads(invoke(store, "reviews", "list", "--json").stdout)
    found = next(i for i in items if i["payload"]["text"] == f"draft for {text}")
    return found["run_id"], found["review_id"]


def refused_in_one_line(result: Result) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "requires the server" in lines[0]
    assert "decide through orchestrate serve with a reviewer token" in lines[0]
    assert "Traceback" not in result.output


async def _approve_over_http(store: str, review_id: str) -> httpx.Response:
    client = Client(store, workflows=[REPLY])
    await client.engine.open()
    try:
        token, _ = await create_token(client.store, name="dr_ada", roles=["editor"])
        app = create_app(client, settings=ServerSettings(stream_seconds=0.3))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.post(
                f"/api/v1/reviews/{review_id}/approve",
                json={"comment": "fine"},
                headers={"Authorization": f"Bearer {token}"},
            )
    finally:
        await client.engine.close()


async def _audit(store: str) -> list[tuple[str, str, str | None]]:
    client = Client(store)
    await client.engine.open()
    try:
        return [(e.principal, e.action, e.target) for e in await access_for(client.store).list_audit()]
    finally:
        await client.engine.close()


def test_the_cli_is_refused_the_api_still_decides_and_off_restores_the_cli(store: str, app: str) -> None:
    run_id, review_id = park(store, app, "a")
    shown = invoke(store, "tokens", "require-server")
    assert shown.exit_code == 0 and "require-server: off" in shown.stdout

    turned = invoke(store, "tokens", "require-server", "on")
    assert turned.exit_code == 0, turned.output
    assert "require-server: on (set by local:ops_lead" in turned.stdout
    assert json.loads(invoke(store, "tokens", "require-server", "--json").stdout)["require_server"] is True

    refused_in_one_line(invoke(store, "reviews", "approve", review_id, "--role", "editor", "--by", "mallory"))
    refused_in_one_line(invoke(store, "reviews", "reject", review_id, "--role", "editor", "--reason", "no"))
    edited = json.dumps({"text": "forged"})
    refused_in_one_line(invoke(store, "reviews", "edit", review_id, "--payload", edited, "--role", "editor"))
    refused_in_one_line(invoke(store, "signal", run_id, "review:draft", "--value", '{"approved": true}'))
    # Nothing was decided by the refused commands.
    item = json.loads(invoke(store, "reviews", "show", review_id, "--json").stdout)
    assert item["status"] == "pending" and item["approvals"] == []
    # Other signals are no review decision: they still pass.
    assert invoke(store, "signal", run_id, "poke", "--value", "1").exit_code == 0

    # The server decides for the token's principal, in the token's role.
    approved = asyncio.run(_approve_over_http(store, review_id))
    assert approved.status_code == 200, approved.text
    assert approved.json()["approvals"][0]["by"] == "dr_ada"
    assert approved.json()["approvals"][0]["role"] == "editor"

    _, second = park(store, app, "b")
    refused_in_one_line(invoke(store, "reviews", "approve", second, "--role", "editor"))
    off = invoke(store, "tokens", "require-server", "off")
    assert off.exit_code == 0 and "require-server: off (set by local:ops_lead" in off.stdout
    again = invoke(store, "reviews", "approve", second, "--role", "editor", "--resume", "--app", app)
    assert again.exit_code == 0, again.output

    audit = asyncio.run(_audit(store))
    changes = [(who, target) for who, action, target in audit if action == "settings.require_server"]
    assert changes == [("local:ops_lead", "on"), ("local:ops_lead", "off")]
    assert ("dr_ada", "review.approve", review_id) in audit


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
async def test_the_client_is_refused_every_review_decision_while_on(url: str, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'client.db'}" if url == "sqlite" else url
    async with Client(store_url, workflows=[REPLY]) as client:
        run = await client.run(REPLY, "c")
        (item,) = await client.list_reviews(run_id=run.run_id)
        assert not (await server_requirement(client.store)).on
        setting = await require_server(client.store, True, by="admin_ana")
        assert setting.on and setting.by == "admin_ana"
        attempts: list[Any] = [
            client.approve(item.review_id, by="x", role="editor"),
            client.reject(item.review_id, by="x", reason="no", role="editor"),
            client.edit(item.review_id, {"text": "y"}, by="x", role="editor"),
            client.decide(run.run_id, "draft", approved=True, by="x"),
            client.signal(run.run_id, "review:draft", {"approved": True}, by="x"),
        ]
        for attempt in attempts:
            with pytest.raises(ServerRequiredError, match="requires the server") as info:
                await attempt
            assert isinstance(info.value, ReviewPermissionError)  # a 403 wherever it surfaces
        await require_server(client.store, False, by="admin_ana")
        await client.approve(item.review_id, by="x", role="editor")
        assert (await client.resume(run.run_id)).output == {"sent": "draft for c"}


async def test_a_server_without_auth_does_not_count_as_the_server(tmp_path: Path) -> None:
    async with Client(f"sqlite:///{tmp_path / 'open.db'}", workflows=[REPLY]) as client:
        run = await client.run(REPLY, "d")
        (item,) = await client.list_reviews(run_id=run.run_id)
        await require_server(client.store, True, by="admin_ana")
        app = create_app(client, settings=ServerSettings(auth=False, stream_seconds=0.3))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            answer = await http.post(f"/api/v1/reviews/{item.review_id}/approve", json={})
        assert answer.status_code == 403
        assert "requires the server" in answer.json()["detail"]
        assert answer.json()["type"] == "urn:orchestrate:problem:ServerRequiredError"
