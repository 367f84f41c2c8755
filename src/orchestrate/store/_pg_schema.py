"""The PostgreSQL store's schema: its version, and migrations under an advisory lock.

Migrations are the shared, ordered statements of :data:`orchestrate.store._sql.MIGRATIONS`
(with PostgreSQL's types) followed by this backend's own for the same version
(:data:`orchestrate.store._pg_sql.EXTRA_MIGRATIONS`: triggers, indexes); a new schema
version adds its statements there and bumps :data:`~orchestrate.store.base.SCHEMA_VERSION`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from psycopg import sql as pgsql

from orchestrate.errors import SchemaVersionError, StoreAccessError
from orchestrate.observe import get_logger
from orchestrate.store import _pg_sql as q
from orchestrate.store import _sql
from orchestrate.store.base import SCHEMA_VERSION

log = get_logger()


async def read_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """The recorded schema version (0: no orchestrate tables in the search path)."""
    row = await (await conn.execute("SELECT to_regclass('orchestrate_meta') IS NOT NULL")).fetchone()
    if not row or not row[0]:
        return 0
    found = await (await conn.execute(_sql.GET_VERSION)).fetchone()
    return 0 if found is None else int(found[0])


async def migrate(
    conn: psycopg.AsyncConnection[Any],
    *,
    schema: str,
    create_schema: bool,
    where: str,
    read_only: bool,
    allowed: bool,
) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`, or refuse.

    Args:
        conn: an autocommit connection whose search path is ``schema``.
        schema: the schema holding the tables (names the advisory lock).
        create_schema: create ``schema`` if it is missing.
        where: the store, as errors name it.
        read_only: refuse an older or missing schema instead of migrating it.
        allowed: migrate an older schema (``False``: refuse it, as ``migrate=false`` asks).

    Raises:
        SchemaVersionError: the schema is newer than this code, or older and not to be migrated.
        StoreAccessError: ``read_only`` and no orchestrate tables.
    """
    current = await read_version(conn)
    current = await read_version(conn)
    if current == SCHEMA_VERSION:
        return
    if current > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where} has schema version {current}, newer than this orchestrate understands "
            f"({SCHEMA_VERSION}); upgrade orchestrate on this machine"
        )
    if read_only:
        if current == 0:
            raise StoreAccessError(
                f"no orchestrate tables in {where}: check the store URL (database, ?schema=); "
                "a read command creates nothing"
            )
        raise SchemaVersionError(
            f"{where} has schema version {current}, older than this orchestrate ({SCHEMA_VERSION}), "
            "and a read command does not migrate it: run `orchestrate migrate --store URL` (or start a "
            "worker) first"
        )
    if not allowed:
        raise SchemaVersionError(
            f"{where} has schema version {current}, older than this orchestrate needs "
            f"({SCHEMA_VERSION}), and this process does not migrate (migrate=false); run the migration "
            "(open the store once with migrate=true, e.g. from your deploy step), then start it again"
        )
    lock = int.from_bytes(hashlib.sha256(f"orchestrate:migrate:{schema}".encode()).digest()[:8], "big", signed=True)
    async with conn.transaction():
        # One process migrates; the others wait here, then find the schema current.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        if create_schema:
            await conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(schema)))
        await conn.execute(_sql.META_DDL)
        current = await read_version(conn)
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{where} was migrated to schema version {current} meanwhile, newer than "
                f"this orchestrate understands ({SCHEMA_VERSION})"
            )
        for version, statements in _sql.MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                await conn.execute(statement.format(real="DOUBLE PRECISION", serial="BIGSERIAL"))
            for statement in q.EXTRA_MIGRATIONS.get(version, []):
                await conn.execute(statement)
            await conn.execute(q.SET_VERSION, (str(version),))
    log.info("store_migrated", store="postgresql", schema=schema, version=SCHEMA_VERSION, was=current)
