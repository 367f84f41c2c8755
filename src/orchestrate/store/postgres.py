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

**Failures.** Opening makes one connection first: a server that refuses this process —
wrong password, unknown role or database, a host name that does not resolve, a refused
port, a TLS mismatch, a bad libpq option — fails at once with
:class:`~orchestrate.errors.StoreAccessError`, carrying the server's reason and what to
fix, instead of being retried. Driver errors are wrapped in :class:`~orchestrate.errors.StoreError`.
Connection errors, a restarting server, serialization failures and deadlocks are
retried with backoff for up to ``retry_seconds``: every write is idempotent or
compare-and-set, and the writes whose effect is visible (step records, fenced status
changes, cancellation) recognise their own earlier commit when an acknowledgement was
lost. A claim whose acknowledgement was lost is not retried: that run waits for its
lease to expire.

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
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql as pgsql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from orchestrate.errors import (
    InvalidInputError,
    LeaseLostError,
    OrchestrateError,
    RunNotFoundError,
    RunStateError,
    SchemaVersionError,
    SerializationError,
    StoreAccessError,
    StoreError,
)
from orchestrate.observe import get_logger
from orchestrate.store import _limits, _sql
from orchestrate.store import _pg_sql as q
from orchestrate.store._limits import PayloadLimits
from orchestrate.store._pg_batch import Batcher, BatchError
from orchestrate.store.base import (
    PRUNED_BY_DEFAULT,
    SCHEMA_VERSION,
    AttemptState,
    BreakerRecord,
    CacheEntry,
    Event,
    RateGrant,
    ReviewRecord,
    ReviewStatus,
    RunRecord,
    RunUpdate,
    StepRecord,
    decide_rate,
)
from orchestrate.types import RunStatus

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
Op = Callable[[Conn, int], Awaitable[T]]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,50}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Worth retrying: the connection broke, the server is restarting or not yet up, a
# serialization failure or deadlock (class 40), a statement timeout.
_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
_IDLE = psycopg.pq.TransactionStatus.IDLE

log = get_logger()

# One cursor kept per connection for the frequent single statements: a cursor reused
# keeps its adaptation context (the dumpers it looked up), which a fresh cursor per
# statement (``conn.execute``) builds again; 30-50 µs per statement on this CPU.
_CURSORS: weakref.WeakKeyDictionary[Conn, psycopg.AsyncCursor[Any]] = weakref.WeakKeyDictionary()


def _cursor(conn: Conn) -> psycopg.AsyncCursor[Any]:
    cur = _CURSORS.get(conn)
    if cur is None or cur.closed:
        cur = _CURSORS[conn] = conn.cursor()
    return cur


async def _answer(cur: psycopg.AsyncCursor[Any]) -> tuple[Any, ...] | None:
    """A statement's first row; ``(row count,)`` for one that returns no rows."""
    if cur.description is None:
        return (cur.rowcount,)
    return await cur.fetchone()


_ACCESS_FIXES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("password authentication failed", "authentication failed"), "check the user name and password in the URL"),
    (("no pg_hba.conf entry",), "allow this host and user in the server's pg_hba.conf, or use another user"),
    (('role "',), "create that role, or put an existing user in the URL"),
    (('database "',), "create the database (createdb NAME), or fix its name in the URL"),
    (
        ("failed to resolve host", "could not translate host name", "name or service not known", "nodename nor"),
        "check the host name in the URL",
    ),
    (("connection refused",), "check the host and port in the URL, and that PostgreSQL is running there"),
    (("ssl", "certificate"), "check sslmode (and sslrootcert) in the URL against the server's TLS settings"),
    (("invalid", "unrecognized", "uri query parameter"), "fix that option in the URL"),
)


