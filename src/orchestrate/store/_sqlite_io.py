"""The SQLite store's connection: one writer, inline writes and group commit.

One connection, used in two ways. While one run at a time writes (each write comes
from the same run as the one before), a write runs right on the caller's thread: one
transaction, one commit, no thread hand-off, which is what a run executed step after step
needs (two thread wake-ups cost more than the statements). As soon as writes of several
runs interleave, they queue up for a dedicated writer thread, which drains whatever is
queued and runs it in *one* transaction with one commit (group commit), each operation
inside its own savepoint so that one refused write does not undo its neighbours. A single
run pays one commit per step; a hundred concurrent runs share their commits. A write
that would wait for another process's lock goes to the writer thread too, so the event
loop never waits on a lock; it does wait for the commit's flush of a write it runs itself
(a few hundred microseconds with ``synchronous=FULL``).

The store's operations live in :mod:`orchestrate.store.sqlite` and its private
mixins; they reach the database only through :meth:`SQLiteConnection._call`.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from orchestrate.errors import (
    InvalidInputError,
    LeaseLostError,
    RunNotFoundError,
    SchemaVersionError,
    StoreAccessError,
    StoreError,
)
from orchestrate.store import _sql
from orchestrate.store._limits import PayloadLimits
from orchestrate.store._sqlite_schema import inspect_version, migrate
from orchestrate.store.base import SCHEMA_VERSION
from orchestrate.types import RunStatus

Op = Callable[[sqlite3.Cursor], Any]
Alone = tuple[str, tuple[Any, ...], Any]
"""``(statement, parameters, result)`` of a write that one statement may do alone."""

_GLOB_SPECIAL = re.compile(r"([*?\[])")
_SYNC_MODES = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA", "off": "OFF"}
# Errors that waiting will not fix: the file cannot be written, opened, or is no database.
_PERMANENT = frozenset(
    {
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_AUTH,
    }
)


def _wrap(path: str, exc: sqlite3.Error) -> StoreError:
    """The store error for a driver error: :class:`StoreAccessError` when retrying cannot help."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code not in _PERMANENT:
        return StoreError(f"SQLite store {path!r}: {exc}")
    where = os.path.abspath(path)
    if code == sqlite3.SQLITE_READONLY:
        fix = (
            "this process may not write the file (or its directory, where SQLite keeps -wal and -shm "
            "files); fix the permissions, or only read it (runs list, runs show)"
        )
    elif code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        fix = "it is not an SQLite database (or is damaged); check the store URL"
    else:
        fix = "check that the file and its directory exist and that this process may open them"
    return StoreAccessError(f"SQLite store {where!r}: {exc}: {fix}")


