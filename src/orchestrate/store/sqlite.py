"""``SQLiteStore``: the embedded, zero-infrastructure store (``sqlite:///path``).

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

Pragmas: WAL journal, ``synchronous=FULL`` by default so that a step reported as
recorded survives a power loss, not only a process crash. ``?synchronous=normal`` in
the URL trades that for speed (WAL with NORMAL can lose the last commits on power
loss, never on a process crash).

Opening reads before it writes: the schema version is read in a read transaction
(which in WAL mode waits for no writer), and a write transaction is taken only to
migrate. A file that holds tables but no orchestrate schema is refused untouched. A
store opened ``read_only`` never writes (``PRAGMA query_only``): no migration, no
journal-mode change, no file created.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from orchestrate.errors import (
    ConflictError,
    InvalidInputError,
    LeaseLostError,
    RunNotFoundError,
    RunStateError,
    SchemaVersionError,
    StoreAccessError,
    StoreError,
)
from orchestrate.store import _limits, _sql
from orchestrate.store._limits import PayloadLimits
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
from orchestrate.types import RunStatus, StepStatus

T = TypeVar("T")
Op = Callable[[sqlite3.Cursor], Any]
_Alone = tuple[str, tuple[Any, ...], Any]

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
_FIND_REVIEW_IDS = _sql.FIND_REVIEW_IDS.replace("LIKE ? ESCAPE '!'", "GLOB ?")
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


class SQLiteStore:
    """A store in one SQLite file, safe for several processes on one machine.

    With ``create=False``, :meth:`open` refuses a file that does not exist, or holds no
    orchestrate schema yet, rather than create one (and its directory). With
    ``read_only=True`` it never writes: a schema older than this code is refused instead
    of migrated (reading commands use it). ``payload_limits`` bounds the JSON of the
    values it writes (default: ``?max_payload_bytes=`` and ``?warn_payload_bytes=`` in the
    URL, else ``$ORCHESTRATE_MAX_PAYLOAD_BYTES``, else 2 MiB; see
    :class:`~orchestrate.store.PayloadLimits`).
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
            version = _inspect(conn.cursor())
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

    def _inline(self, op: Op, write: bool, alone: _Alone | None = None) -> tuple[bool, Any]:
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

    async def _call(self, op: Op, *, write: bool = True, run: str | None = None, alone: _Alone | None = None) -> Any:
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
            await self._call(_migrate)
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
        return int(await self._call(_inspect, write=False) or 0)

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

    async def due_runs(self, *, now: float, limit: int = 100) -> list[RunRecord]:
        """Claimable runs."""

        def op(cur: sqlite3.Cursor) -> list[RunRecord]:
            rows = cur.execute(_sql.DUE_RUNS, (now, now, now, limit))
            return [_sql.run_from_row(r) for r in rows]

        result: list[RunRecord] = await self._call(op, write=False)
        return result

    async def claim_run(
        self, run_id: str, *, owner: str, now: float, lease_seconds: float, force: bool = False
    ) -> RunRecord | None:
        """Compare-and-set claim."""
        condition = "(status = 'running' OR " + _sql.CLAIMABLE + ")" if force else _sql.CLAIMABLE

        def op(cur: sqlite3.Cursor) -> RunRecord | None:
            cur = cur.execute(
                _sql.CLAIM_RUN + condition,
                (owner, now + lease_seconds, now, run_id, now, now, now),
            )
            if not cur.rowcount:
                return None
            return _sql.run_from_row(cur.execute(_sql.SELECT_RUN, (run_id,)).fetchone())

        result: RunRecord | None = await self._call(op, run=run_id)
        return result

    async def renew_lease(self, run_id: str, *, owner: str, fence: int, now: float, lease_seconds: float) -> bool:
        """Extend if still held."""

        def op(cur: sqlite3.Cursor) -> bool:
            return bool(cur.execute(_sql.RENEW_LEASE, (now + lease_seconds, run_id, fence)).rowcount)

        return bool(await self._call(op, run=run_id))

    async def update_run(self, run_id: str, *, fence: int, now: float, update: RunUpdate, event: Event | None) -> None:
        """Fenced transition."""
        sql, params = _update_sql(run_id, fence, now, update)
        large = _sql.output_size(run_id, params[1], self.payload_limits, now)
        evs = [_sql.event_params(e) for e in (event, large) if e is not None]

        def op(cur: sqlite3.Cursor) -> None:
            if not cur.execute(sql, params).rowcount:
                _raise_fence(cur, run_id, fence)
            for ev in evs:
                cur.execute(_sql.INSERT_EVENT, ev)

        await self._call(op, run=run_id)
        if update.status is not RunStatus.RUNNING:
            self._last_run = None  # the run let go: the next run's writes may go inline

    async def cancel_run(self, run_id: str, *, now: float, reason: str) -> RunRecord:
        """Cancel a non-terminal run."""
        error = _sql.to_json({"type": "cancelled", "message": reason}, "cancel reason")
        ev = _sql.event_params(Event(run_id, "run_cancelled", now, data={"reason": reason}))

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

    # workers ------------------------------------------------------------------------------
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
        """Claim due runs in one transaction (the write lock makes it atomic across processes)."""
        where, params = _sql.claim_filter(versions, queues)
        orphans = _sql.orphans_condition(orphans_of)
        claim = f"{_sql.CLAIM_RUN}({_sql.CLAIMABLE}{orphans})"
        # (statement, most rows, owners it names): suspects first, then the others.
        selects: list[tuple[str, int, Sequence[str]]] = []
        if suspects is None:
            selects.append((_sql.DUE_IDS.format(where=where, orphans=orphans), limit, orphans_of))
        else:
            if suspects > 0:
                suspect = _sql.DUE_IDS.format(where=f"{where} AND {_sql.SUSPECT}", orphans=orphans)
                selects.append((suspect, suspects, orphans_of))
            selects.append((_sql.DUE_IDS.format(where=f"{where} AND NOT {_sql.SUSPECT}", orphans=""), limit, ()))

        def op(cur: sqlite3.Cursor) -> list[RunRecord]:
            ids: list[str] = []
            for select, most, owners in selects:
                most = min(most, limit - len(ids))
                if most > 0:
                    ids += [row[0] for row in cur.execute(select, (now, now, now, *owners, *params, most))]
            claimed = []
            for run_id in ids:
                if cur.execute(claim, (owner, now + lease_seconds, now, run_id, now, now, now, *orphans_of)).rowcount:
                    claimed.append(_sql.run_from_row(cur.execute(_sql.SELECT_RUN, (run_id,)).fetchone()))
            return claimed

        result: list[RunRecord] = await self._call(op)
        return result

    async def seconds_until_due(
        self,
        *,
        now: float,
        versions: Sequence[tuple[str, str]] | None = None,
        queues: Sequence[str] | None = None,
    ) -> float | None:
        """Until the next timer, scheduled start or lease expiry."""
        where, params = _sql.claim_filter(versions, queues)
        sql = _sql.NEXT_DUE.format(where=where)

        def op(cur: sqlite3.Cursor) -> float | None:
            value = cur.execute(sql, params).fetchone()[0]
            return None if value is None else max(float(value) - now, 0.0)

        result: float | None = await self._call(op, write=False)
        return result

    async def wait_for_work(self, timeout: float) -> bool:
        """SQLite sends no hints: sleep (the engine polls)."""
        await asyncio.sleep(max(timeout, 0.0))
        return False

    # shared limits ------------------------------------------------------------------------
    async def acquire_rate(
        self, resource: str, *, limit: float, per_seconds: float, cost: float = 1.0, now: float
    ) -> RateGrant:
        """Sliding-window grant under the database's write lock."""

        def op(cur: sqlite3.Cursor) -> RateGrant:
            cur.execute(_sql.RATE_PRUNE, (resource, now - per_seconds))
            window = [(float(a), float(c)) for a, c in cur.execute(_sql.RATE_WINDOW, (resource, now - per_seconds))]
            grant = decide_rate(window, limit=limit, per_seconds=per_seconds, cost=cost, now=now)
            if grant.granted:
                cur.execute(_sql.RATE_INSERT, (resource, grant.at, cost))
            return grant

        result: RateGrant = await self._call(op)
        return result

    async def load_breaker(self, resource: str, *, now: float) -> tuple[BreakerRecord, float]:
        """The breaker's state and ``now``."""

        def op(cur: sqlite3.Cursor) -> BreakerRecord:
            row = cur.execute(_sql.BREAKER_GET, (resource,)).fetchone()
            return BreakerRecord(resource) if row is None else _sql.breaker_from_row(row)

        record: BreakerRecord = await self._call(op, write=False)
        return record, now

    async def save_breaker(self, record: BreakerRecord, *, expected_version: int) -> bool:
        """Compare-and-set on the version."""
        if expected_version == 0:
            sql, params = _sql.BREAKER_INSERT, _sql.breaker_params(record, 1)
        else:
            sql, params = _sql.BREAKER_UPDATE, _sql.breaker_update_params(record, expected_version)
        saved = bool(await self._call(lambda cur: cur.execute(sql, params).rowcount))
        if saved:
            record.version = expected_version + 1
        return saved

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
        alone: _Alone | None = None
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
                _check_fence(cur, step.run_id, fence)
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
            _check_fence(cur, state.run_id, fence)
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

    # reviews ----------------------------------------------------------------------------
    async def create_review(self, review: ReviewRecord, *, event: Event | None = None) -> ReviewRecord:
        """Insert unless present; return the stored item."""
        _limits.review_depth(review)
        params = _sql.review_params(review)
        large = _sql.review_size(review, params[7], self.payload_limits, report=True)
        evs = [_sql.event_params(e) for e in (event, large) if e is not None]

        def op(cur: sqlite3.Cursor) -> ReviewRecord:
            if cur.execute(_sql.INSERT_REVIEW, params).rowcount:
                for ev in evs:
                    cur.execute(_sql.INSERT_EVENT, ev)
            return _sql.review_from_row(cur.execute(_sql.SELECT_REVIEW, (review.review_id,)).fetchone())

        result: ReviewRecord = await self._call(op)
        return result

    async def find_review_ids(self, prefix: str, *, limit: int = 5) -> list[str]:
        """In id order."""
        return await self._find_ids(_FIND_REVIEW_IDS, prefix, limit)

    async def _find_ids(self, sql: str, prefix: str, limit: int) -> list[str]:
        pattern = _GLOB_SPECIAL.sub(r"[\1]", prefix) + "*"

        def op(cur: sqlite3.Cursor) -> list[str]:
            return [row[0] for row in cur.execute(sql, (pattern, limit))]

        result: list[str] = await self._call(op, write=False)
        return result

    async def get_review(self, review_id: str) -> ReviewRecord | None:
        """The item or ``None``."""

        def op(cur: sqlite3.Cursor) -> ReviewRecord | None:
            row = cur.execute(_sql.SELECT_REVIEW, (review_id,)).fetchone()
            return None if row is None else _sql.review_from_row(row)

        result: ReviewRecord | None = await self._call(op, write=False)
        return result

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

        def op(cur: sqlite3.Cursor) -> list[ReviewRecord]:
            return [_sql.review_from_row(r) for r in cur.execute(sql, (*params, limit))]

        result: list[ReviewRecord] = await self._call(op, write=False)
        return result

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

        def op(cur: sqlite3.Cursor) -> bool:
            if not cur.execute(_sql.UPDATE_REVIEW, params).rowcount:
                return False
            if step is not None and signal is not None:
                if not cur.execute(_sql.INSERT_STEP, step).rowcount:
                    # Raising rolls the savepoint back: the item update is undone too.
                    raise ConflictError(f"run {signal.run_id!r} already received {signal.step_key!r}")
                cur.execute(_sql.DELETE_ATTEMPTS, (signal.run_id, signal.step_key))
                cur.execute(_sql.WAKE_RUN, (now, signal.run_id))
            for ev in evs:
                cur.execute(_sql.INSERT_EVENT, ev)
            return True

        try:
            return bool(await self._call(op))
        except ConflictError:
            return False