def _access_fix(exc: psycopg.Error) -> str | None:
    """What to fix when ``exc`` (raised while connecting) will not go away by retrying; else ``None``."""
    text = str(exc).lower()
    if isinstance(exc, psycopg.ProgrammingError):
        return "fix the URL"
    if "timeout" in text or "starting up" in text or "shutting down" in text or "too many" in text:
        return None  # the server is busy or restarting: worth retrying
    for needles, fix in _ACCESS_FIXES:
        if any(n in text for n in needles):
            return fix
    return None


def _flag(url: str, name: str, value: str) -> bool:
    text = value.lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInputError(f"PostgreSQL URL {url!r}: {name} must be true or false, got {value!r}")


class PostgresStore:
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

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        clock: str | None = None,
        migrate: bool | None = None,
        min_connections: int | None = None,
        max_connections: int | None = None,
        retry_seconds: float | None = None,
        payload_limits: PayloadLimits | None = None,
        read_only: bool = False,
    ) -> None:
        self.url = url
        self.read_only = read_only
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise InvalidInputError(f"not a PostgreSQL URL: {url!r}")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        ours = {k: options.pop(k) for k in list(options) if k in q.URL_OPTIONS}
        self.conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(options), parts.fragment))
        self.schema = schema or ours.get("schema") or None
        if self.schema is not None and not _IDENT.match(self.schema):
            raise InvalidInputError(f"PostgreSQL schema name {self.schema!r} must be a plain identifier")
        self.clock = (clock or ours.get("clock") or "database").lower()
        if self.clock not in ("database", "caller"):
            raise InvalidInputError(f"PostgreSQL URL {url!r}: clock must be 'database' or 'caller'")
        self.migrate = migrate if migrate is not None else _flag(url, "migrate", ours.get("migrate", "true"))
        self.migrate = self.migrate and not read_only
        self.payload_limits = PayloadLimits.resolve(payload_limits, ours, where=f"PostgreSQL URL {url!r}")
        try:
            self.min_connections = min_connections or int(ours.get("pool_min", "1"))
            self.max_connections = max_connections or int(ours.get("pool_max", "10"))
            self.retry_seconds = retry_seconds if retry_seconds is not None else float(ours.get("retry_seconds", "60"))
        except ValueError as exc:
            raise InvalidInputError(f"PostgreSQL URL {url!r}: {exc}") from None
        if not 1 <= self.min_connections <= self.max_connections:
            raise InvalidInputError(f"PostgreSQL URL {url!r}: need 1 <= pool_min <= pool_max")
        threshold = ours.get("prepare_threshold", "5")
        self._prepare_threshold = None if threshold.lower() == "none" else int(threshold)
        self._kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": self._prepare_threshold}
        settings = [f"-c search_path={self.schema}"] if self.schema is not None else []
        if read_only:
            settings.append("-c default_transaction_read_only=on")
        if settings:
            self._kwargs["options"] = " ".join(settings)
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._sql = q.Statements(database_clock=self.clock == "database")
        self._channel = ""
        self._hint = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._checking: asyncio.Task[None] | None = None
        self._spare: list[Conn] = []  # idle connections checked out of the pool (see _put)
        self._steps = Batcher(self._send_batch)
        self._waiting = 0  # callers waiting for the pool
        # Names of operations whose next success is reported as a lost connection (tests).
        self._lose_ack: set[str] = set()

    # plumbing ---------------------------------------------------------------------------
    def _describe(self) -> str:
        parts = urlsplit(self.conninfo)
        host = parts.hostname or "local socket"
        return f"PostgreSQL {host}{parts.path}" + (f" (schema {self.schema})" if self.schema else "")

    async def _run(self, name: str, op: Op[T], *, retry: bool = True) -> T:
        """Run ``op`` on a pooled connection; retry transient failures for ``retry_seconds``."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"store {self._describe()} is not open; call `await store.open()` first")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_seconds
        attempt = 0
        delay = 0.05
        while True:
            attempt += 1
            try:
                conn = self._spare.pop() if self._spare else await self._getconn(pool, deadline - loop.time())
                try:
                    result = await op(conn, attempt)
                finally:
                    await self._put(pool, conn)
                if name in self._lose_ack:  # fault injection for tests: committed, ack lost
                    self._lose_ack.discard(name)
                    raise psycopg.OperationalError(f"injected: {name} committed, then its acknowledgement was lost")
                return result
            except OrchestrateError:
                raise
            except (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege) as exc:
                # Asking again changes nothing: a read-only session or replica, a role without rights.
                raise StoreAccessError(
                    f"{self._describe()}: {name} failed: {' '.join(str(exc).split())}; connect as a role that may "
                    "write these tables, to the primary (target_session_attrs=read-write)"
                ) from exc
            except psycopg.errors.ProgramLimitExceeded as exc:
                # A value over what the server takes (a text over 1 GB, an index row too
                # long): sending it again would be refused again, after as much work.
                raise SerializationError(f"{self._describe()}: {name} failed: {exc}".strip()) from exc
            except _TRANSIENT as exc:
                if not retry or loop.time() + delay > deadline:
                    raise StoreError(f"{self._describe()}: {name} failed: {exc}") from exc
                log.warning("store_retry", store="postgresql", op=name, attempt=attempt, error=str(exc)[:200])
                await self._flush_spare(pool)
                if self._checking is None or self._checking.done():
                    self._checking = asyncio.create_task(self._check_pool(pool))
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
            except psycopg.Error as exc:
                raise StoreError(f"{self._describe()}: {name} failed: {exc}") from exc

    async def _getconn(self, pool: AsyncConnectionPool[Conn], remaining: float) -> Conn:
        self._waiting += 1
        try:
            return await pool.getconn(max(min(remaining, 10.0), 1.0))
        finally:
            self._waiting -= 1

    async def _put(self, pool: AsyncConnectionPool[Conn], conn: Conn) -> None:
        """Keep a healthy idle connection at hand; give anything else back to the pool.

        The pool's checkout and return cost more than a step's own work on the client;
        connections kept here skip both. The pool still creates, replaces and bounds them,
        and gets a connection back whenever a caller of this store waits for one.
        """
        # (A closed or broken connection's transaction status is never idle.)
        if not self._waiting and conn.pgconn.transaction_status == _IDLE:
            self._spare.append(conn)
        else:
            await pool.putconn(conn)  # to a waiter; or the pool rolls it back or discards it

    @staticmethod
    async def _check_pool(pool: AsyncConnectionPool[Conn]) -> None:
        # Drop every idle connection the failure broke, rather than meeting them one by one.
        try:
            await pool.check()
        except Exception:  # noqa: BLE001 - best effort; the retry loop reports real failures
            pass

    async def _flush_spare(self, pool: AsyncConnectionPool[Conn]) -> None:
        """Hand the kept connections back so that the pool checks them (after a failure, on close)."""
        spare, self._spare = self._spare, []
        for conn in spare:
            await pool.putconn(conn)

    async def _fetch(self, name: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        async def op(conn: Conn, _attempt: int) -> list[tuple[Any, ...]]:
            cur = await _cursor(conn).execute(sql, params)
            return await cur.fetchall()

        return await self._run(name, op)

    async def _fetchone(self, name: str, sql: str, params: Any = None) -> tuple[Any, ...] | None:
        rows = await self._fetch(name, sql, params)
        return rows[0] if rows else None

    async def _execute(self, name: str, sql: str, params: Any = None) -> int:
        async def op(conn: Conn, _attempt: int) -> int:
            cur = await _cursor(conn).execute(sql, params)
            return cur.rowcount

        return await self._run(name, op)

    # lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, then migrate (or check) the schema; idempotent."""
        if self._pool is not None:
            return
        await self._probe()
        # Fresh per opening: asyncio objects belong to the loop that opens the store.
        self._hint = asyncio.Event()
        self._steps = Batcher(self._send_batch)
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self.conninfo,
            kwargs=self._kwargs,
            min_size=self.min_connections,
            max_size=self.max_connections,
            open=False,
            name="orchestrate",
            timeout=30.0,
            reconnect_timeout=max(self.retry_seconds, 30.0),
        )
        try:
            await pool.open(wait=True, timeout=max(self.retry_seconds, 5.0))
        except (PoolTimeout, psycopg.Error) as exc:
            await pool.close()
            raise StoreError(f"cannot connect to {self._describe()}: {exc}") from exc
        self._pool = pool
        try:
            await self._run("migrate", self._migrate)
        except BaseException:
            await self.close()  # a refused schema must not leave a half-open store
            raise

    async def _probe(self) -> None:
        """Connect once, so that a server refusing this process fails now, with its reason.

        A refusal that retrying cannot fix raises :class:`StoreAccessError`; anything else
        (a timeout, a server starting up) is left to the pool, which retries it.
        """
        kwargs = dict(self._kwargs)
        if "connect_timeout" not in self.conninfo:
            kwargs["connect_timeout"] = 10
        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, **kwargs)
        except psycopg.Error as exc:
            fix = _access_fix(exc)
            if fix is None:
                return
            reason = " ".join(str(exc).split())
            raise StoreAccessError(f"cannot connect to {self._describe()}: {reason}; {fix}") from None
        await conn.close()

    async def close(self) -> None:
        """Stop listening and close the pool."""
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except BaseException:  # noqa: BLE001 - cancelled on purpose
                pass
            self._listener = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await self._flush_spare(pool)
            await pool.close()

    async def _migrate(self, conn: Conn, _attempt: int) -> None:
        schema = self.schema or str((await (await conn.execute("SELECT current_schema()")).fetchone() or ["public"])[0])
        self._channel = q.channel(schema)
        current = await self._read_version(conn)
        if current == SCHEMA_VERSION:
            return
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self._describe()} has schema version {current}, newer than this orchestrate understands "
                f"({SCHEMA_VERSION}); upgrade orchestrate on this machine"
            )
        if self.read_only:
            if current == 0:
                raise StoreAccessError(
                    f"no orchestrate tables in {self._describe()}: check the store URL (database, ?schema=); "
                    "a read command creates nothing"
                )
            raise SchemaVersionError(
                f"{self._describe()} has schema version {current}, older than this orchestrate ({SCHEMA_VERSION}), "
                "and a read command does not migrate it: run `orchestrate migrate --store URL` (or start a "
                "worker) first"
            )
        if not self.migrate:
            raise SchemaVersionError(
                f"{self._describe()} has schema version {current}, older than this orchestrate needs "
                f"({SCHEMA_VERSION}), and this process does not migrate (migrate=false); run the migration "
                "(open the store once with migrate=true, e.g. from your deploy step), then start it again"
            )
        lock = int.from_bytes(hashlib.sha256(f"orchestrate:migrate:{schema}".encode()).digest()[:8], "big", signed=True)
        async with conn.transaction():
            # One process migrates; the others wait here, then find the schema current.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            if self.schema is not None:
                await conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(schema)))
            await conn.execute(_sql.META_DDL)
            current = await self._read_version(conn)
            if current > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self._describe()} was migrated to schema version {current} meanwhile, newer than "
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

    @staticmethod
    async def _read_version(conn: Conn) -> int:
        row = await (await conn.execute("SELECT to_regclass('orchestrate_meta') IS NOT NULL")).fetchone()
        if not row or not row[0]:
            return 0
        found = await (await conn.execute(_sql.GET_VERSION)).fetchone()
        return 0 if found is None else int(found[0])

    async def schema_version(self) -> int:
        """The recorded schema version."""
        return await self._run("schema_version", lambda conn, _attempt: self._read_version(conn))

    # runs -----------------------------------------------------------------------------------
    async def create_run(self, run: RunRecord, *, event: Event | None = None) -> RunRecord:
        """Insert unless present; return the stored run."""
        params = _sql.run_params(run)
        large = _sql.input_size(run, params[4], self.payload_limits)
        sql = q.create_run(event is not None)
        args = (*params, *(_sql.event_params(event) if event else ()))

        async def op(conn: Conn, _attempt: int) -> RunRecord:
            if (await _cursor(conn).execute(sql, args)).rowcount:
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

    async def due_runs(self, *, now: float, limit: int = 100) -> list[RunRecord]:
        """Claimable runs, oldest first (due-ness on the database clock by default)."""
        rows = await self._fetch("due_runs", self._sql.due_runs, {"now": now, "limit": limit})
        return [_sql.run_from_row(r) for r in rows]

    async def claim_run(
        self, run_id: str, *, owner: str, now: float, lease_seconds: float, force: bool = False
    ) -> RunRecord | None:
        """Compare-and-set claim; the lease runs on the database clock by default."""
        params = {"now": now, "owner": owner, "lease": lease_seconds, "run_id": run_id}

        async def op(conn: Conn, attempt: int) -> RunRecord | None:
            if attempt > 1:
                return None  # the first try may have committed: let that lease expire
            row = await (await _cursor(conn).execute(self._sql.claim_run(force), params)).fetchone()
            return None if row is None else _sql.run_from_row(row)

        return await self._run("claim_run", op)

    async def renew_lease(self, run_id: str, *, owner: str, fence: int, now: float, lease_seconds: float) -> bool:
        """Extend if still held."""
        params = {"now": now, "lease": lease_seconds, "run_id": run_id, "fence": fence}
        return bool(await self._execute("renew_lease", self._sql.renew_lease, params))

    async def update_run(self, run_id: str, *, fence: int, now: float, update: RunUpdate, event: Event | None) -> None:
        """Fenced transition, with its event, in one statement."""
        sql, params = q.update_run(run_id, fence, now, update, event)
        large = _sql.output_size(run_id, params[1], self.payload_limits, now)

        async def op(conn: Conn, attempt: int) -> None:
            row = await (await _cursor(conn).execute(sql, params)).fetchone()
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
        ev = _sql.event_params(Event(run_id, "run_cancelled", now, data={"reason": reason}))

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

    async def _send_batch(self, items: list[tuple[str, Any]]) -> list[tuple[Any, ...] | None]:
        """Write a batch of step statements in one transaction and one round trip.

        Each answers with its first row, or ``(row count,)`` when it returns no rows.
        """

        async def op(conn: Conn, _attempt: int) -> list[tuple[Any, ...] | None]:
            if len(items) == 1:
                sql, params = items[0]
                return [await _answer(await _cursor(conn).execute(sql, params))]
            async with conn.pipeline(), conn.transaction():
                cursors = [await conn.execute(sql, params) for sql, params in items]
            return [await _answer(cur) for cur in cursors]

        return await self._run("record_step", op, retry=False)

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
            row = await (await _cursor(conn).execute(sql, params)).fetchone()
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

    # reviews ----------------------------------------------------------------------------
    async def create_review(self, review: ReviewRecord, *, event: Event | None = None) -> ReviewRecord:
        """Insert unless present; return the stored item."""
        _limits.review_depth(review)
        params = _sql.review_params(review)
        large = _sql.review_size(review, params[7], self.payload_limits, report=True)
        evs = [_sql.event_params(e) for e in (event, large) if e is not None]

        async def op(conn: Conn, _attempt: int) -> ReviewRecord:
            async with conn.transaction():
                if (await conn.execute(q.INSERT_REVIEW, params)).rowcount:
                    for ev in evs:
                        await conn.execute(q.INSERT_EVENT, ev)
                row = await (await conn.execute(q.SELECT_REVIEW, (review.review_id,))).fetchone()
            assert row is not None
            return _sql.review_from_row(row)

        return await self._run("create_review", op)

    async def find_review_ids(self, prefix: str, *, limit: int = 5) -> list[str]:
        """In id order."""
        rows = await self._fetch("find_review_ids", q.FIND_REVIEW_IDS, (_sql.like_prefix(prefix), limit))
        return [row[0] for row in rows]

    async def get_review(self, review_id: str) -> ReviewRecord | None:
        """The item or ``None``."""
        row = await self._fetchone("get_review", q.SELECT_REVIEW, (review_id,))
        return None if row is None else _sql.review_from_row(row)

    async def list_reviews(
        self,
        *,
        status: Sequence[ReviewStatus] | None = None,
        role: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[ReviewRecord]:
        """Most urgent first."""
        sql, params = _sql.list_reviews_sql(status, role, run_id)
        rows = await self._fetch("list_reviews", q.fmt(sql), (*params, limit))
        return [_sql.review_from_row(r) for r in rows]

    async def update_review(
        self,
        review: ReviewRecord,
        *,
        expected_version: int,
        now: float,
        events: Sequence[Event] = (),
        signal: StepRecord | None = None,
    ) -> bool:
        """Compare-and-set on the version; with ``signal``, record it and wake the run too."""
        _limits.review_depth(review)
        if signal is not None:
            _limits.signal_depth(signal)
        params = _sql.review_update_params(review, expected_version=expected_version, now=now)
        _sql.review_size(review, params[1], self.payload_limits, report=False)
        evs = [_sql.event_params(e) for e in events]
        step = _sql.step_params(signal) if signal is not None else None
        if signal is not None and step is not None:
            large = _sql.step_size(signal, step[4], self.payload_limits)
            if large is not None:
                evs.append(_sql.event_params(large))

        async def op(conn: Conn, attempt: int) -> bool:
            async with conn.transaction() as tx:
                if not (await conn.execute(q.UPDATE_REVIEW, params)).rowcount:
                    if attempt > 1:  # did our first try commit before its acknowledgement was lost?
                        row = await (await conn.execute(q.REVIEW_WRITTEN, (review.review_id,))).fetchone()
                        return row is not None and tuple(row) == params[:-2]
                    return False
                if step is not None and signal is not None:
                    if not (await conn.execute(q.INSERT_STEP, step)).rowcount:
                        raise psycopg.Rollback(tx)  # the signal was delivered already: undo the item too
                    await conn.execute(q.DELETE_ATTEMPTS, (signal.run_id, signal.step_key))
                    await conn.execute(q.WAKE_RUN, (now, signal.run_id))
                for ev in evs:
                    await conn.execute(q.INSERT_EVENT, ev)
                return True
            return False  # rolled back

        return await self._run("update_review", op)

    # workers ----------------------------------------------------------------------------
    async def claim_due(
        self,
        *,
        owner: str,
        now: float,
        lease_seconds: float,
        limit: int,
        versions: Sequence[tuple[str, str]] | None = None,
        queues: Sequence[str] | None = None,
        orphans_of: Sequence[str] = (),
        suspects: int | None = None,
    ) -> list[RunRecord]:
        """Claim up to ``limit`` due runs in one statement (``FOR UPDATE SKIP LOCKED``)."""
        if limit <= 0 or (versions is not None and not versions) or (queues is not None and not queues):
            return []
        sql = self._sql.claim_due(versions is not None, queues is not None, bool(orphans_of), suspects is not None)
        params = {"now": now, "owner": owner, "lease": lease_seconds, "limit": limit, "orphans": list(orphans_of)}
        if suspects is not None:
            params["suspects"] = max(min(suspects, limit), 0)
        params.update(q.filter_params(versions, queues))

        async def op(conn: Conn, attempt: int) -> list[RunRecord]:
            if attempt > 1:
                return []  # the first try may have committed: those leases will expire
            return [_sql.run_from_row(r) for r in await (await _cursor(conn).execute(sql, params)).fetchall()]

        runs = await self._run("claim_due", op)
        runs.sort(key=lambda r: (r.created_at if r.wake_at is None else r.wake_at, r.run_id))
        return runs

    async def seconds_until_due(
        self,
        *,
        now: float,
        versions: Sequence[tuple[str, str]] | None = None,
        queues: Sequence[str] | None = None,
    ) -> float | None:
        """Until the next timer, scheduled start or lease expiry (database clock by default)."""
        if (versions is not None and not versions) or (queues is not None and not queues):
            return None
        sql = self._sql.next_due(versions is not None, queues is not None)
        row = await self._fetchone("seconds_until_due", sql, {"now": now, **q.filter_params(versions, queues)})
        return None if row is None or row[0] is None else max(float(row[0]), 0.0)

    async def wait_for_work(self, timeout: float) -> bool:
        """Wait for a ``NOTIFY`` from a run becoming claimable, or ``timeout`` seconds."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="orchestrate-listen")
        if not self._hint.is_set():
            try:
                await asyncio.wait_for(self._hint.wait(), max(timeout, 0.0))
            except TimeoutError:
                return False
        self._hint.clear()
        return True

    async def _listen(self) -> None:
        """Keep a ``LISTEN`` connection open (reconnecting) and turn notifications into hints."""
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, **self._kwargs)
                async with conn:
                    await conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self._channel)))
                    self._hint.set()  # notifications may have been missed while disconnected
                    delay = 0.1
                    async for _note in conn.notifies():
                        self._hint.set()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("store_listen_lost", store="postgresql", error=str(exc)[:200])
            self._hint.set()  # while reconnecting, let the worker poll
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # shared limits ----------------------------------------------------------------------
    async def acquire_rate(
        self, resource: str, *, limit: float, per_seconds: float, cost: float = 1.0, now: float
    ) -> RateGrant:
        """Sliding-window grant, serialised per resource by a row lock; database clock by default."""

        async def op(conn: Conn, _attempt: int) -> RateGrant:
            async with conn.transaction():
                row = await (await conn.execute(self._sql.rate_lock, {"resource": resource, "now": now})).fetchone()
                assert row is not None
                at = float(row[0])
                cur = await conn.execute(q.RATE_WINDOW, (resource, at - per_seconds, resource, at - per_seconds))
                window = [(float(a), float(c)) for a, c in await cur.fetchall()]
                grant = decide_rate(window, limit=limit, per_seconds=per_seconds, cost=cost, now=at)
                if grant.granted:
                    await conn.execute(q.RATE_INSERT, (resource, grant.at, cost))
                return grant

        # A retry after a lost acknowledgement may take a second grant: never more calls
        # than the limit, at worst one fewer.
        return await self._run("acquire_rate", op)

    async def load_breaker(self, resource: str, *, now: float) -> tuple[BreakerRecord, float]:
        """The breaker's state and the store's time."""
        rows = await self._fetch("load_breaker", self._sql.breaker_get, {"resource": resource, "now": now})
        (row,) = rows
        at = float(row[-1])
        if row[0] is None:
            return BreakerRecord(resource), at
        return _sql.breaker_from_row(row[:-1]), at

    async def save_breaker(self, record: BreakerRecord, *, expected_version: int) -> bool:
        """Compare-and-set on the version."""
        if expected_version == 0:
            sql, params = q.BREAKER_INSERT, _sql.breaker_params(record, 1)
        else:
            sql, params = q.BREAKER_UPDATE, _sql.breaker_update_params(record, expected_version)

        async def op(conn: Conn, attempt: int) -> bool:
            if (await conn.execute(sql, params)).rowcount:
                return True
            if attempt > 1:  # our first try may have committed
                row = await (await conn.execute(q.BREAKER_GET, (record.resource,))).fetchone()
                return row is not None and tuple(row) == _sql.breaker_params(record, expected_version + 1)
            return False

        saved = await self._run("save_breaker", op)
        if saved:
            record.version = expected_version + 1
        return saved
