"""Dashboard sessions kept in the store; the audit trail append-only on SQLite too.

Two apps over one SQLite file or PostgreSQL schema stand for a restarted server or two
server processes behind one dashboard.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from orchestrate import Client
from orchestrate.server import ServerSettings, create_app, create_token, revoke_token
from orchestrate.server._auth import SESSION_COOKIE
from orchestrate.store._access import token_hash
from orchestrate.store._access_sql import access_for
from tests.postgres import in_schema


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sessions.db'}"
    else:
        yield from in_schema()


@pytest.fixture
async def clients(store_url: str) -> AsyncIterator[tuple[Client, Client]]:
    first, second = Client(store_url), Client(store_url)
    await first.engine.open()
    await second.engine.open()
    try:
        yield first, second
    finally:
        await first.engine.close()
        await second.engine.close()


def _http(client: Client) -> httpx.AsyncClient:
    app = create_app(client, settings=ServerSettings())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def test_a_session_outlives_its_server_and_is_served_by_another(clients: tuple[Client, Client]) -> None:
    first, second = clients
    token, record = await create_token(first.store, name="rae", roles=["operator"])
    async with _http(first) as a, _http(second) as b:
        opened = await a.post("/api/v1/session", json={"token": token})
        assert opened.status_code == 200
        cookie = opened.cookies[SESSION_COOKIE]
        csrf = opened.json()["csrf"]
        # Only the cookie's hash is stored, beside the CSRF token the session hands out.
        stored = await access_for(first.store).session_by_hash(token_hash(cookie))
        assert stored is not None and stored.csrf == csrf and stored.name == "rae"
        assert cookie not in repr(stored)
        jar = {SESSION_COOKIE: cookie}
        b.cookies.update(jar)
        seen = await b.get("/api/v1/session")
        assert (seen.status_code, seen.json()["principal"], seen.json()["csrf"]) == (200, "rae", csrf)
        # The other process checks the CSRF token of the same session.
        forged = await b.delete("/api/v1/session")
        assert forged.status_code == 403
        closed = await b.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
        assert closed.status_code == 204
        a.cookies.update(jar)
        assert (await a.get("/api/v1/session")).status_code == 401
        # Revoking the token ends a session opened with it, in every process.
        again = await a.post("/api/v1/session", json={"token": token})
        b.cookies.update({SESSION_COOKIE: again.cookies[SESSION_COOKIE]})
        assert (await b.get("/api/v1/session")).status_code == 200
        await revoke_token(first.store, record.token_id)
        assert (await b.get("/api/v1/session")).status_code == 401


async def test_expired_sessions_are_refused_and_swept(clients: tuple[Client, Client]) -> None:
    first, _ = clients
    access = access_for(first.store)
    token, _ = await create_token(first.store, name="rae", roles=["viewer"])
    app = create_app(first, settings=ServerSettings(session_seconds=60))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
        cookie = (await http.post("/api/v1/session", json={"token": token})).cookies[SESSION_COOKIE]
    session = app.state.orchestrate.sessions
    found = await session.find(cookie, now=0.0)
    assert found is not None
    assert await session.find(cookie, now=found.expires_at) is None
    assert await access.delete_expired_sessions(found.expires_at) == 1
    assert await access.session_by_hash(token_hash(cookie)) is None


async def test_the_sqlite_audit_trail_refuses_update_and_delete(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    client = Client(f"sqlite:///{path}")
    await client.engine.open()
    try:
        token, _ = await create_token(client.store, name="rae", roles=["viewer"])
        app = create_app(client, settings=ServerSettings())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
            await http.post("/api/v1/session", json={"token": token})
        trail = await access_for(client.store).list_audit()
        assert [e.action for e in trail] == ["session.open"]
    finally:
        await client.engine.close()
    with sqlite3.connect(path) as conn:
        for statement in ("UPDATE orchestrate_audit SET principal = 'x'", "DELETE FROM orchestrate_audit"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT principal FROM orchestrate_audit").fetchall() == [("rae",)]