# helpers run on the writer thread ------------------------------------------------------


def _inspect(cur: sqlite3.Cursor) -> int | None:
    """The file's schema version, read without writing: 0 for an empty file, ``None`` for a
    file whose tables are none of orchestrate's (another application's database)."""
    tables = [row[0] for row in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if "orchestrate_meta" not in tables:
        return None if any(not t.startswith("sqlite_") for t in tables) else 0
    row = cur.execute(_sql.GET_VERSION).fetchone()
    return 0 if row is None else int(row[0])


def _migrate(cur: sqlite3.Cursor) -> None:
    current = _inspect(cur)  # again, under the write lock: another process may have migrated
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
        cur.execute(_sql.SET_VERSION, (str(version),))


def _check_fence(cur: sqlite3.Cursor, run_id: str, fence: int) -> None:
    row = cur.execute(_sql.FENCE_OF, (run_id,)).fetchone()
    if row is None:
        raise RunNotFoundError(f"run {run_id!r} does not exist")
    if row[0] != fence or row[1] != RunStatus.RUNNING.value:
        raise LeaseLostError(
            f"run {run_id!r} is no longer held under fence {fence} (now fence {row[0]}, status {row[1]})"
        )


def _raise_fence(cur: sqlite3.Cursor, run_id: str, fence: int) -> None:
    _check_fence(cur, run_id, fence)
    raise StoreError(f"run {run_id!r}: update matched no row")  # pragma: no cover - defensive


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
