"""SQL shared by the SQL backends: schema migrations, statements and row mapping.

Statements use ``?`` placeholders; a backend whose driver wants another style converts
them once (:func:`placeholders`). Dialect quirks stay in the backend modules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from orchestrate import _serde
from orchestrate.errors import InvalidInputError
from orchestrate.store import _limits
from orchestrate.store._access_schema import ACCESS_MIGRATION, SESSIONS_MIGRATION
from orchestrate.store._limits import PayloadLimits
from orchestrate.store._quality_schema import QUALITY_STATEMENTS
from orchestrate.store.base import (
    PRIORITY_RANKS,
    REPLAYED_EVENT,
    AttemptState,
    BreakerRecord,
    CacheEntry,
    Event,
    ReviewRecord,
    ReviewStatus,
    RunRecord,
    StepRecord,
)
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
    (
        2,
        [
            # Review items (people in the loop). ``role_index`` is ``|a|b|`` over the roles
            # that may decide ('' for anyone) so that "the items role R may decide" is one
            # LIKE; ``priority_rank`` orders the queue.
            """CREATE TABLE IF NOT EXISTS orchestrate_reviews (
                review_id TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                workflow TEXT NOT NULL,
                step_key TEXT NOT NULL,
                gate_key TEXT NOT NULL,
                queue TEXT NOT NULL,
                status TEXT NOT NULL,
                payload TEXT,
                roles TEXT NOT NULL DEFAULT '[]',
                required_roles TEXT NOT NULL DEFAULT '[]',
                min_approvals INTEGER NOT NULL DEFAULT 1,
                role_index TEXT NOT NULL DEFAULT '',
                priority TEXT NOT NULL,
                priority_rank INTEGER NOT NULL,
                sla_seconds {real},
                due_at {real},
                warn_at {real},
                warned_at {real},
                level INTEGER NOT NULL DEFAULT 0,
                parent_id TEXT,
                escalated_to TEXT,
                approvals TEXT NOT NULL DEFAULT '[]',
                decision TEXT,
                created_at {real} NOT NULL,
                updated_at {real} NOT NULL,
                decided_at {real},
                meta TEXT NOT NULL DEFAULT '{{}}',
                version BIGINT NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX IF NOT EXISTS orchestrate_reviews_queue"
            " ON orchestrate_reviews (status, priority_rank, due_at, created_at)",
            "CREATE INDEX IF NOT EXISTS orchestrate_reviews_run ON orchestrate_reviews (run_id)",
        ],
    ),
    (
        3,
        [
            # Workers claim by lease expiry as well as by timer.
            "CREATE INDEX IF NOT EXISTS orchestrate_runs_lease ON orchestrate_runs (status, lease_expires_at)",
            # Shared rate limits: one lock row per resource, one log row per grant.
            """CREATE TABLE IF NOT EXISTS orchestrate_rate_limits (
                resource TEXT PRIMARY KEY,
                touched_at {real}
            )""",
            """CREATE TABLE IF NOT EXISTS orchestrate_rate_log (
                id {serial} PRIMARY KEY,
                resource TEXT NOT NULL,
                at {real} NOT NULL,
                cost {real} NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS orchestrate_rate_log_window ON orchestrate_rate_log (resource, at)",
            # Shared circuit breakers, written with compare-and-set on ``version``.
            """CREATE TABLE IF NOT EXISTS orchestrate_breakers (
                resource TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                failures TEXT NOT NULL DEFAULT '[]',
                opened_at {real},
                trials INTEGER NOT NULL DEFAULT 0,
                successes INTEGER NOT NULL DEFAULT 0,
                version BIGINT NOT NULL
            )""",
        ],
    ),
    (
        4,
        [
            # Crashed attempts, counted by the claim that takes a run over from a holder
            # that died (see ``crash_count``); ``claim_steps`` is how many step records the
            # run had when it was last claimed, which tells whether its holder got further.
            "ALTER TABLE orchestrate_runs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE orchestrate_runs ADD COLUMN crashed_owner TEXT",
            "ALTER TABLE orchestrate_runs ADD COLUMN claim_steps INTEGER NOT NULL DEFAULT 0",
        ],
    ),
    (
        5,
        [
            # Listings by status and by workflow, newest first, read only what they show
            # (an index in the listing's order: no scan, no sort, whatever the table's size).
            "CREATE INDEX IF NOT EXISTS orchestrate_runs_status ON orchestrate_runs (status, created_at, run_id)",
            "CREATE INDEX IF NOT EXISTS orchestrate_runs_workflow ON orchestrate_runs (workflow, created_at, run_id)",
            # Pruning finds the runs that ended before a time.
            "CREATE INDEX IF NOT EXISTS orchestrate_runs_ended ON orchestrate_runs (status, updated_at)",
        ],
    ),
    ACCESS_MIGRATION,  # 6: API tokens and the audit trail of the HTTP server
    SESSIONS_MIGRATION,  # 7: dashboard sessions (and SQLite's append-only audit triggers)
    (8, QUALITY_STATEMENTS),  # 8: step results by name, outcome feedback, durable alerts
]

META_DDL = "CREATE TABLE IF NOT EXISTS orchestrate_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
GET_VERSION = "SELECT value FROM orchestrate_meta WHERE key = 'schema_version'"
SET_VERSION = (
    "INSERT INTO orchestrate_meta (key, value) VALUES ('schema_version', ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

RUN_COLUMNS = (
    "run_id, workflow, version, status, input, output, error, created_at, updated_at, wake_at,"
    " wait_reason, owner, lease_expires_at, fence, deadline_at, queue, options, parent_run_id,"
    " crashes, crashed_owner"
)
RUN_FIELDS = RUN_COLUMNS.count(",") + 1
RUN_SUMMARY_COLUMNS = RUN_COLUMNS.replace("input, output,", "NULL, NULL,")
"""``RUN_COLUMNS`` without the input and the output (read as ``NULL``): what a listing shows."""
INSERT_RUN = (
    f"INSERT INTO orchestrate_runs ({RUN_COLUMNS}) VALUES ({', '.join(['?'] * RUN_FIELDS)})"
    " ON CONFLICT (run_id) DO NOTHING"
)
SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM orchestrate_runs WHERE run_id = ?"
# Ids by prefix: the parameter is a ``like_prefix`` pattern (SQLite spells it with GLOB).
FIND_RUN_IDS = "SELECT run_id FROM orchestrate_runs WHERE run_id LIKE ? ESCAPE '!' ORDER BY run_id LIMIT ?"
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


def crash_count(row: str) -> str:
    """The assignments of a claim that count crashed attempts; ``row`` names the updated table.

    A claim of a run still ``running`` takes it from a holder that died or stalled (its
    lease expired, or its process is known dead): one more crashed attempt, or the first
    one when a step was recorded since that holder's claim. Other claims keep the count,
    or reset it after a recorded step. The expressions read the row as it was before the
    update (SQL evaluates every assignment against the old row).
    """
    steps = f"(SELECT count(*) FROM orchestrate_steps s WHERE s.run_id = {row}.run_id)"
    return (
        f"crashes = CASE WHEN {steps} > {row}.claim_steps THEN 0 ELSE {row}.crashes END"
        f" + CASE WHEN {row}.status = 'running' THEN 1 ELSE 0 END,"
        f" crashed_owner = CASE WHEN {row}.status = 'running' THEN {row}.owner ELSE {row}.crashed_owner END,"
        f" claim_steps = {steps}"
    )


SUSPECT = "(status = 'running' OR crashes > 0)"
"""A claimable run whose previous attempt died (see ``ClaimingStore.claim_due``'s ``suspects``)."""
CLAIM_RUN = (
    "UPDATE orchestrate_runs SET status = 'running', owner = ?, lease_expires_at = ?,"
    f" fence = fence + 1, updated_at = ?, {crash_count('orchestrate_runs')} WHERE run_id = ? AND "
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
APPEND_EVENT = (
    "INSERT INTO orchestrate_events (run_id, kind, at, step_key, data) SELECT ?1, ?2, ?3, ?4, ?5"
    " WHERE NOT EXISTS (SELECT 1 FROM orchestrate_events"
    " WHERE run_id = ?1 AND kind = ?2 AND at = ?3 AND step_key IS ?4 AND data = ?5)"
)
"""A lone event, unless the run's history has one the same in every field (a retried append)."""
SELECT_EVENTS = "SELECT id, run_id, kind, at, step_key, data FROM orchestrate_events WHERE run_id = ? ORDER BY id"
CACHE_GET = "SELECT key, value, stored_at FROM orchestrate_cache WHERE key = ?"
CACHE_PUT = (
    "INSERT INTO orchestrate_cache (key, value, stored_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, stored_at = excluded.stored_at"
)

REVIEW_COLUMNS = (
    "review_id, run_id, workflow, step_key, gate_key, queue, status, payload, roles, required_roles,"
    " min_approvals, priority, sla_seconds, due_at, warn_at, warned_at, level, parent_id, escalated_to,"
    " approvals, decision, created_at, updated_at, decided_at, meta, version"
)
INSERT_REVIEW = (
    f"INSERT INTO orchestrate_reviews ({REVIEW_COLUMNS}, role_index, priority_rank)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (review_id) DO NOTHING"
)
SELECT_REVIEW = f"SELECT {REVIEW_COLUMNS} FROM orchestrate_reviews WHERE review_id = ?"
FIND_REVIEW_IDS = (
    "SELECT review_id FROM orchestrate_reviews WHERE review_id LIKE ? ESCAPE '!' ORDER BY review_id LIMIT ?"
)
# Compare-and-set on ``version``: only the fields a decision, a warning or a timeout changes.
UPDATE_REVIEW = (
    "UPDATE orchestrate_reviews SET status = ?, payload = ?, due_at = ?, warn_at = ?, warned_at = ?,"
    " escalated_to = ?, approvals = ?, decision = ?, decided_at = ?, meta = ?, updated_at = ?, version = ?"
    " WHERE review_id = ? AND version = ?"
)


# Claiming in one go: ``{where}`` takes the version and queue filter of ``claim_filter``.
# ``{orphans}`` adds runs held by dead owners (``orphans_condition``).
DUE_IDS = (
    f"SELECT run_id FROM orchestrate_runs WHERE ({CLAIMABLE}{{orphans}}){{where}}"
    " ORDER BY COALESCE(wake_at, created_at), run_id LIMIT ?"
)
# When the next run becomes claimable: a pending run at once (or at its scheduled
# time), a waiting run at its timer, a running run when its lease expires.
NEXT_DUE = (
    "SELECT MIN(CASE WHEN status = 'running' THEN lease_expires_at"
    " WHEN status = 'pending' THEN COALESCE(wake_at, 0) ELSE wake_at END)"
    " FROM orchestrate_runs WHERE status IN ('pending', 'waiting', 'running'){where}"
)

RATE_PRUNE = "DELETE FROM orchestrate_rate_log WHERE resource = ? AND at <= ?"
RATE_WINDOW = "SELECT at, cost FROM orchestrate_rate_log WHERE resource = ? AND at > ? ORDER BY at, id"
RATE_INSERT = "INSERT INTO orchestrate_rate_log (resource, at, cost) VALUES (?, ?, ?)"

BREAKER_COLUMNS = "resource, state, failures, opened_at, trials, successes, version"
BREAKER_GET = f"SELECT {BREAKER_COLUMNS} FROM orchestrate_breakers WHERE resource = ?"
BREAKER_INSERT = (
    f"INSERT INTO orchestrate_breakers ({BREAKER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (resource) DO NOTHING"
)
BREAKER_UPDATE = (
    "UPDATE orchestrate_breakers SET state = ?, failures = ?, opened_at = ?, trials = ?, successes = ?,"
    " version = ? WHERE resource = ? AND version = ?"
)


def claim_filter(versions: Sequence[tuple[str, str]] | None, queues: Sequence[str] | None) -> tuple[str, list[Any]]:
    """The ``AND ...`` restricting claims to workflow versions and queues, with its parameters."""
    if (versions is not None and not versions) or (queues is not None and not queues):
        return " AND 1 = 0", []
    sql = ""
    params: list[Any] = []
    if versions is not None:
        sql += " AND (" + " OR ".join("(workflow = ? AND version = ?)" for _ in versions) + ")"
        for name, version in versions:
            params.extend((name, version))
    if queues is not None:
        sql += f" AND queue IN ({', '.join('?' for _ in queues)})"
        params.extend(queues)
    return sql, params


def orphans_condition(owners: Sequence[str]) -> str:
    """`` OR ...`` making runs held by ``owners`` claimable (empty without owners)."""
    if not owners:
        return ""
    return f" OR (status = 'running' AND owner IN ({', '.join('?' for _ in owners)}))"


def breaker_params(record: BreakerRecord, version: int) -> tuple[Any, ...]:
    """Parameters of :data:`BREAKER_INSERT` for ``record`` saved as ``version``."""
    return (
        record.resource,
        record.state,
        json.dumps(record.failures),
        record.opened_at,
        record.trials,
        record.successes,
        version,
    )


def breaker_update_params(record: BreakerRecord, expected_version: int) -> tuple[Any, ...]:
    """Parameters of :data:`BREAKER_UPDATE`."""
    resource, *values, version = breaker_params(record, expected_version + 1)
    return (*values, version, resource, expected_version)


def breaker_from_row(row: Sequence[Any]) -> BreakerRecord:
    """Map a row of :data:`BREAKER_GET`."""
    return BreakerRecord(
        resource=row[0],
        state=row[1],
        failures=json.loads(row[2]),
        opened_at=row[3],
        trials=row[4],
        successes=row[5],
        version=row[6],
    )


def placeholders(sql: str, style: str) -> str:
    """Rewrite ``?`` placeholders to ``%s`` (``format``) or ``$n`` (``numeric``)."""
    if style == "qmark":
        return sql
    if style == "format":
        return sql.replace("?", "%s")
    parts = sql.split("?")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, 1))


def list_runs_sql(
    status: Sequence[RunStatus] | None, workflow: str | None, values: bool = True
) -> tuple[str, list[Any]]:
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
    columns = RUN_COLUMNS if values else RUN_SUMMARY_COLUMNS
    sql = f"SELECT {columns} FROM orchestrate_runs{clause} ORDER BY created_at DESC, run_id DESC LIMIT ?"
    return sql, params


def list_dead_letters_sql(workflow: str | None, values: bool = True) -> tuple[str, list[Any]]:
    """SELECT for ``Store.list_dead_letters`` with its parameters (limit appended by the caller)."""
    params: list[Any] = []
    clause = ""
    if workflow is not None:
        clause = " AND r.workflow = ?"
        params.append(workflow)
    columns = RUN_COLUMNS if values else RUN_SUMMARY_COLUMNS
    sql = (
        f"SELECT {columns} FROM orchestrate_runs r WHERE r.status = 'dead'{clause}"
        " AND NOT EXISTS (SELECT 1 FROM orchestrate_events e"
        f" WHERE e.run_id = r.run_id AND e.kind = '{REPLAYED_EVENT}')"
        " ORDER BY r.created_at DESC, r.run_id DESC LIMIT ?"
    )
    return sql, params


def prune_statuses(status: Sequence[RunStatus]) -> list[str]:
    """The statuses ``Store.prune_runs`` may delete, as text; refuses one that is not terminal."""
    found = [RunStatus(s) for s in status]
    live = [s.value for s in found if not s.terminal]
    if live:
        raise InvalidInputError(
            f"cannot prune {', '.join(live)} runs: only ended runs are deleted "
            f"({', '.join(s.value for s in RunStatus if s.terminal)})"
        )
    return sorted({s.value for s in found})


# No ORDER BY: a batch is any runs past their retention (the ``orchestrate_runs_ended``
# index finds them and stops at the limit; sorting them all would cost as much as a scan).
PRUNE_CANDIDATES = "SELECT run_id FROM orchestrate_runs WHERE status IN ({statuses}) AND updated_at < ? LIMIT ?"
PRUNE_COUNT = "SELECT count(*) FROM orchestrate_runs WHERE status IN ({statuses}) AND updated_at < ?"
PRUNE_TABLES = ("orchestrate_steps", "orchestrate_events", "orchestrate_attempts", "orchestrate_reviews")
"""The tables whose rows of a pruned run go with it (keyed by ``run_id``), besides the run's own."""


def to_json(value: Any, what: str) -> str | None:
    """JSON text of ``value``, ``None`` for ``None``."""
    return None if value is None else _serde.dumps(value, what=what)


# Payload limits, checked on the text a statement is about to send, before it is sent.
# Each compares first, so that the common small value costs one comparison; over the
# warning size it raises (over the limit) or returns the ``payload_large`` event.


def input_size(run: RunRecord, text: str, limits: PayloadLimits) -> Event | None:
    """Check the JSON ``text`` of a run's input against ``limits``."""
    return None if len(text) <= limits.warn_bytes else _limits.input_check(run, len(text), limits)


def step_size(step: StepRecord, text: str | None, limits: PayloadLimits) -> Event | None:
    """Check the JSON ``text`` of a step's output (or a signal's value) against ``limits``."""
    if text is None or len(text) <= limits.warn_bytes:
        return None
    return _limits.step_check(step, len(text), limits)


def output_size(run_id: str, text: str | None, limits: PayloadLimits, now: float) -> Event | None:
    """Check the JSON ``text`` of a run's output against ``limits``."""
    if text is None or len(text) <= limits.warn_bytes:
        return None
    return _limits.output_check(run_id, len(text), limits, now)


def review_size(review: ReviewRecord, text: str | None, limits: PayloadLimits, *, report: bool) -> Event | None:
    """Check the JSON ``text`` of a review's payload; ``report``: with the event of a large one."""
    if text is None or len(text) <= limits.warn_bytes:
        return None
    return _limits.review_check(review, len(text), limits, report=report)


def cache_size(key: str, text: str | None, limits: PayloadLimits) -> None:
    """Refuse a cached value over ``limits``."""
    if text is not None and len(text) > limits.max_bytes:
        _limits.cache_check(key, len(text), limits)


def run_params(run: RunRecord) -> tuple[Any, ...]:
    """Parameters of :data:`INSERT_RUN`; serialisation errors name the part."""
    try:
        text = _serde.encode(run.input)
    except (TypeError, ValueError):
        text = _serde.dumps(run.input, what=f"input of run {run.run_id}")  # says what is wrong
    return (
        run.run_id,
        run.workflow,
        run.version,
        run.status._value_,  # the plain str (an enum member is adapted by sqlite3, slowly)
        text,
        None if run.output is None else to_json(run.output, f"output of run {run.run_id}"),
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
        "{}" if not run.options else _serde.dumps(run.options, what="run options"),
        run.parent_run_id,
        run.crashes,
        run.crashed_owner,
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
        crashes=row[18],
        crashed_owner=row[19],
    )


def step_json(step: StepRecord) -> tuple[str | None, str]:
    """JSON of a step's output and metadata; serialisation errors name the step."""
    try:
        return None if step.output is None else _serde.encode(step.output), _serde.encode(step.meta)
    except (TypeError, ValueError):
        # Name the part that failed (built only on failure: the hot path skips the messages).
        key = step.step_key
        return to_json(step.output, f"output of step {key!r}"), _serde.dumps(
            step.meta, what=f"metadata of step {key!r}"
        )


def step_params(step: StepRecord) -> tuple[Any, ...]:
    """Parameters of :data:`INSERT_STEP`; serialisation errors name the step."""
    output, meta = step_json(step)
    error = None if step.error is None else to_json(step.error, f"error of step {step.step_key!r}")
    return (
        step.run_id,
        step.step_key,
        step.name,
        step.status._value_,
        output,
        error,
        step.attempts,
        step.started_at,
        step.finished_at,
        step.input_hash,
        step.fallback,
        meta,
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
    return AttemptState(
        run_id=row[0],
        step_key=row[1],
        attempts=row[2],
        next_at=row[3],
        first_started_at=row[4],
        error=_serde.loads(row[5]),
    )


def event_params(event: Event) -> tuple[Any, ...]:
    """Parameters of :data:`INSERT_EVENT`."""
    return (
        event.run_id,
        event.kind,
        event.at,
        event.step_key,
        _event_data(event),
    )


def _event_data(event: Event) -> str:
    data = event.data
    if type(data) is dict and not data:
        return "{}"
    try:
        return _serde.encode(data)
    except (TypeError, ValueError):
        return _serde.dumps(data, what=f"event {event.kind!r}")  # says what is wrong


def event_from_row(row: Sequence[Any]) -> Event:
    """Map a row of :data:`SELECT_EVENTS`."""
    return Event(id=row[0], run_id=row[1], kind=row[2], at=row[3], step_key=row[4], data=json.loads(row[5]))


def cache_from_row(row: Sequence[Any]) -> CacheEntry:
    """Map a row of :data:`CACHE_GET`."""
    return CacheEntry(key=row[0], value=_serde.loads(row[1]), stored_at=row[2])


def role_index(roles: Sequence[str]) -> str:
    """``|a|b|`` over the roles that may decide; ``''`` when anyone may."""
    return f"|{'|'.join(roles)}|" if roles else ""


def _like_literal(text: str) -> str:
    # ``!`` escapes LIKE's wildcards, so a role named ``qa_%`` matches only itself.
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def like_prefix(text: str) -> str:
    """The ``LIKE ... ESCAPE '!'`` pattern of the strings that start with ``text``."""
    return _like_literal(text) + "%"


def list_reviews_sql(
    status: Sequence[ReviewStatus] | None, role: str | None, run_id: str | None
) -> tuple[str, list[Any]]:
    """SELECT for ``Store.list_reviews`` with its parameters (limit appended by the caller)."""
    where: list[str] = []
    params: list[Any] = []
    if status:
        where.append(f"status IN ({', '.join('?' for _ in status)})")
        params.extend(s.value for s in status)
    if role is not None:
        where.append("(role_index = '' OR role_index LIKE ? ESCAPE '!')")
        params.append(f"%|{_like_literal(role)}|%")
    if run_id is not None:
        where.append("run_id = ?")
        params.append(run_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT {REVIEW_COLUMNS} FROM orchestrate_reviews{clause}"
        " ORDER BY priority_rank, CASE WHEN due_at IS NULL THEN 1 ELSE 0 END, due_at, created_at, review_id"
        " LIMIT ?"
    )
    return sql, params


def review_params(review: ReviewRecord) -> tuple[Any, ...]:
    """Parameters of :data:`INSERT_REVIEW`."""
    what = f"review {review.review_id!r}"
    return (
        review.review_id,
        review.run_id,
        review.workflow,
        review.step_key,
        review.gate_key,
        review.queue,
        review.status.value,
        to_json(review.payload, f"payload of {what}"),
        _serde.dumps(review.roles, what=f"roles of {what}"),
        _serde.dumps(review.required_roles, what=f"required roles of {what}"),
        review.min_approvals,
        review.priority,
        review.sla_seconds,
        review.due_at,
        review.warn_at,
        review.warned_at,
        review.level,
        review.parent_id,
        review.escalated_to,
        _serde.dumps(review.approvals, what=f"approvals of {what}"),
        to_json(review.decision, f"decision of {what}"),
        review.created_at,
        review.updated_at,
        review.decided_at,
        _serde.dumps(review.meta, what=f"metadata of {what}"),
        review.version,
        role_index(review.allowed_roles),
        PRIORITY_RANKS.get(review.priority, len(PRIORITY_RANKS)),
    )


def review_update_params(review: ReviewRecord, *, expected_version: int, now: float) -> tuple[Any, ...]:
    """Parameters of :data:`UPDATE_REVIEW`."""
    what = f"review {review.review_id!r}"
    return (
        review.status.value,
        to_json(review.payload, f"payload of {what}"),
        review.due_at,
        review.warn_at,
        review.warned_at,
        review.escalated_to,
        _serde.dumps(review.approvals, what=f"approvals of {what}"),
        to_json(review.decision, f"decision of {what}"),
        review.decided_at,
        _serde.dumps(review.meta, what=f"metadata of {what}"),
        now,
        expected_version + 1,
        review.review_id,
        expected_version,
    )


def review_from_row(row: Sequence[Any]) -> ReviewRecord:
    """Map a row of :data:`REVIEW_COLUMNS` to a record."""
    return ReviewRecord(
        review_id=row[0],
        run_id=row[1],
        workflow=row[2],
        step_key=row[3],
        gate_key=row[4],
        queue=row[5],
        status=ReviewStatus(row[6]),
        payload=_serde.loads(row[7]),
        roles=json.loads(row[8]),
        required_roles=json.loads(row[9]),
        min_approvals=row[10],
        priority=row[11],
        sla_seconds=row[12],
        due_at=row[13],
        warn_at=row[14],
        warned_at=row[15],
        level=row[16],
        parent_id=row[17],
        escalated_to=row[18],
        approvals=json.loads(row[19]),
        decision=_serde.loads(row[20]),
        created_at=row[21],
        updated_at=row[22],
        decided_at=row[23],
        meta=json.loads(row[24]),
        version=row[25],
    )
