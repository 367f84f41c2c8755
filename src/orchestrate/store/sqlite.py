"""``SQLiteStore``: the embedded, zero-infrastructure store (``sqlite:///path``).

One connection, one writer: a run's writes go inline on the caller's thread while it
writes alone, and writes of concurrent runs share commits on a writer thread (group
commit; see :mod:`._sqlite_io`).

Pragmas: WAL journal, ``synchronous=FULL`` by default so that a step reported as
recorded survives a power loss, not only a process crash. ``?synchronous=normal`` in
the URL trades that for speed (WAL with NORMAL can lose the last commits on power
loss, never on a process crash).

Opening reads before it writes: the schema version is read in a read transaction
(which in WAL mode waits for no writer), and a write transaction is taken only to
migrate. A file that holds tables but no orchestrate schema is refused untouched. A
store opened ``read_only`` never writes (``PRAGMA query_only``): no migration, no
journal-mode change, no file created.

The store is written in parts, one module per concern: the connection, writer thread and
lifecycle (:mod:`._sqlite_io`), the schema and its migrations (:mod:`._sqlite_schema`),
claiming (:mod:`._sqlite_claims`), shared limits (:mod:`._sqlite_limits`) and review
items (:mod:`._sqlite_reviews`); runs, step records, events and the cache are here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from orchestrate.errors import RunNotFoundError, RunStateError
from orchestrate.store import _limits, _sql
from orchestrate.store._sqlite_claims import SQLiteClaims
from orchestrate.store._sqlite_io import Alone, check_fence, raise_fence
from orchestrate.store._sqlite_limits import SQLiteLimits
from orchestrate.store._sqlite_reviews import SQLiteReviews
from orchestrate.store.base import (
    PRUNED_BY_DEFAULT,
    AttemptState,
    CacheEntry,
    Capability,
    Event,
    RunRecord,
    RunUpdate,
    StepRecord,
)
from orchestrate.types import RunStatus, StepStatus

_SELECT_STEPS = _sql.SELECT_STEPS.format(order="rowid")
_FENCED_INSERT_STEP = (
    f"INSERT INTO orchestrate_steps ({_sql.STEP_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
    " WHERE EXISTS (SELECT 1 FROM orchestrate_runs WHERE run_id = ? AND fence = ? AND status = 'running')"
    " ON CONFLICT (run_id, step_key) DO NOTHING"
)
# A plain success (first attempt, no error, no fallback): what every such record shares is
# written in the statement, not bound (``None`` in particular: sqlite3 binds it through its
# adapter registry, a failed attribute lookup or two), and the run id is bound once.
_FENCED_INSERT_PLAIN_STEP = (
    f"INSERT INTO orchestrate_steps ({_sql.STEP_COLUMNS})"
    f" SELECT ?1, ?2, ?3, '{StepStatus.SUCCEEDED.value}', ?4, NULL, 1, ?5, ?6, ?7, NULL, ?8"
    " WHERE EXISTS (SELECT 1 FROM orchestrate_runs WHERE run_id = ?1 AND fence = ?9 AND status = 'running')"
    " ON CONFLICT (run_id, step_key) DO NOTHING"
)
# SQLite's LIKE ignores ASCII case (so it cannot use the primary key's index either);
# GLOB compares exactly. Its wildcards ``*``, ``?`` and ``[`` are quoted as ``[*]``...
_FIND_RUN_IDS = _sql.FIND_RUN_IDS.replace("LIKE ? ESCAPE '!'", "GLOB ?")


class SQLiteStore(SQLiteClaims, SQLiteLimits, SQLiteReviews):
    """A store in one SQLite file, safe for several processes on one machine.

    With ``create=False``, :meth:`open` refuses a file that does not exist, or holds no
    orchestrate schema yet, rather than create one (and its directory). With
    ``read_only=True`` it never writes: a schema older than this code is refused instead
    of migrated (reading commands use it). ``payload_limits`` bounds the JSON of the
    values it writes (default: ``?max_payload_bytes=`` and ``?warn_payload_bytes=`` in the
    URL, else ``$ORCHESTRATE_MAX_PAYLOAD_BYTES``, else 2 MiB; see
    :class:`~orchestrate.store.PayloadLimits`).
    """

    capabilities: frozenset[Capability] = frozenset(
        {Capability.SHARED, Capability.CLAIMING, Capability.LIMITS, Capability.TRANSIENT_FAILURES}
    )
    """Shared by the processes of one machine, claims in one call, keeps shared limits; its I/O may fail transiently."""

    # runs -----------------------------------------------------------------------------------
    async def create_run(self, run: RunRecord, *, event: Event | None = None) -> RunRecord:
        """Insert unless present; return the stored run."""
        params = _sql.run_params(run)
        large = _sql.input_size(run, params[4], self.payload_limits)
        evs = [_sql.event_params(e) for e in (event, large) if e is not None]

        def op(cur: sqlite3.Cursor) -> RunRecord:
            if cur.execute(_sql.INSERT_RUN, params).rowcount:
                for ev in evs:
                    cur.execute(_sql.INSERT_EVENT, ev)
                return run  # stored as given: reading it back would tell nothing new
            return _sql.run_from_row(cur.execute(_sql.SELECT_RUN, (run.run_id,)).fetchone())

        result: RunRecord = await self._call(op, run=run.run_id)
        return result

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run or ``None``."""

        def op(cur: sqlite3.Cursor) -> RunRecord | None:
            row = cur.execute(_sql.SELECT_RUN, (run_id,)).fetchone()
            return None if row is None else _sql.run_from_row(row)

        result: RunRecord | None = await self._call(op, write=False)
        return result

    async def list_runs(
        self,
        *,
        status: Sequence[RunStatus] | None = None,
        workflow: str | None = None,
        limit: int = 100,
        values: bool = True,
    ) -> list[RunRecord]:
        """Newest first."""
        sql, params = _sql.list_runs_sql(status, workflow, values)

        def op(cur: sqlite3.Cursor) -> list[RunRecord]:
            return [_sql.run_from_row(r) for r in cur.execute(sql, (*params, limit))]

        result: list[RunRecord] = await self._call(op, write=False)
        return result

    async def find_run_ids(self, prefix: str, *, limit: int = 5) -> list[str]:
        """In id order."""
        return await self._find_ids(_FIND_RUN_IDS, prefix, limit)

    async def list_dead_letters(
        self, *, workflow: str | None = None, limit: int = 100, values: bool = True
    ) -> list[RunRecord]:
        """Newest first."""
        sql, params = _sql.list_dead_letters_sql(workflow, values)

        def op(cur: sqlite3.Cursor) -> list[RunRecord]:
            return [_sql.run_from_row(r) for r in cur.execute(sql, (*params, limit))]

        result: list[RunRecord] = await self._call(op, write=False)
        return result

    async def prune_runs(
        self,
        *,
        before: float,
        status: Sequence[RunStatus] = PRUNED_BY_DEFAULT,
        limit: int = 500,
        dry_run: bool = False,
    ) -> int:
        """Delete a batch of ended runs with everything kept under their ids, in one transaction."""
        statuses = _sql.prune_statuses(status)
        marks = ", ".join("?" for _ in statuses)
        if dry_run:
            count = _sql.PRUNE_COUNT.format(statuses=marks)
            return int(await self._call(lambda cur: cur.execute(count, (*statuses, before)).fetchone()[0], write=False))
        select = _sql.PRUNE_CANDIDATES.format(statuses=marks)

        def op(cur: sqlite3.Cursor) -> int:
            ids = [row[0] for row in cur.execute(select, (*statuses, before, limit))]
            if not ids:
                return 0
            among = f"run_id IN ({', '.join('?' for _ in ids)})"
            for table in _sql.PRUNE_TABLES:
                cur.execute(f"DELETE FROM {table} WHERE {among}", ids)
            return int(cur.execute(f"DELETE FROM orchestrate_runs WHERE {among}", ids).rowcount)

        return int(await self._call(op))

    async def update_run(self, run_id: str, *, fence: int, now: float, update: RunUpdate, event: Event | None) -> None:
        """Fenced transition."""
        sql, params = _update_sql(run_id, fence, now, update)
        large = _sql.output_size(run_id, params[1], self.payload_limits, now)
        evs = [_sql.event_params(e) for e in (event, large) if e is not None]

        def op(cur: sqlite3.Cursor) -> None:
            if not cur.execute(sql, params).rowcount:
                raise_fence(cur, run_id, fence)
            for ev in evs:
                cur.execute(_sql.INSERT_EVENT, ev)

        await self._call(op, run=run_id)
        if update.status is not RunStatus.RUNNING:
            self._last_run = None  # the run let go: the next run's writes may go inline

    async def cancel_run(self, run_id: str, *, now: float, reason: str) -> RunRecord:
        """Cancel a non-terminal run."""
        error = _sql.to_json({"type": "cancelled", "message": reason}, "cancel reason")
        ev = _sql.event_params(Event(run_id=run_id, kind="run_cancelled", at=now, data={"reason": reason}))

        def op(cur: sqlite3.Cursor) -> RunRecord:
            if cur.execute(_sql.CANCEL_RUN, (error, now, run_id)).rowcount:
                cur.execute(_sql.INSERT_EVENT, ev)
                return _sql.run_from_row(cur.execute(_sql.SELECT_RUN, (run_id,)).fetchone())
            row = cur.execute(_sql.SELECT_RUN, (run_id,)).fetchone()
            if row is None:
                raise RunNotFoundError(f"run {run_id!r} does not exist")
            raise RunStateError(f"run {run_id!r} is already {row[3]}")

        result: RunRecord = await self._call(op)
        return result

    async def wake_run(self, run_id: str, *, now: float) -> None:
        """Make a waiting run due."""
        await self._call(lambda cur: cur.execute(_sql.WAKE_RUN, (now, run_id)))

    # steps ------------------------------------------------------------------------------
    async def record_step(
        self,
        step: StepRecord,
        *,
        fence: int | None,
        now: float,
        event: Event | None = None,
        run_update: RunUpdate | None = None,
    ) -> StepRecord:
        """Insert-if-absent, fenced; a value over the payload limit is refused before anything is written."""
        if fence is None:  # a signal, from outside the run
            _limits.signal_depth(step)
        alone: Alone | None = None
        if (
            fence is not None
            and event is None
            and run_update is None
            and step.attempts == 1
            and step.status is StepStatus.SUCCEEDED
            and step.error is None
            and step.fallback is None
        ):
            # The common step: one fenced insert, committed on its own.
            output, meta = _sql.step_json(step)
            plain = (step.run_id, step.step_key, step.name, output, step.started_at, step.finished_at)
            insert = (_FENCED_INSERT_PLAIN_STEP, (*plain, step.input_hash, meta, fence))
        else:
            params = _sql.step_params(step)
            output = params[4]
            if fence is None:
                insert = (_sql.INSERT_STEP, params)
            else:
                insert = (_FENCED_INSERT_STEP, (*params, step.run_id, fence))
        large = _sql.step_size(step, output, self.payload_limits)
        update = None
        if run_update is not None:
            # The final step's output is the run's: its text is checked and encoded once.
            same = run_update.output is step.output and output is not None
            update = _update_sql(step.run_id, fence, now, run_update, output if same else None)
            if not same:
                large = _sql.output_size(step.run_id, update[1][1], self.payload_limits, now) or large
        evs = [_sql.event_params(e) for e in (event, large) if e is not None]
        if not evs and update is None and step.attempts == 1:
            alone = (*insert, step)  # no event, no run update: one insert, committed on its own

        def op(cur: sqlite3.Cursor) -> StepRecord:
            inserted = cur.execute(*insert).rowcount
            if not inserted and fence is not None:
                # The fence check and the insert are one statement; why nothing was inserted
                # (the lease was lost, or the step was recorded already) is asked after.
                check_fence(cur, step.run_id, fence)
            if not inserted:
                row = cur.execute(_sql.SELECT_STEP, (step.run_id, step.step_key)).fetchone()
                return _sql.step_from_row(row)
            if step.attempts != 1:  # retry progress is saved only after a failed attempt
                cur.execute(_sql.DELETE_ATTEMPTS, (step.run_id, step.step_key))
            for ev in evs:
                cur.execute(_sql.INSERT_EVENT, ev)
            if update:
                cur.execute(*update)
            return step

        result: StepRecord = await self._call(op, run=step.run_id, alone=alone)
        if run_update is not None and run_update.status is not RunStatus.RUNNING:
            self._last_run = None
        return result

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        """In recording order."""

        def op(cur: sqlite3.Cursor) -> list[StepRecord]:
            return [_sql.step_from_row(r) for r in cur.execute(_SELECT_STEPS, (run_id,))]

        result: list[StepRecord] = await self._call(op, write=False)
        return result

    async def copy_steps(self, source_run_id: str, target_run_id: str, keys: Sequence[str]) -> int:
        """Copy records for a replay."""

        def op(cur: sqlite3.Cursor) -> int:
            copied = 0
            for key in keys:
                row = cur.execute(_sql.SELECT_STEP, (source_run_id, key)).fetchone()
                if row is not None:
                    params = (target_run_id, *row[1:])
                    copied += cur.execute(_sql.INSERT_STEP, params).rowcount
            return copied

        return int(await self._call(op))

    async def save_attempts(self, state: AttemptState, *, fence: int, event: Event | None) -> None:
        """Upsert retry progress (fenced)."""
        params = _sql.attempts_params(state)
        ev = _sql.event_params(event) if event else None

        def op(cur: sqlite3.Cursor) -> None:
            check_fence(cur, state.run_id, fence)
            cur.execute(_sql.UPSERT_ATTEMPTS, params)
            if ev:
                cur.execute(_sql.INSERT_EVENT, ev)

        await self._call(op, run=state.run_id)

    async def get_attempts(self, run_id: str) -> dict[str, AttemptState]:
        """Retry progress by step key."""

        def op(cur: sqlite3.Cursor) -> dict[str, AttemptState]:
            rows = cur.execute(_sql.SELECT_ATTEMPTS, (run_id,))
            return {s.step_key: s for s in map(_sql.attempts_from_row, rows)}

        result: dict[str, AttemptState] = await self._call(op, write=False)
        return result

    # events, cache ------------------------------------------------------------------------
    async def append_event(self, event: Event) -> None:
        """Append, unless the same event is there already (a retry)."""
        params = _sql.event_params(event)
        await self._call(lambda cur: cur.execute(_sql.APPEND_EVENT, params), run=event.run_id)

    async def list_events(self, run_id: str) -> list[Event]:
        """Oldest first."""

        def op(cur: sqlite3.Cursor) -> list[Event]:
            return [_sql.event_from_row(r) for r in cur.execute(_sql.SELECT_EVENTS, (run_id,))]

        result: list[Event] = await self._call(op, write=False)
        return result

    async def cache_get(self, key: str) -> CacheEntry | None:
        """Lookup."""

        def op(cur: sqlite3.Cursor) -> CacheEntry | None:
            row = cur.execute(_sql.CACHE_GET, (key,)).fetchone()
            return None if row is None else _sql.cache_from_row(row)

        result: CacheEntry | None = await self._call(op, write=False)
        return result

    async def cache_put(self, key: str, value: Any, *, now: float) -> None:
        """Replace."""
        params = (key, _sql.to_json(value, f"cached value {key!r}"), now)
        _sql.cache_size(key, params[1], self.payload_limits)
        await self._call(lambda cur: cur.execute(_sql.CACHE_PUT, params))


def _update_sql(
    run_id: str, fence: int | None, now: float, update: RunUpdate, output: str | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The statement of ``update`` and its parameters; ``output``: the output's JSON, when known."""
    sql = _sql.UPDATE_RUN + (_sql.RELEASE if update.release else "")
    params: tuple[Any, ...] = (
        update.status._value_,
        output if output is not None else _sql.to_json(update.output, "run output"),
        _sql.to_json(update.error, "run error"),
        update.wake_at,
        update.wait_reason,
        now,
    )
    if fence is None:
        return sql + " WHERE run_id = ?", (*params, run_id)
    return sql + _sql.FENCED, (*params, run_id, fence)
