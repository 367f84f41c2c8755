"""PostgreSQL's SQL for :mod:`orchestrate.store.postgres`.

The statements shared with SQLite (:mod:`orchestrate.store._sql`) are converted to
psycopg's ``%s`` placeholders once, here. What only PostgreSQL has is spelled out too:
the hot writes as single statements (data-modifying CTEs, one round trip, one commit),
claiming with ``FOR UPDATE SKIP LOCKED``, the database clock, and the notification
trigger. Parameters of ``INSERT ... SELECT`` are cast explicitly: in a select list an
untyped parameter would be taken for text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrate.store import _sql
from orchestrate.store._access_schema import PG_AUDIT_APPEND_ONLY
from orchestrate.store._blobs import URL_OPTIONS as BLOB_OPTIONS
from orchestrate.store._limits import URL_OPTIONS as LIMIT_OPTIONS
from orchestrate.store.base import AttemptState, Event, RunUpdate, StepRecord

URL_OPTIONS = frozenset(
    {
        "schema",
        "clock",
        "migrate",
        "pool_min",
        "pool_max",
        "retry_seconds",
        "prepare_threshold",
        *LIMIT_OPTIONS,
        *BLOB_OPTIONS,
    }
)
"""Query parameters of a ``postgresql://`` URL that the store reads (the rest go to libpq)."""

DATABASE_NOW = "extract(epoch from clock_timestamp())::float8"
"""The database clock as POSIX seconds (``clock_timestamp``: it moves within a transaction)."""


def fmt(sql: str) -> str:
    """A shared statement with psycopg's placeholders."""
    return _sql.placeholders(sql, "format")


def channel(schema: str) -> str:
    """The ``NOTIFY`` channel of the runs table in ``schema`` (the trigger builds the same name)."""
    return f"orchestrate.{schema}"[:63]


def filter_params(versions: Sequence[tuple[str, str]] | None, queues: Sequence[str] | None) -> dict[str, Any]:
    """Parameters of the claim filters built by :class:`Statements`."""
    params: dict[str, Any] = {}
    if versions is not None:
        params["wf_names"] = [name for name, _ in versions]
        params["wf_versions"] = [version for _, version in versions]
    if queues is not None:
        params["queues"] = list(queues)
    return params


# Migrations that only PostgreSQL needs, run after the shared statements of a version.
EXTRA_MIGRATIONS: dict[int, list[str]] = {
    6: PG_AUDIT_APPEND_ONLY,
    3: [
        # Idle workers LISTEN on the channel; a run that becomes claimable (created,
        # released, woken, parked on a timer) wakes them. The payload is its queue.
        """CREATE OR REPLACE FUNCTION orchestrate_notify_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(left('orchestrate.' || TG_TABLE_SCHEMA, 63), NEW.queue);
    RETURN NULL;
END
$$""",
        "CREATE OR REPLACE TRIGGER orchestrate_runs_notify AFTER INSERT OR UPDATE OF status, wake_at"
        " ON orchestrate_runs FOR EACH ROW"
        " WHEN (NEW.status = 'pending' OR (NEW.status = 'waiting' AND NEW.wake_at IS NOT NULL))"
        " EXECUTE FUNCTION orchestrate_notify_run()",
    ],
}

