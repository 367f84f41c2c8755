"""The PostgreSQL store's connections: the pool, retries of transient failures, lifecycle.

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

The store's operations live in :mod:`orchestrate.store.postgres` and its private mixins;
they reach the database only through :meth:`PostgresConnection._run`.
"""

from __future__ import annotations

import asyncio
import random
import re
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from orchestrate.errors import (
    InvalidInputError,
    OrchestrateError,
    SerializationError,
    StoreAccessError,
    StoreError,
)
from orchestrate.observe import get_logger
from orchestrate.store import _pg_sql as q
from orchestrate.store._limits import PayloadLimits
from orchestrate.store._pg_batch import Batcher
from orchestrate.store._pg_schema import migrate, read_version

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


def cursor(conn: Conn) -> psycopg.AsyncCursor[Any]:
    """The connection's kept cursor (made on first use, again once closed)."""
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


class PostgresConnection:
    """The pool, retry loop and lifecycle every part of :class:`PostgresStore` shares.

    Private: the store's operations are written in mixins over it, one per concern
    (claiming, shared limits, reviews), and the runs, steps and events in
    :class:`~orchestrate.store.postgres.PostgresStore` itself.
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
            cur = await cursor(conn).execute(sql, params)
            return await cur.fetchall()

        return await self._run(name, op)

    async def _fetchone(self, name: str, sql: str, params: Any = None) -> tuple[Any, ...] | None:
        rows = await self._fetch(name, sql, params)
        return rows[0] if rows else None

    async def _execute(self, name: str, sql: str, params: Any = None) -> int:
        async def op(conn: Conn, _attempt: int) -> int:
            cur = await cursor(conn).execute(sql, params)
            return cur.rowcount

        return await self._run(name, op)

    async def _send_batch(self, items: list[tuple[str, Any]]) -> list[tuple[Any, ...] | None]:
        """Write a batch of step statements in one transaction and one round trip.

        Each answers with its first row, or ``(row count,)`` when it returns no rows.
        """

        async def op(conn: Conn, _attempt: int) -> list[tuple[Any, ...] | None]:
            if len(items) == 1:
                sql, params = items[0]
                return [await _answer(await cursor(conn).execute(sql, params))]
            async with conn.pipeline(), conn.transaction():
                cursors = [await conn.execute(sql, params) for sql, params in items]
            return [await _answer(cur) for cur in cursors]

        return await self._run("record_step", op, retry=False)

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

    async def schema_version(self) -> int:
        """The recorded schema version."""
        return await self._run("schema_version", lambda conn, _attempt: read_version(conn))

    async def _migrate(self, conn: Conn, _attempt: int) -> None:
        schema = self.schema or str((await (await conn.execute("SELECT current_schema()")).fetchone() or ["public"])[0])
        self._channel = q.channel(schema)
        await migrate(
            conn,
            schema=schema,
            create_schema=self.schema is not None,
            where=self._describe(),
            read_only=self.read_only,
            allowed=self.migrate,
        )
