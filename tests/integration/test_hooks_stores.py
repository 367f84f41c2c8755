"""The hooks seam on real stores: each event reported once, on a SQLite file and on PostgreSQL.

A run with a retry, a fallback, a model call and a review gate is started by one engine,
approved through the client, and finished by a second engine on its own connection (as
another process would): the second reports only what it did, never the replayed steps.
PostgreSQL is the one named by ``ORCHESTRATE_TEST_POSTGRES`` (default: the local one), in
a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from orchestrate.store import open_store
from tests.unit.test_hooks import check_support_events, run_support_scenario

PG = os.environ.get("ORCHESTRATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/orchestrate_test")


def _pg_ready() -> str:
    parts = urlsplit(PG)
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    name = parts.path.lstrip("/")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except psycopg.errors.DuplicateDatabase:
                    pass
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG} is not reachable ({exc}); start it with `make services`")
    return PG


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hooks.db'}"
        return
    url = _pg_ready()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield f"{url}{'&' if urlsplit(url).query else '?'}schema={schema}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def test_every_hook_fires_once_per_event_on_a_real_store(store_url: str) -> None:
    first, second, run_id = await run_support_scenario(lambda: open_store(store_url))
    check_support_events(first, second, run_id)
