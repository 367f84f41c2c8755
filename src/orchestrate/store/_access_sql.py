"""Tokens, sessions, the audit trail, the history feed and run pages in the SQL stores (schemas 6, 7).

Each function takes any store and answers ``None`` when it is no SQL store, so callers
fall back to what every store offers. Statements use ``?`` placeholders; PostgreSQL's
are rewritten once. SQLite runs them on its connection's thread (writes in its write
transaction), PostgreSQL through the store's retried statements.
"""

from __future__ import annotations

import json
import sqlite3
import weakref
from collections.abc import Sequence
from typing import Any

from orchestrate.store import _sql
from orchestrate.store._access import AccessStore, AuditEntry, MemoryAccessStore, SessionRecord, TokenRecord
from orchestrate.store.base import Event, RunRecord
from orchestrate.types import RunStatus

_MEMORY: weakref.WeakKeyDictionary[Any, MemoryAccessStore] = weakref.WeakKeyDictionary()

_TOKEN_COLUMNS = "token_id, name, roles, token_hash, created_at, expires_at, revoked_at"
INSERT_TOKEN = (
    f"INSERT INTO orchestrate_tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (token_id) DO NOTHING"
)
TOKEN_BY_HASH = f"SELECT {_TOKEN_COLUMNS} FROM orchestrate_tokens WHERE token_hash = ?"
TOKEN_BY_ID = f"SELECT {_TOKEN_COLUMNS} FROM orchestrate_tokens WHERE token_id = ?"
LIST_TOKENS = f"SELECT {_TOKEN_COLUMNS} FROM orchestrate_tokens ORDER BY created_at, token_id"
REVOKE_TOKEN = "UPDATE orchestrate_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL"
_SESSION_COLUMNS = "session_hash, token_hash, name, roles, csrf, created_at, expires_at"
INSERT_SESSION = f"INSERT INTO orchestrate_sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
SESSION_BY_HASH = f"SELECT {_SESSION_COLUMNS} FROM orchestrate_sessions WHERE session_hash = ?"
DELETE_SESSION = "DELETE FROM orchestrate_sessions WHERE session_hash = ?"
DELETE_EXPIRED_SESSIONS = "DELETE FROM orchestrate_sessions WHERE expires_at <= ?"
_AUDIT_COLUMNS = "principal, at, action, target, payload_hash, outcome"
INSERT_AUDIT = f"INSERT INTO orchestrate_audit ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
LIST_AUDIT = f"SELECT {_AUDIT_COLUMNS}, id FROM orchestrate_audit WHERE id > ? ORDER BY id LIMIT ?"
LAST_EVENT = "SELECT COALESCE(MAX(id), 0) FROM orchestrate_events"
_EVENT_COLUMNS = "id, run_id, kind, at, step_key, data"


def unwrap(store: Any) -> Any:
    """The backend under wrappers such as ``RetryingStore`` (their ``inner``)."""
    for _ in range(8):
        inner = getattr(store, "inner", None)
        if inner is None or inner is store:
            break
        store = inner
    return store


def _dialect(store: Any) -> str | None:
    from orchestrate.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return "sqlite"
    try:
        from orchestrate.store.postgres import PostgresStore
    except ImportError:  # psycopg missing: no PostgreSQL store can exist either
        return None
    return "postgres" if isinstance(store, PostgresStore) else None


