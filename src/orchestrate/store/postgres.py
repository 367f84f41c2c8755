"""``PostgresStore``: the shared store of many workers on many machines (``postgresql://``).

PostgreSQL is the whole cluster: workers claim runs with ``FOR UPDATE SKIP LOCKED``, hold
them under leases with fencing tokens, and wake on ``LISTEN/NOTIFY``; there is no other
coordination. The SQL is shared with the SQLite store (:mod:`orchestrate.store._sql`);
what differs lives here: types, ``RETURNING`` and data-modifying CTEs that make every
hot write one round trip and one commit, row locks, advisory-locked migrations, the
notification trigger, and the database clock.

**Clocks.** With ``clock=database`` (the default) lease expiry and due-ness (leases,
timers, scheduled starts, rate windows, breaker timeouts) are judged in SQL on the
database's ``clock_timestamp()``, never on a worker's clock, so a worker with a skewed
clock cannot steal a live lease. The ``now`` arguments of those calls are then ignored;
timestamps the engine records (``created_at``, step times, ``wake_at``) still come from
its clock. ``clock=caller`` trusts the ``now`` arguments like the other stores do (tests
with a fake clock, and the conformance suite, use it).

**Migrations.** ``open()`` migrates an older schema under ``pg_advisory_xact_lock``, so
any number of processes may open an empty database at once: one migrates, the others
wait and find the schema current. A schema newer than this code is refused with
:class:`~orchestrate.errors.SchemaVersionError`. With ``migrate=false`` a process also
refuses an *older* schema instead of migrating it: run workers that way and migrate
from one deploy step (``orchestrate`` opened with the default), so that an old and a
new release never both think they own the schema.

**Failures.** Opening makes one connection first, so that a server refusing this process
fails at once with :class:`~orchestrate.errors.StoreAccessError`; transient failures are
retried for up to ``retry_seconds``, every write being idempotent or compare-and-set
(see :mod:`._pg_conn`).

**Payload limits.** A value whose JSON is over the store's
:class:`~orchestrate.store.PayloadLimits` is refused before it is sent
(:class:`~orchestrate.errors.PayloadTooLargeError`, never retried).

URL options (removed before connecting; the rest goes to libpq):
``schema`` (default: the server's search path), ``clock`` (``database``/``caller``),
``migrate`` (``true``/``false``), ``pool_min``, ``pool_max``, ``retry_seconds``,
``prepare_threshold`` (``none`` behind a transaction-pooling PgBouncer),
``max_payload_bytes``, ``warn_payload_bytes``.

``read_only=True`` (reading commands) never writes: the session is read-only
(``default_transaction_read_only``) and an older or missing schema is refused, not migrated.

The store is written in parts, one module per concern: connections, retries and
lifecycle (:mod:`._pg_conn`), the schema and its migrations (:mod:`._pg_schema`),
claiming (:mod:`._pg_claims`), shared limits (:mod:`._pg_limits`) and review items
(:mod:`._pg_reviews`); runs, step records, events and the cache are here, their SQL in
:mod:`._pg_sql`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrate.errors import LeaseLostError, RunNotFoundError, RunStateError
from orchestrate.store import _limits, _sql
from orchestrate.store import _pg_sql as q
from orchestrate.store._pg_batch import BatchError
from orchestrate.store._pg_claims import PostgresClaims
from orchestrate.store._pg_conn import Conn, cursor
from orchestrate.store._pg_limits import PostgresLimits
from orchestrate.store._pg_reviews import PostgresReviews
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
from orchestrate.types import RunStatus


class PostgresStore(PostgresClaims, PostgresLimits, PostgresReviews):
    """A store in a PostgreSQL database, shared by any number of processes and machines.

    Args:
        url: ``postgresql://user:password@host:port/dbname?options`` (see the module).
        schema: the schema holding the tables (created if missing); overrides ``?schema=``.
        clock: ``"database"`` (leases and due-ness on the database clock) or ``"caller"``.
        migrate: migrate an older schema on :meth:`open` (else refuse it).
        min_connections: connections the pool keeps open.
        max_connections: the pool's ceiling; size it to the worker's concurrency plus two.
        retry_seconds: how long transient failures (a restart, a failover) are retried.
        payload_limits: how large a value's JSON may be (default: the URL's
            ``max_payload_bytes``/``warn_payload_bytes``, else ``$ORCHESTRATE_MAX_PAYLOAD_BYTES``,
            else 2 MiB).
        read_only: never write (a read-only session; the schema is checked, not migrated).
    """

    capabilities: frozenset[Capability] = frozenset(
        {Capability.SHARED, Capability.CLAIMING, Capability.LIMITS, Capability.TRANSIENT_FAILURES}
    )
    """Shared by workers on many machines, claims in one call, keeps shared limits; its I/O may fail transiently."""

    # runs -----------------------------------------------------------------------------------
    async def create_run(self, run: RunRecord, *, event: Event | None = None) -> RunRecord:
        """Insert unless present; return the stored run."""
        params = _sql.run_params(run)
        large = _sql.input_size(run, params[4], self.payload_limits)
        sql = q.create_run(event is not None)
        args = (*params, *(_sql.event_params(event) if event else ()))

        async def op(conn: Conn, _attempt: int) -> RunRecord:
            if (await cursor(conn).execute(sql, args)).rowcount:
                return _sql.run_from_row(params)  # inserted: the stored run is the one given
            row = await (await conn.execute(q.SELECT_RUN, (run.run_id,))).fetchone()
            assert row is not None, "a conflicting run cannot vanish"
            return _sql.run_from_row(row)

        created = await self._run("create_run", op)
        if large is not None and created.fence == run.fence and created.created_at == run.created_at:
            await self.append_event(large)  # rare: a second statement rather than another shape of the first
        return created

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run or ``None``."""
        row = await self._fetchone("get_run", q.SELECT_RUN, (run_id,))
        return None if row is None else _sql.run_from_row(row)

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
        rows = await self._fetch("list_runs", q.fmt(sql), (*params, limit))
        return [_sql.run_from_row(r) for r in rows]

    async def find_run_ids(self, prefix: str, *, limit: int = 5) -> list[str]:
        """In id order."""
        rows = await self._fetch("find_run_ids", q.FIND_RUN_IDS, (_sql.like_prefix(prefix), limit))
        return [row[0] for row in rows]

    async def list_dead_letters(
        self, *, workflow: str | None = None, limit: int = 100, values: bool = True
    ) -> list[RunRecord]:
        """Newest first."""
        sql, params = _sql.list_dead_letters_sql(workflow, values)
        rows = await self._fetch("list_dead_letters", q.fmt(sql), (*params, limit))
        return [_sql.run_from_row(r) for r in rows]

    async def prune_runs(
        self,
        *,
        before: float,
        status: Sequence[RunStatus] = PRUNED_BY_DEFAULT,
        limit: int = 500,
        dry_run: bool = False,
    ) -> int:
        """Delete a batch of ended runs with everything kept under their ids, in one statement.

        Runs another worker is pruning at the same moment are skipped (``SKIP LOCKED``);
        a retry after a lost acknowledgement finds them gone and deletes the next ones.
        """
        statuses = _sql.prune_statuses(status)
        if dry_run:
            row = await self._fetchone("prune_runs", q.PRUNE_COUNT, (statuses, before))
            return int(row[0]) if row else 0
        return await self._execute("prune_runs", q.PRUNE_RUNS, {"statuses": statuses, "before": before, "limit": limit})

    async def update_run(self, run_id: str, *, fence: int, now: float, update: RunUpdate, event: Event | None) -> None:
        """Fenced transition, with its event, in one statement."""
        sql, params = q.update_run(run_id, fence, now, update, event)
        large = _sql.output_size(run_id, params[1], self.payload_limits, now)

        async def op(conn: Conn, attempt: int) -> None:
            row = await (await cursor(conn).execute(sql, params)).fetchone()
            assert row is not None
            updated, stored_fence, status, updated_at = row
            if updated:
                return
            if stored_fence is None:
                raise RunNotFoundError(f"run {run_id!r} does not exist")
            if attempt > 1 and (stored_fence, status, updated_at) == (fence, update.status.value, now):
                return  # our first try committed; its acknowledgement was lost
            raise LeaseLostError(
                f"run {run_id!r} is no longer held under fence {fence} (now fence {stored_fence}, status {status})"
            )

        await self._run("update_run", op)
        if large is not None:
            await self.append_event(large)

    async def cancel_run(self, run_id: str, *, now: float, reason: str) -> RunRecord:
        """Cancel a non-terminal run (bumps the fence)."""
        error = _sql.to_json({"type": "cancelled", "message": reason}, "cancel reason")
        ev = _sql.event_params(Event(run_id=run_id, kind="run_cancelled", at=now, data={"reason": reason}))

        async def op(conn: Conn, attempt: int) -> RunRecord:
            row = await (await conn.execute(q.CANCEL_RUN, (error, now, run_id, *ev))).fetchone()
            if row is not None:
                return _sql.run_from_row(row)
            row = await (await conn.execute(q.SELECT_RUN, (run_id,))).fetchone()
            if row is None:
                raise RunNotFoundError(f"run {run_id!r} does not exist")
            stored = _sql.run_from_row(row)
            if attempt > 1 and stored.status is RunStatus.CANCELLED and stored.updated_at == now:
                return stored  # our first try committed; its acknowledgement was lost
            raise RunStateError(f"run {run_id!r} is already {stored.status.value}")

        return await self._run("cancel_run", op)

    async def wake_run(self, run_id: str, *, now: float) -> None:
        """Make a waiting run due."""
        await self._execute("wake_run", q.WAKE_RUN, (now, run_id))

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
        """Insert-if-absent under the fence, with its event and run update: one statement.

        Concurrent step records of this process share commits (:mod:`._pg_batch`). A
        record goes out as a statement that returns no rows, whose row count says whether
        the step was inserted (the common record, with no event, no run update and no
        retry progress, as a bare fenced insert); only when it inserts nothing does the
        full statement follow, to say why (the step exists, or the fence does not hold).
        """
        if fence is None:  # a signal, from outside the run
            _limits.signal_depth(step)
        counted = True
        large = None
        run_output = None
        if run_update is not None and run_update.output is not None and run_update.output is not step.output:
            run_output = _sql.to_json(run_update.output, "run output")
            large = _sql.output_size(step.run_id, run_output, self.payload_limits, now)
        if event is None and run_update is None:
            if step.attempts == 1:
                sql, params, own = q.record_step_plain(step, fence)
            else:  # retry progress to delete: nothing to count on, the full statement answers
                counted = False
                sql, params, own = q.record_step(step, fence, now, event, run_update)
        else:
            sql, params, own = q.record_step(step, fence, now, event, run_update, counted=True, run_output=run_output)
        large = _sql.step_size(step, own[4], self.payload_limits) or large  # refused here, before sending
        written = await self._insert_step(step, fence, now, event, run_update, run_output, (sql, params, own), counted)
        if large is not None and written is step:
            await self.append_event(large)  # rare: a second statement rather than another shape of the first
        return written

    async def _insert_step(
        self,
        step: StepRecord,
        fence: int | None,
        now: float,
        event: Event | None,
        run_update: RunUpdate | None,
        run_output: str | None,
        statement: tuple[str, tuple[Any, ...], tuple[Any, ...]],
        counted: bool,
    ) -> StepRecord:
        """Send a step record's statement (see :meth:`record_step`); the stored record."""
        sql, params, own = statement
        try:
            row = await self._steps.submit(sql, params, order=step.run_id)
        except BatchError:
            ours = True  # retried alone below, recognising a commit of its own
        else:
            if not counted:
                return await self._settled_step(step, fence, row, None)
            assert row is not None
            if row[0]:
                return step  # inserted under the fence
            ours = False  # nothing inserted: the full statement below says why
        if counted:
            sql, params, _ = q.record_step(step, fence, now, event, run_update, run_output=run_output)

        async def op(conn: Conn, attempt: int) -> StepRecord:
            if ours or attempt > 1:
                # A try of ours failed, perhaps after committing: if so, the stored row is ours.
                found = await (await conn.execute(q.SELECT_STEP, (step.run_id, step.step_key))).fetchone()
                if found is not None and tuple(found) == own:
                    return _sql.step_from_row(found)
            return await self._settled_step(step, fence, await (await conn.execute(sql, params)).fetchone(), conn)

        return await self._run("record_step", op)

    async def _settled_step(
        self, step: StepRecord, fence: int | None, row: tuple[Any, ...] | None, conn: Conn | None
    ) -> StepRecord:
        """Interpret the answer ``(fence, status, inserted)`` of a step statement."""
        assert row is not None
        stored_fence, status, inserted = row
        if fence is not None:
            if stored_fence is None:
                raise RunNotFoundError(f"run {step.run_id!r} does not exist")
            if stored_fence != fence or status != RunStatus.RUNNING.value:
                raise LeaseLostError(
                    f"run {step.run_id!r} is no longer held under fence {fence} "
                    f"(now fence {stored_fence}, status {status})"
                )
        if inserted:
            return step
        key = (step.run_id, step.step_key)
        found = (
            await (await conn.execute(q.SELECT_STEP, key)).fetchone()
            if conn is not None
            else await self._fetchone("record_step", q.SELECT_STEP, key)
        )
        assert found is not None, "a conflicting step record cannot vanish"
        return _sql.step_from_row(found)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        """In recording order."""
        return [_sql.step_from_row(r) for r in await self._fetch("get_steps", q.SELECT_STEPS, (run_id,))]

    async def copy_steps(self, source_run_id: str, target_run_id: str, keys: Sequence[str]) -> int:
        """Copy records for a replay, in the order of ``keys``."""
        return await self._execute("copy_steps", q.COPY_STEPS, (target_run_id, source_run_id, list(keys), list(keys)))

    async def save_attempts(self, state: AttemptState, *, fence: int, event: Event | None) -> None:
        """Upsert retry progress (fenced); a repeated save adds no second event."""
        sql, params = q.save_attempts(state, fence, event)

        async def op(conn: Conn, _attempt: int) -> None:
            row = await (await cursor(conn).execute(sql, params)).fetchone()
            assert row is not None
            stored_fence, status = row
            if stored_fence is None:
                raise RunNotFoundError(f"run {state.run_id!r} does not exist")
            if stored_fence != fence or status != RunStatus.RUNNING.value:
                raise LeaseLostError(
                    f"run {state.run_id!r} is no longer held under fence {fence} "
                    f"(now fence {stored_fence}, status {status})"
                )

        await self._run("save_attempts", op)

    async def get_attempts(self, run_id: str) -> dict[str, AttemptState]:
        """Retry progress by step key."""
        rows = await self._fetch("get_attempts", q.SELECT_ATTEMPTS, (run_id,))
        return {s.step_key: s for s in map(_sql.attempts_from_row, rows)}

    # events, cache ----------------------------------------------------------------------
    async def append_event(self, event: Event) -> None:
        """Append, unless the same event is there already (a retry after a lost acknowledgement)."""
        await self._execute("append_event", q.APPEND_EVENT, q.append_event_params(_sql.event_params(event)))

    async def list_events(self, run_id: str) -> list[Event]:
        """Oldest first."""
        return [_sql.event_from_row(r) for r in await self._fetch("list_events", q.SELECT_EVENTS, (run_id,))]

    async def cache_get(self, key: str) -> CacheEntry | None:
        """Lookup."""
        row = await self._fetchone("cache_get", q.CACHE_GET, (key,))
        return None if row is None else _sql.cache_from_row(row)

    async def cache_put(self, key: str, value: Any, *, now: float) -> None:
        """Replace."""
        text = _sql.to_json(value, f"cached value {key!r}")
        _sql.cache_size(key, text, self.payload_limits)
        await self._execute("cache_put", q.CACHE_PUT, (key, text, now))