@dataclass
class _Job:
    op: Op
    write: bool
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def parse_url(url: str) -> tuple[str, str]:
    """Return ``(path, synchronous)`` from ``sqlite:///relative`` or ``sqlite:////absolute``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise InvalidInputError(f"not a sqlite URL: {url!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc:
        raise InvalidInputError(f"sqlite URL {url!r} has a host part; write sqlite:///relative.db or sqlite:////abs.db")
    if not path:
        raise InvalidInputError(f"sqlite URL {url!r} names no database file")
    sync = parse_qs(parts.query).get("synchronous", ["full"])[-1].lower()
    if sync not in _SYNC_MODES:
        raise InvalidInputError(f"sqlite URL {url!r}: synchronous must be one of {sorted(_SYNC_MODES)}, got {sync!r}")
    return path, _SYNC_MODES[sync]


class SQLiteConnection:
    """The connection, writer thread and lifecycle every part of :class:`SQLiteStore` shares.

    Private: the store's operations are written in mixins over it, one per concern
    (claiming, shared limits, reviews), and the runs, steps and events in
    :class:`~orchestrate.store.sqlite.SQLiteStore` itself.
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = 30_000,
        max_batch: int = 512,
        create: bool = True,
        read_only: bool = False,
        payload_limits: PayloadLimits | None = None,
    ) -> None:
        self.url = url
        self.path, self.synchronous = parse_url(url)
        options = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
        self.payload_limits = PayloadLimits.resolve(payload_limits, options, where=f"sqlite URL {url!r}")
        self.read_only = read_only  # never write: no migration, no new file
        self.create = create and not read_only  # False: a missing file is an error, not a new empty store
        self._busy_timeout_ms = busy_timeout_ms
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._cur: sqlite3.Cursor | None = None  # the one cursor every operation goes through
        self._lock = threading.Lock()  # whoever uses the connection holds it
        self._busy_ms = busy_timeout_ms  # the connection's busy timeout right now
        self._queued = 0  # jobs handed to the writer thread and not answered yet
        self._last_run: str | None = None  # the run of the last write (None: none in progress)
        self.commits = 0  # transactions committed, for benchmarks and tests
        self.inline = 0  # operations run on the caller's thread, for benchmarks and tests

    # thread -------------------------------------------------------------------------------
    def _connect(self) -> tuple[sqlite3.Connection, int]:
        """Open the file and read its schema version, writing nothing (on the caller's thread)."""
        path = os.path.abspath(self.path)
        missing = self.path != ":memory:" and not os.path.exists(path)
        if missing and not self.create:
            raise StoreAccessError(f"no orchestrate database at {path!r} (nothing has run against this store yet?)")
        if missing:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            except OSError as exc:
                raise StoreAccessError(
                    f"cannot create the directory of the SQLite store {path!r}: {exc.strerror} ({exc.filename}); "
                    "create it, or point the store URL at a directory this process may write"
                ) from None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _wrap(self.path, exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            if self.read_only:
                conn.execute("PRAGMA query_only = ON")
            version = inspect_version(conn.cursor())
            if version is None:
                raise StoreAccessError(
                    f"{path!r} is an SQLite database of another application (it has tables, none of them "
                    "orchestrate's); nothing was changed: check the store URL"
                )
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"database schema version {version} is newer than this orchestrate understands "
                    f"({SCHEMA_VERSION}); upgrade orchestrate"
                )
            if version == 0 and not self.create:
                raise StoreAccessError(f"no orchestrate database at {path!r} (the file holds no orchestrate tables)")
            if version < SCHEMA_VERSION and self.read_only:
                raise SchemaVersionError(
                    f"the SQLite store {path!r} has schema version {version}, older than this orchestrate "
                    f"({SCHEMA_VERSION}), and a read command does not migrate it: run `orchestrate migrate "
                    f"--store {self.url}` (or any command that writes, such as `orchestrate worker`) first"
                )
            if not self.read_only:
                conn.execute("PRAGMA journal_mode = WAL")  # a no-op once the file is in WAL mode
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _wrap(self.path, exc) from exc
            raise
        return conn, version

    def _serve(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            job = self._jobs.get()
            if job is None:
                break
            batch = [job]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            with self._lock:
                self._set_busy(conn, self._busy_timeout_ms)
                self._run_batch(conn, batch)
            if stop:
                break
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[Any, BaseException | None]] = []
        writes = any(job.write for job in batch)
        cur = self._cursor(conn)
        try:
            cur.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
            if len(batch) == 1:
                # Alone in its transaction (one run at a time): the transaction does the
                # savepoint's work, two statements fewer for every step.
                try:
                    results.append((batch[0].op(cur), None))
                except Exception as exc:  # noqa: BLE001 - handed to the caller
                    cur.execute("ROLLBACK")
                    results.append((None, exc))
                else:
                    cur.execute("COMMIT")
                    self.commits += 1
            else:
                for job in batch:
                    cur.execute("SAVEPOINT op")
                    try:
                        results.append((job.op(cur), None))
                        cur.execute("RELEASE op")
                    except Exception as exc:  # noqa: BLE001 - handed to the caller
                        cur.execute("ROLLBACK TO op")
                        cur.execute("RELEASE op")
                        results.append((None, exc))
                cur.execute("COMMIT")
                self.commits += 1
        except sqlite3.Error as exc:
            try:
                cur.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            error = _wrap(self.path, exc)
            error.__cause__ = exc
            results = [(None, error) for _ in batch]
        for job, (result, err) in zip(batch, results, strict=True):
            if isinstance(err, sqlite3.Error):
                wrapped = _wrap(self.path, err)
                wrapped.__cause__ = err
                err = wrapped
            job.loop.call_soon_threadsafe(_resolve, job.future, result, err)

    def _cursor(self, conn: sqlite3.Connection) -> sqlite3.Cursor:
        """The store's cursor, reused by every statement (its holder has ``self._lock``).

        ``conn.execute`` makes and drops a cursor per statement, 4-5 µs each here: three
        statements per step.
        """
        cur = self._cur
        if cur is None:
            cur = self._cur = conn.cursor()
        return cur

    def _set_busy(self, conn: sqlite3.Connection, ms: int) -> None:
        if self._busy_ms != ms:
            conn.execute(f"PRAGMA busy_timeout = {ms}")
            self._busy_ms = ms

    def _inline(self, op: Op, write: bool, alone: Alone | None = None) -> tuple[bool, Any]:
        """Run ``op`` in its own transaction on this thread; ``(False, None)`` if the
        database is locked by another process (the writer thread will wait for it).

        With ``alone``, try its one statement first, as a transaction of its own (SQLite's
        autocommit: no ``BEGIN``/``COMMIT`` statements); if it changed no row, ``op`` runs
        as usual and finds out why.
        """
        conn = self._conn
        assert conn is not None
        self._set_busy(conn, 0)
        cur = self._cursor(conn)
        if alone is not None:
            sql, params, answer = alone
            try:
                changed = cur.execute(sql, params).rowcount
            except sqlite3.OperationalError as exc:
                if (exc.sqlite_errorcode & 0xFF) in _PERMANENT:
                    raise _wrap(self.path, exc) from exc
                return False, None  # locked by another process: nothing was written
            except sqlite3.Error as exc:
                raise _wrap(self.path, exc) from exc
            if changed:
                self.commits += 1
                self.inline += 1
                return True, answer
        try:
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            if (exc.sqlite_errorcode & 0xFF) in _PERMANENT:
                raise _wrap(self.path, exc) from exc
            return False, None  # SQLITE_BUSY: another process writes right now
        except sqlite3.Error as exc:
            raise _wrap(self.path, exc) from exc
        try:
            result = op(cur)
            cur.execute("COMMIT")
        except BaseException as exc:
            try:
                cur.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise _wrap(self.path, exc) from exc
            raise
        self.commits += 1
        self.inline += 1
        return True, result

    async def _call(self, op: Op, *, write: bool = True, run: str | None = None, alone: Alone | None = None) -> Any:
        """Run ``op`` in a transaction: inline if the store is quiet, else on the writer thread.

        ``run`` names the run a write belongs to: writes of one run after another go inline;
        a write of another run while one is in progress (``None``: unknown) is queued.
        ``alone`` is ``(statement, parameters, result)``: when that one statement changes a
        row, it has done all of ``op``'s work and ``op`` would return ``result``.
        """
        if self._thread is None:
            raise StoreError(f"store {self.url!r} is not open; call `await store.open()` first")
        if write:
            quiet = run is not None and self._last_run in (None, run)
            self._last_run = run
        else:
            quiet = True
        if quiet and not self._queued and self._lock.acquire(blocking=False):
            try:
                done, result = self._inline(op, write, alone)
            finally:
                self._lock.release()
            if done:
                if write and getattr(asyncio.get_running_loop(), "_ready", True):
                    # Let the other runs of this loop go on: without a pause here a run whose
                    # steps never wait would run to its end before any other starts, and
                    # concurrent runs would never share a commit. Whether others wait is
                    # read from asyncio's ready queue (``_ready`` of the standard loops;
                    # another loop: assume they do); a pause costs a loop iteration (10-25
                    # µs here), which a lone run need not pay.
                    await asyncio.sleep(0)
                return result
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued += 1
        try:
            self._jobs.put(_Job(op, write, future, loop))
            return await future
        finally:
            self._queued -= 1

    # lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the file (creating it and its directory unless ``create=False``) and migrate the schema.

        The version is read first, writing nothing; only an older schema takes the write
        lock, to migrate (never with ``read_only``).

        Raises:
            StoreAccessError: the file or its directory cannot be created or opened, it
                belongs to another application, or (``create=False``) it does not exist
                or holds no orchestrate schema; nothing is created then.
            SchemaVersionError: the schema is newer than this code, or (``read_only``) older.
        """
        if self._thread is not None:
            return
        self._conn, version = await asyncio.to_thread(self._connect)
        self._thread = threading.Thread(target=self._serve, name="orchestrate-sqlite", daemon=True)
        self._thread.start()
        if version == SCHEMA_VERSION:
            return
        try:
            await self._call(migrate)
        except BaseException:
            await self.close()  # a refused schema must not leave a half-open store
            raise

    async def close(self) -> None:
        """Finish queued work and stop the writer thread."""
        if self._thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        self._cur = None  # its connection is closed

    async def schema_version(self) -> int:
        """The recorded schema version (0 for none)."""
        return int(await self._call(inspect_version, write=False) or 0)

    async def _find_ids(self, sql: str, prefix: str, limit: int) -> list[str]:
        pattern = _GLOB_SPECIAL.sub(r"[\1]", prefix) + "*"

        def op(cur: sqlite3.Cursor) -> list[str]:
            return [row[0] for row in cur.execute(sql, (pattern, limit))]

        result: list[str] = await self._call(op, write=False)
        return result


# helpers run on the writer thread ------------------------------------------------------


def check_fence(cur: sqlite3.Cursor, run_id: str, fence: int) -> None:
    row = cur.execute(_sql.FENCE_OF, (run_id,)).fetchone()
    if row is None:
        raise RunNotFoundError(f"run {run_id!r} does not exist")
    if row[0] != fence or row[1] != RunStatus.RUNNING.value:
        raise LeaseLostError(
            f"run {run_id!r} is no longer held under fence {fence} (now fence {row[0]}, status {row[1]})"
        )


def raise_fence(cur: sqlite3.Cursor, run_id: str, fence: int) -> None:
    check_fence(cur, run_id, fence)
    raise StoreError(f"run {run_id!r}: update matched no row")  # pragma: no cover - defensive