class _Sql:
    """Runs statements on a SQL store, whichever its dialect."""

    def __init__(self, store: Any, dialect: str) -> None:
        self.store = store
        self.dialect = dialect

    def _q(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else _sql.placeholders(sql, "format")

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.dialect == "sqlite":

            def op(cur: sqlite3.Cursor) -> list[tuple[Any, ...]]:
                return [tuple(r) for r in cur.execute(sql, tuple(params)).fetchall()]

            rows: list[tuple[Any, ...]] = await self.store._call(op, write=False)
            return rows
        found: list[tuple[Any, ...]] = await self.store._fetch("access", self._q(sql), tuple(params))
        return found

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        if self.dialect == "sqlite":

            def op(cur: sqlite3.Cursor) -> int:
                return cur.execute(sql, tuple(params)).rowcount

            count: int = await self.store._call(op)
            return count
        return int(await self.store._execute("access", self._q(sql), tuple(params)))


def _token(row: Sequence[Any]) -> TokenRecord:
    return TokenRecord(
        token_id=row[0],
        name=row[1],
        roles=list(json.loads(row[2])),
        token_hash=row[3],
        created_at=float(row[4]),
        expires_at=None if row[5] is None else float(row[5]),
        revoked_at=None if row[6] is None else float(row[6]),
    )


class SqlAccessStore:
    """Tokens and the audit trail in ``orchestrate_tokens`` and ``orchestrate_audit``."""

    def __init__(self, store: Any, dialect: str) -> None:
        self._db = _Sql(store, dialect)

    async def add_token(self, record: TokenRecord) -> None:
        """Insert a new token."""
        await self._db.execute(
            INSERT_TOKEN,
            (
                record.token_id,
                record.name,
                json.dumps(record.roles),
                record.token_hash,
                record.created_at,
                record.expires_at,
                record.revoked_at,
            ),
        )

    async def token_by_hash(self, hashed: str) -> TokenRecord | None:
        """The token whose hash is ``hashed``."""
        rows = await self._db.fetch(TOKEN_BY_HASH, (hashed,))
        return _token(rows[0]) if rows else None

    async def list_tokens(self) -> list[TokenRecord]:
        """Every token, oldest first."""
        return [_token(r) for r in await self._db.fetch(LIST_TOKENS)]

    async def revoke_token(self, token_id: str, *, now: float) -> TokenRecord | None:
        """Revoke the token (a token revoked already keeps its first revocation time)."""
        await self._db.execute(REVOKE_TOKEN, (now, token_id))
        rows = await self._db.fetch(TOKEN_BY_ID, (token_id,))
        return _token(rows[0]) if rows else None

    async def add_session(self, record: SessionRecord) -> None:
        """Store a new session."""
        await self._db.execute(
            INSERT_SESSION,
            (
                record.session_hash,
                record.token_hash,
                record.name,
                json.dumps(record.roles),
                record.csrf,
                record.created_at,
                record.expires_at,
            ),
        )

    async def session_by_hash(self, hashed: str) -> SessionRecord | None:
        """The session whose cookie hashes to ``hashed``."""
        rows = await self._db.fetch(SESSION_BY_HASH, (hashed,))
        if not rows:
            return None
        r = rows[0]
        return SessionRecord(r[0], r[1], r[2], list(json.loads(r[3])), r[4], float(r[5]), float(r[6]))

    async def delete_session(self, hashed: str) -> None:
        """End the session."""
        await self._db.execute(DELETE_SESSION, (hashed,))

    async def delete_expired_sessions(self, now: float) -> int:
        """End the sessions expired at ``now``."""
        return await self._db.execute(DELETE_EXPIRED_SESSIONS, (now,))

    async def append_audit(self, entry: AuditEntry) -> None:
        """Append to the audit trail."""
        await self._db.execute(
            INSERT_AUDIT,
            (entry.principal, entry.at, entry.action, entry.target, entry.payload_hash, entry.outcome),
        )

    async def list_audit(self, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Entries after id ``after``, oldest first."""
        rows = await self._db.fetch(LIST_AUDIT, (after, limit))
        return [AuditEntry(r[0], float(r[1]), r[2], r[3], r[4], int(r[5]), int(r[6])) for r in rows]


def sql_access(store: Any) -> AccessStore | None:
    """The SQL :class:`AccessStore` of ``store``; ``None`` when it is no SQL store."""
    dialect = _dialect(store)
    return SqlAccessStore(store, dialect) if dialect is not None else None


def access_for(store: Any) -> AccessStore:
    """The :class:`AccessStore` kept in ``store``.

    SQL stores keep tokens and the audit in their database; any other store (memory, a
    test wrapper around one) keeps them in memory beside it, for the life of the process.
    """
    base = unwrap(store)
    found = sql_access(base)
    if found is not None:
        return found
    access = _MEMORY.get(base)
    if access is None:
        access = _MEMORY[base] = MemoryAccessStore()
    return access


async def events_after(
    store: Any,
    after: int,
    *,
    kinds: Sequence[str] | None = None,
    run_id: str | None = None,
    limit: int = 200,
    upto: int | None = None,
) -> list[Event] | None:
    """Events after ``after`` (up to id ``upto``) read with SQL (the events' primary key, or
    the run's index); ``None`` when ``store`` is no SQL store."""
    dialect = _dialect(store)
    if dialect is None:
        return None
    where = ["id > ?"]
    params: list[Any] = [after]
    if upto is not None:
        where.append("id <= ?")
        params.append(upto)
    if run_id is not None:
        where.append("run_id = ?")
        params.append(run_id)
    if kinds is not None:
        where.append(f"kind IN ({', '.join('?' for _ in kinds)})")
        params.extend(kinds)
    sql = f"SELECT {_EVENT_COLUMNS} FROM orchestrate_events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"
    rows = await _Sql(store, dialect).fetch(sql, (*params, limit))
    return [_sql.event_from_row(r) for r in rows]


def dialect_of(store: Any) -> str | None:
    """``"sqlite"``, ``"postgres"``, or ``None`` when ``store`` is no SQL store."""
    return _dialect(store)


async def events_by_id(store: Any, ids: Sequence[int]) -> list[Event]:
    """The events among ``ids`` that exist (committed), oldest first; ``[]`` when ``store`` is no SQL store."""
    dialect = _dialect(store)
    if dialect is None or not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    sql = f"SELECT {_EVENT_COLUMNS} FROM orchestrate_events WHERE id IN ({marks}) ORDER BY id"
    rows = await _Sql(store, dialect).fetch(sql, tuple(ids))
    return [_sql.event_from_row(r) for r in rows]


async def feed_scan(
    store: Any, after: int, *, kinds: Sequence[str] | None = None, run_id: str | None = None, rows: int = 2000
) -> tuple[list[int], list[Event]]:
    """The first ``rows`` event ids above ``after``, and the events among them of ``run_id`` and ``kinds``.

    One statement, so both come from one snapshot: an id absent from the first list was
    not committed (or was rolled back) when the wanted events were read. ``([], [])``
    when ``store`` is no SQL store.
    """
    dialect = _dialect(store)
    if dialect is None:
        return [], []
    where = ["e.id > ?", "e.id <= (SELECT MAX(id) FROM ids)"]
    params: list[Any] = [after, rows, after]
    if run_id is not None:
        where.append("e.run_id = ?")
        params.append(run_id)
    if kinds is not None:
        where.append(f"e.kind IN ({', '.join('?' for _ in kinds)})")
        params.extend(kinds)
    columns = ", ".join(f"e.{c.strip()}" for c in _EVENT_COLUMNS.split(","))
    sql = (
        "WITH ids AS (SELECT id FROM orchestrate_events WHERE id > ? ORDER BY id LIMIT ?)"
        f" SELECT 1, {columns} FROM orchestrate_events e WHERE {' AND '.join(where)}"
        " UNION ALL SELECT 0, id, NULL, NULL, NULL, NULL, NULL FROM ids"
    )
    found = await _Sql(store, dialect).fetch(sql, tuple(params))
    present = sorted(int(r[1]) for r in found if not r[0])
    events = sorted((_sql.event_from_row(r[1:]) for r in found if r[0]), key=lambda e: e.id)
    return present, events


async def last_event_id(store: Any) -> int | None:
    """The newest event id read with SQL; ``None`` when ``store`` is no SQL store."""
    dialect = _dialect(store)
    if dialect is None:
        return None
    rows = await _Sql(store, dialect).fetch(LAST_EVENT)
    return int(rows[0][0]) if rows else 0


async def page_runs(
    store: Any,
    *,
    status: Sequence[RunStatus] | None = None,
    workflow: str | None = None,
    since: float | None = None,
    until: float | None = None,
    text: str | None = None,
    after: tuple[float, str] | None = None,
    limit: int = 50,
) -> list[RunRecord] | None:
    """A page of runs (summaries) read with one indexed query; ``None`` when ``store`` is no SQL store."""
    store = unwrap(store)
    dialect = _dialect(store)
    if dialect is None:
        return None
    where: list[str] = []
    params: list[Any] = []
    if status:
        where.append(f"status IN ({', '.join('?' for _ in status)})")
        params.extend(s.value for s in status)
    if workflow is not None:
        where.append("workflow = ?")
        params.append(workflow)
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("created_at < ?")
        params.append(until)
    if after is not None:
        where.append("(created_at, run_id) < (?, ?)")  # a row value: the index's range, no OR
        params.extend([after[0], after[1]])
    if text:
        like = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        prefix = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(
            "(run_id LIKE ? ESCAPE '\\' OR LOWER(workflow) LIKE ? ESCAPE '\\'"
            " OR LOWER(COALESCE(error, '')) LIKE ? ESCAPE '\\')"
        )
        params.extend([prefix, like, like])
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT {_sql.RUN_SUMMARY_COLUMNS} FROM orchestrate_runs{clause} ORDER BY created_at DESC, run_id DESC LIMIT ?"
    )
    rows = await _Sql(store, dialect).fetch(sql, (*params, limit))
    return [_sql.run_from_row(r) for r in rows]


def _usage_sql(dialect: str) -> tuple[str, str]:
    """What a step's ``meta`` says of its model call, per dialect: the model's name and a number field.

    No ``?`` may appear in these (placeholders): an unnamed model is ``''`` here, ``"?"`` to callers.
    """
    if dialect == "sqlite":
        is_call = "json_type(s.meta, '$.model') = 'object'"
        name = "COALESCE(CAST(json_extract(s.meta, '$.model.model') AS TEXT), '')"
        number = "COALESCE(CASE WHEN json_type(s.meta, '$.model.{f}') IN ('integer', 'real')"
        number += " THEN json_extract(s.meta, '$.model.{f}') END, 0)"
    else:
        is_call = "jsonb_typeof(s.meta::jsonb -> 'model') = 'object'"
        name = "COALESCE(s.meta::jsonb #>> '{model,model}', '')"
        number = "COALESCE(CASE WHEN jsonb_typeof(s.meta::jsonb #> '{{model,{f}}}') = 'number'"
        number += " THEN (s.meta::jsonb #>> '{{model,{f}}}')::double precision END, 0)"
    sums = ", ".join(f"SUM({number.format(f=f)})" for f in ("tokens_in", "tokens_out", "cost"))
    return f"{name}, {sums}", is_call


async def usage_totals(
    store: Any, *, workflow: str | None, since: float | None, limit: int
) -> tuple[dict[str, int], list[tuple[str, str, float, float, float]]] | None:
    """Model usage of the newest ``limit`` runs (of ``workflow``, created since ``since``), summed by the database.

    Returns ``(runs by workflow, [(workflow, model, tokens_in, tokens_out, cost)])``,
    or ``None`` when ``store`` is no SQL store. Two aggregate queries over the newest
    runs (the runs' creation index) and their steps (the steps' primary key).
    """
    store = unwrap(store)
    dialect = _dialect(store)
    if dialect is None:
        return None
    where: list[str] = []
    params: list[Any] = []
    if workflow is not None:
        where.append("workflow = ?")
        params.append(workflow)
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    newest = f"SELECT run_id, workflow FROM orchestrate_runs{clause} ORDER BY created_at DESC LIMIT ?"
    db = _Sql(store, dialect)
    counted = await db.fetch(f"SELECT workflow, COUNT(*) FROM ({newest}) r GROUP BY workflow", (*params, limit))
    columns, is_call = _usage_sql(dialect)
    rows = await db.fetch(
        f"SELECT r.workflow, {columns} FROM ({newest}) r JOIN orchestrate_steps s ON s.run_id = r.run_id"
        f" WHERE {is_call} GROUP BY r.workflow, 2",
        (*params, limit),
    )
    return (
        {str(w): int(n) for w, n in counted},
        [(str(r[0]), str(r[1] or "?"), float(r[2] or 0), float(r[3] or 0), float(r[4] or 0)) for r in rows],
    )
