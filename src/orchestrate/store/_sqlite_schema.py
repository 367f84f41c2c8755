"""The SQLite store's schema: reading its version without writing, and migrating it.

Migrations are the shared, ordered statements of :data:`orchestrate.store._sql.MIGRATIONS`
(with SQLite's types); a new schema version adds its statements there and bumps
:data:`~orchestrate.store.base.SCHEMA_VERSION`.
"""

from __future__ import annotations

import sqlite3

from orchestrate.errors import SchemaVersionError, StoreAccessError
from orchestrate.store import _sql
from orchestrate.store._access_schema import SQLITE_EXTRA_MIGRATIONS
from orchestrate.store.base import SCHEMA_VERSION


def inspect_version(cur: sqlite3.Cursor) -> int | None:
    """The file's schema version, read without writing: 0 for an empty file, ``None`` for a
    file whose tables are none of orchestrate's (another application's database)."""
    tables = [row[0] for row in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if "orchestrate_meta" not in tables:
        return None if any(not t.startswith("sqlite_") for t in tables) else 0
    row = cur.execute(_sql.GET_VERSION).fetchone()
    return 0 if row is None else int(row[0])


def migrate(cur: sqlite3.Cursor) -> None:
    """Migrate to :data:`SCHEMA_VERSION` (in the caller's write transaction)."""
    current = inspect_version(cur)  # again, under the write lock: another process may have migrated
    if current is None:
        raise StoreAccessError("the database belongs to another application; nothing was changed")
    if current > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"database schema version {current} is newer than this orchestrate understands "
            f"({SCHEMA_VERSION}); upgrade orchestrate"
        )
    cur.execute(_sql.META_DDL)
    for version, statements in _sql.MIGRATIONS:
        if version <= current:
            continue
        for statement in statements:
            cur.execute(statement.format(real="REAL", serial="INTEGER"))
        for statement in SQLITE_EXTRA_MIGRATIONS.get(version, []):
            cur.execute(statement)
        cur.execute(_sql.SET_VERSION, (str(version),))
