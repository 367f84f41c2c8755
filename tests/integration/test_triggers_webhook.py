"""Webhooks through a bare Starlette app and httpx.ASGITransport, on SQLite: signature,
replay window, size limit, idempotency key, poison bodies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from orchestrate import Client, Engine, RunStatus
from orchestrate.errors import InvalidInputError
from orchestrate.models import Secret
from orchestrate.store import open_store
from orchestrate.testing import FakeClock
from orchestrate.triggers import WebhookTrigger, event_run_id, webhook_routes
from tests.acceptance.trigger_app import orders

SECRET = "whsec-0123456789abcdef"
HOOK = WebhookTrigger("uploads", workflow=orders, secret=Secret(SECRET, name="uploads_hook"), max_bytes=256)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Client, FakeClock]]:
    clock = FakeClock()
    client = Client(engine=Engine(open_store(f"sqlite:///{tmp_path}/runs.db"), workflows=[orders], clock=clock))
    async with client:
        app = Starlette(routes=webhook_routes(client, [HOOK]))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            yield http, client, clock


def _body(amount: object = 3) -> bytes:
    return json.dumps({"order_id": "o1", "amount": amount}).encode()


async def test_a_signed_request_starts_one_run_per_idempotency_key(setup) -> None:
    http, client, clock = setup
    body = _body()
    first = await http.post(
        "/hooks/uploads", content=body, headers=HOOK.headers(body, key="evt-1", timestamp=clock.now())
    )
    assert first.status_code == 202
    assert first.json() == {"run_id": event_run_id("uploads", "evt-1"), "status": "created"}
    clock.advance(30)  # the sender retries later, signing again
    again = await http.post(
        "/hooks/uploads", content=body, headers=HOOK.headers(body, key="evt-1", timestamp=clock.now())
    )
    assert again.status_code == 200 and again.json() == {"run_id": first.json()["run_id"], "status": "duplicate"}
    other = await http.post(
        "/hooks/uploads", content=body, headers=HOOK.headers(body, key="evt-2", timestamp=clock.now())
    )
    assert other.status_code == 202
    runs = await client.list()
    assert len(runs) == 2 and {r.status for r in runs} == {RunStatus.PENDING}
    assert {r.options["trigger"]["key"] for r in runs} == {"evt-1", "evt-2"}


@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        ("body", "does not match"),
        ("signature", "does not match"),
        ("other secret", "does not match"),
        ("no signature", "does not match"),
        ("no timestamp", "missing or malformed"),
        ("old", "replay window"),
        ("future", "replay window"),
    ],
)
async def test_unsigned_tampered_or_stale_requests_are_refused(setup, tamper: str, detail: str) -> None:
    http, client, clock = setup
    body = _body()
    stamp = clock.now() + {"old": -301, "future": 301}.get(tamper, 0)
    headers = HOOK.headers(body, key="evt-1", timestamp=stamp)
    if tamper == "body":
        body = _body(4)
    elif tamper == "signature":
        headers["X-Orchestrate-Signature"] = headers["X-Orchestrate-Signature"][:-1] + "0"
    elif tamper == "other secret":
        forger = WebhookTrigger("uploads", workflow=orders, secret="not-the-secret-at-all")
        headers["X-Orchestrate-Signature"] = forger.signature(body, headers["X-Orchestrate-Timestamp"])
    elif tamper == "no signature":
        del headers["X-Orchestrate-Signature"]
    elif tamper == "no timestamp":
        del headers["X-Orchestrate-Timestamp"]
    response = await http.post("/hooks/uploads", content=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"] and SECRET not in response.text
    assert await client.list() == []


async def test_the_replay_window_admits_a_sender_slightly_ahead_or_behind(setup) -> None:
    http, _client, clock = setup
    for offset, key in ((-299, "behind"), (299, "ahead")):
        body = _body()
        headers = HOOK.headers(body, key=key, timestamp=clock.now() + offset)
        assert (await http.post("/hooks/uploads", content=body, headers=headers)).status_code == 202


async def test_oversized_bodies_are_refused_before_they_are_read(setup) -> None:
    http, client, clock = setup
    body = json.dumps({"order_id": "o" * 300, "amount": 1}).encode()
    headers = HOOK.headers(body, key="big", timestamp=clock.now())
    assert (await http.post("/hooks/uploads", content=body, headers=headers)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(10):
            yield b"x" * 64

    streamed = await http.post("/hooks/uploads", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert await client.list() == []


async def test_a_missing_idempotency_key_is_refused(setup) -> None:
    http, client, clock = setup
    body = _body()
    headers = HOOK.headers(body, key="x", timestamp=clock.now())
    del headers["Idempotency-Key"]
    response = await http.post("/hooks/uploads", content=body, headers=headers)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["detail"]
    assert await client.list() == []


async def test_a_body_the_workflow_refuses_is_a_dead_run_and_stays_refused(setup) -> None:
    http, client, clock = setup
    for attempt in range(2):
        body = _body("lots")
        response = await http.post(
            "/hooks/uploads", content=body, headers=HOOK.headers(body, key="bad", timestamp=clock.now())
        )
        assert response.status_code == 422, attempt
    (dead,) = await client.dead_letters()
    assert dead.run_id == event_run_id("uploads", "bad") and dead.error["reason"] == "poison"
    assert dead.input == {"order_id": "o1", "amount": "lots"}


def test_a_short_secret_or_a_duplicate_route_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="at least 16 characters"):
        WebhookTrigger("x", workflow=orders, secret="short")
    with pytest.raises(InvalidInputError, match="unique"):
        webhook_routes(Client(f"sqlite:///{tmp_path}/runs.db"), [HOOK, HOOK])
