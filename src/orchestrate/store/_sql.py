"""SQL shared by the SQL backends: schema migrations, statements and row mapping.

Statements use ``?`` placeholders; a backend whose driver wants another style converts
them once (:func:`placeholders`). Dialect quirks stay in the backend modules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from orchestrate import _serde
from orchestrate.store.base import AttemptState, CacheEntry, Event, RunRecord, StepRecord
from orchestrate.types import RunStatus, StepStatus

# Each migration is (version, statements); ``{real}`` and ``{serial}`` are filled in by
# the dialect. Never edit a released migration: append a new one.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE IF NOT EXISTS orchestrate_runs (
                run_id TEXT PRIMARY KEY,
                workflow TEXT NOT NULL,
                version TEXT NOT NULL,
                status TEXT NOT NULL,
                input TEXT,
                output TEXT,
                error TEXT,
                created_at {real} NOT NULL,
                updated_at {real} NOT NULL,
                wake_at {real},
                wait_reason TEXT,
                owner TEXT,
                lease_expires_at {real},
                fence BIGINT NOT NULL DEFAULT 0,
                deadline_at {real},
                queue TEXT NOT NULL DEFAULT 'default',
                options TEXT NOT NULL DEFAULT '{{}}',
                parent_run_id TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS orchestrate_runs_due ON orchestrate_runs (status, wake_at)",
            "CREATE INDEX IF NOT EXISTS orchestrate_runs_created ON orchestrate_runs (created_at)",
            """CREATE TABLE IF NOT EXISTS orchestrate_steps (
                run_id TEXT NOT NULL,
                step_key TEXT NOT NULL,
                name TEXT NOT NULL,
                status TEXT NOT NULL,
                output TEXT,
                error TEXT,
                attempts INTEGER NOT NULL,
                started_at {real} NOT NULL,
                finished_at {real} NOT NULL,
                input_hash TEXT,
                fallback TEXT,
                meta TEXT NOT NULL DEFAULT '{{}}',
                seq {serial},
                PRIMARY KEY (run_id, step_key)
            )""",
            """CREATE TABLE IF NOT EXISTS orchestrate_attempts (
                run_id TEXT NOT NULL,
                step_key TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                next_at {real} NOT NULL,
                first_started_at {real} NOT NULL,
                error TEXT,
                PRIMARY KEY (run_id, step_key)
            )""",
            """CREATE TABLE IF NOT EXISTS orchestrate_events (
                id {serial} PRIMARY KEY,
                run_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                at {real} NOT NULL,
                step_key TEXT,
                data TEXT NOT NULL DEFAULT '{{}}'
            )""",
            "CREATE INDEX IF NOT EXISTS orchestrate_events_run ON orchestrate_events (run_id, id)",
            """CREATE TABLE IF NOT EXISTS orchestrate_cache (
                key TEXT PRIMARY KEY,
                value TEXT,
                stored_at {real} NOT NULL
            )""",
        ],
    ),
]

META_DDL = "CREATE TABLE IF NOT EXISTS orchestrate_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
GET_VERSION = "SELECT value FROM orchestrate_meta WHERE key = 'schema_version'"
SET_VERSION = (
    "INSERT INTO orchestrate_meta (key, value) VALUES ('schema_version', ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

RUN_COLUMNS = (
    "run_id, workflow, version, status, input, output, error, created_at, updated_at, wake_at,"
    " wait_reason, owner, lease_expires_at, fence, deadline_at, queue, options, parent_run_id"
)
INSERT_RUN = (
    f"INSERT INTO orchestrate_runs ({RUN_COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (run_id) DO NOTHING"
)
SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM orchestrate_runs WHERE run_id = ?"
# Pending runs (optionally scheduled), waiting runs whose timer is due, and running runs
# whose lease expired are claimable.
CLAIMABLE = (
    "((status = 'pending' AND (wake_at IS NULL OR wake_at <= ?))"
    " OR (status = 'waiting' AND wake_at IS NOT NULL AND wake_at <= ?)"
    " OR (status = 'running' AND lease_expires_at <= ?))"
)
DUE_RUNS = (
    f"SELECT {RUN_COLUMNS} FROM orchestrate_runs WHERE {CLAIMABLE}"
    " ORDER BY COALESCE(wake_at, created_at), run_id LIMIT ?"
)
CLAIM_RUN = (
    "UPDATE orchestrate_runs SET status = 'running', owner = ?, lease_expires_at = ?,"
    " fence = fence + 1, updated_at = ? WHERE run_id = ? AND "
)
RENEW_LEASE = "UPDATE orchestrate_runs SET lease_expires_at = ? WHERE run_id = ? AND fence = ? AND status = 'running'"
FENCE_OF = "SELECT fence, status FROM orchestrate_runs WHERE run_id = ?"
UPDATE_RUN = (
    "UPDATE orchestrate_runs SET status = ?, output = COALESCE(?, output),"
    " error = COALESCE(?, error), wake_at = ?, wait_reason = ?, updated_at = ?"
)
RELEASE = ", owner = NULL, lease_expires_at = NULL"
FENCED = " WHERE run_id = ? AND fence = ? AND status = 'running'"
CANCEL_RUN = (
    "UPDATE orchestrate_runs SET status = 'cancelled', error = ?, fence = fence + 1,"
    " owner = NULL, lease_expires_at = NULL, wake_at = NULL, updated_at = ?"
    " WHERE run_id = ? AND status IN ('pending', 'running', 'waiting')"
)
WAKE_RUN = "UPDATE orchestrate_runs SET wake_at = ? WHERE run_id = ? AND status = 'waiting'"

STEP_COLUMNS = (
    "run_id, step_key, name, status, output, error, attempts, started_at, finished_at, input_hash, fallback, meta"
)
INSERT_STEP = (
    f"INSERT INTO orchestrate_steps ({STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (run_id, step_key) DO NOTHING"
)
SELECT_STEP = f"SELECT {STEP_COLUMNS} FROM orchestrate_steps WHERE run_id = ? AND step_key = ?"
# ``{order}``: the dialect's insertion order (SQLite's rowid, PostgreSQL's serial ``seq``).
SELECT_STEPS = f"SELECT {STEP_COLUMNS} FROM orchestrate_steps WHERE run_id = ? ORDER BY {{order}}"
DELETE_ATTEMPTS = "DELETE FROM orchestrate_attempts WHERE run_id = ? AND step_key = ?"
UPSERT_ATTEMPTS = (
    "INSERT INTO orchestrate_attempts (run_id, step_key, attempts, next_at, first_started_at,"
    " error) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step_key) DO UPDATE SET"
    " attempts = excluded.attempts, next_at = excluded.next_at, error = excluded.error"
)
SELECT_ATTEMPTS = (
    "SELECT run_id, step_key, attempts, next_at, first_started_at, error FROM orchestrate_attempts WHERE run_id = ?"
)
INSERT_EVENT = "INSERT INTO orchestrate_events (run_id, kind, at, step_key, data) VALUES (?, ?, ?, ?, ?)"
SELECT_EVENTS = "SELECT id, run_id, kind, at, step_key, data FROM orchestrate_events WHERE run_id = ? ORDER BY id"
CACHE_GET = "SELECT key, value, stored_at FROM orchestrate_cache WHERE key = ?"
CACHE_PUT = (
    "INSERT INTO orchestrate_cache (key, value, stored_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, stored_at = excluded.stored_at"
)


def placeholders(sql: str, style: str) -> str:
    """Rewrite ``?`` placeholders to ``%s`` (``format``) or ``$n`` (``numeric``)."""
    if style == "qmark":
        return sql
    if style == "format":
        return sql.replace("?", "%s")
    parts = sql.split("?")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, 1))


def list_runs_sql(status: Sequence[RunStatus] | None, workflow: str | None) -> tuple[str, list[Any]]:
    """SELECT for ``Store.list_runs`` with its parameters (limit appended by the caller)."""
    where: list[str] = []
    params: list[Any] = []
    if status:
        where.append(f"status IN ({', '.join('?' for _ in status)})")
        params.extend(s.value for s in status)
    if workflow is not None:
        where.append("workflow = ?")
        params.append(workflow)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {RUN_COLUMNS} FROM orchestrate_runs{clause} ORDER BY created_at DESC, run_id DESC LIMIT ?"
    return sql, params


def to_json(value: Any, what: str) -> str | None:
    """JSON text of ``value``, ``None`` for ``None``."""
    return None if value is None else _serde.dumps(value, what=what)


def run_params(run: RunRecord) -> tuple[Any, ...]:
    """Parameters of :data:`INSERT_RUN`."""
    return (
        run.run_id,
        run.workflow,
        run.version,
        run.status.value,
        _serde.dumps(run.input, what=f"input of run {run.run_id}"),
        to_json(run.output, f"output of run {run.run_id}"),
        to_json(run.error, "run error"),
        run.created_at,
        run.updated_at,
        run.wake_at,
        run.wait_reason,
        run.owner,
        run.lease_expires_at,
        run.fence,
        run.deadline_at,
        run.queue,
        _serde.dumps(run.options, what="run options"),
        run.parent_run_id,
    )


def run_from_row(row: Sequence[Any]) -> RunRecord:
    """Map a row of :data:`RUN_COLUMNS` to a record."""
    return RunRecord(
        run_id=row[0],
        workflow=row[1],
        version=row[2],
        status=RunStatus(row[3]),
        input=_serde.loads(row[4]),
        output=_serde.loads(row[5]),
        error=_serde.loads(row[6]),
        created_at=row[7],
        updated_at=row[8],
        wake_at=row[9],
        wait_reason=row[10],
        owner=row[11],
        lease_expires_at=row[12],
        fence=row[13],
        deadline_at=row[14],
        queue=row[15],
        options=json.loads(row[16]),
        parent_run_id=row[17],
    )


def step_params(step: StepRecord) -> tuple[Any, ...]:
    """Parameters of :data:`INSERT_STEP`; serialisation errors name the step."""
    return (
        step.run_id,
        step.step_key,
        step.name,
        step.status.value,
        to_json(step.output, f"output of step {step.step_key!r}"),
        to_json(step.error, f"error of step {step.step_key!r}"),
        step.attempts,
        step.started_at,
        step.finished_at,
        step.input_hash,
        step.fallback,
        _serde.dumps(step.meta, what=f"metadata of step {step.step_key!r}"),
    )


def step_from_row(row: Sequence[Any]) -> StepRecord:
    """Map a row of :data:`STEP_COLUMNS` to a record."""
    return StepRecord(
        run_id=row[0],
        step_key=row[1],
        name=row[2],
        status=StepStatus(row[3]),
        output=_serde.loads(row[4]),
        error=_serde.loads(row[5]),
        attempts=row[6],
        started_at=row[7],
        finished_at=row[8],
        input_hash=row[9],
        fallback=row[10],
        meta=json.loads(row[11]),
    )


def attempts_params(state: AttemptState) -> tuple[Any, ...]:
    """Parameters of :data:`UPSERT_ATTEMPTS`."""
    return (
        state.run_id,
        state.step_key,
        state.attempts,
        state.next_at,
        state.first_started_at,
        to_json(state.error, "attempt error"),
    )


def attempts_from_row(row: Sequence[Any]) -> AttemptState:
    """Map a row of :data:`SELECT_ATTEMPTS`."""
    return AttemptState(row[0], row[1], row[2], row[3], row[4], _serde.loads(row[5]))


def event_params(event: Event) -> tuple[Any, ...]:
    """Parameters of :data:`INSERT_EVENT`."""
    return (
        event.run_id,
        event.kind,
        event.at,
        event.step_key,
        _serde.dumps(event.data, what=f"event {event.kind!r}"),
    )


def event_from_row(row: Sequence[Any]) -> Event:
    """Map a row of :data:`SELECT_EVENTS`."""
    return Event(id=row[0], run_id=row[1], kind=row[2], at=row[3], step_key=row[4], data=json.loads(row[5]))


def cache_from_row(row: Sequence[Any]) -> CacheEntry:
    """Map a row of :data:`CACHE_GET`."""
    return CacheEntry(row[0], _serde.loads(row[1]), row[2])