SET_VERSION = fmt(_sql.SET_VERSION)
SELECT_RUN = fmt(_sql.SELECT_RUN)
FIND_RUN_IDS = fmt(_sql.FIND_RUN_IDS)
WAKE_RUN = fmt(_sql.WAKE_RUN)
INSERT_STEP = fmt(_sql.INSERT_STEP)
SELECT_STEP = fmt(_sql.SELECT_STEP)
SELECT_STEPS = fmt(_sql.SELECT_STEPS.format(order="seq"))
DELETE_ATTEMPTS = fmt(_sql.DELETE_ATTEMPTS)
SELECT_ATTEMPTS = fmt(_sql.SELECT_ATTEMPTS)
INSERT_EVENT = fmt(_sql.INSERT_EVENT)
APPEND_EVENT = (
    "INSERT INTO orchestrate_events (run_id, kind, at, step_key, data)"
    " SELECT %(run)s::text, %(kind)s::text, %(at)s::float8, %(step)s::text, %(data)s::text"
    " WHERE NOT EXISTS (SELECT 1 FROM orchestrate_events WHERE run_id = %(run)s::text AND kind = %(kind)s::text"
    " AND at = %(at)s::float8 AND step_key IS NOT DISTINCT FROM %(step)s::text AND data = %(data)s::text)"
)
"""A lone event, unless the run's history has one the same in every field (a retried append)."""


def append_event_params(params: Sequence[Any]) -> dict[str, Any]:
    """:data:`APPEND_EVENT`'s parameters from :func:`~orchestrate.store._sql.event_params`'."""
    run, kind, at, step, data = params
    return {"run": run, "kind": kind, "at": at, "step": step, "data": data}


SELECT_EVENTS = fmt(_sql.SELECT_EVENTS)
CACHE_GET = fmt(_sql.CACHE_GET)
CACHE_PUT = fmt(_sql.CACHE_PUT)
INSERT_REVIEW = fmt(_sql.INSERT_REVIEW)
SELECT_REVIEW = fmt(_sql.SELECT_REVIEW)
FIND_REVIEW_IDS = fmt(_sql.FIND_REVIEW_IDS)
UPDATE_REVIEW = fmt(_sql.UPDATE_REVIEW)
# What UPDATE_REVIEW sets, in its order: a retry compares it with its own parameters.
REVIEW_WRITTEN = (
    "SELECT status, payload, due_at, warn_at, warned_at, escalated_to, approvals, decision, decided_at, meta,"
    " updated_at, version FROM orchestrate_reviews WHERE review_id = %s"
)
RATE_INSERT = fmt(_sql.RATE_INSERT)
# Prune and read in one statement: the SELECT sees the rows the DELETE removes, but
# filters them out by the same bound.
RATE_WINDOW = f"WITH gone AS ({fmt(_sql.RATE_PRUNE)}) {fmt(_sql.RATE_WINDOW)}"
BREAKER_GET = fmt(_sql.BREAKER_GET)
BREAKER_INSERT = fmt(_sql.BREAKER_INSERT)
BREAKER_UPDATE = fmt(_sql.BREAKER_UPDATE)

PRUNE_COUNT = "SELECT count(*) FROM orchestrate_runs WHERE status = ANY(%s::text[]) AND updated_at < %s"
PRUNE_RUNS = (
    "WITH gone AS (SELECT run_id FROM orchestrate_runs WHERE status = ANY(%(statuses)s::text[])"
    " AND updated_at < %(before)s LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    + "".join(
        f", d{i} AS (DELETE FROM {t} WHERE run_id IN (SELECT run_id FROM gone))"
        for i, t in enumerate(_sql.PRUNE_TABLES)
    )
    + " DELETE FROM orchestrate_runs WHERE run_id IN (SELECT run_id FROM gone)"
)
"""A batch of ended runs and their rows, deleted in one statement; its row count is the runs'."""

_RUN_COLUMNS_U = ", ".join(f"u.{c.strip()}" for c in _sql.RUN_COLUMNS.split(","))
CANCEL_RUN = (
    f"WITH c AS ({fmt(_sql.CANCEL_RUN)} RETURNING {_sql.RUN_COLUMNS}),"
    " ev AS (INSERT INTO orchestrate_events (run_id, kind, at, step_key, data)"
    " SELECT %s::text, %s::text, %s::float8, %s::text, %s::text FROM c)"
    f" SELECT {_sql.RUN_COLUMNS} FROM c"
)
COPY_STEPS = (
    f"INSERT INTO orchestrate_steps ({_sql.STEP_COLUMNS})"
    " SELECT %s, step_key, name, status, output, error, attempts, started_at, finished_at, input_hash, fallback, meta"
    " FROM orchestrate_steps WHERE run_id = %s AND step_key = ANY(%s::text[])"
    " ORDER BY array_position(%s::text[], step_key) ON CONFLICT (run_id, step_key) DO NOTHING"
)

