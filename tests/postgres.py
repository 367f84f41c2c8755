"""The PostgreSQL the tests use: ``ORCHESTRATE_TEST_POSTGRES`` (default: the local server,
database ``orchestrate_test``, created when missing), a fresh schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

PG = os.environ.get("ORCHESTRATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/orchestrate_test")


def pg_ready() -> str:
    """The test database's URL, the database created if missing; a clear failure when the server is down."""
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


def in_schema(schema: str | None = None) -> Iterator[str]:
    """A store URL in a fresh schema of the test database (yielded), dropped afterwards."""
    url = pg_ready()
    schema = schema or f"t_{uuid.uuid4().hex[:16]}"
    yield f"{url}{'&' if urlsplit(url).query else '?'}schema={schema}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