_EVENT_SELECT = "SELECT %s::text, %s::text, %s::float8, %s::text, %s::text"
_STEP_SELECT = (
    "SELECT %s::text, %s::text, %s::text, %s::text, %s::text, %s::text, %s::int, %s::float8, %s::float8,"
    " %s::text, %s::text, %s::text"
)


_FENCE_HELD = "EXISTS (SELECT 1 FROM r WHERE r.fence = %s AND r.status = 'running')"
_INSERT_RUN = f"INSERT INTO orchestrate_runs ({_sql.RUN_COLUMNS}) VALUES ({', '.join(['%s'] * _sql.RUN_FIELDS)})"


def create_run(with_event: bool) -> str:
    """Insert-if-absent of a run (and its event); its row count says whether the run was inserted.

    No result rows: a statement that returns none costs the client less than one that
    answers with a row (there is no row description to adapt).
    """
    text = f"{_INSERT_RUN} ON CONFLICT (run_id) DO NOTHING"
    if not with_event:
        return text
    # The event is inserted exactly when the run is: one row counted, or none.
    return (
        f"WITH ins AS ({text} RETURNING 1)"
        f" INSERT INTO orchestrate_events (run_id, kind, at, step_key, data) {_EVENT_SELECT} FROM ins"
    )


def _update_sql(
    run_id: str, fence: int | None, now: float, update: RunUpdate, output: str | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The statement of ``update`` and its parameters; ``output``: the output's JSON, when known."""
    sql = _sql.UPDATE_RUN + (_sql.RELEASE if update.release else "")
    params: tuple[Any, ...] = (
        update.status.value,
        output if output is not None else _sql.to_json(update.output, "run output"),
        _sql.to_json(update.error, "run error"),
        update.wake_at,
        update.wait_reason,
        now,
    )
    if fence is None:
        return fmt(sql + " WHERE run_id = ?"), (*params, run_id)
    return fmt(sql + _sql.FENCED), (*params, run_id, fence)


def update_run(
    run_id: str, fence: int, now: float, update: RunUpdate, event: Event | None
) -> tuple[str, tuple[Any, ...]]:
    """A fenced transition and its event; returns ``(updated, fence, status, updated_at)``.

    The last three come from the statement's snapshot: they explain a refusal and let a
    retry recognise its own earlier commit.
    """
    sql, params = _update_sql(run_id, fence, now, update)
    text = f"WITH upd AS ({sql} RETURNING 1)"
    if event is not None:
        text += f", ev AS (INSERT INTO orchestrate_events (run_id, kind, at, step_key, data) {_EVENT_SELECT} FROM upd)"
        params = (*params, *_sql.event_params(event))
    text += (
        " SELECT EXISTS (SELECT 1 FROM upd), r.fence, r.status, r.updated_at"
        " FROM (SELECT 1) AS one LEFT JOIN orchestrate_runs r ON r.run_id = %s"
    )
    return text, (*params, run_id)


_RECORD_STEP: dict[tuple[bool, bool, bool | None, bool, bool], str] = {}


def _record_step_text(fenced: bool, with_event: bool, release: bool | None, retried: bool, counted: bool) -> str:
    """The statement of :func:`record_step` for one shape (built once, then cached)."""
    key = (fenced, with_event, release, retried, counted)
    text = _RECORD_STEP.get(key)
    if text is not None:
        return text
    lock = "FOR SHARE" if release is None else "FOR NO KEY UPDATE"
    text = (
        f"WITH r AS (SELECT fence, status FROM orchestrate_runs WHERE run_id = %s {lock}),"
        f" ins AS (INSERT INTO orchestrate_steps ({_sql.STEP_COLUMNS}) {_STEP_SELECT}"
        f" WHERE {_FENCE_HELD if fenced else 'TRUE'} ON CONFLICT (run_id, step_key) DO NOTHING RETURNING 1)"
    )
    if retried:  # retry progress exists only for a step that failed an attempt
        text += (
            ", del AS (DELETE FROM orchestrate_attempts WHERE run_id = %s AND step_key = %s"
            " AND EXISTS (SELECT 1 FROM ins))"
        )
    event = (
        "INSERT INTO orchestrate_events (run_id, kind, at, step_key, data)"
        f" {_EVENT_SELECT} WHERE EXISTS (SELECT 1 FROM ins)"
    )
    update = ""
    if release is not None:
        update = _sql.UPDATE_RUN + (_sql.RELEASE if release else "") + (_sql.FENCED if fenced else " WHERE run_id = ?")
        update = f"{fmt(update)} AND EXISTS (SELECT 1 FROM ins)"
    if counted:
        # The last write is the statement itself: it touches one row exactly when the
        # step was inserted (the run's row is locked, so the update's filter holds too).
        assert with_event or update, "a counted step statement ends with its event or its run update"
        if with_event and update:
            text += f", ev AS ({event})"
        text += f" {update or event}"
    else:
        if with_event:
            text += f", ev AS ({event})"
        if update:
            text += f", upd AS ({update})"
        text += " SELECT (SELECT fence FROM r), (SELECT status FROM r), EXISTS (SELECT 1 FROM ins)"
    _RECORD_STEP[key] = text
    return text


def record_step(
    step: StepRecord,
    fence: int | None,
    now: float,
    event: Event | None,
    run_update: RunUpdate | None,
    *,
    counted: bool = False,
    run_output: str | None = None,
) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
    """The insert-if-absent of a step record, fenced, with its event and run update.

    Returns the statement, its parameters and the step's own row (to recognise it). The
    statement answers ``(fence, status, inserted)``; ``counted`` (for a record with an
    event or a run update) makes its last write the statement itself, which returns no
    rows: its row count is 1 when the step was inserted, else 0. The run's row is locked
    (shared, or exclusive when the run is updated too) so that a claim cannot move the
    fence between the check and the insert. ``run_output``: the JSON of the run update's
    output, when it is not the step's own.
    """
    step_params = _sql.step_params(step)
    params: tuple[Any, ...] = (step.run_id, *step_params)
    if fence is not None:
        params += (fence,)
    retried = step.attempts != 1
    if retried:
        params += (step.run_id, step.step_key)
    if event is not None:
        params += _sql.event_params(event)
    if run_update is not None:
        # The final step's output is the run's: encoded once.
        same = run_update.output is step.output and step_params[4] is not None
        output = step_params[4] if same else run_output
        params += _update_sql(step.run_id, fence, now, run_update, output)[1]
    text = _record_step_text(
        fence is not None, event is not None, None if run_update is None else run_update.release, retried, counted
    )
    return text, params, step_params


_RECORD_STEP_FENCED = (
    f"INSERT INTO orchestrate_steps ({_sql.STEP_COLUMNS}) {_STEP_SELECT} FROM orchestrate_runs"
    " WHERE run_id = %s AND fence = %s AND status = 'running' FOR SHARE ON CONFLICT (run_id, step_key) DO NOTHING"
)


def record_step_plain(step: StepRecord, fence: int | None) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
    """The common step record (no event, no run update, no retry progress) as a bare insert.

    Returns the statement, its parameters and the step's own row. Its row count answers:
    1 when the step was inserted (under the fence: the run's row is locked ``FOR SHARE``
    until the commit, so a claim cannot move the fence between the check and the
    insert); 0 when it was not, because the step exists or the fence does not hold, which
    :func:`record_step` then tells apart. Nothing comes back otherwise: no CTE and no
    result row, the cheapest shape for the server and the client alike.
    """
    step_params = _sql.step_params(step)
    if fence is None:
        return INSERT_STEP, step_params, step_params
    return _RECORD_STEP_FENCED, (*step_params, step.run_id, fence), step_params


def save_attempts(state: AttemptState, fence: int, event: Event | None) -> tuple[str, tuple[Any, ...]]:
    """The fenced upsert of retry progress; answers ``(fence, status)``.

    The event is written only when the row changes, so that a retry after a lost
    acknowledgement does not log the attempt twice.
    """
    values = _sql.attempts_params(state)
    text = (
        "WITH r AS (SELECT fence, status FROM orchestrate_runs WHERE run_id = %s FOR SHARE),"
        " dup AS (SELECT 1 FROM orchestrate_attempts WHERE run_id = %s AND step_key = %s"
        " AND attempts = %s AND next_at = %s),"
        " up AS (INSERT INTO orchestrate_attempts (run_id, step_key, attempts, next_at, first_started_at, error)"
        " SELECT %s::text, %s::text, %s::int, %s::float8, %s::float8, %s::text"
        " WHERE EXISTS (SELECT 1 FROM r WHERE r.fence = %s AND r.status = 'running')"
        " ON CONFLICT (run_id, step_key) DO UPDATE SET attempts = excluded.attempts,"
        " next_at = excluded.next_at, error = excluded.error RETURNING 1)"
    )
    params: list[Any] = [state.run_id, state.run_id, state.step_key, state.attempts, state.next_at, *values, fence]
    if event is not None:
        text += (
            ", ev AS (INSERT INTO orchestrate_events (run_id, kind, at, step_key, data)"
            f" {_EVENT_SELECT} WHERE EXISTS (SELECT 1 FROM up) AND NOT EXISTS (SELECT 1 FROM dup))"
        )
        params.extend(_sql.event_params(event))
    text += " SELECT (SELECT fence FROM r), (SELECT status FROM r)"
    return text, tuple(params)


def _claimable(alias: str) -> str:
    a = alias
    return (
        f"(({a}.status = 'pending' AND ({a}.wake_at IS NULL OR {a}.wake_at <= t.now))"
        f" OR ({a}.status = 'waiting' AND {a}.wake_at IS NOT NULL AND {a}.wake_at <= t.now)"
        f" OR ({a}.status = 'running' AND {a}.lease_expires_at <= t.now))"
    )


def _filter(alias: str, versions: bool, queues: bool) -> str:
    sql = ""
    if versions:
        sql += (
            f" AND ({alias}.workflow, {alias}.version) IN"
            " (SELECT * FROM unnest(%(wf_names)s::text[], %(wf_versions)s::text[]))"
        )
    if queues:
        sql += f" AND {alias}.queue = ANY(%(queues)s::text[])"
    return sql


class Statements:
    """The statements whose notion of "now" depends on the store's clock setting.

    With the database clock, ``now`` is ``clock_timestamp()``; with the caller's, the
    ``now`` parameter. Either way a statement computes it once (the ``t`` CTE).
    """

    def __init__(self, *, database_clock: bool) -> None:
        now = DATABASE_NOW if database_clock else "%(now)s::float8"
        self._t = f"WITH t AS (SELECT {now} AS now)"
        self.due_runs = (
            f"{self._t} SELECT {_sql.RUN_COLUMNS} FROM orchestrate_runs r, t WHERE {_claimable('r')}"
            " ORDER BY COALESCE(r.wake_at, r.created_at), r.run_id LIMIT %(limit)s"
        )
        self.renew_lease = (
            f"{self._t} UPDATE orchestrate_runs SET lease_expires_at = t.now + %(lease)s FROM t"
            " WHERE run_id = %(run_id)s AND fence = %(fence)s AND status = 'running'"
        )
        # The lock row's RETURNING is computed once the lock is held: grants are stamped
        # in the order they are decided.
        self.rate_lock = (
            "INSERT INTO orchestrate_rate_limits (resource, touched_at) VALUES (%(resource)s, NULL)"
            f" ON CONFLICT (resource) DO UPDATE SET touched_at = NULL RETURNING {now}"
        )
        self.breaker_get = (
            f"{self._t} SELECT b.resource, b.state, b.failures, b.opened_at, b.trials, b.successes, b.version,"
            " t.now FROM t LEFT JOIN orchestrate_breakers b ON b.resource = %(resource)s"
        )
        self._claim_set = (
            "UPDATE orchestrate_runs AS u SET status = 'running', owner = %(owner)s,"
            f" lease_expires_at = t.now + %(lease)s, fence = u.fence + 1, updated_at = %(now)s, {_sql.crash_count('u')}"
        )
        self._cache: dict[tuple[Any, ...], str] = {}

    def claim_run(self, force: bool) -> str:
        """Claim one run by id (``force``: also a running one)."""
        key = ("claim_run", force)
        if key not in self._cache:
            condition = f"({_claimable('u')} OR u.status = 'running')" if force else _claimable("u")
            self._cache[key] = (
                f"{self._t} {self._claim_set} FROM t WHERE u.run_id = %(run_id)s AND {condition}"
                f" RETURNING {_RUN_COLUMNS_U}"
            )
        return self._cache[key]

    def claim_due(self, versions: bool, queues: bool, orphans: bool, split: bool = False) -> str:
        """Claim up to ``%(limit)s`` due runs, skipping rows another worker is claiming.

        With ``split``, at most ``%(suspects)s`` of them are suspects (claimed first).
        """
        key = ("claim_due", versions, queues, orphans, split)
        if key not in self._cache:
            orphaned = " OR (r.status = 'running' AND r.owner = ANY(%(orphans)s::text[]))" if orphans else ""
            where = _filter("r", versions, queues)
            claimable = _claimable("r")

            def due(condition: str, limit: str) -> str:
                return (
                    f"SELECT r.run_id FROM orchestrate_runs r, t WHERE {condition}{where}"
                    f" ORDER BY COALESCE(r.wake_at, r.created_at), r.run_id LIMIT {limit} FOR UPDATE OF r SKIP LOCKED"
                )

            if split:
                suspect = f"({claimable}{orphaned}) AND (r.status = 'running' OR r.crashes > 0)"
                other = f"{claimable} AND r.status <> 'running' AND r.crashes = 0"
                ctes = (
                    f"sus AS ({due(suspect, '%(suspects)s')}),"
                    f" ok AS ({due(other, '(%(limit)s - (SELECT count(*) FROM sus))')}),"
                    " due AS (SELECT run_id FROM sus UNION ALL SELECT run_id FROM ok)"
                )
            else:
                ctes = f"due AS ({due(f'({claimable}{orphaned})', '%(limit)s')})"
            self._cache[key] = (
                f"{self._t}, {ctes} {self._claim_set} FROM due, t"
                f" WHERE u.run_id = due.run_id RETURNING {_RUN_COLUMNS_U}"
            )
        return self._cache[key]

    def next_due(self, versions: bool, queues: bool) -> str:
        """Seconds from now until the next run of these versions and queues is claimable."""
        key = ("next_due", versions, queues)
        if key not in self._cache:
            self._cache[key] = (
                f"{self._t} SELECT (SELECT MIN(CASE WHEN r.status = 'running' THEN r.lease_expires_at"
                " WHEN r.status = 'pending' THEN COALESCE(r.wake_at, 0) ELSE r.wake_at END)"
                " FROM orchestrate_runs r WHERE r.status IN ('pending', 'waiting', 'running')"
                f"{_filter('r', versions, queues)}) - t.now FROM t"
            )
        return self._cache[key]
